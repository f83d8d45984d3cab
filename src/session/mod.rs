//! [`Session`]: the handle a handler receives, and everything a request
//! does with its session.
//!
//! - `mod.rs` (this file): the handle and its public methods;
//! - `state.rs`: what the request knows, one method per transition;
//! - `lifecycle.rs`: what happens on login, logout and rotation;
//! - `commit.rs`: what happens after the handler (periodic rotation, the
//!   write, the cookie);
//! - `lock.rs`: session locks, from acquisition to release.

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::store::ClientInfo;
use crate::{Error, Result, SessionId, SessionManager};

pub(crate) mod commit;
mod lifecycle;
pub mod lock;
pub(crate) mod state;
mod wait;

use self::lock::SessionLock;
pub(crate) use self::state::State;

/// How far a session has moved in this request. It only moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Status {
    /// Nothing changed.
    #[default]
    Unchanged,
    /// Data changed; the changed keys are written after the handler.
    Changed,
    /// The token was replaced (login or rotation).
    Rotated,
    /// The session was ended (logout); the cookie is cleared.
    Destroyed,
}

/// The session of the current request.
///
/// It is loaded when the extractor runs, before the handler's body, so [`get`](Self::get),
/// [`insert`](Self::insert), [`remove`](Self::remove) and
/// [`clear`](Self::clear) are synchronous and touch no store. After the
/// handler, only the keys that changed are written (a per-key delta), so two
/// concurrent requests that change different keys both keep their change;
/// two that change the same key: the last write wins.
///
/// [`login`](Self::login), [`logout`](Self::logout) and
/// [`rotate`](Self::rotate) go to the store at once, so their errors reach
/// the handler.
///
/// For a read-modify-write that must not lose an update (a counter, a cart,
/// a multi-step flow), take the session's lock first with
/// [`lock`](Self::lock), or extract [`LockedSession`](crate::LockedSession)
/// instead.
///
/// `Session` is cheap to clone (clones share state), `Send` and `Sync`.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    manager: SessionManager,
    client: ClientInfo,
    state: Mutex<State>,
    /// One lock acquisition at a time per request (clones of a session
    /// share it): a second `lock()` waits for the first, then finds the
    /// lock held by this request instead of waiting for itself.
    lock_gate: tokio::sync::Mutex<()>,
}

/// A request that ends without a commit (its handler panicked, its future
/// was dropped, the commit failed) releases the lock it holds in the
/// background; without a Tokio runtime, the lease runs out instead.
impl Drop for Inner {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        let Some(id) = st.id().cloned() else {
            return;
        };
        let Some(held) = st.take_lock() else {
            return;
        };
        held.stop_renewal();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let manager = self.manager.clone();
            rt.spawn(async move { lock::release(&manager, &id, held.fence).await });
        }
    }
}

/// A weak handle on a session, for background tasks that must not keep it
/// alive.
#[derive(Clone)]
pub(crate) struct WeakSession(Weak<Inner>);

impl WeakSession {
    pub(crate) fn upgrade(&self) -> Option<Session> {
        self.0.upgrade().map(|inner| Session { inner })
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state();
        f.debug_struct("Session")
            .field("id", &st.id())
            .field("user_id", &st.user_id())
            .field("status", &st.status())
            .field("keys", &st.data().len())
            .finish()
    }
}

impl Session {
    pub(crate) fn new(manager: SessionManager, client: ClientInfo, state: State) -> Self {
        Session {
            inner: Arc::new(Inner {
                manager,
                client,
                state: Mutex::new(state),
                lock_gate: tokio::sync::Mutex::new(()),
            }),
        }
    }

    pub(crate) fn downgrade(&self) -> WeakSession {
        WeakSession(Arc::downgrade(&self.inner))
    }

    /// Serializes lock acquisitions of this request.
    pub(crate) async fn lock_gate(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.inner.lock_gate.lock().await
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        // Every critical section below leaves `State` consistent before any
        // call that could panic, so a poisoned lock is still safe to use.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn client(&self) -> &ClientInfo {
        &self.inner.client
    }

    /// The manager this session belongs to, for per-user operations such as
    /// [`SessionManager::sessions_of`].
    pub fn manager(&self) -> &SessionManager {
        &self.inner.manager
    }

    /// The value at `key`, deserialized; `None` when absent.
    ///
    /// # Errors
    /// [`Error::Deserialize`] when the stored value is not a `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let st = self.state();
        match st.value(key) {
            None => Ok(None),
            Some(v) => T::deserialize(v)
                .map(Some)
                .map_err(|source| Error::Deserialize {
                    key: key.to_owned(),
                    source,
                }),
        }
    }

    /// Stores `value` at `key`. Writing a value equal to the current one
    /// changes nothing (and writes nothing).
    ///
    /// # Errors
    /// [`Error::Serialize`] when `value` cannot be turned into JSON;
    /// [`Error::KeyTooLong`], [`Error::ValueTooLarge`],
    /// [`Error::SessionTooLarge`] or [`Error::TooManyKeys`] past the
    /// configured [`Limits`](crate::Limits) (the session is left as it was);
    /// [`Error::SessionEnded`] after [`logout`](Self::logout).
    pub fn insert<T: Serialize>(&self, key: impl Into<String>, value: T) -> Result<()> {
        let key = key.into();
        let limits = self.manager().config().limits;
        if key.len() > limits.max_key_bytes {
            return Err(Error::KeyTooLong {
                len: key.len(),
                max: limits.max_key_bytes,
            });
        }
        let value = serde_json::to_value(value).map_err(|source| Error::Serialize {
            key: key.clone(),
            source,
        })?;
        let value_size = state::json_len(&value);
        if value_size > limits.max_value_bytes {
            return Err(Error::ValueTooLarge {
                key,
                size: value_size,
                max: limits.max_value_bytes,
            });
        }
        self.state().insert(key, value, &limits)
    }

    /// Removes `key`. Returns whether it was there.
    pub fn remove(&self, key: &str) -> bool {
        self.state().remove(key)
    }

    /// Removes every key, including keys other requests add before this one
    /// commits. Keeps the session and its login.
    pub fn clear(&self) {
        self.state().clear();
    }

    /// The keys present.
    pub fn keys(&self) -> Vec<String> {
        self.state().keys().cloned().collect()
    }

    /// The logged-in user, if any.
    pub fn user_id(&self) -> Option<String> {
        self.state().user_id().map(str::to_owned)
    }

    /// The public id of the session (safe to show and log; never the token).
    /// `None` while the session is not stored yet.
    pub fn id(&self) -> Option<SessionId> {
        let st = self.state();
        if st.is_ended() {
            return None;
        }
        st.id().cloned()
    }

    /// The token issued in this request by [`login`](Self::login) or
    /// [`rotate`](Self::rotate), for a handler that returns it in a JSON body
    /// (API clients using the header transport). `None` otherwise: a token
    /// the client already holds is never handed to handlers.
    pub fn token(&self) -> Option<String> {
        self.state().issued_token().map(|t| t.as_str().to_owned())
    }

    /// How far the session has moved in this request.
    pub fn status(&self) -> Status {
        self.state().status()
    }

    /// Logs `user_id` in: issues a new token (session fixation defence),
    /// carries the data over, binds the user and applies the single-login and
    /// max-sessions policy, all in one atomic store step. The old token stops
    /// working at once; requests still in flight with it drop their writes
    /// and leave the client's new cookie alone.
    ///
    /// The data carried over is the session's *latest* data in the store
    /// (keys other requests saved since this one loaded included) with this
    /// request's changes on top. If the session was ended meanwhile (logout,
    /// revoke), only this request's own changes are carried. The login
    /// starts a new absolute lifetime: OWASP counts it from authentication.
    ///
    /// # Errors
    /// [`Error::TooManySessions`] under `MaxSessionsPolicy::RejectNew` (the
    /// session is left as it was); [`Error::SessionEnded`] after logout;
    /// store errors.
    pub async fn login(&self, user_id: impl Into<String>) -> Result<()> {
        lifecycle::login(self, user_id.into()).await
    }

    /// Ends the session in the store at once. Requests still in flight with
    /// it cannot write it back; the response clears the cookie.
    ///
    /// # Errors
    /// Store errors (the session is then left as it was);
    /// [`Error::Superseded`] when another request replaced this request's
    /// token (a login or rotation: the new session is not this request's to
    /// end); [`Error::StandIn`] for the stand-in session of
    /// [`StoreFailure::Continue`](crate::StoreFailure::Continue).
    pub async fn logout(&self) -> Result<()> {
        lifecycle::logout(self).await
    }

    /// Ends every session of this session's user, this one included ("log
    /// out everywhere"), in one store call, and clears this request's
    /// cookie. Returns how many sessions ended. For an anonymous session it
    /// is [`logout`](Self::logout) and returns 1 or 0.
    ///
    /// # Errors
    /// As for [`logout`](Self::logout).
    pub async fn logout_everywhere(&self) -> Result<u64> {
        lifecycle::logout_everywhere(self).await
    }

    /// Takes the session's lock, for a read-modify-write that must not lose
    /// an update to a concurrent request of the same session. Waits while
    /// another request holds it, up to
    /// [`lock_timeout`](crate::SessionConfig::lock_timeout).
    ///
    /// On acquisition the session's data is **replaced** by its latest
    /// state in the store (read in the same step that took the lock), and
    /// changes this request made before calling `lock` are applied again
    /// on top. So read the values you are about to change *after* locking.
    /// A session not stored yet is stored first (it gets its token), so
    /// that there is something to lock.
    ///
    /// The lock is released after the commit writes this request's
    /// changes; dropping the guard only stops renewing the lease. Calling
    /// `lock` again in the same request returns another guard at once. See
    /// the [lock module](crate::lock) for the guarantees and limits.
    ///
    /// # Errors
    /// [`Error::LockTimeout`] (`423 Locked`) when another request held the
    /// lock for the whole timeout; [`Error::SessionEnded`] when the session
    /// was ended (here or by another request); store errors and timeouts
    /// (the session is then left as it was); [`Error::StandIn`] for the
    /// stand-in session of [`StoreFailure::Continue`](crate::StoreFailure::Continue),
    /// which was never loaded and so cannot be locked; [`Error::Superseded`]
    /// when another request replaced the token.
    pub async fn lock(&self) -> Result<SessionLock> {
        lock::acquire(self).await
    }

    /// Issues a new token for the same session (do this on privilege
    /// change). The old token stops working at once. Nothing happens for a
    /// session that is not stored yet: it gets a fresh token when first
    /// written anyway.
    ///
    /// # Errors
    /// [`Error::SessionEnded`] when the session was ended meanwhile;
    /// [`Error::Superseded`] when another request replaced the token first;
    /// [`Error::StandIn`] for the stand-in session of
    /// [`StoreFailure::Continue`](crate::StoreFailure::Continue); store
    /// errors.
    pub async fn rotate(&self) -> Result<()> {
        lifecycle::rotate(self).await
    }
}

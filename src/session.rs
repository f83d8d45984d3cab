//! [`Session`]: the handle a handler receives.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::lock::HeldLock;
use crate::store::{ClientInfo, Data, Delta, Written};
use crate::token::Token;
use crate::{Error, Result, SessionId, SessionLock, SessionManager};

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
        let (Some(held), Some(id)) = (st.lock.take(), st.id.clone()) else {
            return;
        };
        held.stop_renewal();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let manager = self.manager.clone();
            rt.spawn(async move { manager.release_lock(&id, held.fence).await });
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

/// Everything the manager needs to commit the session.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// The token the client should hold. `None` when the session is not
    /// stored yet, or was reached through a rotation alias (the client holds
    /// an older token that still works).
    pub token: Option<Token>,
    /// Where the session lives in the store; `None` until first written.
    pub id: Option<SessionId>,
    pub data: Data,
    pub dirty: HashSet<String>,
    pub cleared: bool,
    pub status: Status,
    pub user_id: Option<String>,
    /// The token changed in this request: send it.
    pub send_token: bool,
    /// The latest expiry the store reported, and whether it moved in this
    /// request (then a persistent cookie's `Max-Age` is refreshed).
    pub expiry: Option<Written>,
    pub expiry_moved: bool,
    /// The request carried a token (so a removal cookie has something to clear).
    pub had_token: bool,
    /// Periodic rotation is due at commit.
    pub rotation_due: bool,
    /// Bytes of keys and JSON values, computed on the first insert.
    pub size: Option<usize>,
    /// Stand-in for a session the store could not load
    /// ([`StoreFailure::Continue`](crate::StoreFailure::Continue)): never written.
    pub detached: bool,
    /// The session lock this request holds: released after the commit's
    /// write, which carries its fence.
    pub lock: Option<HeldLock>,
}

impl State {
    /// Bytes of keys and JSON values held now.
    fn size(&mut self) -> usize {
        if let Some(size) = self.size {
            return size;
        }
        let size = self.data.iter().map(|(k, v)| k.len() + json_len(v)).sum();
        self.size = Some(size);
        size
    }

    pub(crate) fn advance(&mut self, to: Status) {
        self.status = self.status.max(to);
    }

    /// Takes the pending changes as a delta, leaving none pending.
    pub(crate) fn take_delta(&mut self) -> Delta {
        let mut delta = Delta {
            clear: std::mem::take(&mut self.cleared),
            ..Delta::default()
        };
        for key in std::mem::take(&mut self.dirty) {
            match self.data.get(&key) {
                Some(v) => delta.set.push((key, v.clone())),
                None => delta.remove.push(key),
            }
        }
        delta
    }

    /// Puts back changes taken by [`take_delta`](Self::take_delta) when they
    /// could not be written.
    pub(crate) fn restore_delta(&mut self, delta: &Delta) {
        self.cleared |= delta.clear;
        self.dirty.extend(delta.remove.iter().cloned());
        self.dirty.extend(delta.set.iter().map(|(k, _)| k.clone()));
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state();
        f.debug_struct("Session")
            .field("id", &st.id)
            .field("user_id", &st.user_id)
            .field("status", &st.status)
            .field("keys", &st.data.len())
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
        match st.data.get(key) {
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
        let value_size = json_len(&value);
        if value_size > limits.max_value_bytes {
            return Err(Error::ValueTooLarge {
                key,
                size: value_size,
                max: limits.max_value_bytes,
            });
        }
        let mut st = self.state();
        if st.status == Status::Destroyed {
            return Err(Error::SessionEnded);
        }
        let old_size = match st.data.get(&key) {
            Some(old) if *old == value => return Ok(()),
            Some(old) => key.len() + json_len(old),
            None if st.data.len() >= limits.max_keys => {
                return Err(Error::TooManyKeys {
                    max: limits.max_keys,
                })
            }
            None => 0,
        };
        let size = st.size() - old_size + key.len() + value_size;
        if size > limits.max_session_bytes {
            return Err(Error::SessionTooLarge {
                size,
                max: limits.max_session_bytes,
            });
        }
        st.size = Some(size);
        st.data.insert(key.clone(), value);
        st.dirty.insert(key);
        st.advance(Status::Changed);
        Ok(())
    }

    /// Removes `key`. Returns whether it was there.
    pub fn remove(&self, key: &str) -> bool {
        let mut st = self.state();
        if st.data.remove(key).is_none() {
            return false;
        }
        st.size = None;
        st.dirty.insert(key.to_owned());
        st.advance(Status::Changed);
        true
    }

    /// Removes every key, including keys other requests add before this one
    /// commits. Keeps the session and its login.
    pub fn clear(&self) {
        let mut st = self.state();
        st.data.clear();
        st.size = Some(0);
        st.dirty.clear();
        st.cleared = true;
        st.advance(Status::Changed);
    }

    /// The keys present.
    pub fn keys(&self) -> Vec<String> {
        self.state().data.keys().cloned().collect()
    }

    /// The logged-in user, if any.
    pub fn user_id(&self) -> Option<String> {
        self.state().user_id.clone()
    }

    /// The public id of the session (safe to show and log; never the token).
    /// `None` while the session is not stored yet.
    pub fn id(&self) -> Option<SessionId> {
        let st = self.state();
        if st.status == Status::Destroyed {
            return None;
        }
        st.id.clone()
    }

    /// The token issued in this request by [`login`](Self::login) or
    /// [`rotate`](Self::rotate), for a handler that returns it in a JSON body
    /// (API clients using the header transport). `None` otherwise: a token
    /// the client already holds is never handed to handlers.
    pub fn token(&self) -> Option<String> {
        let st = self.state();
        if !st.send_token || st.status == Status::Destroyed {
            return None;
        }
        st.token.as_ref().map(|t| t.as_str().to_owned())
    }

    /// How far the session has moved in this request.
    pub fn status(&self) -> Status {
        self.state().status
    }

    /// Logs `user_id` in: issues a new token (session fixation defence),
    /// carries the data over, binds the user and applies the single-login and
    /// max-sessions policy, all in one atomic store step. The old token stops
    /// working at once.
    ///
    /// # Errors
    /// [`Error::TooManySessions`] under `MaxSessionsPolicy::RejectNew` (the
    /// session is left as it was); [`Error::SessionEnded`] after logout;
    /// store errors.
    pub async fn login(&self, user_id: impl Into<String>) -> Result<()> {
        self.manager().login_session(self, user_id.into()).await
    }

    /// Ends the session in the store at once. Requests still in flight with
    /// it cannot write it back; the response clears the cookie.
    ///
    /// # Errors
    /// Store errors (the session is then left as it was).
    pub async fn logout(&self) -> Result<()> {
        self.manager().logout_session(self).await
    }

    /// Ends every session of this session's user, this one included ("log
    /// out everywhere"), in one store call, and clears this request's
    /// cookie. Returns how many sessions ended. For an anonymous session it
    /// is [`logout`](Self::logout) and returns 1 or 0.
    ///
    /// # Errors
    /// Store errors (the session is then left as it was).
    pub async fn logout_everywhere(&self) -> Result<u64> {
        self.manager().logout_everywhere_session(self).await
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
    /// (the session is then left as it was), including for the stand-in
    /// session of [`StoreFailure::Continue`](crate::StoreFailure::Continue),
    /// which was never loaded and so cannot be locked.
    pub async fn lock(&self) -> Result<SessionLock> {
        self.manager().lock_session(self).await
    }

    /// Issues a new token for the same session (do this on privilege
    /// change). The old token stops working at once. Nothing happens for a
    /// session that is not stored yet: it gets a fresh token when first
    /// written anyway.
    ///
    /// # Errors
    /// [`Error::SessionEnded`] when the session was ended meanwhile; store
    /// errors.
    pub async fn rotate(&self) -> Result<()> {
        self.manager().rotate_session(self).await
    }
}

/// The length of a value's JSON text, without building the text.
fn json_len(value: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a `Value` cannot fail: its keys are strings and the writer
    // never errors. Were it to, 0 only makes the size check laxer.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

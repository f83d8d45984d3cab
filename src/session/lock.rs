//! Session locks: [`SessionLock`] (the guard [`Session::lock`] returns) and
//! [`LockedSession`] (the extractor that takes the lock before the handler
//! runs).
//!
//! # What a lock gives you
//!
//! Without a lock, two concurrent requests of one session that change the
//! *same* key both read the old value, and the last write wins: a counter
//! incremented by both goes up by one. A request that takes the session's
//! lock waits until no other request of that session holds it, then starts
//! from the session's latest data (read in the same store step that took
//! the lock), and writes its changes back before the next holder can start.
//! Read-modify-write under the lock never loses an update.
//!
//! # When the lock is released
//!
//! A lock belongs to the request that took it, and is released when that
//! request's session is committed (after the handler, by the middleware):
//! the commit writes the changes, carrying the lock's fence, and only then
//! releases the lock. Releasing any earlier would let the next holder read
//! the data before this request's changes are written: exactly the lost
//! update the lock is there to prevent. So **dropping the guard does not
//! release the lock**; it stops renewing its lease. The lease is renewed
//! every third of [`lock_lease`](crate::SessionConfig::lock_lease) while a
//! guard lives, so keep the guard for as long as you work under the lock
//! (the [`LockedSession`] extractor keeps it for the whole handler). If the
//! request then runs past the lease without a guard and another request
//! takes the lock meanwhile, the commit writes nothing and fails with
//! [`Error::LockLost`](crate::Error::LockLost).
//!
//! A request that ends without a commit (its handler panicked, the client
//! went away, the commit failed) releases its lock in the background when
//! its session is dropped, and at the latest when the lease runs out. So
//! does a lock call that timed out after the store took the lock: the lease
//! is the bound on how long a lost holder blocks the others.
//!
//! # Guarantees and limits
//!
//! - **Fencing.** Each acquisition gets a fence, a number that only grows
//!   per session. The commit's write is applied only if its fence is still
//!   the session's latest: a holder whose lease ran out while it was stalled
//!   (a long GC-like pause, a slow upstream call without a guard, a network
//!   partition) and whose lock was taken since cannot overwrite the newer
//!   holder's write. It gets `409 Conflict` ([`Error::LockLost`](crate::Error::LockLost)) instead;
//!   nothing is ever lost silently.
//! - **Advisory.** Only requests that ask for the lock wait for it. A
//!   request that writes the session without locking (the plain
//!   [`Session`] extractor) is not excluded, and its write to a key wins or
//!   loses as without locks. Lock every route that writes the keys you
//!   protect.
//! - **Waiting.** A request waits at most
//!   [`lock_timeout`](crate::SessionConfig::lock_timeout), then fails with
//!   `423 Locked` ([`Error::LockTimeout`](crate::Error::LockTimeout)). It
//!   does not poll: before each attempt it asks the store for a release
//!   notice ([`SessionStore::release_notice`](crate::SessionStore::release_notice)),
//!   and when the lock is held it waits for that notice, for the rest of
//!   the holder's lease (a lease that runs out sends no notice), or for
//!   500 ms (what a missed notice costs at most), whichever comes first,
//!   then tries again. A release wakes the request that has waited longest
//!   (first come, first served within an app instance; with several
//!   instances, one waiter per instance tries). Both stores of this crate
//!   send notices: the memory store on `unlock`, the Redis store by
//!   Pub/Sub to every instance (see [`crate::redis`]). A store that sends
//!   none, or the Redis store while its subscription is down, is polled
//!   with a jittered backoff (5 ms doubling to 50 ms) instead.
//! - **Login, logout, rotation.** Logout and revocation delete the lock with
//!   the session. Login creates a new session, which no other request can
//!   know yet: this request's lock ends with the old session, and the new
//!   one is written without a fence. [`Session::rotate`] ends the lock the
//!   same way (the old token stops working at once, and only this request
//!   knows the new one). Periodic rotation
//!   ([`rotation_interval`](crate::SessionConfig::rotation_interval)) moves
//!   the lock, with its holder and fence counter, to the new token; the old
//!   token, which keeps working for the grace period, reaches the same
//!   lock. A login or [`Session::rotate`] by *another* request while this
//!   one holds the lock replaces the token under it: the commit then fails
//!   with `LockLost`, and the lock is dropped with the old token rather than
//!   left to block the new one.
//! - **Redis failover.** With Redis replication the lock and the fence
//!   counter live on the primary. A failover that loses writes not yet
//!   replicated can forget an acquisition, so two requests may both believe
//!   they hold the lock; the fence counter may also step back, so fencing
//!   cannot tell them apart either. Locks are as durable as the session
//!   data itself, and no more: the same failover can lose session writes.
//! - **Cost.** Taking a lock is one store call, plus one per wake while
//!   another request holds it (one per poll with a store without notices);
//!   the commit adds one call to release it. With the Redis client-side cache, taking the lock
//!   writes the session's hash (its fence counter), which invalidates the
//!   copies other app instances cache.

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::{Error, Result, Session, SessionId, SessionManager};

use super::state::Standing;
use super::wait::wait_for;
use super::{commit, WeakSession};

/// Proof that the current request holds its session's lock, from
/// [`Session::lock`]. Dereferences to the [`Session`].
///
/// While a guard lives, the lock's lease is renewed in the background. The
/// lock itself is released when the request's session is committed, after
/// its changes are written: dropping the guard only stops the renewal. See
/// the [module docs](crate::lock) for the reasons and the limits.
///
/// ```
/// use sessionkit::{Session, Error};
///
/// async fn add_to_cart(session: Session, item: String) -> Result<String, Error> {
///     let _lock = session.lock().await?; // waits for other requests of this session
///     let mut cart: Vec<String> = session.get("cart")?.unwrap_or_default();
///     cart.push(item);
///     session.insert("cart", &cart)?;
///     Ok(format!("{} items", cart.len()))
/// } // the middleware writes the cart, then releases the lock
/// ```
#[must_use = "the lease is renewed only while the guard lives: bind it \
              (`let _lock = session.lock().await?;`) for as long as you work under the lock"]
pub struct SessionLock {
    session: Session,
    fence: u64,
    _renewal: Option<Arc<Renewal>>,
}

impl SessionLock {
    pub(crate) fn new(session: Session, fence: u64, renewal: Option<Arc<Renewal>>) -> Self {
        SessionLock {
            session,
            fence,
            _renewal: renewal,
        }
    }

    /// The fence of this acquisition: it grows with every acquisition of
    /// the session's lock, and the commit's write carries it.
    pub fn fence(&self) -> u64 {
        self.fence
    }

    /// The locked session.
    pub fn session(&self) -> &Session {
        &self.session
    }
}

impl Deref for SessionLock {
    type Target = Session;

    fn deref(&self) -> &Session {
        &self.session
    }
}

impl fmt::Debug for SessionLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLock")
            .field("session", &self.session)
            .field("fence", &self.fence)
            .finish()
    }
}

/// The [`Session`], with its lock taken before the handler runs: an
/// extractor for axum (`FromRequestParts`) and actix-web (`FromRequest`).
/// Dereferences to the [`Session`].
///
/// It holds the lock's guard for as long as the handler holds it (the
/// whole handler, unless it drops it), and the middleware releases the
/// lock after writing the handler's changes. When the lock cannot be taken
/// the handler does not run, and the rejection is the typed error:
/// [`Error::LockTimeout`](crate::Error::LockTimeout) (`423 Locked`), a store
/// error (`503`), or [`Error::SessionEnded`](crate::Error::SessionEnded).
/// See the [module docs](crate::lock).
///
/// ```
/// use axum::{routing::post, Router};
/// use sessionkit::{axum::SessionLayer, Error, LockedSession, MemoryStore, SessionConfig, SessionManager};
///
/// async fn increment(session: LockedSession) -> Result<String, Error> {
///     let n: u64 = session.get("n")?.unwrap_or(0) + 1;
///     session.insert("n", n)?;
///     Ok(n.to_string())
/// }
///
/// let manager = SessionManager::new(MemoryStore::new(), SessionConfig::default());
/// let app: Router = Router::new()
///     .route("/increment", post(increment))
///     .layer(SessionLayer::new(manager));
/// ```
#[derive(Debug)]
pub struct LockedSession(SessionLock);

impl LockedSession {
    /// Wraps a guard.
    pub fn new(lock: SessionLock) -> Self {
        LockedSession(lock)
    }

    /// The guard.
    pub fn guard(&self) -> &SessionLock {
        &self.0
    }

    /// The guard, to keep it past the extractor (or drop it early).
    pub fn into_guard(self) -> SessionLock {
        self.0
    }
}

impl Deref for LockedSession {
    type Target = Session;

    fn deref(&self) -> &Session {
        &self.0.session
    }
}

/// The lock a request holds, as its session state records it.
#[derive(Debug)]
pub(crate) struct HeldLock {
    /// The fence of the acquisition; the commit's write carries it.
    pub(crate) fence: u64,
    /// The renewal task, while a guard lives.
    pub(crate) renewal: Weak<Renewal>,
}

impl HeldLock {
    /// Stops renewing the lease (the commit is about to release the lock,
    /// or the lock ended with its session).
    pub(crate) fn stop_renewal(&self) {
        if let Some(r) = self.renewal.upgrade() {
            r.0.abort();
        }
    }
}

/// A renewal task; aborted when the last guard that shares it drops.
#[derive(Debug)]
pub(crate) struct Renewal(tokio::task::AbortHandle);

impl Drop for Renewal {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How often a lease is renewed: a third of it (at least 1 ms).
pub(crate) fn renewal_interval(lease: Duration) -> Duration {
    (lease / 3).max(Duration::from_millis(1))
}

/// Starts renewing the lease of `fence` on `session`'s lock. The task reads
/// the session's current id on every round (a rotation in this request
/// moves the lock), and ends when the session is gone, no longer holds this
/// fence, or the store says the lock is no longer ours. `None` outside a
/// Tokio runtime.
pub(crate) fn spawn_renewal(session: &Session, fence: u64) -> Option<Arc<Renewal>> {
    let rt = tokio::runtime::Handle::try_current().ok()?;
    let weak = session.downgrade();
    let manager = session.manager().clone();
    let task = rt.spawn(renew_until_stopped(weak, manager, fence));
    Some(Arc::new(Renewal(task.abort_handle())))
}

async fn renew_until_stopped(weak: WeakSession, manager: SessionManager, fence: u64) {
    let every = renewal_interval(manager.config().lock_lease);
    loop {
        tokio::time::sleep(every).await;
        let Some(id) = holder_id(&weak, fence) else {
            return;
        };
        match renew(&manager, &id, fence).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(
                    session = %id,
                    fence,
                    "session lock lost: its lease ran out before it could be renewed"
                );
                return;
            }
            // Retried at the next round; the lease may still be running.
            Err(e) => tracing::warn!(session = %id, error = %e, "could not renew a session lock"),
        }
    }
}

/// The id of the session that still holds `fence`, if any.
fn holder_id(weak: &WeakSession, fence: u64) -> Option<SessionId> {
    let session = weak.upgrade()?;
    let st = session.state();
    match (st.lock(), st.id()) {
        (Some(held), Some(id)) if held.fence == fence => Some(id.clone()),
        _ => None,
    }
}

/// Takes the session's lock for this request ([`Session::lock`]).
pub(crate) async fn acquire(session: &Session) -> Result<SessionLock> {
    let _one_at_a_time = session.lock_gate().await;
    {
        let mut st = session.state();
        if st.is_ended() {
            return Err(Error::SessionEnded);
        }
        match st.standing() {
            Standing::StandIn => return Err(Error::StandIn),
            Standing::Superseded => return Err(Error::Superseded),
            Standing::New | Standing::Stored => {}
        }
        // Held by this request already: another guard, no store call.
        if let Some(held) = st.lock_mut() {
            let fence = held.fence;
            let renewal = match held.renewal.upgrade() {
                Some(r) => Some(r),
                None => {
                    let r = spawn_renewal(session, fence);
                    held.renewal = r.as_ref().map_or_else(Default::default, Arc::downgrade);
                    r
                }
            };
            return Ok(SessionLock::new(session.clone(), fence, renewal));
        }
    }
    if session.state().id().is_none() {
        // Something to lock: the session gets its token now.
        commit::store_new(session).await?;
    }
    let Some(id) = session.state().id().cloned() else {
        return Err(Error::SessionEnded);
    };
    let manager = session.manager();
    let (fence, loaded) = wait_for(manager, &id).await?;
    let locked_id = loaded.id.clone();
    let ended = {
        let mut st = session.state();
        // Ended by a clone of this session while we waited?
        let ended = st.is_ended();
        if !ended {
            st.locked(
                loaded,
                HeldLock {
                    fence,
                    renewal: Weak::new(),
                },
            );
        }
        ended
    };
    if ended {
        release(manager, &locked_id, fence).await;
        return Err(Error::SessionEnded);
    }
    let renewal = spawn_renewal(session, fence);
    if let (Some(r), Some(held)) = (&renewal, session.state().lock_mut()) {
        held.renewal = Arc::downgrade(r);
    }
    tracing::debug!(session = %locked_id, fence, "session locked");
    Ok(SessionLock::new(session.clone(), fence, renewal))
}

/// Renews the lease of a lock this request holds.
async fn renew(manager: &SessionManager, id: &SessionId, fence: u64) -> Result<bool> {
    let lease = manager.config().lock_lease;
    manager
        .call(manager.store().renew_lock(id, fence, lease))
        .await
}

/// Releases a lock; a failure is logged (the lease runs out anyway).
pub(crate) async fn release(manager: &SessionManager, id: &SessionId, fence: u64) {
    match manager.call(manager.store().unlock(id, fence)).await {
        Ok(()) => tracing::debug!(session = %id, fence, "session lock released"),
        Err(e) => tracing::warn!(
            session = %id,
            error = %e,
            "could not release a session lock; it is freed when its lease runs out"
        ),
    }
}

//! Stores: [`MemoryStore`](memory::MemoryStore), the Redis store (feature
//! `redis`), the PostgreSQL store (feature `postgres`), and the
//! [`SessionStore`] trait for writing your own.
//!
//! An application only picks a store and hands it to
//! [`SessionManager::new`](crate::SessionManager::new). The rest of this
//! module is for store implementers.
//!
//! # Implementing a custom store
//!
//! Implement [`SessionStore`]: eleven async methods (and `logout`, whose default
//! takes two steps: override it), each **one atomic step
//! in the store** (one Lua script in Redis — or, for a load, one pipeline
//! of reads of one key, decided in Rust — one lock-held section in memory,
//! one transaction in SQL). Every time comes from the store's own
//! clock, so app servers with skewed clocks agree on expiry. Stores see
//! [`SessionId`]s, never tokens.
//!
//! A store keeps, per session: the data (one JSON value per key), a
//! [`Meta`] record, and an expiry instant `min(last_seen + idle,
//! absolute_deadline)`; per user, an index of that user's session ids. It
//! also keeps two kinds of short-lived markers where a session used to be:
//!
//! - an **alias**, left by periodic rotation ([`Retire::Alias`]): the old
//!   id reads and writes its successor for a grace period. `load`, `save`,
//!   `lock`, `renew_lock`, `unlock`, `login` and `logout` follow aliases (a
//!   chain of them, if the successor was rotated again).
//! - a **moved** marker, left by a login or an explicit rotation
//!   ([`Retire::Moved`]): the token was replaced on purpose, so the old id
//!   must stop working, but its successor may be alive. `load` answers
//!   [`LoadOutcome::Superseded`], `save` [`SaveOutcome::Superseded`],
//!   `rotate` [`RotateOutcome::Superseded`] and `logout`
//!   [`LogoutOutcome::Superseded`] (leaving the marker): the manager then drops the
//!   request's writes without telling the client to clear its cookie. An
//!   alias that leads to a moved marker is superseded too.
//!
//! Anything else that is not live (unknown, expired, revoked, corrupt) is
//! *missing* or *gone*: the manager tells the client to clear its cookie.
//! Getting this distinction right is what keeps parallel browser requests
//! from logging a user out (see the crate docs, "Parallel requests").
//!
//! The promises every store keeps:
//! - expiry is enforced on every read, by the store's clock;
//! - a write to an id that does not exist never creates it;
//! - ids of revoked or evicted sessions never come back;
//! - `login` reads the old session's latest data and retires it in the
//!   same step that creates the new session, and enforces the per-user
//!   limit there too (N concurrent logins under single login leave one
//!   session);
//! - per-user operations cost O(that user's sessions), never a scan.
//!
//! The conformance suite (module `sessionkit::testing`, feature `testing`)
//! checks them for every store in this crate, and for yours.
//!
//! # Write your own store
//!
//! 1. Implement [`SessionStore`] as above. Keep to the store's clock, one
//!    atomic step per method, and the outcomes each method's docs list: the
//!    manager's handling of parallel requests depends on `Superseded`
//!    being told apart from `Gone`/`Missing`.
//! 2. Add sessionkit with the `testing` feature to your
//!    `[dev-dependencies]` (and tokio with `macros` and `rt-multi-thread`).
//! 3. Implement `sessionkit::testing::StoreHarness` for a type that holds
//!    a fresh, empty store and can move its clock: `store()` hands the
//!    store out as `Arc<dyn SessionStore>`, `advance(by)` moves its clock
//!    (a manual clock if your store takes one, else sleep: the scenarios
//!    keep their waits to seconds).
//! 4. In `tests/conformance.rs`, write an `async fn harness() -> YourHarness`
//!    and call `sessionkit::store_conformance_tests!(harness);`: one test
//!    per scenario, named after it (`concurrent_single_logins_leave_exactly_one`,
//!    `revocation_is_final`, ...), run in parallel by `cargo test`. Or call
//!    `sessionkit::testing::run_all(harness).await` in one test: it runs
//!    every scenario on a fresh harness and then panics with the list of
//!    those that failed.
//! 5. A failing scenario names the rule and the store call that broke it;
//!    its body (in sessionkit's `src/testing/`) shows the exact sequence
//!    of calls to reproduce.
//!
//! `PostgresStore` and `RedisStore` in this crate are run exactly that way
//! (`tests/store_conformance.rs`, `tests/store_lifecycle.rs`,
//! `tests/store_logout.rs`).
//!
//! # Session locks
//!
//! A store also keeps, per session, an advisory lock with a lease and a
//! *fence*: a counter that only grows, bumped by every acquisition
//! ([`SessionStore::lock`]). A [`Delta`] that carries a fence is applied only
//! if that fence is still the session's latest, so a holder whose lease ran
//! out, and whose lock another request took since, cannot overwrite the
//! newer holder's write ([`SaveOutcome::Fenced`]). Writers that do not lock
//! (a `save` without a fence, login, rotation, revocation) are not excluded:
//! the lock only orders the requests that ask for it. Ending a session
//! (revoke, login from it, eviction, `revoke_user`) removes its lock.
//! Rotation keeps the fence counter; [`Retire::Alias`] moves the lock to the
//! new id too, and the alias leads `lock`, `renew_lock`, `unlock` and a
//! fenced `save` there, as it leads `load`; [`Retire::Moved`] drops the lock
//! with the old token (a holder that used it can no longer write anyway).
//!
//! Waiters do not poll a store that sends release notices
//! ([`SessionStore::release_notice`]): the manager takes a notice *before*
//! each `lock` attempt, and on [`LockOutcome::Held`] waits for it, for the
//! holder's lease left (`Held::lease_left`, if the store knows it), or for
//! a 500 ms recheck, whichever comes first. `unlock` should complete the
//! notice of the longest-waiting waiter (see [`ReleaseNotice`]); locks that
//! end otherwise (lease out, session ended, rotation) need not, and notices
//! are hints: fencing, not the notice, keeps holders apart. The default
//! sends none, and the manager polls `lock` with a jittered backoff.

use std::time::Duration;

use async_trait::async_trait;

use crate::Result;

pub mod keyed;
pub(crate) mod lock_wait;
#[cfg(feature = "memory")]
pub mod memory;
pub mod persist;
#[cfg(feature = "postgres")]
pub mod postgres;
mod records;
#[cfg(feature = "redis")]
pub mod redis;
mod waiters;

pub use self::records::{
    ms_to_datetime, ClientInfo, Data, Delta, LoadOutcome, Loaded, LockOutcome, Login, LoginOutcome,
    LogoutOutcome, Meta, NewSession, Retire, RotateOutcome, SaveOutcome, SessionInfo, Written,
};
pub use self::waiters::ReleaseNotice;
pub use crate::config::Timeouts;
pub use crate::error::BoxError;
pub use crate::token::{InvalidSessionId, SessionId, Tag, Token};

/// The most rotation aliases a store follows from one id. Each rotation
/// within the grace period adds one; past this the id is treated as
/// superseded rather than ended, so the client's cookie is left alone.
pub const MAX_ALIAS_HOPS: usize = 4;

/// A session backend. Every method is atomic in the store; see the
/// [module docs](self) for what a store keeps and promises.
#[async_trait]
pub trait SessionStore: Send + Sync + std::fmt::Debug + 'static {
    /// Loads a session, following rotation aliases. Refreshes `last_seen`
    /// and the idle deadline of a live one when [`Timeouts::touch_due`].
    async fn load(&self, id: &SessionId, timeouts: &Timeouts) -> Result<LoadOutcome>;

    /// Stores a new anonymous session.
    async fn create(
        &self,
        id: &SessionId,
        session: NewSession<'_>,
        timeouts: &Timeouts,
    ) -> Result<Written>;

    /// Applies a delta to an existing session (following aliases) and bumps
    /// its version. Never creates a session. Refreshes `last_seen` and the
    /// idle deadline when [`Timeouts::touch_due`], as `load` does: a save
    /// is activity, also when the request never read the session. A
    /// delta with a [`fence`](Delta::fence) that is not the session's latest
    /// writes nothing and answers [`SaveOutcome::Fenced`].
    async fn save(&self, id: &SessionId, delta: &Delta, timeouts: &Timeouts)
        -> Result<SaveOutcome>;

    /// Creates the user's new session (a new session, with a new absolute
    /// lifetime) from the old session's latest data plus `login.delta`,
    /// indexes it, enforces `login.limit`, and retires the old session as
    /// moved (leaving its user's index), all in one step. See [`Login`].
    async fn login(&self, login: Login<'_>, timeouts: &Timeouts) -> Result<LoginOutcome>;

    /// Moves a live session to a new id (same slot tag), keeping data, user,
    /// lifetime and lock fence counter, and retires the old id as `retire`
    /// says. The lock moves along with [`Retire::Alias`] and is dropped with
    /// [`Retire::Moved`]. An old id that is already an alias or a moved
    /// marker answers [`RotateOutcome::Superseded`] and changes nothing.
    async fn rotate(
        &self,
        old: &SessionId,
        new: &SessionId,
        retire: Retire,
        timeouts: &Timeouts,
    ) -> Result<RotateOutcome>;

    /// Ends one session. Returns whether it existed.
    async fn revoke(&self, id: &SessionId) -> Result<bool>;

    /// Ends the session a client's token names, in one step: the session
    /// `load` would find, followed through rotation aliases. A token that
    /// a login or explicit rotation replaced (a moved marker, or an alias
    /// that leads to one) is left as it is and answers
    /// [`LogoutOutcome::Superseded`]: its successor is not the caller's to
    /// end, and requests still in flight with the old token need the
    /// marker to leave the client's new cookie alone.
    ///
    /// This is how [`Session::logout`](crate::Session::logout) ends a
    /// session it never loaded ([`LazySession`](crate::LazySession)). The
    /// default runs `load`, then `revoke` of what it found: two steps, so
    /// a login in between is missed. Override it with one atomic step (the
    /// built-in stores do).
    async fn logout(&self, id: &SessionId, timeouts: &Timeouts) -> Result<LogoutOutcome> {
        Ok(match self.load(id, timeouts).await? {
            LoadOutcome::Live(l) if self.revoke(&l.id).await? => LogoutOutcome::Ended,
            LoadOutcome::Live(_) | LoadOutcome::Missing => LogoutOutcome::Missing,
            LoadOutcome::Superseded => LogoutOutcome::Superseded,
        })
    }

    /// Ends every session of a user except `except`. Returns how many ended.
    async fn revoke_user(&self, user_id: &str, except: Option<&SessionId>) -> Result<u64>;

    /// Lists a user's live sessions, most recently used first.
    async fn sessions_of(&self, user_id: &str, timeouts: &Timeouts) -> Result<Vec<SessionInfo>>;

    /// Takes the session's lock for `lease` if no other holder's lease is
    /// running, and returns the session's current data with a new fence, in
    /// one atomic step. Follows rotation aliases like `load`. The lock is
    /// advisory: see the [module docs](self#session-locks).
    async fn lock(
        &self,
        id: &SessionId,
        lease: Duration,
        timeouts: &Timeouts,
    ) -> Result<LockOutcome>;

    /// Extends the lock to `lease` from now if it is still held with
    /// `fence` (following aliases). `false` if the lock is no longer ours:
    /// its lease ran out, or the session ended.
    async fn renew_lock(&self, id: &SessionId, fence: u64, lease: Duration) -> Result<bool>;

    /// Releases the lock if it is held with `fence` (following aliases);
    /// does nothing otherwise, so a holder that lost its lock cannot
    /// release the next holder's.
    async fn unlock(&self, id: &SessionId, fence: u64) -> Result<()>;

    /// A notice for the next release of `id`'s lock, registered when this
    /// returns: a waiter asks for it *before* each [`lock`](Self::lock)
    /// attempt, and when the attempt answers [`LockOutcome::Held`], waits
    /// for the notice (or the holder's
    /// [`lease_left`](LockOutcome::Held::lease_left), or a short recheck
    /// interval, whichever comes first) instead of polling. A store that
    /// sends notices completes the future when [`unlock`](Self::unlock)
    /// releases the lock (on any app instance that shares the store); see
    /// [`ReleaseNotice`] for what "registered" means. A notice is a hint:
    /// correctness never depends on it arriving.
    ///
    /// The default, `None`, sends no notices: waiters then poll `lock` with
    /// a jittered backoff (5 ms doubling to 50 ms), as a store without
    /// notices needs. A store may also answer `None` while its notices are
    /// unavailable (the Redis store does while its subscription is down).
    fn release_notice(&self, id: &SessionId) -> Option<ReleaseNotice> {
        let _ = id;
        None
    }
}

//! The [`SessionStore`] trait every backend implements, and the records it
//! moves.
//!
//! Each method is one atomic step in the store (one Lua script in Redis, one
//! lock-held section in memory, one transaction in SQL). Every time in here
//! comes from the store's own clock, so app servers with skewed clocks agree
//! on expiry. Stores see [`SessionId`]s, never tokens.
//!
//! A store keeps, per session: the data (one JSON value per key), a
//! [`Meta`] record, and an expiry instant `min(last_seen + idle,
//! absolute_deadline)`; per user, an index of that user's session ids. It may
//! also keep two kinds of short-lived markers where a session used to be:
//! an *alias* (a token replaced by periodic rotation still reads and writes
//! the new session for a grace period) and a *moved* marker (a token replaced
//! by login or explicit rotation: reads find nothing, writes are dropped
//! without telling the client to clear its cookie).
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

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use time::OffsetDateTime;

use crate::clock::duration_ms;
use crate::config::UserLimit;
use crate::{Result, SessionId};

#[cfg(feature = "memory")]
pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;

/// A session's data: one JSON value per key.
pub type Data = HashMap<String, Value>;

/// Timeouts the store applies in each call, from the
/// [`SessionConfig`](crate::SessionConfig).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Sliding idle timeout.
    pub idle: Duration,
    /// Absolute lifetime from creation.
    pub absolute: Duration,
    /// A read refreshes `last_seen` (and the idle deadline) only when the last
    /// refresh is at least this old.
    pub touch_interval: Duration,
}

impl Timeouts {
    /// The expiry instant of a session last seen at `last_seen_ms` with the
    /// given absolute deadline.
    pub fn expires_at(&self, last_seen_ms: i64, absolute_deadline_ms: i64) -> i64 {
        last_seen_ms
            .saturating_add(duration_ms(self.idle))
            .min(absolute_deadline_ms)
    }

    /// Whether a read at `now_ms` should refresh a session last seen at
    /// `last_seen_ms`.
    pub fn touch_due(&self, last_seen_ms: i64, now_ms: i64) -> bool {
        now_ms.saturating_sub(last_seen_ms) >= duration_ms(self.touch_interval)
    }
}

/// Where a request came from, recorded when a session is created or logs in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The `User-Agent` header, truncated to 256 bytes.
    pub user_agent: Option<String>,
    /// The peer address, if the server knows it.
    pub ip: Option<IpAddr>,
}

/// Metadata a store keeps beside a session's data. Times are milliseconds
/// since the Unix epoch on the store's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// The logged-in user, if any.
    pub user_id: Option<String>,
    /// When the session was created (kept across login and rotation).
    pub created_ms: i64,
    /// When the session was last used (rate-limited by the touch interval).
    pub last_seen_ms: i64,
    /// When the current token was issued; drives periodic rotation.
    pub token_issued_ms: i64,
    /// `created + absolute timeout`; never moves.
    pub absolute_deadline_ms: i64,
    /// Bumped by every write.
    pub version: u64,
    /// From [`ClientInfo`].
    pub user_agent: Option<String>,
    /// From [`ClientInfo`], as text.
    pub client_ip: Option<String>,
}

/// A live session as a store returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The id the data lives under. Differs from the id asked for when that
    /// was an alias left by periodic rotation.
    pub id: SessionId,
    /// Metadata.
    pub meta: Meta,
    /// Data.
    pub data: Data,
    /// The store's clock at the time of the call.
    pub now_ms: i64,
    /// When the session expires unless used again.
    pub expires_at_ms: i64,
    /// Whether this load refreshed `last_seen` and the idle deadline.
    pub touched: bool,
}

/// A session to create.
#[derive(Debug, Clone, Copy)]
pub struct NewSession<'a> {
    /// Its data.
    pub data: &'a Data,
    /// Where the request came from.
    pub client: &'a ClientInfo,
}

/// What one request changed, applied in this order: `clear`, `remove`, `set`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delta {
    /// Remove every data key first (keys other requests added included).
    pub clear: bool,
    /// Keys to remove.
    pub remove: Vec<String>,
    /// Keys to write.
    pub set: Vec<(String, Value)>,
    /// The fence of the lock this request holds ([`LockOutcome::Acquired`]).
    /// With a fence, the delta is applied only if it is still the session's
    /// latest issued fence; otherwise nothing is written and the save
    /// answers [`SaveOutcome::Fenced`]. Without one (`None`), the delta is
    /// applied as always: last writer wins per key, locks or not.
    pub fence: Option<u64>,
}

impl Delta {
    /// Whether the delta changes nothing.
    pub fn is_empty(&self) -> bool {
        !self.clear && self.remove.is_empty() && self.set.is_empty()
    }
}

/// When a store wrote a session, as its clock saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// The store's clock.
    pub now_ms: i64,
    /// The session's new expiry.
    pub expires_at_ms: i64,
}

/// The result of [`SessionStore::save`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveOutcome {
    /// The delta was applied.
    Saved(Written),
    /// The session no longer exists (ended or expired): nothing was written.
    Gone,
    /// The token was replaced by a login or rotation in another request:
    /// nothing was written, and the client's cookie must be left alone.
    Moved,
    /// The delta carried a fence that is no longer the session's latest: the
    /// lock it came from was lost (its lease ran out) and taken by another
    /// request since. Nothing was written.
    Fenced,
}

/// The result of [`SessionStore::lock`].
// `Acquired` is the common outcome and is taken apart at once; boxing it
// would cost an allocation per acquisition to shrink the rare ones.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum LockOutcome {
    /// The lock is ours until `lease` runs out (unless renewed), and this is
    /// the session as it stands now: the holder starts from the latest
    /// state. `loaded.id` is the id the lock was taken on (the new id when
    /// the one asked for was a rotation alias); pass it to
    /// [`renew_lock`](SessionStore::renew_lock),
    /// [`unlock`](SessionStore::unlock) and [`save`](SessionStore::save).
    Acquired {
        /// The fence of this acquisition: greater than every fence issued
        /// for the session before. Put it in [`Delta::fence`].
        fence: u64,
        /// The session, read atomically with the acquisition (the read
        /// refreshes `last_seen` like [`load`](SessionStore::load) does).
        loaded: Loaded,
    },
    /// Another holder's lease has not run out: nothing changed.
    Held,
    /// No live session under this id (unknown, expired, ended, or replaced
    /// by a login or explicit rotation).
    Gone,
}

/// The arguments of [`SessionStore::login`].
#[derive(Debug, Clone, Copy)]
pub struct Login<'a> {
    /// The session being logged in, if the store holds it; it is retired as
    /// "moved" once the login succeeds.
    pub old: Option<&'a SessionId>,
    /// The id of the new token; it carries the user's slot tag.
    pub new: &'a SessionId,
    /// The user.
    pub user_id: &'a str,
    /// The whole data to carry over (the old session's data with this
    /// request's changes applied).
    pub data: &'a Data,
    /// Where the request came from.
    pub client: &'a ClientInfo,
    /// The per-user limit to enforce atomically with the login.
    pub limit: UserLimit,
    /// How long the old id stays "moved".
    pub moved_grace: Duration,
}

/// The result of [`SessionStore::login`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    /// The new session exists and is indexed under the user.
    LoggedIn {
        /// When it was written.
        written: Written,
        /// Sessions of the user ended to respect the limit.
        evicted: Vec<SessionId>,
    },
    /// `RejectNew` refused the login; nothing changed.
    Rejected {
        /// The limit.
        max: u32,
    },
}

/// How [`SessionStore::rotate`] treats the old id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retire {
    /// The old id reads and writes the new session for the duration
    /// (periodic rotation: the old token was already trusted).
    Alias(Duration),
    /// The old id is only remembered as moved for the duration (explicit
    /// rotation on privilege change: the old token must stop working now).
    Moved(Duration),
}

/// The result of [`SessionStore::rotate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The session now lives under the new id.
    Rotated(Written),
    /// The old session no longer exists.
    Gone,
}

/// A session as listed by [`SessionManager::sessions_of`](crate::SessionManager::sessions_of).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SessionInfo {
    /// Public id: safe to show, to log and to pass to
    /// [`revoke`](crate::SessionManager::revoke).
    pub id: SessionId,
    /// The user it belongs to.
    pub user_id: String,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// When it was last used (to the touch interval).
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen: OffsetDateTime,
    /// When it expires unless used again.
    #[serde(with = "time::serde::rfc3339")]
    pub expires: OffsetDateTime,
    /// The `User-Agent` that created it or logged it in.
    pub user_agent: Option<String>,
    /// The client address that created it or logged it in.
    pub client_ip: Option<String>,
}

impl SessionInfo {
    /// Builds the listing entry of a live session.
    pub fn new(id: SessionId, user_id: String, meta: &Meta, expires_at_ms: i64) -> Self {
        SessionInfo {
            id,
            user_id,
            created: ms_to_datetime(meta.created_ms),
            last_seen: ms_to_datetime(meta.last_seen_ms),
            expires: ms_to_datetime(expires_at_ms),
            user_agent: meta.user_agent.clone(),
            client_ip: meta.client_ip.clone(),
        }
    }
}

/// Milliseconds since the epoch as a UTC date-time (clamped to what `time`
/// can represent).
pub fn ms_to_datetime(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A session backend. Every method is atomic in the store; see the module
/// docs for what a store keeps.
///
/// Implementations must keep these promises, which the conformance suite in
/// `tests/` checks for every store:
/// - expiry is enforced on every read, by the store's clock;
/// - a write to an id that does not exist never creates it;
/// - ids of revoked or evicted sessions never come back.
#[async_trait]
pub trait SessionStore: Send + Sync + std::fmt::Debug + 'static {
    /// Loads a live session, following an alias. Refreshes `last_seen` and
    /// the idle deadline when [`Timeouts::touch_due`]. `None` for unknown,
    /// expired, moved or corrupt sessions.
    async fn load(&self, id: &SessionId, timeouts: &Timeouts) -> Result<Option<Loaded>>;

    /// Stores a new anonymous session.
    async fn create(
        &self,
        id: &SessionId,
        session: NewSession<'_>,
        timeouts: &Timeouts,
    ) -> Result<Written>;

    /// Applies a delta to an existing session (following an alias), bumps its
    /// version and refreshes `last_seen`. Never creates a session. A delta
    /// with a [`fence`](Delta::fence) that is not the session's latest
    /// writes nothing and answers [`SaveOutcome::Fenced`].
    async fn save(&self, id: &SessionId, delta: &Delta, timeouts: &Timeouts)
        -> Result<SaveOutcome>;

    /// Creates the user's new session from `login.data` (a new session, with
    /// a new absolute lifetime), indexes it, enforces `login.limit`, then
    /// retires `login.old` as moved (leaving its user's index, if any).
    async fn login(&self, login: Login<'_>, timeouts: &Timeouts) -> Result<LoginOutcome>;

    /// Moves a session to a new id (same slot tag), keeping data, user,
    /// lifetime and lock fence counter, and retires the old id as `retire`
    /// says. The lock moves along with [`Retire::Alias`] and is dropped with
    /// [`Retire::Moved`].
    async fn rotate(
        &self,
        old: &SessionId,
        new: &SessionId,
        retire: Retire,
        timeouts: &Timeouts,
    ) -> Result<RotateOutcome>;

    /// Ends one session. Returns whether it existed.
    async fn revoke(&self, id: &SessionId) -> Result<bool>;

    /// Ends every session of a user except `except`. Returns how many ended.
    async fn revoke_user(&self, user_id: &str, except: Option<&SessionId>) -> Result<u64>;

    /// Lists a user's live sessions, most recently used first.
    async fn sessions_of(&self, user_id: &str, timeouts: &Timeouts) -> Result<Vec<SessionInfo>>;

    /// Takes the session's lock for `lease` if no other holder's lease is
    /// running, and returns the session's current data with a new fence, in
    /// one atomic step. Follows a rotation alias like `load`. The lock is
    /// advisory: see the [module docs](self#session-locks).
    async fn lock(
        &self,
        id: &SessionId,
        lease: Duration,
        timeouts: &Timeouts,
    ) -> Result<LockOutcome>;

    /// Extends the lock to `lease` from now if it is still held with
    /// `fence` (following a rotation alias). `false` if the lock is no
    /// longer ours: its lease ran out, or the session ended.
    async fn renew_lock(&self, id: &SessionId, fence: u64, lease: Duration) -> Result<bool>;

    /// Releases the lock if it is held with `fence` (following a rotation
    /// alias); does nothing otherwise, so a holder that lost its lock cannot
    /// release the next holder's.
    async fn unlock(&self, id: &SessionId, fence: u64) -> Result<()>;
}

//! The records a [`SessionStore`](super::SessionStore) takes and returns.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;

use crate::config::UserLimit;
use crate::SessionId;

/// A session's data: one JSON value per key.
pub type Data = HashMap<String, Value>;

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
    /// When the session was created (kept across rotation; a login creates
    /// a new session).
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

/// The result of [`SessionStore::load`](super::SessionStore::load).
// `Live` is the common outcome and is taken apart at once; boxing it would
// cost an allocation per load to shrink the rare ones.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum LoadOutcome {
    /// A live session (reached through rotation aliases, if any).
    Live(Loaded),
    /// The token was replaced by a login or an explicit rotation (a moved
    /// marker, or an alias that leads to one): its successor may be alive,
    /// so the client's cookie must be left alone. The request sees an empty
    /// session whose writes are dropped.
    Superseded,
    /// No live session: unknown, expired, ended or corrupt.
    Missing,
}

/// The result of [`SessionStore::logout`](super::SessionStore::logout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutOutcome {
    /// A live session ended.
    Ended,
    /// Nothing live was there (unknown, expired, ended or corrupt).
    Missing,
    /// The token was replaced by a login or an explicit rotation; nothing
    /// changed.
    Superseded,
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

    /// Applies the delta to `data` (`clear`, then `remove`, then `set`).
    pub fn apply_to(&self, data: &mut Data) {
        if self.clear {
            data.clear();
        }
        for key in &self.remove {
            data.remove(key);
        }
        for (key, value) in &self.set {
            data.insert(key.clone(), value.clone());
        }
    }

    /// Whether the delta decides the value of `key` (sets or removes it).
    pub fn touches(&self, key: &str) -> bool {
        self.remove.iter().any(|k| k == key) || self.set.iter().any(|(k, _)| k == key)
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

/// The result of [`SessionStore::save`](super::SessionStore::save).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveOutcome {
    /// The delta was applied to the session the id names.
    Saved(Written),
    /// The id was replaced by periodic rotation, and the delta was applied
    /// to its successor through the alias. The request that rotated sends
    /// the client the successor's token; this one sends none.
    SavedToSuccessor(Written),
    /// The session no longer exists (ended or expired): nothing was written.
    Gone,
    /// The token was replaced by a login or an explicit rotation in another
    /// request: nothing was written, and the client's cookie must be left
    /// alone.
    Superseded,
    /// The delta carried a fence that is no longer the session's latest: the
    /// lock it came from was lost (its lease ran out) and taken by another
    /// request since. Nothing was written.
    Fenced,
}

/// The result of [`SessionStore::lock`](super::SessionStore::lock).
// As for `LoadOutcome`: the large variant is the common one.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum LockOutcome {
    /// The lock is ours until `lease` runs out (unless renewed), and this is
    /// the session as it stands now: the holder starts from the latest
    /// state. `loaded.id` is the id the lock was taken on (the new id when
    /// the one asked for was a rotation alias); pass it to
    /// [`renew_lock`](super::SessionStore::renew_lock),
    /// [`unlock`](super::SessionStore::unlock) and
    /// [`save`](super::SessionStore::save).
    Acquired {
        /// The fence of this acquisition: greater than every fence issued
        /// for the session before. Put it in [`Delta::fence`].
        fence: u64,
        /// The session, read atomically with the acquisition (the read
        /// refreshes `last_seen` like `load` does).
        loaded: Loaded,
    },
    /// Another holder's lease has not run out: nothing changed.
    Held {
        /// How long the holder's lease still runs, if the store knows
        /// (unless renewed): a waiter never needs to wait longer before
        /// trying again, since a lease that runs out sends no release
        /// notice.
        lease_left: Option<Duration>,
    },
    /// No live session under this id (unknown, expired, ended, or replaced
    /// by a login or explicit rotation).
    Gone,
}

/// The arguments of [`SessionStore::login`](super::SessionStore::login).
#[derive(Debug, Clone, Copy)]
pub struct Login<'a> {
    /// The session being logged in from, if the request had one in the
    /// store. Followed through rotation aliases; if it is live, its latest
    /// data is carried over and it is retired as moved.
    pub old: Option<&'a SessionId>,
    /// The id of the new token; it carries the user's slot tag.
    pub new: &'a SessionId,
    /// The user.
    pub user_id: &'a str,
    /// This request's own changes, applied on top of the old session's
    /// latest data (read in the login step), or on an empty session when
    /// there is no live old session: an ended session's data is never
    /// carried into a logged-in one.
    pub delta: &'a Delta,
    /// Where the request came from.
    pub client: &'a ClientInfo,
    /// The per-user limit to enforce atomically with the login.
    pub limit: UserLimit,
    /// How long the old id stays "moved".
    pub moved_grace: Duration,
}

/// The result of [`SessionStore::login`](super::SessionStore::login).
#[derive(Debug, Clone, PartialEq)]
pub enum LoginOutcome {
    /// The new session exists and is indexed under the user.
    LoggedIn {
        /// When it was written.
        written: Written,
        /// The new session's data: the old session's latest data with the
        /// login's delta applied.
        data: Data,
        /// Sessions of the user ended to respect the limit.
        evicted: Vec<SessionId>,
    },
    /// `RejectNew` refused the login; nothing changed.
    Rejected {
        /// The limit.
        max: u32,
    },
}

/// How [`SessionStore::rotate`](super::SessionStore::rotate) treats the old id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retire {
    /// The old id reads and writes the new session for the duration
    /// (periodic rotation: the old token was already trusted).
    Alias(Duration),
    /// The old id is only remembered as moved for the duration (explicit
    /// rotation on privilege change: the old token must stop working now).
    Moved(Duration),
}

/// The result of [`SessionStore::rotate`](super::SessionStore::rotate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The session now lives under the new id.
    Rotated(Written),
    /// The old id was already replaced (an alias or a moved marker stands
    /// there): another request rotated it or logged in from it. Nothing
    /// changed.
    Superseded,
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

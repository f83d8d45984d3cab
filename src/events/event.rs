//! The event records: what happened ([`EventKind`]), to which session and
//! user, and when by the store's clock ([`SessionEvent`]).

use serde::{Deserialize, Serialize};

use crate::SessionId;

/// What happened to a session. Serialized as JSON with a `kind` tag
/// (`{"kind":"logged_in","previous":null}`), the form the Redis store keeps
/// in its stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// An anonymous session was stored for the first time (its first
    /// write). A login stores its session as [`LoggedIn`](Self::LoggedIn)
    /// instead.
    Created,
    /// A user logged in: the event's session is the new one, bound to the
    /// event's user.
    LoggedIn {
        /// The session the login was made from and retired (the anonymous
        /// session whose data was carried over), if it was stored.
        previous: Option<SessionId>,
    },
    /// The session's token was replaced; the event's session is the new
    /// id.
    Rotated {
        /// The id it replaced.
        previous: SessionId,
        /// Why.
        reason: RotationReason,
    },
    /// The session was ended by its own request
    /// ([`Session::logout`](crate::Session::logout)).
    LoggedOut,
    /// Sessions were ended from elsewhere (an admin, "log out other
    /// devices").
    Revoked {
        /// Which sessions.
        scope: RevokeScope,
    },
    /// The session was ended by a login of its user that went over the
    /// per-user limit ([`UserLimit`](crate::UserLimit)).
    Evicted {
        /// The session of the login that evicted it.
        by: SessionId,
    },
    /// The session ran out of time with no request ending it, and the
    /// store removed it (see "Expiry" in the [module docs](super)).
    Expired {
        /// Which timeout ran out.
        reason: ExpiryReason,
        /// The session's data as it was when it expired.
        data: serde_json::Map<String, serde_json::Value>,
    },
    /// A keyed session ([`Tracker`](crate::tracker::Tracker)) changed; the
    /// event names no cookie session and no user. Only a tracker's feed
    /// ([`Tracker::events`](crate::tracker::Tracker::events)) carries these.
    Keyed {
        /// The tracker's name.
        tracker: String,
        /// The application's key.
        key: String,
        /// What happened to it.
        change: KeyedChange,
    },
}

/// What happened to a keyed session ([`EventKind::Keyed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
pub enum KeyedChange {
    /// [`start`](crate::tracker::Tracker::start).
    Started,
    /// A write ([`update`](crate::tracker::Tracker::update), or under the
    /// lock).
    Updated {
        /// The version written.
        version: u64,
    },
    /// [`finish`](crate::tracker::Tracker::finish) (or under the lock).
    Finished,
    /// [`resume`](crate::tracker::Tracker::resume).
    Resumed,
    /// [`remove`](crate::tracker::Tracker::remove) of a session that
    /// existed.
    Removed,
}

/// Which timeout ended a session ([`EventKind::Expired`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpiryReason {
    /// No request for the [`idle_timeout`](crate::SessionConfig::idle_timeout).
    Idle,
    /// The [`absolute_timeout`](crate::SessionConfig::absolute_timeout)
    /// since the session was created passed.
    Absolute,
}

impl ExpiryReason {
    /// The reason for a session that expired at `expires_ms` (the earlier
    /// of its idle and absolute deadlines) with absolute deadline
    /// `absolute_ms`.
    pub fn of(expires_ms: i64, absolute_ms: i64) -> Self {
        if expires_ms >= absolute_ms {
            ExpiryReason::Absolute
        } else {
            ExpiryReason::Idle
        }
    }
}

/// Why a token was replaced ([`EventKind::Rotated`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RotationReason {
    /// The configured [`rotation_interval`](crate::SessionConfig::rotation_interval)
    /// passed.
    Periodic,
    /// The application called [`Session::rotate`](crate::Session::rotate).
    Explicit,
}

/// Which sessions a revocation ended ([`EventKind::Revoked`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "of", rename_all = "snake_case")]
pub enum RevokeScope {
    /// The event's session, alone.
    One,
    /// Every session of the event's user ("log out everywhere"); the
    /// event names no session.
    AllOfUser {
        /// How many were ended.
        count: u64,
    },
    /// Every session of the event's user but one ("log out other
    /// devices"); the event names no session.
    AllButOne {
        /// The session that was kept.
        kept: SessionId,
        /// How many were ended.
        count: u64,
    },
}

/// An event as the manager hands it to an [`EventBus`](super::EventBus):
/// the bus gives it its id and time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
    /// The session it happened to (its public id, never the token); `None`
    /// for a revocation of many sessions.
    pub session: Option<SessionId>,
    /// The session's user, where known: a revocation by id alone does not
    /// read the session, so it names no user.
    pub user: Option<String>,
}

/// One recorded event, as subscribers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEvent {
    /// The bus's id for it, increasing in the order events were recorded
    /// (on Redis, the stream entry id).
    pub id: String,
    /// When the store recorded it, in milliseconds since the Unix epoch on
    /// the store's clock (on Redis, the server's).
    pub at_ms: i64,
    /// What happened.
    pub kind: EventKind,
    /// The session (its public id, as in
    /// [`SessionInfo::id`](crate::SessionInfo)); `None` for a revocation
    /// of many sessions.
    pub session: Option<SessionId>,
    /// The user, where known.
    pub user: Option<String>,
}

impl SessionEvent {
    /// The recorded form of `event`.
    pub fn recorded(event: NewEvent, id: String, at_ms: i64) -> Self {
        SessionEvent {
            id,
            at_ms,
            kind: event.kind,
            session: event.session,
            user: event.user,
        }
    }

    /// The event's time as a date.
    pub fn at(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.at_ms) * 1_000_000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    }
}

//! What can go wrong with a keyed session, each error with its status.

use std::time::Duration;

/// The errors of [`Tracker`](crate::tracker::Tracker) operations. Each says
/// what state the session was found in; none changed anything.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrackerError {
    /// `start` found the key active already.
    #[error("the keyed session is already started (active)")]
    AlreadyStarted,
    /// No live session under the key: never started, removed or expired.
    #[error("no keyed session under this key (never started, removed or expired)")]
    NotFound,
    /// The session is finished: it can be read with `get_finished`,
    /// resumed or removed, not used as an active one.
    #[error("the keyed session is finished; resume it first")]
    Finished,
    /// The session is active, and the operation needs a finished one
    /// (`get_finished`, `resume`).
    #[error("the keyed session is not finished (it is active)")]
    NotFinished,
    /// Another holder kept the lock for the whole
    /// [`lock_wait`](crate::tracker::TrackerSettings::lock_wait).
    #[error("the keyed session is locked by another holder; gave up after {0:?}")]
    LockTimeout(Duration),
    /// The lock was lost (its lease ran out and another holder took it, or
    /// the session was finished or removed): nothing was written.
    #[error("the keyed session's lock was lost (another holder took it); nothing was written")]
    LockLost,
    /// An update without the lock came while another holder's lease runs:
    /// refused, so the holder's next write cannot undo it. Retry, or take
    /// the lock.
    #[error("the keyed session is locked by another holder; update refused")]
    Locked {
        /// How much of the holder's lease is left, if known.
        lease_left: Option<Duration>,
    },
    /// The version given is not the session's: another update came first.
    /// Read it again and retry.
    #[error("version conflict: the keyed session is at version {current}")]
    Conflict {
        /// The session's current version.
        current: u64,
    },
    /// The value is larger than
    /// [`max_value_bytes`](crate::tracker::TrackerSettings::max_value_bytes).
    #[error("the value is {size} bytes of JSON, over the limit of {max}")]
    TooLarge {
        /// The value's JSON size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The value could not be turned into JSON.
    #[error("the value could not be serialized: {0}")]
    Serialize(#[source] serde_json::Error),
    /// The stored value does not decode as the tracker's type.
    #[error("the stored value is not of the tracker's type: {0}")]
    Deserialize(#[source] serde_json::Error),
    /// The store failed or did not answer in time.
    #[error(transparent)]
    Store(#[from] crate::Error),
}

impl TrackerError {
    /// The HTTP status this error maps to, for handlers that return it.
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            TrackerError::NotFound => S::NOT_FOUND,
            TrackerError::AlreadyStarted
            | TrackerError::Finished
            | TrackerError::NotFinished
            | TrackerError::LockLost
            | TrackerError::Conflict { .. } => S::CONFLICT,
            TrackerError::LockTimeout(_) | TrackerError::Locked { .. } => S::LOCKED,
            TrackerError::TooLarge { .. } => S::PAYLOAD_TOO_LARGE,
            TrackerError::Serialize(_) | TrackerError::Deserialize(_) => S::INTERNAL_SERVER_ERROR,
            TrackerError::Store(e) => e.status(),
        }
    }
}

//! The crate's one error type.

use std::time::Duration;

/// A boxed error from a store backend.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in sessionkit.
///
/// With the `axum` feature it implements `IntoResponse`, so handlers can use
/// `?` on session calls: store trouble becomes `503 Service Unavailable`, a
/// refused login `409 Conflict`, misuse `500` with a message saying what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed (connection refused, protocol error, ...).
    #[error("session store unavailable: {0}")]
    Store(#[source] BoxError),

    /// The store did not answer within the configured
    /// [`store_timeout`](crate::SessionConfig::store_timeout).
    #[error("session store did not answer within {0:?}")]
    StoreTimeout(Duration),

    /// Redis refused a write because it reached `maxmemory` under
    /// `maxmemory-policy noeviction`: nothing was changed (not even a
    /// logout). `503`; free memory or raise `maxmemory` (see the README's
    /// "Redis memory policy").
    #[error(
        "the session store is full: Redis reached maxmemory with maxmemory-policy noeviction \
         and refused the write; nothing was changed"
    )]
    StoreFull,

    /// A revocation (logout, revoke, "log out everywhere") was applied on the
    /// Redis primary, but fewer replicas than
    /// [`durable_revocations`](crate::redis::RedisStoreBuilder::durable_revocations)
    /// asks for acknowledged it in time, so a failover could still undo it.
    /// `503`: retry the revocation (repeating it is harmless).
    #[error(
        "the revocation was applied on the Redis primary but only {acked} of {wanted} replicas \
         acknowledged it in time: a failover could undo it; retry"
    )]
    NotDurable {
        /// Replicas that acknowledged the write.
        acked: u64,
        /// Replicas asked for.
        wanted: u64,
    },

    /// A login was refused by `max_sessions_per_user(_, RejectNew)`; nothing
    /// was changed.
    #[error("login refused: the user already holds the maximum of {max} sessions")]
    TooManySessions {
        /// The configured limit.
        max: u32,
    },

    /// The session was ended (logout or revoke) earlier in this request, or
    /// by another request, and cannot be used any more.
    #[error("the session has been ended (logout or revoke)")]
    SessionEnded,

    /// The request's token was replaced by another request's login or
    /// explicit rotation: this request cannot log out, rotate or lock a
    /// session it no longer names, and its writes are dropped. `409
    /// Conflict`: the client already holds (or is receiving) the new
    /// token, and a retry uses it.
    #[error(
        "the session's token was replaced by another request (a login or rotation); \
         retry with the new cookie"
    )]
    Superseded,

    /// Logout, rotation or locking was asked of the stand-in session that
    /// [`StoreFailure::Continue`](crate::StoreFailure::Continue) gives a
    /// request whose session the store could not load. Nothing was ended:
    /// the real session is untouched. `503`, like the store failure behind it.
    #[error(
        "the session store failed when this request's session was loaded, so it has only \
         a stand-in session (StoreFailure::Continue): it cannot be logged out, rotated or locked"
    )]
    StandIn,

    /// A value could not be turned into JSON for storage.
    #[error("session value for key {key:?} could not be serialized: {source}")]
    Serialize {
        /// The session key.
        key: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },

    /// A stored value does not have the type the handler asked for.
    #[error("session value for key {key:?} is not of the requested type: {source}")]
    Deserialize {
        /// The session key.
        key: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },

    /// A session key is longer than [`Limits::max_key_bytes`](crate::Limits).
    #[error("session key of {len} bytes is over the limit of {max}")]
    KeyTooLong {
        /// The key's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// A value is larger than [`Limits::max_value_bytes`](crate::Limits).
    #[error("session value for key {key:?} is {size} bytes of JSON, over the limit of {max}")]
    ValueTooLarge {
        /// The session key.
        key: String,
        /// The value's JSON size.
        size: usize,
        /// The limit.
        max: usize,
    },

    /// The insert would make the session larger than
    /// [`Limits::max_session_bytes`](crate::Limits).
    #[error("the session would hold {size} bytes, over the limit of {max}")]
    SessionTooLarge {
        /// The size the session would have.
        size: usize,
        /// The limit.
        max: usize,
    },

    /// The insert would give the session more than
    /// [`Limits::max_keys`](crate::Limits) keys.
    #[error("the session would hold more than {max} keys")]
    TooManyKeys {
        /// The limit.
        max: usize,
    },

    /// [`Session::lock`](crate::Session::lock) (or the
    /// [`LockedSession`](crate::LockedSession) extractor) waited the whole
    /// [`lock_timeout`](crate::SessionConfig::lock_timeout) while another
    /// request of the same session held the lock. `423 Locked`: the client
    /// may retry.
    #[error("the session is locked by another request; gave up after {0:?}")]
    LockTimeout(Duration),

    /// The request held the session's lock, but lost it before its changes
    /// were written: its lease ran out and another request took the lock
    /// (or the token was replaced by another request's login or rotation).
    /// Nothing was written, so the newer holder's changes stand. `409
    /// Conflict`.
    #[error(
        "the session lock was lost before the changes were saved \
         (another request took it); nothing was written"
    )]
    LockLost,

    /// The `Session` extractor ran on a request the session middleware did
    /// not see.
    #[error(
        "no session on this request: is the session layer installed? \
         Add `.layer(sessionkit::axum::SessionLayer::new(manager))` to the router \
         (or `.wrap(SessionMiddleware::new(manager))` in actix-web), and make sure \
         the route is inside it"
    )]
    MissingLayer,

    /// [`SessionManager::events`](crate::SessionManager::events) on a
    /// manager without events.
    #[error(
        "lifecycle events are off for this manager: build it with \
         `SessionManager::new(store.clone(), config).with_events(store.events())`"
    )]
    EventsOff,

    /// A persistence operation ([`SessionManager::persist_now`](crate::SessionManager::persist_now),
    /// [`PersistWorker::spawn`](crate::persist::PersistWorker::spawn)) on a
    /// manager without persistence.
    #[error(
        "the persistence hook is off for this manager: build it with \
         `SessionManager::new(store.clone(), config).with_persistence(store.persist_queue(), interval)`"
    )]
    PersistOff,
}

impl Error {
    /// Wraps a backend error.
    pub fn store(e: impl Into<BoxError>) -> Self {
        Error::Store(e.into())
    }

    /// The HTTP status this error maps to.
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            Error::Store(_)
            | Error::StoreTimeout(_)
            | Error::StoreFull
            | Error::NotDurable { .. }
            | Error::StandIn => S::SERVICE_UNAVAILABLE,
            Error::TooManySessions { .. } | Error::LockLost | Error::Superseded => S::CONFLICT,
            Error::LockTimeout(_) => S::LOCKED,
            Error::SessionEnded => S::UNAUTHORIZED,
            Error::KeyTooLong { .. }
            | Error::ValueTooLarge { .. }
            | Error::SessionTooLarge { .. }
            | Error::TooManyKeys { .. } => S::PAYLOAD_TOO_LARGE,
            Error::Serialize { .. }
            | Error::Deserialize { .. }
            | Error::MissingLayer
            | Error::EventsOff
            | Error::PersistOff => S::INTERNAL_SERVER_ERROR,
        }
    }
}

impl Error {
    /// The body sent to the client: store internals stay in the log, misuse
    /// messages (meant for the developer) are shown.
    pub fn client_message(&self) -> String {
        match self {
            Error::Store(_)
            | Error::StoreTimeout(_)
            | Error::StoreFull
            | Error::NotDurable { .. }
            | Error::StandIn => "session store unavailable".to_owned(),
            other => other.to_string(),
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

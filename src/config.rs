//! [`SessionConfig`]: cookie attributes, timeouts, rotation and per-user policy.

use std::time::Duration;

pub use cookie::SameSite;

/// What [`max_sessions_per_user`](SessionConfig::max_sessions_per_user) does
/// when a user who already holds the maximum logs in once more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxSessionsPolicy {
    /// End the user's least recently used session to make room.
    EvictOldest,
    /// Refuse the new login with [`Error::TooManySessions`](crate::Error::TooManySessions);
    /// nothing changes.
    RejectNew,
}

/// How many sessions one user may hold at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserLimit {
    /// No limit.
    Unlimited,
    /// At most `max` sessions, enforced by `policy` at login.
    Max {
        /// The most sessions a user may hold (at least 1).
        max: u32,
        /// What happens to a login past the limit.
        policy: MaxSessionsPolicy,
    },
}

/// Session settings. Build with [`SessionConfig::default`] and the chained
/// setters; every default is listed on its setter and in the README.
///
/// ```
/// use sessionkit::{MaxSessionsPolicy, SessionConfig};
/// use std::time::Duration;
///
/// let config = SessionConfig::default()
///     .cookie_name("__Host-session")
///     .idle_timeout(Duration::from_secs(15 * 60))
///     .max_sessions_per_user(5, MaxSessionsPolicy::EvictOldest);
/// assert_eq!(config.get_cookie_name(), "__Host-session");
/// ```
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub(crate) cookie_name: String,
    pub(crate) secure: bool,
    pub(crate) http_only: bool,
    pub(crate) same_site: SameSite,
    pub(crate) path: String,
    pub(crate) domain: Option<String>,
    pub(crate) persistent_cookie: bool,
    pub(crate) idle_timeout: Duration,
    pub(crate) absolute_timeout: Duration,
    pub(crate) touch_interval: Duration,
    pub(crate) rotation_interval: Option<Duration>,
    pub(crate) rotation_grace: Duration,
    pub(crate) user_limit: UserLimit,
    pub(crate) store_timeout: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            cookie_name: "id".to_owned(),
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            path: "/".to_owned(),
            domain: None,
            persistent_cookie: false,
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(12 * 60 * 60),
            touch_interval: Duration::from_secs(60),
            rotation_interval: None,
            rotation_grace: Duration::from_secs(30),
            user_limit: UserLimit::Unlimited,
            store_timeout: Duration::from_secs(2),
        }
    }
}

impl SessionConfig {
    /// Cookie name. Default `id`. A `__Host-` prefix makes browsers insist on
    /// `Secure`, `Path=/` and no `Domain`, which are the defaults.
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie_name = name.into();
        self
    }

    /// `Secure` cookie attribute. Default on. Browsers accept secure cookies
    /// from `http://localhost`, so development needs no change.
    pub fn secure(mut self, on: bool) -> Self {
        self.secure = on;
        self
    }

    /// `HttpOnly` cookie attribute. Default on: scripts cannot read the token.
    pub fn http_only(mut self, on: bool) -> Self {
        self.http_only = on;
        self
    }

    /// `SameSite` cookie attribute. Default `Lax`.
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// `Path` cookie attribute. Default `/`.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// `Domain` cookie attribute. Default none (host-only cookie).
    pub fn domain(mut self, domain: Option<String>) -> Self {
        self.domain = domain;
        self
    }

    /// When on, the cookie carries `Max-Age` equal to the time the session has
    /// left, refreshed whenever the idle deadline moves, so it survives a
    /// browser restart. Default off: a browser-session cookie.
    pub fn persistent_cookie(mut self, on: bool) -> Self {
        self.persistent_cookie = on;
        self
    }

    /// A session unused for this long expires. Sliding: each request moves
    /// the deadline (see [`touch_interval`](Self::touch_interval)). Default 30 min.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }

    /// A session expires this long after it was created, however active it
    /// is. Never extended, not even by login or rotation. Default 12 h.
    pub fn absolute_timeout(mut self, d: Duration) -> Self {
        self.absolute_timeout = d;
        self
    }

    /// The least time between two idle-deadline refreshes of a session that
    /// is only read, so a busy session is not rewritten on every request.
    /// Default 60 s; it is capped at half the idle timeout.
    pub fn touch_interval(mut self, d: Duration) -> Self {
        self.touch_interval = d;
        self
    }

    /// Replace a token older than this on its next request. Default off.
    /// The old token keeps working for [`rotation_grace`](Self::rotation_grace)
    /// so requests already in flight with it do not fail.
    pub fn rotation_interval(mut self, d: Option<Duration>) -> Self {
        self.rotation_interval = d;
        self
    }

    /// How long a token replaced by [`rotation_interval`](Self::rotation_interval)
    /// keeps working, and how long a token replaced by login or
    /// [`Session::rotate`](crate::Session::rotate) is remembered as "moved"
    /// so in-flight requests with it drop their write without clearing the
    /// client's new cookie. Default 30 s.
    pub fn rotation_grace(mut self, d: Duration) -> Self {
        self.rotation_grace = d;
        self
    }

    /// Single-login mode: a login ends every other session of the user,
    /// atomically with the login. Same as
    /// `max_sessions_per_user(1, MaxSessionsPolicy::EvictOldest)`; `false`
    /// removes any limit. Default off.
    pub fn single_login(mut self, on: bool) -> Self {
        self.user_limit = if on {
            UserLimit::Max {
                max: 1,
                policy: MaxSessionsPolicy::EvictOldest,
            }
        } else {
            UserLimit::Unlimited
        };
        self
    }

    /// At most `max` live sessions per user (one per device), enforced
    /// atomically at login by `policy`. `max` of 0 is treated as 1.
    /// Default unlimited.
    pub fn max_sessions_per_user(mut self, max: u32, policy: MaxSessionsPolicy) -> Self {
        self.user_limit = UserLimit::Max {
            max: max.max(1),
            policy,
        };
        self
    }

    /// The longest the middleware waits for one store operation before the
    /// request fails with 503. Default 2 s.
    pub fn store_timeout(mut self, d: Duration) -> Self {
        self.store_timeout = d;
        self
    }

    /// The cookie name in use.
    pub fn get_cookie_name(&self) -> &str {
        &self.cookie_name
    }

    /// The per-user session limit in use.
    pub fn get_user_limit(&self) -> UserLimit {
        self.user_limit
    }

    /// The timeouts a store applies, with the touch interval capped.
    pub(crate) fn timeouts(&self) -> crate::store::Timeouts {
        crate::store::Timeouts {
            idle: self.idle_timeout,
            absolute: self.absolute_timeout,
            touch_interval: self.touch_interval.min(self.idle_timeout / 2),
        }
    }
}

//! [`SessionConfig`]: cookie attributes, timeouts, rotation and per-user policy.

use std::time::Duration;

pub use cookie::SameSite;

use crate::clock::duration_ms;

/// Timeouts a store applies in each call, from the [`SessionConfig`].
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

/// What [`max_sessions_per_user`](SessionConfig::max_sessions_per_user) does
/// when a user who already holds the maximum logs in once more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxSessionsPolicy {
    /// End the user's least recently used session to make room. `RedisStore`
    /// ranks sessions by the expiry its index keeps (issue 11: no walk of the
    /// user's sessions), so there "least recently used" holds to within one
    /// touch interval (as `last_seen` itself does), and a session close to
    /// its absolute deadline goes first.
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

/// Size limits on what a handler may put in a session. An insert that would
/// break one fails with a typed error and changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest key, in bytes. Default 256.
    pub max_key_bytes: usize,
    /// Largest value, as JSON bytes. Default 64 KiB.
    pub max_value_bytes: usize,
    /// Largest session: the sum of key and JSON value bytes. Default 256 KiB.
    pub max_session_bytes: usize,
    /// Most keys in one session. Default 256.
    pub max_keys: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_key_bytes: 256,
            max_value_bytes: 64 * 1024,
            max_session_bytes: 256 * 1024,
            max_keys: 256,
        }
    }
}

/// What the middleware does when the store fails or times out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreFailure {
    /// Answer `503 Service Unavailable` (the default). The client can retry;
    /// nothing is lost or half-written.
    #[default]
    Reject,
    /// Let the request through with a fresh anonymous session that is never
    /// written, and keep the handler's response when the final write fails.
    /// Risky: a logged-in user looks logged out for that request, and
    /// whatever the handler put in the session is lost. Choose it only for
    /// apps where sessions are a convenience, not a security boundary.
    Continue,
}

/// Where the session token travels between client and server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TokenTransport {
    /// A cookie (the default): for browsers.
    #[default]
    Cookie,
    /// A request header, for API clients and mobile apps. A token issued in
    /// the request (first write, login, rotation) is returned in a response
    /// header, and [`Session::token`](crate::Session::token) shows it to the
    /// handler (for a JSON login response). No cookie is sent.
    Header(HeaderTransport),
    /// The cookie first, then the header; new tokens are sent both ways. A
    /// well-formed cookie wins even when its session has ended: the header is
    /// only read when there is no usable cookie.
    CookieThenHeader(HeaderTransport),
}

impl TokenTransport {
    pub(crate) fn cookie(&self) -> bool {
        !matches!(self, TokenTransport::Header(_))
    }

    pub(crate) fn header(&self) -> Option<&HeaderTransport> {
        match self {
            TokenTransport::Cookie => None,
            TokenTransport::Header(h) | TokenTransport::CookieThenHeader(h) => Some(h),
        }
    }
}

/// The header names and scheme of a header token transport. Default:
/// `Authorization: Bearer <token>` in, `x-session-token: <token>` out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderTransport {
    pub(crate) request_header: String,
    pub(crate) scheme: Option<String>,
    pub(crate) response_header: String,
}

impl Default for HeaderTransport {
    fn default() -> Self {
        HeaderTransport {
            request_header: "authorization".to_owned(),
            scheme: Some("Bearer".to_owned()),
            response_header: "x-session-token".to_owned(),
        }
    }
}

impl HeaderTransport {
    /// `Authorization: Bearer <token>` in, `x-session-token` out.
    pub fn bearer() -> Self {
        Self::default()
    }

    /// The request header that carries the token, and the scheme word before
    /// it (`Some("Bearer")`), or `None` for a bare token (e.g. `x-api-session: <token>`).
    pub fn request_header(mut self, name: &str, scheme: Option<&str>) -> Self {
        self.request_header = name.to_ascii_lowercase();
        self.scheme = scheme.map(str::to_owned);
        self
    }

    /// The response header a newly issued token is sent in.
    pub fn response_header(mut self, name: &str) -> Self {
        self.response_header = name.to_ascii_lowercase();
        self
    }

    /// The token text inside a request header value, if it has the scheme.
    pub(crate) fn strip_scheme<'a>(&self, value: &'a str) -> Option<&'a str> {
        let value = value.trim();
        match &self.scheme {
            None => Some(value),
            Some(scheme) => {
                let (word, rest) = value.split_once(' ')?;
                word.eq_ignore_ascii_case(scheme).then(|| rest.trim_start())
            }
        }
    }
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
    pub(crate) transport: TokenTransport,
    pub(crate) store_failure: StoreFailure,
    pub(crate) limits: Limits,
    pub(crate) lock_timeout: Duration,
    pub(crate) lock_lease: Duration,
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
            transport: TokenTransport::Cookie,
            store_failure: StoreFailure::Reject,
            limits: Limits::default(),
            lock_timeout: Duration::from_secs(5),
            lock_lease: Duration::from_secs(10),
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
    /// is. Never extended by activity or rotation. Login starts a new
    /// authenticated session and so a new lifetime (OWASP counts the absolute
    /// timeout from authentication). Default 12 h.
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
    ///
    /// A login or explicit rotation that times out may still have landed
    /// (the old token is then retired), so one lookup of the new session
    /// follows before the timeout is reported: such a call can take up to
    /// twice this.
    pub fn store_timeout(mut self, d: Duration) -> Self {
        self.store_timeout = d;
        self
    }

    /// What happens when the store fails or times out: `503` (default) or
    /// continue without a session. See [`StoreFailure`].
    pub fn on_store_failure(mut self, behaviour: StoreFailure) -> Self {
        self.store_failure = behaviour;
        self
    }

    /// Size limits on session data. See [`Limits`] for the defaults.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// How long [`Session::lock`](crate::Session::lock) (and the
    /// [`LockedSession`](crate::LockedSession) extractor) waits for another
    /// request of the same session to release the lock before failing with
    /// [`Error::LockTimeout`](crate::Error::LockTimeout) (`423 Locked`).
    /// Default 5 s.
    pub fn lock_timeout(mut self, d: Duration) -> Self {
        self.lock_timeout = d;
        self
    }

    /// How long a session lock lasts unless renewed: the longest another
    /// request waits for a holder that crashed or stalled. A holder renews
    /// it every third of the lease while its guard lives. Default 10 s; at
    /// least 1 ms.
    pub fn lock_lease(mut self, d: Duration) -> Self {
        self.lock_lease = d.max(Duration::from_millis(1));
        self
    }

    /// Where the token travels: cookie (default), header, or both.
    pub fn token_transport(mut self, transport: TokenTransport) -> Self {
        self.transport = transport;
        self
    }

    /// The timeouts a store applies, with the touch interval capped.
    pub(crate) fn timeouts(&self) -> Timeouts {
        Timeouts {
            idle: self.idle_timeout,
            absolute: self.absolute_timeout,
            touch_interval: self.touch_interval.min(self.idle_timeout / 2),
        }
    }
}

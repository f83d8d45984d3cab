//! A browser-like client for race tests: one cookie jar holding the session
//! cookie `id`, shared by every request in flight, so that parallel requests
//! behave as a browser's tabs do.
//!
//! The cookie a request carries is the jar's at the moment it is sent, and a
//! response's `Set-Cookie` is applied the moment that response completes.
//! Cookies therefore land in *completion order*: a slow response that clears
//! or replaces the cookie after a faster one set it wins, as it would in a
//! real browser. Races in token handling show up as a jar that ends in the
//! wrong state.
//!
//! Self-contained (plain `reqwest`, its own `Set-Cookie` parsing) because
//! every suite that declares `mod support;` compiles this file, and most of
//! them do not declare `mod http_client;`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::future::join_all;
use http::header::{COOKIE, SET_COOKIE};
use http::StatusCode;

/// The session cookie the jar keeps.
pub const COOKIE_NAME: &str = "id";

/// The longest one request may take before the test fails instead of hanging.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Where requests go. Implemented by the suites for their server handle.
pub trait Origin {
    /// `http://host:port`, without a trailing slash.
    fn base_url(&self) -> String;
}

/// What a response did to the session cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CookieChange {
    /// A new value.
    Set(String),
    /// Deleted (empty value or `Max-Age<=0`).
    Removed,
}

/// One completed request, as the jar saw it.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub path: String,
    /// The cookie the request carried.
    pub sent_token: Option<String>,
    pub status: StatusCode,
    pub body: String,
    /// The last `Set-Cookie` for `id`, if any.
    pub cookie: Option<CookieChange>,
    /// How many `Set-Cookie` headers named `id` the response had.
    pub id_cookies: usize,
    pub started: Instant,
    pub finished: Instant,
    /// Position in completion order among this browser's responses.
    pub completed_nth: usize,
}

impl Exchange {
    /// The token the response set (not a removal).
    pub fn new_token(&self) -> Option<&str> {
        match &self.cookie {
            Some(CookieChange::Set(t)) => Some(t),
            _ => None,
        }
    }
}

/// Exchanges in one line, for failure reports (tokens shortened to their
/// first 8 characters).
pub fn describe(log: &[Exchange]) -> String {
    let short = |t: &str| t.chars().take(8).collect::<String>();
    let lines: Vec<String> = log
        .iter()
        .map(|e| {
            let cookie = match &e.cookie {
                None => "-".to_owned(),
                Some(CookieChange::Removed) => "removed".to_owned(),
                Some(CookieChange::Set(t)) => format!("set {}", short(t)),
            };
            format!(
                "[{} {} sent={} -> {} {:?} cookie={cookie}]",
                e.completed_nth,
                e.path,
                e.sent_token.as_deref().map_or("-".to_owned(), short),
                e.status.as_u16(),
                e.body.chars().take(40).collect::<String>(),
            )
        })
        .collect();
    lines.join(" ")
}

/// Which cookie the requests of a staggered batch carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieAt {
    /// The jar's cookie when the batch starts, for every request (as if all
    /// were sent at once and only their arrival was spread out).
    BatchStart,
    /// The jar's cookie when each request is actually sent, after its delay.
    Send,
}

#[derive(Debug, Default)]
struct Jar {
    token: Option<String>,
    log: Vec<Exchange>,
}

/// A cookie jar and an HTTP client. Clones share both.
#[derive(Debug, Clone)]
pub struct Browser {
    http: reqwest::Client,
    jar: Arc<Mutex<Jar>>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    /// An empty jar.
    pub fn new() -> Self {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .expect("build the HTTP client"),
            jar: Arc::default(),
        }
    }

    fn jar(&self) -> MutexGuard<'_, Jar> {
        self.jar.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cookie held now.
    pub fn token(&self) -> Option<String> {
        self.jar().token.clone()
    }

    /// Every response so far, in completion order.
    pub fn log(&self) -> Vec<Exchange> {
        self.jar().log.clone()
    }

    /// `GET path` with the jar's cookie as it is now; applies the response's
    /// cookie to the jar when it completes.
    pub async fn send(&self, srv: &impl Origin, path: &str) -> Exchange {
        let token = self.token();
        self.send_carrying(srv, path, token).await
    }

    /// `GET path` with `token` (whatever the jar holds), applying the
    /// response's cookie to the jar. The browser's view of a request sent
    /// earlier whose response arrives now.
    pub async fn send_carrying(
        &self,
        srv: &impl Origin,
        path: &str,
        token: Option<String>,
    ) -> Exchange {
        let started = Instant::now();
        let (status, body, changes) = self.exchange(srv, path, token.as_deref()).await;
        let finished = Instant::now();
        let mut jar = self.jar();
        for change in &changes {
            jar.token = match change {
                CookieChange::Set(t) => Some(t.clone()),
                CookieChange::Removed => None,
            };
        }
        let entry = Exchange {
            path: path.to_owned(),
            sent_token: token,
            status,
            body,
            id_cookies: changes.len(),
            cookie: changes.last().cloned(),
            started,
            finished,
            completed_nth: jar.log.len(),
        };
        jar.log.push(entry.clone());
        entry
    }

    /// `GET path` with `token`, leaving the jar and the log alone: for
    /// checking what a token leads to without the check moving the jar.
    pub async fn peek(&self, srv: &impl Origin, path: &str, token: Option<&str>) -> Exchange {
        let started = Instant::now();
        let (status, body, changes) = self.exchange(srv, path, token).await;
        Exchange {
            path: path.to_owned(),
            sent_token: token.map(str::to_owned),
            status,
            body,
            id_cookies: changes.len(),
            cookie: changes.last().cloned(),
            started,
            finished: Instant::now(),
            completed_nth: usize::MAX,
        }
    }

    /// The body of `GET path` through the jar, or `"<status>: <body>"` when
    /// the answer is not 200 (so comparisons with an expected body fail).
    pub async fn body(&self, srv: &impl Origin, path: &str) -> String {
        let e = self.send(srv, path).await;
        if e.status == StatusCode::OK {
            e.body
        } else {
            format!("{}: {}", e.status, e.body)
        }
    }

    /// Fires every request at once, each with the jar's cookie at its send.
    pub async fn parallel(&self, srv: &impl Origin, paths: &[String]) -> Vec<Exchange> {
        join_all(paths.iter().map(|p| self.send(srv, p))).await
    }

    /// Fires every request after its own random delay of 0..=`max_delay`.
    /// The answers come back in the order of `paths`.
    pub async fn staggered(
        &self,
        srv: &impl Origin,
        paths: &[String],
        max_delay: Duration,
        cookie_at: CookieAt,
    ) -> Vec<Exchange> {
        let batch_token = self.token();
        let max_us = u64::try_from(max_delay.as_micros()).unwrap_or(u64::MAX);
        let requests = paths.iter().map(|p| {
            let delay = Duration::from_micros(rand::random_range(0..=max_us));
            let batch_token = batch_token.clone();
            async move {
                tokio::time::sleep(delay).await;
                let token = match cookie_at {
                    CookieAt::BatchStart => batch_token,
                    CookieAt::Send => self.token(),
                };
                self.send_carrying(srv, p, token).await
            }
        });
        join_all(requests).await
    }

    async fn exchange(
        &self,
        srv: &impl Origin,
        path: &str,
        token: Option<&str>,
    ) -> (StatusCode, String, Vec<CookieChange>) {
        let url = format!("{}{path}", srv.base_url());
        let mut req = self.http.get(&url);
        if let Some(t) = token {
            req = req.header(COOKIE, format!("{COOKIE_NAME}={t}"));
        }
        let res = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = res.status();
        let changes: Vec<CookieChange> = res
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| parse_id_cookie(v.to_str().expect("Set-Cookie is ASCII")))
            .collect();
        let bytes = res
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: body: {e}"));
        (
            status,
            String::from_utf8_lossy(&bytes).into_owned(),
            changes,
        )
    }
}

/// The change a `Set-Cookie` header makes to `id`; `None` for other cookies.
fn parse_id_cookie(raw: &str) -> Option<CookieChange> {
    let c = cookie::Cookie::parse(raw.to_owned())
        .unwrap_or_else(|e| panic!("unparsable Set-Cookie {raw:?}: {e}"));
    if c.name() != COOKIE_NAME {
        return None;
    }
    let expired = c.max_age().is_some_and(|age| age.whole_seconds() <= 0);
    Some(if c.value().is_empty() || expired {
        CookieChange::Removed
    } else {
        CookieChange::Set(c.value().to_owned())
    })
}

/// A browser with a stored session: anonymous with `seed=1` (`/set/seed/1`),
/// or logged in as `user` (`/login/{user}`), on the standard test routes.
pub async fn start_browser(srv: &impl Origin, login_as: Option<&str>) -> Browser {
    let b = Browser::new();
    let path = match login_as {
        Some(user) => format!("/login/{user}"),
        None => "/set/seed/1".to_owned(),
    };
    // The setup is not what the test is about: a store too slow to answer
    // within the timeout on a loaded machine (which a manager in
    // `StoreFailure::Continue` mode answers with a 200 and no cookie) gets
    // two more tries before the test fails.
    let mut tries = Vec::new();
    for _ in 0..3 {
        let e = b.send(srv, &path).await;
        let ok = e.status == StatusCode::OK && b.token().is_some();
        tries.push(e);
        if ok {
            return b;
        }
    }
    panic!("setup {path}: {}", describe(&tries));
}

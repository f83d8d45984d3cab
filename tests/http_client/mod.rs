//! A tiny HTTP test client for the axum suites (`axum_http.rs`,
//! `axum_policies.rs`): a router with the routes every scenario uses, requests
//! sent with `tower::ServiceExt::oneshot`, and `Set-Cookie` parsing.
#![allow(dead_code)]

use std::time::Duration;

use axum::body::Body;
use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use http::header::{CACHE_CONTROL, COOKIE, SET_COOKIE, USER_AGENT};
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use sessionkit::axum::SessionLayer;
use sessionkit::{Error, Session, SessionManager};
use tower::ServiceExt;

/// The session cookie name (the default).
pub const COOKIE_NAME: &str = "id";

/// The body `/whoami` answers for an anonymous session.
pub const ANONYMOUS: &str = "anonymous";

/// The body `/get/{key}` answers for a missing key.
pub const NONE: &str = "none";

/// A few milliseconds of clock movement, so "least recently used" is defined.
pub const TICK: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------- routes

/// The routes every scenario uses, without the session layer (tests add
/// their own routes, then call [`with_layer`]).
///
/// - `/get/{key}`: the value (strings bare, other JSON as text) or `none`
/// - `/set/{key}/{value}`: stores the string; answers `ok`
/// - `/incr`: increments the number at `n`; answers the new value
/// - `/remove/{key}`: answers whether it was there
/// - `/clear`: removes every key
/// - `/keys`: the keys, sorted, joined by `,`
/// - `/whoami`: the user id or `anonymous`
/// - `/id`: the public session id or `none`
/// - `/login/{user}`: logs in, answers the new session id
/// - `/logout`: logs out
pub fn routes() -> Router {
    Router::new()
        .route("/get/{key}", get(route_get_key))
        .route("/set/{key}/{value}", get(route_set_key))
        .route("/incr", get(route_incr))
        .route("/remove/{key}", get(route_remove_key))
        .route("/clear", get(route_clear))
        .route("/keys", get(route_keys))
        .route("/whoami", get(route_whoami))
        .route("/id", get(route_session_id))
        .route("/login/{user}", get(route_login))
        .route("/logout", get(route_logout))
}

/// Wraps `router` in the session layer.
pub fn with_layer(router: Router, manager: SessionManager) -> Router {
    router.layer(SessionLayer::new(manager))
}

/// The standard routes behind the session layer.
pub fn app(manager: SessionManager) -> Router {
    with_layer(routes(), manager)
}

async fn route_get_key(session: Session, Path(key): Path<String>) -> Result<String, Error> {
    Ok(match session.get::<serde_json::Value>(&key)? {
        None => NONE.to_owned(),
        Some(serde_json::Value::String(s)) => s,
        Some(other) => other.to_string(),
    })
}

async fn route_set_key(
    session: Session,
    Path((key, value)): Path<(String, String)>,
) -> Result<&'static str, Error> {
    session.insert(key, value)?;
    Ok("ok")
}

async fn route_incr(session: Session) -> Result<String, Error> {
    let n: u64 = session.get("n")?.unwrap_or(0) + 1;
    session.insert("n", n)?;
    Ok(n.to_string())
}

async fn route_remove_key(session: Session, Path(key): Path<String>) -> String {
    session.remove(&key).to_string()
}

async fn route_clear(session: Session) -> &'static str {
    session.clear();
    "ok"
}

async fn route_keys(session: Session) -> String {
    let mut keys = session.keys();
    keys.sort();
    keys.join(",")
}

async fn route_whoami(session: Session) -> String {
    session.user_id().unwrap_or_else(|| ANONYMOUS.to_owned())
}

async fn route_session_id(session: Session) -> String {
    session
        .id()
        .map_or_else(|| NONE.to_owned(), |id| id.to_string())
}

async fn route_login(session: Session, Path(user): Path<String>) -> Result<String, Error> {
    session.login(user).await?;
    Ok(session
        .id()
        .map_or_else(|| NONE.to_owned(), |id| id.to_string()))
}

async fn route_logout(session: Session) -> Result<&'static str, Error> {
    session.logout().await?;
    Ok("bye")
}

// ---------------------------------------------------------------- requests

/// A response, with its body read.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

/// Sends one request through a clone of `router`.
pub async fn send(router: &Router, req: Request<Body>) -> Resp {
    let res = router
        .clone()
        .oneshot(req)
        .await
        .expect("the router's error type is Infallible");
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res
        .into_body()
        .collect()
        .await
        .expect("body can be read")
        .to_bytes();
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// `GET path`, with `Cookie: id=<token>` when `token` is given.
pub async fn get_with(router: &Router, path: &str, token: Option<&str>) -> Resp {
    let mut req = Request::get(path);
    if let Some(token) = token {
        req = req.header(COOKIE, format!("{COOKIE_NAME}={token}"));
    }
    send(router, req.body(Body::empty()).unwrap()).await
}

/// `GET path` with the given raw headers (appended in order, so a name may
/// repeat).
pub async fn get_with_headers(
    router: &Router,
    path: &str,
    headers: Vec<(http::HeaderName, HeaderValue)>,
) -> Resp {
    let mut req = Request::get(path).body(Body::empty()).unwrap();
    for (name, value) in headers {
        req.headers_mut().append(name, value);
    }
    send(router, req).await
}

/// `GET path` with `Cookie: id=<token>`, asserting 200; answers the body.
pub async fn body_of(router: &Router, path: &str, token: &str) -> String {
    let res = get_with(router, path, Some(token)).await;
    assert_eq!(res.status, StatusCode::OK, "GET {path}: {}", res.body);
    res.body
}

/// What `/whoami` says for `token`.
pub async fn whoami(router: &Router, token: &str) -> String {
    body_of(router, "/whoami", token).await
}

/// A browser: keeps the session cookie the server sets and clears.
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub token: Option<String>,
    pub user_agent: Option<String>,
}

impl Client {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_user_agent(ua: impl Into<String>) -> Self {
        Client {
            token: None,
            user_agent: Some(ua.into()),
        }
    }

    /// `GET path` with the cookie held, then applies the response's
    /// `Set-Cookie` for the session cookie.
    pub async fn get(&mut self, router: &Router, path: &str) -> Resp {
        let mut req = Request::get(path);
        if let Some(token) = &self.token {
            req = req.header(COOKIE, format!("{COOKIE_NAME}={token}"));
        }
        if let Some(ua) = &self.user_agent {
            req = req.header(USER_AGENT, ua.as_str());
        }
        let res = send(router, req.body(Body::empty()).unwrap()).await;
        if let Some(c) = res.session_cookie() {
            self.token = (!c.is_removal()).then(|| c.value.clone());
        }
        res
    }

    /// Like [`get`](Self::get), asserting 200; answers the body.
    pub async fn body(&mut self, router: &Router, path: &str) -> String {
        let res = self.get(router, path).await;
        assert_eq!(res.status, StatusCode::OK, "GET {path}: {}", res.body);
        res.body
    }

    /// The token held; panics when none.
    pub fn token(&self) -> &str {
        self.token
            .as_deref()
            .expect("client holds a session cookie")
    }
}

// ---------------------------------------------------------------- Set-Cookie

/// One parsed `Set-Cookie` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetCookie {
    pub raw: String,
    pub name: String,
    pub value: String,
    /// Attributes in order, name as sent, value if any.
    pub attrs: Vec<(String, Option<String>)>,
}

impl SetCookie {
    pub fn parse(raw: &str) -> Self {
        let mut parts = raw.split(';').map(str::trim);
        let first = parts.next().unwrap_or_default();
        let (name, value) = first.split_once('=').unwrap_or((first, ""));
        let attrs = parts
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.trim().to_owned(), Some(v.trim().to_owned())),
                None => (p.to_owned(), None),
            })
            .collect();
        SetCookie {
            raw: raw.to_owned(),
            name: name.trim().to_owned(),
            value: value.trim().to_owned(),
            attrs,
        }
    }

    /// The attribute, case-insensitively: `Some(value)` when present.
    pub fn attr(&self, name: &str) -> Option<Option<&str>> {
        self.attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    pub fn has(&self, name: &str) -> bool {
        self.attr(name).is_some()
    }

    /// The attribute's value (`None` when absent or valueless).
    pub fn value_of(&self, name: &str) -> Option<&str> {
        self.attr(name).flatten()
    }

    pub fn max_age(&self) -> Option<i64> {
        self.value_of("Max-Age")
            .map(|v| v.parse().expect("Max-Age is a number"))
    }

    /// Whether this tells the browser to delete the cookie.
    pub fn is_removal(&self) -> bool {
        self.value.is_empty() || self.max_age().is_some_and(|s| s <= 0)
    }

    /// Asserts the attributes of the default session cookie: `Path=/`,
    /// `Secure`, `HttpOnly`, `SameSite=Lax`, no `Domain`.
    pub fn assert_default_attributes(&self) {
        assert_eq!(self.name, COOKIE_NAME, "{}", self.raw);
        assert_eq!(self.value_of("Path"), Some("/"), "{}", self.raw);
        assert!(self.has("Secure"), "no Secure: {}", self.raw);
        assert!(self.has("HttpOnly"), "no HttpOnly: {}", self.raw);
        assert_eq!(
            self.value_of("SameSite").map(str::to_ascii_lowercase),
            Some("lax".to_owned()),
            "{}",
            self.raw
        );
        assert!(!self.has("Domain"), "unexpected Domain: {}", self.raw);
    }
}

impl Resp {
    /// Every `Set-Cookie` header.
    pub fn set_cookies(&self) -> Vec<SetCookie> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| SetCookie::parse(v.to_str().expect("Set-Cookie is ASCII")))
            .collect()
    }

    /// The `Set-Cookie` for the session cookie, if any (asserting there is
    /// at most one).
    pub fn session_cookie(&self) -> Option<SetCookie> {
        let mut all: Vec<SetCookie> = self
            .set_cookies()
            .into_iter()
            .filter(|c| c.name == COOKIE_NAME)
            .collect();
        assert!(
            all.len() <= 1,
            "several session Set-Cookie headers: {all:?}"
        );
        all.pop()
    }

    /// The new token the response sets (not a removal).
    pub fn new_token(&self) -> Option<String> {
        self.session_cookie()
            .filter(|c| !c.is_removal())
            .map(|c| c.value)
    }

    /// The new token, asserting there is one.
    pub fn expect_token(&self) -> String {
        self.new_token()
            .unwrap_or_else(|| panic!("expected a session cookie, got {:?}", self.headers))
    }

    pub fn cache_control(&self) -> Option<&str> {
        self.headers
            .get(CACHE_CONTROL)
            .map(|v| v.to_str().expect("ASCII"))
    }

    /// Asserts 200 and no `Set-Cookie` at all.
    pub fn assert_ok_without_cookie(&self, what: &str) {
        assert_eq!(self.status, StatusCode::OK, "{what}: {}", self.body);
        assert!(
            self.headers.get(SET_COOKIE).is_none(),
            "{what}: unexpected Set-Cookie {:?}",
            self.headers.get_all(SET_COOKIE)
        );
    }
}

/// Asserts `token` looks like a session token: a tag, a dot, and at least
/// 43 URL-safe base64 characters (256 bits).
pub fn assert_token_shape(token: &str) {
    let url_safe = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let (tag, secret) = token
        .split_once('.')
        .unwrap_or_else(|| panic!("token {token:?} has no tag"));
    assert!(!tag.is_empty() && url_safe(tag), "bad tag in {token:?}");
    assert!(secret.len() >= 43, "secret too short in {token:?}");
    assert!(url_safe(secret), "secret not URL-safe base64 in {token:?}");
}

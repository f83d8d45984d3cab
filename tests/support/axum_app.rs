//! A small axum app over a session manager, shared by the Redis suites
//! (`redis_store.rs`, `redis_cache.rs`) for command counts and HTTP checks.

use axum::body::Body;
use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use http::header::{COOKIE, SET_COOKIE, USER_AGENT};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;
use sessionkit::axum::SessionLayer;
use sessionkit::{Error, LazySession, LockedSession, Session, SessionManager};
use tower::ServiceExt;

/// Routes: `/read` (keys and values, or `empty`), `/write/{key}/{value}`,
/// `/locked-write/{key}/{value}`, `/three` (three small keys),
/// `/login/{user}`, `/logout`, and `/lazy-login/{user}`, `/lazy-logout`
/// (the same through `LazySession`, which loads nothing first).
pub fn app(manager: SessionManager) -> Router {
    Router::new()
        .route("/read", get(read))
        .route("/write/{key}/{value}", get(write))
        .route("/locked-write/{key}/{value}", get(locked_write))
        .route("/three", get(three))
        .route("/login/{user}", get(login))
        .route("/logout", get(logout))
        .route("/lazy-login/{user}", get(lazy_login))
        .route("/lazy-logout", get(lazy_logout))
        .layer(SessionLayer::new(manager))
}

/// The session's keys and values, or `empty`.
async fn read(session: Session) -> Result<String, Error> {
    let mut keys = session.keys();
    keys.sort();
    let mut out = Vec::new();
    for k in keys {
        let v: serde_json::Value = session.get(&k)?.unwrap_or_default();
        out.push(format!("{k}={v}"));
    }
    Ok(if out.is_empty() {
        "empty".into()
    } else {
        out.join(",")
    })
}

async fn write(
    session: Session,
    Path((k, v)): Path<(String, String)>,
) -> Result<&'static str, Error> {
    session.insert(k, v)?;
    Ok("ok")
}

async fn locked_write(
    session: LockedSession,
    Path((k, v)): Path<(String, String)>,
) -> Result<&'static str, Error> {
    session.insert(k, v)?;
    Ok("ok")
}

async fn three(session: Session) -> Result<&'static str, Error> {
    session.insert("cart", json!([17, 42]))?;
    session.insert("theme", "dark")?;
    session.insert("visits", 3)?;
    Ok("ok")
}

async fn login(session: Session, Path(user): Path<String>) -> Result<&'static str, Error> {
    session.login(user).await?;
    Ok("ok")
}

async fn logout(session: Session) -> Result<&'static str, Error> {
    session.logout().await?;
    Ok("bye")
}

async fn lazy_login(session: LazySession, Path(user): Path<String>) -> Result<&'static str, Error> {
    session.login(user).await?;
    Ok("ok")
}

async fn lazy_logout(session: LazySession) -> Result<&'static str, Error> {
    session.logout().await?;
    Ok("bye")
}

pub struct Reply {
    pub status: StatusCode,
    /// The token a `Set-Cookie` header set (empty when it cleared the cookie).
    pub token: Option<String>,
    pub body: String,
}

pub async fn send_as(router: &Router, path: &str, token: Option<&str>, ua: Option<&str>) -> Reply {
    let mut req = Request::get(path);
    if let Some(ua) = ua {
        req = req.header(USER_AGENT, ua);
    }
    if let Some(t) = token {
        req = req.header(COOKIE, format!("id={t}"));
    }
    let res = router
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let token = res
        .headers()
        .get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').next())
        .and_then(|pair| pair.strip_prefix("id="))
        .map(str::to_owned);
    let body =
        String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    Reply {
        status,
        token,
        body,
    }
}

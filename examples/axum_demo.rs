//! A small server-rendered site on sessionkit and axum: log in with a name,
//! count clicks in the session, list the devices you are logged in on and
//! revoke them.
//!
//! ```text
//! cargo run --example axum_demo
//! # then open http://localhost:3000 (PORT=8080 to change the port)
//! ```
//!
//! The cookie keeps its `Secure` default: browsers (and curl) treat
//! `http://localhost` as a secure origin, so secure cookies work there over
//! plain HTTP.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::Form;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use sessionkit::axum::SessionLayer;
use sessionkit::{
    MemoryStore, Session, SessionConfig, SessionId, SessionInfo, SessionManager, SessionStore,
};
use time::OffsetDateTime;
use tracing_subscriber::EnvFilter;

/// The longest name accepted at login, in characters.
const MAX_NAME_LEN: usize = 64;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    let manager = SessionManager::from_arc(store_from_env().await?, SessionConfig::default());

    let app = Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/count", post(count))
        .route("/logout", post(logout))
        .route("/sessions", get(sessions))
        .route("/sessions/revoke", post(revoke))
        .route("/sessions/revoke-others", post(revoke_others))
        .layer(SessionLayer::new(manager));

    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p.parse().map_err(|_| format!("PORT={p:?} is not a port"))?,
        Err(_) => 3000,
    };
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await?;
    println!("Open http://localhost:{port}");
    // `ConnectInfo` lets the session layer record each session's client IP.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

/// Chooses the session store: Redis when `REDIS_URL` is set, memory
/// otherwise.
async fn store_from_env() -> Result<Arc<dyn SessionStore>, Box<dyn std::error::Error>> {
    let Ok(url) = std::env::var("REDIS_URL") else {
        tracing::info!("using the in-memory store (set REDIS_URL to use Redis)");
        return Ok(Arc::new(MemoryStore::new()));
    };
    #[cfg(feature = "redis")]
    {
        let store = sessionkit::redis::RedisStore::connect(&url).await?;
        tracing::info!(%url, "using the Redis store");
        Ok(Arc::new(store))
    }
    #[cfg(not(feature = "redis"))]
    {
        Err(format!(
            "REDIS_URL={url} is set but the demo was built without Redis: \
             run `cargo run --example axum_demo --features redis`"
        )
        .into())
    }
}

// ---- handlers --------------------------------------------------------------

async fn home(session: Session) -> Result<Response, sessionkit::Error> {
    let body = match session.user_id() {
        None => r#"<h1>sessionkit demo</h1>
<form method="post" action="/login">
  <label>Your name <input name="name" required maxlength="64" autofocus></label>
  <button>Log in</button>
</form>
<p>Log in from two browsers (or a normal and a private window) to see
both sessions on the sessions page.</p>"#
            .to_owned(),
        Some(user) => {
            let counter: u64 = session.get("counter")?.unwrap_or(0);
            format!(
                r#"<h1>Hello {user}</h1>
<p>This session's counter: <strong>{counter}</strong></p>
<form method="post" action="/count"><button>+1</button></form>
<p><a href="/sessions">Your sessions (devices)</a></p>
<form method="post" action="/logout"><button>Log out</button></form>"#,
                user = esc(&user),
            )
        }
    };
    Ok(page("sessionkit demo", &body))
}

#[derive(Deserialize)]
struct LoginForm {
    name: String,
}

async fn login(
    session: Session,
    Form(form): Form<LoginForm>,
) -> Result<Response, sessionkit::Error> {
    let name = form.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Ok(bad_request(&format!(
            "The name must be 1 to {MAX_NAME_LEN} characters."
        )));
    }
    // New token (session fixation defence), data carried over, user bound.
    session.login(name).await?;
    // Log the public session id, never the token (the cookie value).
    tracing::info!(session = %shown(session.id()), "logged in");
    Ok(Redirect::to("/").into_response())
}

async fn count(session: Session) -> Result<Redirect, sessionkit::Error> {
    if session.user_id().is_some() {
        let n: u64 = session.get("counter")?.unwrap_or(0);
        session.insert("counter", n + 1)?;
    }
    Ok(Redirect::to("/"))
}

async fn logout(session: Session) -> Result<Redirect, sessionkit::Error> {
    let id = session.id();
    session.logout().await?;
    tracing::info!(session = %shown(id), "logged out");
    Ok(Redirect::to("/"))
}

async fn sessions(session: Session) -> Result<Response, sessionkit::Error> {
    let (Some(user), Some(current)) = (session.user_id(), session.id()) else {
        return Ok(Redirect::to("/").into_response());
    };
    let list = session.manager().sessions_of(&user).await?;
    let mut rows = String::new();
    for info in &list {
        let action = if info.id == current {
            "<strong>this device</strong>".to_owned()
        } else {
            format!(
                r#"<form method="post" action="/sessions/revoke">
<input type="hidden" name="id" value="{id}"><button>revoke</button></form>"#,
                id = esc(info.id.as_str()),
            )
        };
        rows.push_str(&row(info, &action));
    }
    let others = list.iter().filter(|i| i.id != current).count();
    let body = format!(
        r#"<h1>Sessions of {user}</h1>
<table>
<tr><th>Device</th><th>IP</th><th>Created</th><th>Last seen</th><th>Expires</th><th></th></tr>
{rows}</table>
<form method="post" action="/sessions/revoke-others">
  <button{disabled}>Log out other devices ({others})</button>
</form>
<p><a href="/">Home</a></p>"#,
        user = esc(&user),
        disabled = if others == 0 { " disabled" } else { "" },
    );
    Ok(page("Your sessions", &body))
}

fn row(info: &SessionInfo, action: &str) -> String {
    format!(
        "<tr><td>{ua}</td><td>{ip}</td><td>{created}</td><td>{seen}</td><td>{expires}</td><td>{action}</td></tr>\n",
        ua = esc(info.user_agent.as_deref().unwrap_or("unknown")),
        ip = esc(info.client_ip.as_deref().unwrap_or("unknown")),
        created = when(info.created),
        seen = when(info.last_seen),
        expires = when(info.expires),
    )
}

#[derive(Deserialize)]
struct RevokeForm {
    id: String,
}

async fn revoke(
    session: Session,
    Form(form): Form<RevokeForm>,
) -> Result<Response, sessionkit::Error> {
    let Some(user) = session.user_id() else {
        return Ok(Redirect::to("/").into_response());
    };
    let Ok(id) = form.id.parse::<SessionId>() else {
        return Ok(bad_request("That is not a session id."));
    };
    if session.id().as_ref() == Some(&id) {
        // Revoking this very session is a logout; this also clears the cookie.
        session.logout().await?;
    } else if !session.manager().revoke_of_user(&user, &id).await? {
        // The id comes from the form: it could name anybody's session, and
        // `revoke_of_user` ends it only if it is one of this user's.
        return Ok(bad_request("You have no such session."));
    }
    tracing::info!(session = %id, "revoked");
    Ok(Redirect::to("/sessions").into_response())
}

async fn revoke_others(session: Session) -> Result<Redirect, sessionkit::Error> {
    let (Some(user), Some(current)) = (session.user_id(), session.id()) else {
        return Ok(Redirect::to("/"));
    };
    let ended = session
        .manager()
        .revoke_user_except(&user, &current)
        .await?;
    tracing::info!(session = %current, ended, "logged out other devices");
    Ok(Redirect::to("/sessions"))
}

/// A session id for the log; `-` for a session that was never stored.
fn shown(id: Option<SessionId>) -> String {
    id.map_or_else(|| "-".to_owned(), |id| id.to_string())
}

// ---- HTML helpers ----------------------------------------------------------

/// A whole HTML page. `Cache-Control: no-store`: the pages show private data
/// (sessionkit adds it by itself only to responses that carry a token).
fn page(title: &str, body: &str) -> Response {
    let html = Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: .3rem .6rem; text-align: left; font-size: .9rem; }}
form {{ display: inline; }}
</style></head>
<body>
{body}
</body></html>
"#,
        title = esc(title),
    ));
    ([(header::CACHE_CONTROL, "no-store")], html).into_response()
}

fn bad_request(message: &str) -> Response {
    let body = format!(
        r#"<h1>Bad request</h1><p>{}</p><p><a href="/">Home</a></p>"#,
        esc(message)
    );
    (StatusCode::BAD_REQUEST, page("Bad request", &body)).into_response()
}

/// Escapes text for HTML element content and quoted attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `2024-05-01 13:37:00 UTC`.
fn when(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

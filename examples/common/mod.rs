//! What `axum_demo` and `actix_demo` share: the store and port taken from
//! the environment, the session logic behind each route, and the HTML pages.
//! Each route returns a framework-neutral [`Reply`]; the demos only add
//! their framework's glue (routing, form extraction, turning a `Reply` into
//! a response).

use std::sync::Arc;

use serde::Deserialize;
use sessionkit::{LazySession, MemoryStore, Session, SessionId, SessionInfo, SessionStore};
use time::OffsetDateTime;
use tracing_subscriber::EnvFilter;

#[cfg(feature = "postgres")]
mod redact;

/// The longest name accepted at login, in characters.
pub const MAX_NAME_LEN: usize = 64;

/// What a route answers.
pub enum Reply {
    /// An HTML page (`text/html; charset=utf-8`), 200 OK or 400 Bad
    /// Request. Send it with `Cache-Control: no-store`: the pages show
    /// private data, and sessionkit adds that header by itself only to
    /// responses that carry a token.
    Page { bad_request: bool, html: String },
    /// `303 See Other` to a path of this site.
    Redirect(&'static str),
}

/// The login form.
#[derive(Deserialize)]
pub struct LoginForm {
    pub name: String,
}

/// The "revoke this device" form.
#[derive(Deserialize)]
pub struct RevokeForm {
    pub id: String,
}

// ---- setup -----------------------------------------------------------------

/// Logs to stderr, `info` unless `RUST_LOG` says otherwise (PostgreSQL's
/// notices, such as "schema already exists, skipping" at every start, only
/// from `warn` up).
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,sqlx::postgres::notice=warn")),
        )
        .init();
}

/// `PORT`, or `default`.
pub fn port_from_env(default: u16) -> Result<u16, Box<dyn std::error::Error>> {
    match std::env::var("PORT") {
        Ok(p) => Ok(p.parse().map_err(|_| format!("PORT={p:?} is not a port"))?),
        Err(_) => Ok(default),
    }
}

/// Chooses the session store from the environment:
///
/// - PostgreSQL when `DATABASE_URL` is set (a `postgres://` URL; the demo
///   must be built with the `postgres` feature);
/// - Redis when `REDIS_URL`, `REDIS_CLUSTER_NODES` or `REDIS_SENTINELS`
///   (with `REDIS_SENTINEL_MASTER`) is set (see
///   `RedisStoreBuilder::from_env`; the `redis` feature);
/// - memory otherwise.
///
/// `DATABASE_URL` and a Redis variable together are an error: pick one.
/// Empty variables count as unset. Call it inside the runtime (the stores
/// start their background tasks there). `redis_command` and
/// `postgres_command` are the `cargo run` lines that build the demo with
/// Redis and with PostgreSQL, for the message given when it was built
/// without them.
pub async fn store_from_env(
    redis_command: &str,
    postgres_command: &str,
) -> Result<Arc<dyn SessionStore>, Box<dyn std::error::Error>> {
    let set = |v: &str| std::env::var(v).is_ok_and(|s| !s.is_empty());
    let redis = ["REDIS_URL", "REDIS_CLUSTER_NODES", "REDIS_SENTINELS"]
        .into_iter()
        .find(|v| set(v));
    match (set("DATABASE_URL"), redis) {
        (true, Some(variable)) => Err(format!(
            "both DATABASE_URL (PostgreSQL) and {variable} (Redis) are set: \
             pick one store and unset the other variable"
        )
        .into()),
        (true, None) => postgres_store(postgres_command).await,
        (false, Some(variable)) => redis_store(variable, redis_command).await,
        (false, None) => {
            tracing::info!(
                "using the in-memory store (set DATABASE_URL to use PostgreSQL, \
                 or REDIS_URL, REDIS_CLUSTER_NODES or REDIS_SENTINELS to use Redis)"
            );
            Ok(Arc::new(MemoryStore::new()))
        }
    }
}

/// The PostgreSQL store of `DATABASE_URL`.
#[cfg(feature = "postgres")]
async fn postgres_store(
    postgres_command: &str,
) -> Result<Arc<dyn SessionStore>, Box<dyn std::error::Error>> {
    let _ = postgres_command;
    let url = std::env::var("DATABASE_URL")?;
    // Creates the store's tables and functions in the `public` schema if
    // they are missing (see `PostgresStoreBuilder::schema`).
    let store = sessionkit::postgres::PostgresStore::builder()
        .url(url.as_str())
        .build()
        .await
        .map_err(|e| format!("cannot use the PostgreSQL given by DATABASE_URL: {e}"))?;
    tracing::info!(
        store = ?store,
        database = %redact::without_password(&url),
        "using the PostgreSQL store (DATABASE_URL)"
    );
    Ok(Arc::new(store))
}

#[cfg(not(feature = "postgres"))]
async fn postgres_store(
    postgres_command: &str,
) -> Result<Arc<dyn SessionStore>, Box<dyn std::error::Error>> {
    Err(format!(
        "DATABASE_URL is set but the demo was built without PostgreSQL: \
         add `--features postgres`, as in `{postgres_command}`"
    )
    .into())
}

/// The Redis store that `variable` (and its companions) name.
#[cfg(feature = "redis")]
async fn redis_store(
    variable: &str,
    redis_command: &str,
) -> Result<Arc<dyn SessionStore>, Box<dyn std::error::Error>> {
    let _ = redis_command;
    let builder = sessionkit::redis::RedisStore::builder()
        .from_env()
        .ok_or("no Redis configuration in the environment")?;
    let store = builder
        .build()
        .await
        .map_err(|e| format!("cannot use the Redis given by {variable}: {e}"))?;
    tracing::info!(store = ?store, "using the Redis store ({variable})");
    Ok(Arc::new(store))
}

#[cfg(not(feature = "redis"))]
async fn redis_store(
    variable: &str,
    redis_command: &str,
) -> Result<Arc<dyn SessionStore>, Box<dyn std::error::Error>> {
    Err(format!(
        "{variable} is set but the demo was built without Redis: \
         run `{redis_command}`"
    )
    .into())
}

// ---- routes ----------------------------------------------------------------

/// `GET /`: the login form, or the counter of a logged-in session.
pub fn home(session: &Session) -> Result<Reply, sessionkit::Error> {
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

/// `POST /login`: binds the session to the name. Through `LazySession`,
/// nothing is read before the login: it is one store call (the store
/// carries the old session's data over).
pub async fn login(session: &LazySession, form: &LoginForm) -> Result<Reply, sessionkit::Error> {
    let name = form.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Ok(bad_request(&format!(
            "The name must be 1 to {MAX_NAME_LEN} characters."
        )));
    }
    // New token (session fixation defence), data carried over, user bound.
    session.login(name).await?;
    // Log the public session id, never the token (the cookie value). The
    // login left the session loaded: no second store call.
    let id = session.session().await?.id();
    tracing::info!(session = %shown(id), "logged in");
    Ok(Reply::Redirect("/"))
}

/// `POST /count`: adds one to the counter of a logged-in session.
pub fn count(session: &Session) -> Result<Reply, sessionkit::Error> {
    if session.user_id().is_some() {
        let n: u64 = session.get("counter")?.unwrap_or(0);
        session.insert("counter", n + 1)?;
    }
    Ok(Reply::Redirect("/"))
}

/// `POST /logout`: one store call through `LazySession` (the store ends the
/// session the cookie leads to).
pub async fn logout(session: &LazySession) -> Result<Reply, sessionkit::Error> {
    session.logout().await?;
    tracing::info!("logged out");
    Ok(Reply::Redirect("/"))
}

/// `GET /sessions`: the user's sessions, with a revoke button for each
/// other device.
pub async fn sessions(session: &Session) -> Result<Reply, sessionkit::Error> {
    let (Some(user), Some(current)) = (session.user_id(), session.id()) else {
        return Ok(Reply::Redirect("/"));
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

/// `POST /sessions/revoke`: ends one of the user's sessions.
pub async fn revoke(session: &Session, form: &RevokeForm) -> Result<Reply, sessionkit::Error> {
    let Some(user) = session.user_id() else {
        return Ok(Reply::Redirect("/"));
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
    Ok(Reply::Redirect("/sessions"))
}

/// `POST /sessions/revoke-others`: "log out other devices".
pub async fn revoke_others(session: &Session) -> Result<Reply, sessionkit::Error> {
    let (Some(user), Some(current)) = (session.user_id(), session.id()) else {
        return Ok(Reply::Redirect("/"));
    };
    let ended = session
        .manager()
        .revoke_user_except(&user, &current)
        .await?;
    tracing::info!(session = %current, ended, "logged out other devices");
    Ok(Reply::Redirect("/sessions"))
}

/// A session id for the log; `-` for a session that was never stored.
fn shown(id: Option<SessionId>) -> String {
    id.map_or_else(|| "-".to_owned(), |id| id.to_string())
}

// ---- HTML helpers ----------------------------------------------------------

/// A whole HTML page.
fn page(title: &str, body: &str) -> Reply {
    Reply::Page {
        bad_request: false,
        html: html(title, body),
    }
}

fn bad_request(message: &str) -> Reply {
    let body = format!(
        r#"<h1>Bad request</h1><p>{}</p><p><a href="/">Home</a></p>"#,
        esc(message)
    );
    Reply::Page {
        bad_request: true,
        html: html("Bad request", &body),
    }
}

fn html(title: &str, body: &str) -> String {
    format!(
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
    )
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

//! The service the soak test loads: one axum app on `RedisStore` (with or
//! without the client-side cache), run by this binary re-executed as
//! `soak-serve <store> <port> <redis-url> <threads> <grace-ms> <rotation-ms>`.
//!
//! Routes (every answer is one line of text):
//! - `POST /login/{user}`: `Session::login(user)`; `ok <user> <n>`;
//! - `GET /read`: `ok <user> <n>`, or `anon` when not logged in;
//! - `GET /write`: increments the session's counter `n`; `ok <user> <n>`,
//!   or `anon` (and nothing written) when not logged in;
//! - `POST /rotate`: `Session::rotate()`; `ok <user> <n>` or `anon`;
//! - `POST /logout`: `Session::logout()`; `bye`, or `anon`;
//! - `POST /admin/revoke-all/{user}`: `SessionManager::revoke_user(user)`;
//!   the number of sessions ended.
//!
//! The admin route has **no authentication**: this service only listens on
//! 127.0.0.1, for the length of one soak run. A real service must guard
//! such a route.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::Router;
use sessionkit::axum::SessionLayer;
use sessionkit::{Error, Session, SessionConfig, SessionManager};

/// `soak-serve <store> <port> <redis-url> <threads> <grace-ms> <rotation-ms>`:
/// serves until stdin closes (the soak driver holds the other end).
pub fn serve(args: &[String]) -> Result<(), String> {
    let [store, port, redis_url, threads, grace_ms, rotation_ms] = args else {
        return Err(
            "usage: soak-serve <redis|redis-cache> <port> <redis-url> <threads> <grace-ms> \
             <rotation-ms>"
                .into(),
        );
    };
    let cache = match store.as_str() {
        "redis" => false,
        "redis-cache" => true,
        other => return Err(format!("unknown store {other:?}")),
    };
    let num = |name: &str, raw: &str| {
        raw.parse::<u64>()
            .map_err(|_| format!("bad {name} {raw:?}"))
    };
    let port = u16::try_from(num("port", port)?).map_err(|_| format!("bad port {port:?}"))?;
    let threads = num("thread count", threads)?.max(1) as usize;
    let grace = Duration::from_millis(num("grace", grace_ms)?);
    let rotation = num("rotation interval", rotation_ms)?;
    crate::servers::exit_when_orphaned();
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let config = SessionConfig::default()
        .rotation_grace(grace)
        .rotation_interval((rotation > 0).then(|| Duration::from_millis(rotation)))
        // Touches (idle-deadline refreshes) happen within the run.
        .touch_interval(Duration::from_secs(5));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let store = if cache {
            crate::servers::cached_store(redis_url).await?
        } else {
            sessionkit::redis::RedisStore::connect(redis_url.as_str())
                .await
                .map_err(|e| format!("RedisStore::connect: {e}"))?
        };
        let manager = SessionManager::new(store, config);
        let app = Router::new()
            .route("/login/{user}", post(login))
            .route("/read", get(read))
            .route("/write", get(write))
            .route("/rotate", post(rotate))
            .route("/logout", post(logout))
            .route("/admin/revoke-all/{user}", post(revoke_all))
            .layer(SessionLayer::new(manager.clone()))
            .with_state(manager);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|e| format!("bind 127.0.0.1:{port}: {e}"))?;
        axum::serve(listener, app).await.map_err(|e| e.to_string())
    })
}

/// `ok <user> <n>` for a logged-in session, else `None`.
fn line(session: &Session) -> Result<Option<String>, Error> {
    let Some(user) = session.user_id() else {
        return Ok(None);
    };
    let n: u64 = session.get("n")?.unwrap_or(0);
    Ok(Some(format!("ok {user} {n}")))
}

fn anon(line: Option<String>) -> String {
    line.unwrap_or_else(|| "anon".to_owned())
}

async fn login(session: Session, Path(user): Path<String>) -> Result<String, Error> {
    session.login(user).await?;
    Ok(anon(line(&session)?))
}

async fn read(session: Session) -> Result<String, Error> {
    Ok(anon(line(&session)?))
}

async fn write(session: Session) -> Result<String, Error> {
    if session.user_id().is_none() {
        return Ok("anon".to_owned());
    }
    let n: u64 = session.get("n")?.unwrap_or(0) + 1;
    session.insert("n", n)?;
    Ok(anon(line(&session)?))
}

async fn rotate(session: Session) -> Result<String, Error> {
    if session.user_id().is_none() {
        return Ok("anon".to_owned());
    }
    session.rotate().await?;
    Ok(anon(line(&session)?))
}

async fn logout(session: Session) -> Result<String, Error> {
    if session.user_id().is_none() {
        return Ok("anon".to_owned());
    }
    session.logout().await?;
    Ok("bye".to_owned())
}

async fn revoke_all(
    State(manager): State<SessionManager>,
    Path(user): Path<String>,
) -> Result<String, Error> {
    Ok(manager.revoke_user(&user).await?.to_string())
}

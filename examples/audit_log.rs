//! An audit log of sign-ins, in two processes: an axum service where users
//! log in and out, and an auditor that serves nothing and prints every
//! login, logout, revocation, eviction and expiry, wherever it happened,
//! including sessions that expire while no request runs.
//!
//! ```text
//! # terminal 1: the service, on Redis at REDIS_URL (default 127.0.0.1:6379)
//! cargo run --example audit_log --features redis,axum -- serve
//! # terminal 2: the auditor
//! cargo run --example audit_log --features redis,axum -- watch
//! # terminal 3:
//! curl -c jar -b jar -X POST localhost:3000/login/alice
//! curl -c jar -b jar -X POST localhost:3000/note/hello
//! # ...wait IDLE_SECS (default 20): the auditor prints alice's expiry, with her note
//! ```
//!
//! Environment: `REDIS_URL`, or `REDIS_CLUSTER_NODES` / `REDIS_SENTINELS`
//! (as the other examples), or `DATABASE_URL` for PostgreSQL (feature
//! `postgres`; expiries then come with the store's purge, here every
//! second); `PORT` (default 3000); `IDLE_SECS`, the idle timeout (default
//! 20). The memory store cannot serve here: the two processes must share
//! a store. The routes and the auditor's lines are in `audit_log/app.rs`,
//! which `tests/audit_log.rs` tests.

#[path = "audit_log/app.rs"]
mod app;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use sessionkit::events::EventBus;
#[cfg(feature = "postgres")]
use sessionkit::postgres::PostgresStore;
use sessionkit::redis::RedisStore;
use sessionkit::{SessionManager, SessionStore};

type Failure = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<(), Failure> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let mode = std::env::args().nth(1).unwrap_or_default();
    let idle = match std::env::var("IDLE_SECS") {
        Ok(s) => Duration::from_secs(
            s.parse()
                .map_err(|_| format!("IDLE_SECS={s:?} is not a number"))?,
        ),
        Err(_) => Duration::from_secs(20),
    };
    let (store, bus, where_) = store().await?;
    let manager = SessionManager::from_arc(store, app::config(idle)).with_events(bus);
    match mode.as_str() {
        "serve" => {
            let port = match std::env::var("PORT") {
                Ok(p) => p.parse().map_err(|_| format!("PORT={p:?} is not a port"))?,
                Err(_) => 3000,
            };
            let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))
                .await
                .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
            println!(
                "audit_log service on http://localhost:{port}, sessions in {where_}, idle timeout {idle:?}.\n\
                 Start the auditor with `-- watch`, then:\n\
                 \x20 curl -c jar -b jar -X POST localhost:{port}/login/alice\n\
                 \x20 curl -c jar -b jar -X POST localhost:{port}/note/hello\n\
                 \x20 curl -c jar -b jar -X POST localhost:{port}/logout\n\
                 \x20 curl -X POST localhost:{port}/admin/revoke/alice"
            );
            axum::serve(listener, app::router(manager)).await?;
        }
        "watch" => {
            let feed = manager.events().await?;
            println!("auditing the sessions in {where_} (Ctrl-C to stop)");
            app::watch(feed, |line| println!("{line}")).await;
        }
        other => {
            return Err(format!(
                "usage: cargo run --example audit_log --features redis,axum -- serve|watch (got {other:?})"
            )
            .into())
        }
    }
    Ok(())
}

/// The shared store and its event bus: PostgreSQL with `DATABASE_URL`,
/// else Redis with expiry events on.
async fn store() -> Result<(Arc<dyn SessionStore>, Arc<dyn EventBus>, String), Failure> {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        #[cfg(feature = "postgres")]
        {
            let store = PostgresStore::builder()
                .url(url)
                .purge_interval(Some(Duration::from_secs(1)))
                .build()
                .await?;
            let bus = Arc::new(store.events());
            return Ok((
                Arc::new(store),
                bus,
                "the PostgreSQL of DATABASE_URL".into(),
            ));
        }
        #[cfg(not(feature = "postgres"))]
        {
            let _ = url;
            return Err("DATABASE_URL is set: add `--features postgres` to use PostgreSQL".into());
        }
    }
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let builder = RedisStore::builder()
        .from_env()
        .unwrap_or_else(|| RedisStore::builder().url(url.clone()));
    let store = builder
        .expiry_events(true)
        .build()
        .await
        .map_err(|e| format!("cannot use Redis (REDIS_URL={url}): {e}"))?;
    let bus = Arc::new(store.events());
    Ok((Arc::new(store), bus, "Redis".into()))
}

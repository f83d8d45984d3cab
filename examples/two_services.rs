//! One session, two services: an axum service and an actix-web service, both
//! on the same Redis (or the same PostgreSQL) with the same `SessionConfig`. Log in on one, and the
//! other sees it; log out on either, and it ends on both; "log out
//! everywhere" on one ends the user's sessions created through the other.
//!
//! ```text
//! cargo run --example two_services --features redis,actix
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!     cargo run --example two_services --features redis,actix,postgres
//! ```
//!
//! Environment: `DATABASE_URL` for PostgreSQL (feature `postgres`: both
//! services on one `PostgresStore` schema, `public` with the default table
//! prefix); otherwise `REDIS_URL` (default `redis://127.0.0.1:6379`), or
//! `REDIS_CLUSTER_NODES` (comma-separated node URLs) for a Redis Cluster, or
//! `REDIS_SENTINELS` (comma-separated sentinel URLs) with
//! `REDIS_SENTINEL_MASTER` (default `mymaster`) for Sentinel;
//! `REDIS_KEY_PREFIX` (default `sessionkit`), `AXUM_PORT` (default 3000),
//! `ACTIX_PORT` (default 3001). The routes and both apps are in
//! `two_services/apps.rs`, which `tests/two_services.rs` tests.
//!
//! Each service has its own store (its own connections), as two separate
//! processes would; what they share is the Redis and the key prefix (or the
//! database and schema), and the configuration.

#[path = "two_services/apps.rs"]
mod apps;

use std::net::Ipv4Addr;

use apps::{ActixServer, AxumServer};
#[cfg(feature = "postgres")]
use sessionkit::postgres::PostgresStore;
use sessionkit::redis::RedisStore;
use sessionkit::SessionManager;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            // actix-server's start-up lines would interleave with the banner.
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,actix_server=warn")),
        )
        .init();

    let axum_port = port("AXUM_PORT", 3000)?;
    let actix_port = port("ACTIX_PORT", 3001)?;
    let (axum_manager, actix_manager, where_) = managers().await?;

    let listen_error =
        |port: u16| move |e: std::io::Error| format!("cannot listen on 127.0.0.1:{port}: {e}");
    let axum_listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, axum_port))
        .await
        .map_err(listen_error(axum_port))?;
    let actix_listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, actix_port))
        .map_err(listen_error(actix_port))?;
    let axum = AxumServer::start(axum_listener, axum_manager)?;
    let actix = ActixServer::start(actix_listener, actix_manager).await?;

    let (a, b) = (
        format!("http://localhost:{}", axum.addr().port()),
        format!("http://localhost:{}", actix.addr().port()),
    );
    println!(
        r#"axum service:      {a}
actix-web service: {b}
Sessions in {where_}.

Cookies are scoped to the host, not the port, so one cookie jar serves both:

  curl -c jar -b jar -X POST {a}/login/alice   # log in on axum
  curl -c jar -b jar {b}/whoami                # actix: alice
  curl -c jar -b jar {a}/incr                  # axum: counter = 1
  curl -c jar -b jar {b}/incr                  # actix: counter = 2
  curl -c jar -b jar -X POST {b}/logout        # log out on actix
  curl -c jar -b jar {a}/whoami                # axum: anonymous

API clients send the token as a header instead: take it from the
x-session-token header of the login response, and send it to either service:

  curl -si -X POST {a}/login/bob | grep -i x-session-token
  curl -H "Authorization: Bearer <token>" {b}/whoami   # actix: bob

Also: POST /logout-everywhere ends every session of the user, on both.
Ctrl-C stops both services."#
    );

    tokio::signal::ctrl_c().await?;
    println!("stopping");
    axum.stop().await?;
    actix.stop(true).await?;
    Ok(())
}

type Managers = (SessionManager, SessionManager, String);

/// One manager per service, each with its own connections, on the store
/// the environment names; and where that store is, for the banner.
async fn managers() -> Result<Managers, String> {
    let cannot = |service: &str, where_: &str| {
        let (service, where_) = (service.to_owned(), where_.to_owned());
        move |e: sessionkit::Error| format!("{service}: cannot use {where_}: {e}")
    };
    if let Ok(url) = std::env::var("DATABASE_URL") {
        #[cfg(feature = "postgres")]
        {
            let where_ = "the PostgreSQL of DATABASE_URL".to_owned();
            let builder = || PostgresStore::builder().url(url.clone());
            let axum = apps::postgres_manager(builder())
                .await
                .map_err(cannot(apps::AXUM, &where_))?;
            let actix = apps::postgres_manager(builder())
                .await
                .map_err(cannot(apps::ACTIX, &where_))?;
            return Ok((axum, actix, where_));
        }
        #[cfg(not(feature = "postgres"))]
        {
            let _ = url;
            return Err("DATABASE_URL is set: add `--features postgres` to use PostgreSQL".into());
        }
    }
    let redis_url = env_or("REDIS_URL", "redis://127.0.0.1:6379");
    let topology = || {
        RedisStore::builder()
            .from_env()
            .unwrap_or_else(|| RedisStore::builder().url(redis_url.clone()))
    };
    let key_prefix = env_or("REDIS_KEY_PREFIX", "sessionkit");
    let where_ = if std::env::var("REDIS_CLUSTER_NODES").is_ok() {
        "the Redis Cluster of REDIS_CLUSTER_NODES".to_owned()
    } else if std::env::var("REDIS_SENTINELS").is_ok() {
        "the Sentinel master of REDIS_SENTINELS".to_owned()
    } else {
        format!("Redis at {redis_url}")
    };
    let axum = apps::redis_manager(topology(), &key_prefix)
        .await
        .map_err(cannot(apps::AXUM, &where_))?;
    let actix = apps::redis_manager(topology(), &key_prefix)
        .await
        .map_err(cannot(apps::ACTIX, &where_))?;
    Ok((
        axum,
        actix,
        format!("{where_}, key prefix \"{key_prefix}\""),
    ))
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn port(name: &str, default: u16) -> Result<u16, String> {
    match std::env::var(name) {
        Ok(p) => p.parse().map_err(|_| format!("{name}={p:?} is not a port")),
        Err(_) => Ok(default),
    }
}

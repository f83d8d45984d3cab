//! One session, two services: an axum service and an actix-web service, both
//! on the same Redis with the same `SessionConfig`. Log in on one, and the
//! other sees it; log out on either, and it ends on both; "log out
//! everywhere" on one ends the user's sessions created through the other.
//!
//! ```text
//! cargo run --example two_services --features redis,actix
//! ```
//!
//! Environment: `REDIS_URL` (default `redis://127.0.0.1:6379`), or
//! `REDIS_CLUSTER_NODES` (comma-separated node URLs) for a Redis Cluster, or
//! `REDIS_SENTINELS` (comma-separated sentinel URLs) with
//! `REDIS_SENTINEL_MASTER` (default `mymaster`) for Sentinel;
//! `REDIS_KEY_PREFIX` (default `sessionkit`), `AXUM_PORT` (default 3000),
//! `ACTIX_PORT` (default 3001). The routes and both apps are in
//! `two_services/apps.rs`, which `tests/two_services.rs` tests.
//!
//! Each service has its own `RedisStore` (its own connection), as two
//! separate processes would; what they share is the Redis, the key prefix
//! and the configuration.

#[path = "two_services/apps.rs"]
mod apps;

use std::net::Ipv4Addr;

use apps::{ActixServer, AxumServer};
use sessionkit::redis::RedisStore;
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

    let redis_url = env_or("REDIS_URL", "redis://127.0.0.1:6379");
    let topology = || {
        RedisStore::builder()
            .from_env()
            .unwrap_or_else(|| RedisStore::builder().url(redis_url.clone()))
    };
    let where_ = if std::env::var("REDIS_CLUSTER_NODES").is_ok() {
        "the Redis Cluster of REDIS_CLUSTER_NODES".to_owned()
    } else if std::env::var("REDIS_SENTINELS").is_ok() {
        "the Sentinel master of REDIS_SENTINELS".to_owned()
    } else {
        format!("Redis at {redis_url}")
    };
    let key_prefix = env_or("REDIS_KEY_PREFIX", "sessionkit");
    let axum_port = port("AXUM_PORT", 3000)?;
    let actix_port = port("ACTIX_PORT", 3001)?;

    let connect = |service: &str| {
        let (builder, prefix, service) = (topology(), key_prefix.clone(), service.to_owned());
        let where_ = where_.clone();
        async move {
            apps::manager_with(builder, &prefix)
                .await
                .map_err(|e| format!("{service}: cannot use {where_}: {e}"))
        }
    };
    let axum_manager = connect(apps::AXUM).await?;
    let actix_manager = connect(apps::ACTIX).await?;

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
Sessions in {where_}, key prefix "{key_prefix}".

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

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn port(name: &str, default: u16) -> Result<u16, String> {
    match std::env::var(name) {
        Ok(p) => p.parse().map_err(|_| format!("{name}={p:?} is not a port")),
        Err(_) => Ok(default),
    }
}

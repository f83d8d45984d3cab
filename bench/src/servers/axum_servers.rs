//! The axum variants: bare, sessionkit, tower-sessions.

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use sessionkit::axum::SessionLayer;
use tower_sessions::{Session as TsSession, SessionManagerLayer};
use tower_sessions_redis_store::fred::prelude::{ClientLike, Config, Pool};
use tower_sessions_redis_store::RedisStore as TsRedisStore;

use super::{handlers::*, next_user, sk_manager, Variant};

/// fred connections in tower-sessions-redis-store's pool (its example's).
const FRED_POOL: usize = 6;

/// `store_url`: Redis's, or PostgreSQL's for the PostgreSQL stores.
pub fn serve(variant: Variant, port: u16, store_url: &str, threads: usize) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let app = match variant {
            Variant::AxumBare => Router::new()
                .route("/login", post(bare_login))
                .route("/read", get(bare_read))
                .route("/write", get(bare_write))
                .route("/logout", post(bare_logout)),
            Variant::SkAxum(store) => Router::new()
                .route("/login", post(sk_login))
                .route("/read", get(sk_read))
                .route("/write", get(sk_write))
                .route("/locked-write", get(sk_locked_write))
                .route("/logout", post(sk_logout))
                .layer(SessionLayer::new(sk_manager(store, store_url).await?)),
            Variant::TowerSessionsRedis => {
                let config = Config::from_url(store_url).map_err(|e| e.to_string())?;
                let pool =
                    Pool::new(config, None, None, None, FRED_POOL).map_err(|e| e.to_string())?;
                let _task = pool.connect();
                pool.wait_for_connect().await.map_err(|e| e.to_string())?;
                let layer = SessionManagerLayer::new(TsRedisStore::new(pool)).with_secure(false);
                Router::new()
                    .route("/login", post(ts_login))
                    .route("/read", get(ts_read))
                    .route("/write", get(ts_write))
                    .route("/logout", post(ts_logout))
                    .layer(layer)
            }
            other => return Err(format!("{} is not an axum variant", other.name())),
        };
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|e| format!("bind 127.0.0.1:{port}: {e}"))?;
        axum::serve(listener, app).await.map_err(|e| e.to_string())
    })
}

fn internal(e: impl std::fmt::Display) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

async fn ts_login(session: TsSession) -> Result<String, (StatusCode, String)> {
    let user = next_user();
    session.insert("user", &user).await.map_err(internal)?;
    session.cycle_id().await.map_err(internal)?;
    Ok(user)
}

async fn ts_read(session: TsSession) -> Result<String, (StatusCode, String)> {
    let user: Option<String> = session.get("user").await.map_err(internal)?;
    Ok(user.unwrap_or_default())
}

async fn ts_write(session: TsSession) -> Result<String, (StatusCode, String)> {
    let n: u64 = session.get("n").await.map_err(internal)?.unwrap_or(0) + 1;
    session.insert("n", n).await.map_err(internal)?;
    Ok(n.to_string())
}

async fn ts_logout(session: TsSession) -> Result<&'static str, (StatusCode, String)> {
    session.flush().await.map_err(internal)?;
    Ok("bye")
}

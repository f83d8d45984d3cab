//! The actix-web variants: bare, sessionkit, actix-session.

use actix_session::storage::RedisSessionStore;
use actix_session::{Session as AsSession, SessionMiddleware as AsMiddleware};
use actix_web::cookie::Key;
use actix_web::{web, App, HttpServer};
use sessionkit::actix::SessionMiddleware;

use super::{handlers::*, next_user, sk_manager, Variant};

/// `store_url`: Redis's, or PostgreSQL's for the PostgreSQL stores.
pub fn serve(variant: Variant, port: u16, store_url: &str, threads: usize) -> Result<(), String> {
    let store_url = store_url.to_owned();
    actix_web::rt::System::new().block_on(async move {
        let addr = ("127.0.0.1", port);
        let bound = |e: std::io::Error| format!("bind 127.0.0.1:{port}: {e}");
        let server = match variant {
            Variant::ActixBare => HttpServer::new(|| {
                App::new()
                    .route("/login", web::post().to(bare_login))
                    .route("/read", web::get().to(bare_read))
                    .route("/write", web::get().to(bare_write))
                    .route("/logout", web::post().to(bare_logout))
            })
            .workers(threads)
            .disable_signals()
            .bind(addr)
            .map_err(bound)?
            .run(),
            Variant::SkActix(store) => {
                let manager = sk_manager(store, &store_url).await?;
                HttpServer::new(move || {
                    App::new()
                        .wrap(SessionMiddleware::new(manager.clone()))
                        .route("/login", web::post().to(sk_login))
                        .route("/read", web::get().to(sk_read))
                        .route("/write", web::get().to(sk_write))
                        .route("/locked-write", web::get().to(sk_locked_write))
                        .route("/logout", web::post().to(sk_logout))
                })
                .workers(threads)
                .disable_signals()
                .bind(addr)
                .map_err(bound)?
                .run()
            }
            Variant::ActixSessionRedis => {
                let store = RedisSessionStore::new(store_url.as_str())
                    .await
                    .map_err(|e| format!("RedisSessionStore: {e}"))?;
                let key = Key::generate();
                HttpServer::new(move || {
                    App::new()
                        .wrap(
                            AsMiddleware::builder(store.clone(), key.clone())
                                .cookie_secure(false)
                                .build(),
                        )
                        .route("/login", web::post().to(as_login))
                        .route("/read", web::get().to(as_read))
                        .route("/write", web::get().to(as_write))
                        .route("/logout", web::post().to(as_logout))
                })
                .workers(threads)
                .disable_signals()
                .bind(addr)
                .map_err(bound)?
                .run()
            }
            other => return Err(format!("{} is not an actix-web variant", other.name())),
        };
        server.await.map_err(|e| e.to_string())
    })
}

async fn as_login(session: AsSession) -> actix_web::Result<String> {
    let user = next_user();
    session.insert("user", &user)?;
    session.renew();
    Ok(user)
}

async fn as_read(session: AsSession) -> actix_web::Result<String> {
    Ok(session.get::<String>("user")?.unwrap_or_default())
}

async fn as_write(session: AsSession) -> actix_web::Result<String> {
    let n: u64 = session.get("n")?.unwrap_or(0) + 1;
    session.insert("n", n)?;
    Ok(n.to_string())
}

async fn as_logout(session: AsSession) -> &'static str {
    session.purge();
    "bye"
}

//! The `axum_demo` site on actix-web: log in with a name, count clicks in
//! the session, list the devices you are logged in on and revoke them. The
//! pages and the session logic live in `common/mod.rs`, this file is the
//! actix-web glue.
//!
//! ```text
//! cargo run --example actix_demo --features actix
//! # then open http://localhost:3001 (PORT=8080 to change the port)
//! ```
//!
//! Stores (chosen by `common::store_from_env`): memory by default;
//! PostgreSQL with `DATABASE_URL` (the `postgres` feature; the store's
//! tables are created in the `public` schema if missing); Redis with
//! `REDIS_URL`, `REDIS_CLUSTER_NODES` or `REDIS_SENTINELS` (the `redis`
//! feature). Set one store's variables, not both.
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo run --example actix_demo --features actix,postgres
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example actix_demo --features actix,redis
//! ```
//!
//! The cookie keeps its `Secure` default: browsers (and curl) treat
//! `http://localhost` as a secure origin, so secure cookies work there over
//! plain HTTP.

#[path = "common/mod.rs"]
mod common;

use std::net::Ipv4Addr;

use actix_web::http::header::{self, ContentType};
use actix_web::{web, App, HttpResponse, HttpServer};
use common::{LoginForm, Reply, RevokeForm};
use sessionkit::actix::SessionMiddleware;
use sessionkit::{LazySession, Session, SessionConfig, SessionManager};

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    common::init_tracing();
    // One manager (and store) for every worker: build it here, inside the
    // runtime, and clone it into each worker's app.
    let store = common::store_from_env(
        "cargo run --example actix_demo --features actix,redis",
        "cargo run --example actix_demo --features actix,postgres",
    )
    .await?;
    let manager = SessionManager::from_arc(store, SessionConfig::default());

    let port = common::port_from_env(3001)?;
    let server = HttpServer::new(move || {
        App::new()
            // The middleware records each session's client IP (the peer address).
            .wrap(SessionMiddleware::new(manager.clone()))
            .route("/", web::get().to(home))
            .route("/login", web::post().to(login))
            .route("/count", web::post().to(count))
            .route("/logout", web::post().to(logout))
            .route("/sessions", web::get().to(sessions))
            .route("/sessions/revoke", web::post().to(revoke))
            .route("/sessions/revoke-others", web::post().to(revoke_others))
    })
    .bind((Ipv4Addr::LOCALHOST, port))?;
    println!("Open http://localhost:{port}");
    server.run().await?;
    Ok(())
}

type HandlerResult = Result<HttpResponse, sessionkit::Error>;

async fn home(session: Session) -> HandlerResult {
    common::home(&session).map(respond)
}

async fn login(session: LazySession, form: web::Form<LoginForm>) -> HandlerResult {
    common::login(&session, &form).await.map(respond)
}

async fn count(session: Session) -> HandlerResult {
    common::count(&session).map(respond)
}

async fn logout(session: LazySession) -> HandlerResult {
    common::logout(&session).await.map(respond)
}

async fn sessions(session: Session) -> HandlerResult {
    common::sessions(&session).await.map(respond)
}

async fn revoke(session: Session, form: web::Form<RevokeForm>) -> HandlerResult {
    common::revoke(&session, &form).await.map(respond)
}

async fn revoke_others(session: Session) -> HandlerResult {
    common::revoke_others(&session).await.map(respond)
}

/// A [`Reply`] as an actix-web response.
fn respond(reply: Reply) -> HttpResponse {
    match reply {
        Reply::Page { bad_request, html } => {
            let mut res = if bad_request {
                HttpResponse::BadRequest()
            } else {
                HttpResponse::Ok()
            };
            res.content_type(ContentType::html())
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .body(html)
        }
        Reply::Redirect(to) => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, to))
            .finish(),
    }
}

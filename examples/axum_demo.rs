//! A small server-rendered site on sessionkit and axum: log in with a name,
//! count clicks in the session, list the devices you are logged in on and
//! revoke them. `actix_demo` is the same site on actix-web; the pages and
//! the session logic live in `common/mod.rs`, this file is the axum glue.
//!
//! ```text
//! cargo run --example axum_demo
//! # then open http://localhost:3000 (PORT=8080 to change the port)
//! ```
//!
//! Stores (chosen by `common::store_from_env`): memory by default;
//! PostgreSQL with `DATABASE_URL` (the `postgres` feature; the store's
//! tables are created in the `public` schema if missing); Redis with
//! `REDIS_URL`, `REDIS_CLUSTER_NODES` or `REDIS_SENTINELS` (the `redis`
//! feature). Set one store's variables, not both.
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo run --example axum_demo --features postgres
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example axum_demo --features redis
//! ```
//!
//! The cookie keeps its `Secure` default: browsers (and curl) treat
//! `http://localhost` as a secure origin, so secure cookies work there over
//! plain HTTP.

#[path = "common/mod.rs"]
mod common;

use std::net::{Ipv4Addr, SocketAddr};

use axum::extract::Form;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use common::{LoginForm, Reply, RevokeForm};
use sessionkit::axum::SessionLayer;
use sessionkit::{LazySession, Session, SessionConfig, SessionManager};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    common::init_tracing();
    let store = common::store_from_env(
        "cargo run --example axum_demo --features redis",
        "cargo run --example axum_demo --features postgres",
    )
    .await?;
    let manager = SessionManager::from_arc(store, SessionConfig::default());

    let app = Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/count", post(count))
        .route("/logout", post(logout))
        .route("/sessions", get(sessions))
        .route("/sessions/revoke", post(revoke))
        .route("/sessions/revoke-others", post(revoke_others))
        .layer(SessionLayer::new(manager));

    let port = common::port_from_env(3000)?;
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

type HandlerResult = Result<Response, sessionkit::Error>;

async fn home(session: Session) -> HandlerResult {
    common::home(&session).map(respond)
}

async fn login(session: LazySession, Form(form): Form<LoginForm>) -> HandlerResult {
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

async fn revoke(session: Session, Form(form): Form<RevokeForm>) -> HandlerResult {
    common::revoke(&session, &form).await.map(respond)
}

async fn revoke_others(session: Session) -> HandlerResult {
    common::revoke_others(&session).await.map(respond)
}

/// A [`Reply`] as an axum response.
fn respond(reply: Reply) -> Response {
    match reply {
        Reply::Page { bad_request, html } => {
            let status = if bad_request {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::OK
            };
            (status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
        }
        // 303 See Other.
        Reply::Redirect(to) => Redirect::to(to).into_response(),
    }
}

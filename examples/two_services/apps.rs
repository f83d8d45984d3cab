//! The two services of `examples/two_services.rs`, written once: the example
//! runs them, and `tests/two_services.rs` includes this file and tests the
//! very same apps, on Redis ([`redis_manager`], feature `redis`) and on
//! PostgreSQL ([`postgres_manager`], feature `postgres`).
//!
//! Both services serve the same routes, with the same session logic (the
//! framework-neutral functions in [`routes`]); each answers one line of text
//! that starts with its name (`axum: alice`, `actix: counter = 2`):
//!
//! | route | does |
//! | --- | --- |
//! | `POST`/`GET /login/{user}` | logs the session in as `user` |
//! | `GET /whoami` | the session's user, or `anonymous` |
//! | `GET /incr` | adds one to the session's counter and shows it |
//! | `POST`/`GET /logout` | ends this session |
//! | `POST`/`GET /logout-everywhere` | ends every session of the user, on both services |
//!
//! (`GET` on the state-changing routes is there for trying them from a
//! browser's address bar; a real app keeps them `POST`-only.)

use std::net::SocketAddr;

#[cfg(feature = "postgres")]
use sessionkit::postgres::PostgresStoreBuilder;
#[cfg(feature = "redis")]
use sessionkit::redis::RedisStoreBuilder;
use sessionkit::{HeaderTransport, Session, SessionConfig, SessionManager, TokenTransport};

/// The name the axum service answers with.
pub const AXUM: &str = "axum";
/// The name the actix-web service answers with.
pub const ACTIX: &str = "actix";

/// The longest user name accepted, in characters.
const MAX_USER_LEN: usize = 64;

/// The one configuration of both services. What must match between
/// services sharing sessions: the cookie (name, domain, path), the timeouts
/// and the token transport. Here: the cookie for browsers, then
/// `Authorization: Bearer` for API clients, which read a new token from the
/// `x-session-token` response header.
pub fn config() -> SessionConfig {
    SessionConfig::default()
        .token_transport(TokenTransport::CookieThenHeader(HeaderTransport::bearer()))
}

/// A manager for one service on Redis: its own connection (as a separate
/// process would have), on the Redis and key prefix every service shares,
/// with [`config`]. `builder` names the Redis: a URL, a Cluster or a
/// Sentinel master (see `RedisStoreBuilder::from_env`).
#[cfg(feature = "redis")]
pub async fn redis_manager(
    builder: RedisStoreBuilder,
    key_prefix: &str,
) -> sessionkit::Result<SessionManager> {
    let store = builder.key_prefix(key_prefix).build().await?;
    Ok(SessionManager::new(store, config()))
}

/// A manager for one service on PostgreSQL: its own connection pool (as a
/// separate process would have), on the database, schema and table prefix
/// every service shares (set on `builder`), with [`config`]. The first
/// service to start creates the store's tables; the others find them.
#[cfg(feature = "postgres")]
pub async fn postgres_manager(builder: PostgresStoreBuilder) -> sessionkit::Result<SessionManager> {
    let store = builder.build().await?;
    Ok(SessionManager::new(store, config()))
}

/// The session logic of every route, free of any web framework.
pub mod routes {
    use super::{Session, MAX_USER_LEN};

    /// A route's answer: a status and one line of text, `<service>: <message>`.
    pub struct Reply {
        /// The HTTP status code.
        pub status: u16,
        /// The body.
        pub body: String,
    }

    impl Reply {
        fn new(status: u16, service: &str, message: &str) -> Self {
            Reply {
                status,
                body: format!("{service}: {message}\n"),
            }
        }
    }

    type Result = sessionkit::Result<Reply>;

    /// `/login/{user}`: a new token, the data kept, the user bound.
    pub async fn login(service: &str, session: &Session, user: &str) -> Result {
        if user.chars().count() > MAX_USER_LEN {
            let message = format!("a user name has at most {MAX_USER_LEN} characters");
            return Ok(Reply::new(400, service, &message));
        }
        session.login(user).await?;
        Ok(Reply::new(200, service, &format!("logged in as {user}")))
    }

    /// `/whoami`.
    pub fn whoami(service: &str, session: &Session) -> Reply {
        let user = session.user_id();
        Reply::new(200, service, user.as_deref().unwrap_or("anonymous"))
    }

    /// `/incr`: the counter lives in the session, so both services count on.
    pub fn incr(service: &str, session: &Session) -> Result {
        let n: u64 = session.get("counter")?.unwrap_or(0) + 1;
        session.insert("counter", n)?;
        Ok(Reply::new(200, service, &format!("counter = {n}")))
    }

    /// `/logout`: ends this session, whichever service created it.
    pub async fn logout(service: &str, session: &Session) -> Result {
        session.logout().await?;
        Ok(Reply::new(200, service, "logged out"))
    }

    /// `/logout-everywhere`: ends every session of the user, whichever
    /// service created them.
    pub async fn logout_everywhere(service: &str, session: &Session) -> Result {
        let Some(user) = session.user_id() else {
            return Ok(Reply::new(401, service, "not logged in"));
        };
        // One store call; this request's cookie is cleared too.
        let ended = session.logout_everywhere().await?;
        let message = format!("ended {ended} sessions of {user}");
        Ok(Reply::new(200, service, &message))
    }
}

// ---- axum ------------------------------------------------------------------

/// The axum app.
pub fn axum_router(manager: SessionManager) -> axum::Router {
    use axum::extract::Path;
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use sessionkit::axum::SessionLayer;

    fn respond(reply: routes::Reply) -> Response {
        let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
        (status, reply.body).into_response()
    }
    type Answer = sessionkit::Result<Response>;

    async fn login(session: Session, Path(user): Path<String>) -> Answer {
        routes::login(AXUM, &session, &user).await.map(respond)
    }
    async fn whoami(session: Session) -> Response {
        respond(routes::whoami(AXUM, &session))
    }
    async fn incr(session: Session) -> Answer {
        routes::incr(AXUM, &session).map(respond)
    }
    async fn logout(session: Session) -> Answer {
        routes::logout(AXUM, &session).await.map(respond)
    }
    async fn logout_everywhere(session: Session) -> Answer {
        routes::logout_everywhere(AXUM, &session).await.map(respond)
    }

    axum::Router::new()
        .route("/login/{user}", get(login).post(login))
        .route("/whoami", get(whoami))
        .route("/incr", get(incr))
        .route("/logout", get(logout).post(logout))
        .route(
            "/logout-everywhere",
            get(logout_everywhere).post(logout_everywhere),
        )
        .layer(SessionLayer::new(manager))
}

/// The axum service, served by a task on the current tokio runtime.
pub struct AxumServer {
    addr: SocketAddr,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl AxumServer {
    /// Serves [`axum_router`] on `listener`, with `ConnectInfo` so that
    /// sessions record the client IP.
    pub fn start(
        listener: tokio::net::TcpListener,
        manager: SessionManager,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let app = axum_router(manager).into_make_service_with_connect_info::<SocketAddr>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.await;
                })
                .await
        });
        Ok(AxumServer {
            addr,
            shutdown,
            task,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets open requests finish, and waits for the task.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.shutdown.send(());
        self.task.await.map_err(std::io::Error::other)?
    }
}

// ---- actix-web -------------------------------------------------------------

/// The actix-web routes; wrap the app in `SessionMiddleware`.
pub fn actix_routes(cfg: &mut actix_web::web::ServiceConfig) {
    use actix_web::http::StatusCode;
    use actix_web::{web, HttpResponse};

    fn respond(reply: routes::Reply) -> HttpResponse {
        let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
        HttpResponse::build(status)
            .content_type("text/plain; charset=utf-8")
            .body(reply.body)
    }
    type Answer = sessionkit::Result<HttpResponse>;

    async fn login(session: Session, user: web::Path<String>) -> Answer {
        routes::login(ACTIX, &session, &user).await.map(respond)
    }
    async fn whoami(session: Session) -> HttpResponse {
        respond(routes::whoami(ACTIX, &session))
    }
    async fn incr(session: Session) -> Answer {
        routes::incr(ACTIX, &session).map(respond)
    }
    async fn logout(session: Session) -> Answer {
        routes::logout(ACTIX, &session).await.map(respond)
    }
    async fn logout_everywhere(session: Session) -> Answer {
        routes::logout_everywhere(ACTIX, &session)
            .await
            .map(respond)
    }

    cfg.route("/login/{user}", web::get().to(login))
        .route("/login/{user}", web::post().to(login))
        .route("/whoami", web::get().to(whoami))
        .route("/incr", web::get().to(incr))
        .route("/logout", web::get().to(logout))
        .route("/logout", web::post().to(logout))
        .route("/logout-everywhere", web::get().to(logout_everywhere))
        .route("/logout-everywhere", web::post().to(logout_everywhere));
}

/// The actix-web service, on a thread of its own with its own actix
/// `System` (as actix-web wants), beside whatever runtime started it.
pub struct ActixServer {
    addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
    thread: std::thread::JoinHandle<std::io::Result<()>>,
}

impl ActixServer {
    /// Serves [`actix_routes`] behind `SessionMiddleware` on `listener`.
    pub async fn start(
        listener: std::net::TcpListener,
        manager: SessionManager,
    ) -> std::io::Result<Self> {
        use actix_web::{App, HttpServer};
        use sessionkit::actix::SessionMiddleware;

        let addr = listener.local_addr()?;
        let (ready, handle) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("actix-service".to_owned())
            .spawn(move || {
                actix_web::rt::System::new().block_on(async move {
                    let server = HttpServer::new(move || {
                        App::new()
                            .wrap(SessionMiddleware::new(manager.clone()))
                            .configure(actix_routes)
                    })
                    .workers(2)
                    // The process's owner stops it (`stop`), not Ctrl-C.
                    .disable_signals()
                    .shutdown_timeout(5)
                    .listen(listener)?
                    .run();
                    let _ = ready.send(server.handle());
                    server.await
                })
            })?;
        match handle.await {
            Ok(handle) => Ok(ActixServer {
                addr,
                handle,
                thread,
            }),
            // The thread ended before the server ran: return its error.
            Err(_) => Err(join(thread)
                .await
                .err()
                .unwrap_or_else(|| std::io::Error::other("the actix-web server ended at once"))),
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the server and waits for its thread. `graceful`: let open
    /// requests finish (up to 5 s); otherwise drop them at once.
    pub async fn stop(self, graceful: bool) -> std::io::Result<()> {
        self.handle.stop(graceful).await;
        join(self.thread).await
    }
}

/// Waits for a server thread without blocking the runtime.
async fn join(thread: std::thread::JoinHandle<std::io::Result<()>>) -> std::io::Result<()> {
    match tokio::task::spawn_blocking(move || thread.join()).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(std::io::Error::other("the actix-web thread panicked")),
        Err(e) => Err(std::io::Error::other(e)),
    }
}

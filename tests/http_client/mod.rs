//! A framework-agnostic HTTP driver for the scenario suites
//! (`http_scenarios.rs`, `policy_scenarios.rs`, `header_scenarios.rs`).
//!
//! Routes are written once, as [`Handler`]s in a [`Routes`] table, and mounted
//! into an axum `Router` or an actix-web `App` ([`Framework`]). Each test
//! serves the app on a real HTTP server on `127.0.0.1:0` ([`TestServer`]) and
//! talks to it with one real HTTP client (`reqwest`, without redirects or a
//! cookie store: the tests keep cookies themselves, from `Set-Cookie`).
//! [`scenario_tests!`](crate::scenario_tests) runs each scenario on every
//! backend × framework.
#![allow(dead_code)]

#[cfg(feature = "redis")]
pub mod cost;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use http::header::{CACHE_CONTROL, COOKIE, SET_COOKIE, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use sessionkit::{Error, LazySession, LockedSession, Session, SessionManager};

/// The session cookie name (the default).
pub const COOKIE_NAME: &str = "id";

/// The body `/whoami` answers for an anonymous session.
pub const ANONYMOUS: &str = "anonymous";

/// The body `/get/{key}` answers for a missing key.
pub const NONE: &str = "none";

/// A route every test server has whose handler never touches the session.
pub const PLAIN: &str = "/plain";

/// What [`PLAIN`] answers.
pub const PLAIN_BODY: &str = "no session needed";

/// A few milliseconds of clock movement, so "least recently used" is defined.
pub const TICK: Duration = Duration::from_millis(100);

/// The longest any one request may take before the test fails (instead of
/// hanging).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- scenario macro

/// Generates, for each scenario `async fn name(backend: Backend, fw: Framework)`
/// of the calling file, one test per backend × framework: `memory_axum::name`,
/// `memory_actix::name` and, with the `redis` feature, `redis_axum::name` and
/// `redis_actix::name` (and `redis_cached_axum::name`,
/// `redis_cached_actix::name`) and, with the `postgres` feature,
/// `postgres_axum`, `postgres_actix`, `postgres_cached_axum` and
/// `postgres_cached_actix`. The calling file declares `mod support;` and
/// `mod http_client;`.
///
/// `scenario_tests!(@topologies a, b)` adds the Redis Cluster and Sentinel
/// backends, with and without the client cache, on both frameworks
/// (`redis_cluster_axum`, `redis_cluster_actix`, `redis_cluster_cached_axum`,
/// `redis_cluster_cached_actix`, `redis_sentinel_axum`, ...; on the binary's
/// shared topologies: see `support::shared`). Only `http_scenarios.rs` uses
/// it, so that the other suites do not grow.
#[macro_export]
macro_rules! scenario_tests {
    (@topologies $($name:ident),* $(,)?) => {
        $crate::scenario_tests!($($name),*);
        $crate::scenario_tests!(@mod redis_cluster_axum, redis_cluster, Axum, [feature = "redis"]; $($name),*);
        $crate::scenario_tests!(@mod redis_cluster_actix, redis_cluster, Actix, [all(feature = "redis", feature = "actix")]; $($name),*);
        $crate::scenario_tests!(@mod redis_cluster_cached_axum, redis_cluster_cached, Axum, [feature = "redis"]; $($name),*);
        $crate::scenario_tests!(@mod redis_cluster_cached_actix, redis_cluster_cached, Actix, [all(feature = "redis", feature = "actix")]; $($name),*);
        $crate::scenario_tests!(@mod redis_sentinel_axum, redis_sentinel, Axum, [feature = "redis"]; $($name),*);
        $crate::scenario_tests!(@mod redis_sentinel_actix, redis_sentinel, Actix, [all(feature = "redis", feature = "actix")]; $($name),*);
        $crate::scenario_tests!(@mod redis_sentinel_cached_axum, redis_sentinel_cached, Axum, [feature = "redis"]; $($name),*);
        $crate::scenario_tests!(@mod redis_sentinel_cached_actix, redis_sentinel_cached, Actix, [all(feature = "redis", feature = "actix")]; $($name),*);
    };
    ($($name:ident),* $(,)?) => {
        $crate::scenario_tests!(@mod memory_axum, memory, Axum, []; $($name),*);
        $crate::scenario_tests!(@mod memory_actix, memory, Actix, [feature = "actix"]; $($name),*);
        $crate::scenario_tests!(@mod redis_axum, redis, Axum, [feature = "redis"]; $($name),*);
        $crate::scenario_tests!(@mod redis_actix, redis, Actix, [all(feature = "redis", feature = "actix")]; $($name),*);
        $crate::scenario_tests!(@mod redis_cached_axum, redis_cached, Axum, [feature = "redis"]; $($name),*);
        $crate::scenario_tests!(@mod redis_cached_actix, redis_cached, Actix, [all(feature = "redis", feature = "actix")]; $($name),*);
        $crate::scenario_tests!(@mod postgres_axum, postgres, Axum, [feature = "postgres"]; $($name),*);
        $crate::scenario_tests!(@mod postgres_actix, postgres, Actix, [all(feature = "postgres", feature = "actix")]; $($name),*);
        $crate::scenario_tests!(@mod postgres_cached_axum, postgres_cached, Axum, [feature = "postgres"]; $($name),*);
        $crate::scenario_tests!(@mod postgres_cached_actix, postgres_cached, Actix, [all(feature = "postgres", feature = "actix")]; $($name),*);
    };
    (@mod $module:ident, $backend:ident, $fw:ident, [$($cfg:meta)?]; $($name:ident),*) => {
        $(#[cfg($cfg)])?
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(
                        super::support::Backend::$backend().await,
                        super::http_client::Framework::$fw,
                    )
                    .await
                }
            )*
        }
    };
}

// ---------------------------------------------------------------- routes

/// A route handler, free of any web framework: the session and the path
/// parameters in order; the `Ok` string is the 200 body, an `Err` becomes
/// the error's response (the adapter's `IntoResponse` / `ResponseError`).
pub type Handler =
    Arc<dyn Fn(Session, Vec<String>) -> BoxFuture<'static, Result<String, Error>> + Send + Sync>;

/// A handler of a route whose session comes from `LazySession` (nothing
/// is read before it runs).
pub type LazyHandler = Arc<
    dyn Fn(LazySession, Vec<String>) -> BoxFuture<'static, Result<String, Error>> + Send + Sync,
>;

/// A table of `(path pattern, handler)`; patterns use `{name}` for a
/// parameter, which axum and actix-web both understand. Every route is `GET`.
/// A route added with [`Routes::route_locked`] extracts `LockedSession`
/// instead of `Session`: the lock is taken before the handler runs, and its
/// guard is held until the handler's future completes.
#[derive(Clone, Default)]
pub struct Routes {
    entries: Vec<(String, Handler, Extract)>,
    lazy: Vec<(String, LazyHandler)>,
}

/// Which extractor a route's handler gets its session from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extract {
    /// `sessionkit::Session`.
    Session,
    /// `sessionkit::LockedSession`.
    Locked,
}

impl Routes {
    /// No routes.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Adds a route.
    pub fn route<F, Fut, R>(self, path: &str, handler: F) -> Self
    where
        F: Fn(Session, Vec<String>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, Error>> + Send + 'static,
        R: Into<String>,
    {
        self.add(path, Extract::Session, handler)
    }

    /// Adds a route whose session is locked before the handler runs (the
    /// `LockedSession` extractor).
    pub fn route_locked<F, Fut, R>(self, path: &str, handler: F) -> Self
    where
        F: Fn(Session, Vec<String>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, Error>> + Send + 'static,
        R: Into<String>,
    {
        self.add(path, Extract::Locked, handler)
    }

    /// Adds a route whose handler takes `LazySession`.
    pub fn route_lazy<F, Fut, R>(mut self, path: &str, handler: F) -> Self
    where
        F: Fn(LazySession, Vec<String>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, Error>> + Send + 'static,
        R: Into<String>,
    {
        let handler: LazyHandler = Arc::new(move |session, params| {
            let fut = handler(session, params);
            Box::pin(async move { fut.await.map(Into::into) })
        });
        self.lazy.push((path.to_owned(), handler));
        self
    }

    /// The `LazySession` routes, in the order added.
    pub fn iter_lazy(&self) -> impl Iterator<Item = (&str, &LazyHandler)> {
        self.lazy.iter().map(|(p, h)| (p.as_str(), h))
    }

    fn add<F, Fut, R>(mut self, path: &str, extract: Extract, handler: F) -> Self
    where
        F: Fn(Session, Vec<String>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, Error>> + Send + 'static,
        R: Into<String>,
    {
        let handler: Handler = Arc::new(move |session, params| {
            let fut = handler(session, params);
            Box::pin(async move { fut.await.map(Into::into) })
        });
        self.entries.push((path.to_owned(), handler, extract));
        self
    }

    /// The routes, in the order added.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Handler, Extract)> {
        self.entries.iter().map(|(p, h, e)| (p.as_str(), h, *e))
    }
}

/// Runs `handler` on the locked session, holding the lock's guard until the
/// handler's future completes (as a handler taking `LockedSession` does).
fn run_locked(
    handler: &Handler,
    locked: LockedSession,
    params: Vec<String>,
) -> BoxFuture<'static, Result<String, Error>> {
    let fut = handler((*locked).clone(), params);
    Box::pin(async move {
        let out = fut.await;
        drop(locked);
        out
    })
}

/// The path parameter `i`.
fn param(params: &[String], i: usize) -> String {
    params
        .get(i)
        .cloned()
        .unwrap_or_else(|| panic!("route has no path parameter {i}: {params:?}"))
}

fn id_or_none(session: &Session) -> String {
    session
        .id()
        .map_or_else(|| NONE.to_owned(), |id| id.to_string())
}

/// The routes every scenario uses (tests add their own with
/// [`Routes::route`], then serve them with [`with_layer`]).
///
/// - `/get/{key}`: the value (strings bare, other JSON as text) or `none`
/// - `/set/{key}/{value}`: stores the string; answers `ok`
/// - `/incr`: increments the number at `n`; answers the new value
/// - `/remove/{key}`: answers whether it was there
/// - `/clear`: removes every key
/// - `/keys`: the keys, sorted, joined by `,`
/// - `/whoami`: the user id or `anonymous`
/// - `/id`: the public session id or `none`
/// - `/login/{user}`: logs in, answers the new session id
/// - `/logout`: logs out
/// - `/lazy/login/{user}`, `/lazy/logout`: the same through `LazySession`
///   (no load first); answer `ok` and `bye`
pub fn routes() -> Routes {
    Routes::empty()
        .route("/get/{key}", |session, p| async move {
            Ok(match session.get::<serde_json::Value>(&param(&p, 0))? {
                None => NONE.to_owned(),
                Some(serde_json::Value::String(s)) => s,
                Some(other) => other.to_string(),
            })
        })
        .route("/set/{key}/{value}", |session, p| async move {
            session.insert(param(&p, 0), param(&p, 1))?;
            Ok("ok")
        })
        .route("/incr", |session, _| async move {
            let n: u64 = session.get("n")?.unwrap_or(0) + 1;
            session.insert("n", n)?;
            Ok(n.to_string())
        })
        .route("/remove/{key}", |session, p| async move {
            Ok(session.remove(&param(&p, 0)).to_string())
        })
        .route("/clear", |session, _| async move {
            session.clear();
            Ok("ok")
        })
        .route("/keys", |session, _| async move {
            let mut keys = session.keys();
            keys.sort();
            Ok(keys.join(","))
        })
        .route("/whoami", |session, _| async move {
            Ok(session.user_id().unwrap_or_else(|| ANONYMOUS.to_owned()))
        })
        .route("/id", |session, _| async move { Ok(id_or_none(&session)) })
        .route("/login/{user}", |session, p| async move {
            session.login(param(&p, 0)).await?;
            Ok(id_or_none(&session))
        })
        .route("/logout", |session, _| async move {
            session.logout().await?;
            Ok("bye")
        })
        .route_lazy("/lazy/login/{user}", |session, p| async move {
            session.login(param(&p, 0)).await?;
            Ok("ok")
        })
        .route_lazy("/lazy/logout", |session, _| async move {
            session.logout().await?;
            Ok("bye")
        })
}

/// The browser-like client (`support::browser`) sends to test servers.
impl crate::support::browser::Origin for TestServer {
    fn base_url(&self) -> String {
        TestServer::base_url(self)
    }
}

/// The standard routes, plus busy twins (see `support::race::busy`) of
/// those that race token changes: `/busy/whoami` and
/// `/busy/set/{key}/{value}`, counted in `in_flight`.
pub fn busy_routes(in_flight: &crate::support::race::InFlight) -> Routes {
    use crate::support::race::busy;
    routes()
        .route(
            "/busy/whoami",
            busy(in_flight, |s: Session, _| async move {
                Ok(s.user_id().unwrap_or_else(|| ANONYMOUS.to_owned()))
            }),
        )
        .route(
            "/busy/set/{key}/{value}",
            busy(in_flight, |s: Session, p: Vec<String>| async move {
                s.insert(param(&p, 0), param(&p, 1))?;
                Ok("ok".to_owned())
            }),
        )
}

// ---------------------------------------------------------------- frameworks

/// The web framework a scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framework {
    /// axum, with `sessionkit::axum::SessionLayer`.
    Axum,
    /// actix-web, with `sessionkit::actix::SessionMiddleware`.
    #[cfg(feature = "actix")]
    Actix,
}

impl Framework {
    /// Every framework compiled in.
    pub fn all() -> Vec<Framework> {
        vec![
            Framework::Axum,
            #[cfg(feature = "actix")]
            Framework::Actix,
        ]
    }

    /// Serves `routes` on a real HTTP server, behind the session middleware
    /// when `manager` is given.
    pub async fn serve(self, routes: Routes, manager: Option<SessionManager>) -> TestServer {
        show_warnings();
        let running = match self {
            Framework::Axum => axum_server::start(routes, manager).await,
            #[cfg(feature = "actix")]
            Framework::Actix => actix_server::start(routes, manager).await,
        };
        TestServer {
            inner: Arc::new(Inner {
                fw: self,
                addr: running.addr,
                http: reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .no_proxy()
                    .timeout(REQUEST_TIMEOUT)
                    .build()
                    .expect("build the HTTP client"),
                running,
            }),
        }
    }
}

/// The standard routes behind the session middleware, served by `fw`.
pub async fn app(fw: Framework, manager: SessionManager) -> TestServer {
    with_layer(fw, routes(), manager).await
}

/// `routes` behind the session middleware, served by `fw`.
pub async fn with_layer(fw: Framework, routes: Routes, manager: SessionManager) -> TestServer {
    fw.serve(routes, Some(manager)).await
}

/// `routes` without the session middleware, served by `fw`.
pub async fn without_layer(fw: Framework, routes: Routes) -> TestServer {
    fw.serve(routes, None).await
}

/// Sends the library's warnings to the test's captured output, so a failing
/// test shows them: a store failure that `StoreFailure::Continue` turns
/// into a response without a cookie is otherwise invisible. The first call
/// in a binary installs the subscriber; a test's own scoped subscriber
/// (`tracing::subscriber::set_default`) still takes precedence.
fn show_warnings() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .try_init();
}

/// A server that runs until it is stopped by [`Running`]'s drop.
struct Running {
    addr: SocketAddr,
    stop: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Running {
    fn new(addr: SocketAddr, stop: impl FnOnce() + Send + 'static) -> Self {
        Running {
            addr,
            stop: Mutex::new(Some(Box::new(stop))),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let stop = self
            .stop
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(stop) = stop {
            stop();
        }
    }
}

mod axum_server {
    use std::net::SocketAddr;

    use axum::extract::Path;
    use axum::routing::get;
    use axum::Router;
    use sessionkit::axum::SessionLayer;
    use sessionkit::{LazySession, LockedSession, Session, SessionManager};

    use super::{run_locked, Extract, Routes, Running};

    fn router(routes: Routes, manager: Option<SessionManager>) -> Router {
        let mut router = Router::new().route(super::PLAIN, get(|| async { super::PLAIN_BODY }));
        for (path, handler, extract) in routes.iter() {
            let h = handler.clone();
            let with_params = path.contains('{');
            router = match (extract, with_params) {
                (Extract::Session, true) => router.route(
                    path,
                    get(move |session: Session, Path(params): Path<Vec<String>>| {
                        h(session, params)
                    }),
                ),
                (Extract::Session, false) => {
                    router.route(path, get(move |session: Session| h(session, Vec::new())))
                }
                (Extract::Locked, true) => router.route(
                    path,
                    get(
                        move |locked: LockedSession, Path(params): Path<Vec<String>>| {
                            run_locked(&h, locked, params)
                        },
                    ),
                ),
                (Extract::Locked, false) => router.route(
                    path,
                    get(move |locked: LockedSession| run_locked(&h, locked, Vec::new())),
                ),
            };
        }
        for (path, handler) in routes.iter_lazy() {
            let h = handler.clone();
            router = if path.contains('{') {
                router.route(
                    path,
                    get(
                        move |session: LazySession, Path(params): Path<Vec<String>>| {
                            h(session, params)
                        },
                    ),
                )
            } else {
                router.route(
                    path,
                    get(move |session: LazySession| h(session, Vec::new())),
                )
            };
        }
        match manager {
            Some(manager) => router.layer(SessionLayer::new(manager)),
            None => router,
        }
    }

    /// `axum::serve` on the test's runtime, with `ConnectInfo` for the
    /// client IP; stopped by aborting its task.
    pub(super) async fn start(routes: Routes, manager: Option<SessionManager>) -> Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let service = router(routes, manager).into_make_service_with_connect_info::<SocketAddr>();
        let task = tokio::spawn(async move {
            axum::serve(listener, service)
                .await
                .expect("axum server failed");
        });
        Running::new(addr, move || task.abort())
    }
}

#[cfg(feature = "actix")]
mod actix_server {
    use std::sync::mpsc;
    use std::time::Duration;

    use actix_web::{web, App, HttpRequest, HttpServer};

    use sessionkit::actix::SessionMiddleware;
    use sessionkit::{LazySession, LockedSession, Session, SessionManager};

    use super::{run_locked, Extract, Routes, Running};

    /// How long a drop waits for the server's thread to end.
    const STOP_TIMEOUT: Duration = Duration::from_secs(5);

    fn configure(routes: &Routes, cfg: &mut web::ServiceConfig) {
        cfg.route(super::PLAIN, web::get().to(|| async { super::PLAIN_BODY }));
        fn params(req: &HttpRequest) -> Vec<String> {
            req.match_info()
                .iter()
                .map(|(_, value)| value.to_owned())
                .collect()
        }
        for (path, handler, extract) in routes.iter() {
            let h = handler.clone();
            match extract {
                Extract::Session => cfg.route(
                    path,
                    web::get()
                        .to(move |session: Session, req: HttpRequest| h(session, params(&req))),
                ),
                Extract::Locked => cfg.route(
                    path,
                    web::get().to(move |locked: LockedSession, req: HttpRequest| {
                        run_locked(&h, locked, params(&req))
                    }),
                ),
            };
        }
        for (path, handler) in routes.iter_lazy() {
            let h = handler.clone();
            cfg.route(
                path,
                web::get()
                    .to(move |session: LazySession, req: HttpRequest| h(session, params(&req))),
            );
        }
    }

    /// An `HttpServer` with one worker, on its own thread and actix system,
    /// bound to `127.0.0.1:0`. The drop stops it (`stop(false)`: open
    /// connections are dropped) and waits for the thread to end.
    pub(super) async fn start(routes: Routes, manager: Option<SessionManager>) -> Running {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("actix-test-server".to_owned())
            .spawn(move || {
                let _done = done_tx; // dropped when the thread ends
                actix_web::rt::System::new().block_on(async move {
                    // `App::wrap` changes the app's type: one server per arm.
                    macro_rules! run {
                        ($make_app:expr) => {{
                            let server = HttpServer::new($make_app)
                                .workers(1)
                                .disable_signals()
                                .shutdown_timeout(0)
                                .bind(("127.0.0.1", 0))
                                .expect("bind 127.0.0.1:0");
                            let addr = server.addrs()[0];
                            let server = server.run();
                            let _ = ready_tx.send((addr, server.handle()));
                            server.await.expect("actix server failed");
                        }};
                    }
                    match manager {
                        Some(manager) => run!(move || {
                            let routes = routes.clone();
                            App::new()
                                .wrap(SessionMiddleware::new(manager.clone()))
                                .configure(move |cfg| configure(&routes, cfg))
                        }),
                        None => run!(move || {
                            let routes = routes.clone();
                            App::new().configure(move |cfg| configure(&routes, cfg))
                        }),
                    }
                });
            })
            .expect("spawn the actix server thread");
        let (addr, handle) = ready_rx.await.expect("the actix server started");
        Running::new(addr, move || {
            // `stop` sends the command at once; its future only waits.
            drop(handle.stop(false));
            match done_rx.recv_timeout(STOP_TIMEOUT) {
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    eprintln!("actix test server did not stop within {STOP_TIMEOUT:?}");
                }
                _ => {
                    let _ = thread.join();
                }
            }
        })
    }
}

// ---------------------------------------------------------------- requests

/// A running test server and an HTTP client for it. Cheap to clone (clones
/// share the server); the server stops when the last clone is dropped.
#[derive(Clone)]
pub struct TestServer {
    inner: Arc<Inner>,
}

struct Inner {
    fw: Framework,
    addr: SocketAddr,
    http: reqwest::Client,
    running: Running,
}

impl TestServer {
    /// The framework serving.
    pub fn framework(&self) -> Framework {
        self.inner.fw
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }
}

/// A response, with its body read.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

/// `GET path` with the given raw headers (appended in order, so a name may
/// repeat).
pub async fn send(srv: &TestServer, path: &str, headers: Vec<(HeaderName, HeaderValue)>) -> Resp {
    let url = format!("{}{path}", srv.base_url());
    let mut req = srv
        .inner
        .http
        .get(&url)
        .build()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    for (name, value) in headers {
        req.headers_mut().append(name, value);
    }
    let res = srv
        .inner
        .http
        .execute(req)
        .await
        .unwrap_or_else(|e| panic!("GET {url} on {:?}: {e}", srv.framework()));
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.bytes().await.expect("body can be read");
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// `GET path`, with `Cookie: id=<token>` when `token` is given.
pub async fn get_with(srv: &TestServer, path: &str, token: Option<&str>) -> Resp {
    let mut headers = Vec::new();
    if let Some(token) = token {
        headers.push((COOKIE, cookie_header(token)));
    }
    send(srv, path, headers).await
}

/// `GET path` with the given raw headers (appended in order, so a name may
/// repeat).
pub async fn get_with_headers(
    srv: &TestServer,
    path: &str,
    headers: Vec<(HeaderName, HeaderValue)>,
) -> Resp {
    send(srv, path, headers).await
}

/// `GET path` with `Cookie: id=<token>`, asserting 200; answers the body.
pub async fn body_of(srv: &TestServer, path: &str, token: &str) -> String {
    let res = get_with(srv, path, Some(token)).await;
    assert_eq!(res.status, StatusCode::OK, "GET {path}: {}", res.body);
    res.body
}

/// What `/whoami` says for `token`.
pub async fn whoami(srv: &TestServer, token: &str) -> String {
    body_of(srv, "/whoami", token).await
}

fn cookie_header(token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{COOKIE_NAME}={token}")).expect("token is a header value")
}

/// A browser: keeps the session cookie the server sets and clears.
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub token: Option<String>,
    pub user_agent: Option<String>,
}

impl Client {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_user_agent(ua: impl Into<String>) -> Self {
        Client {
            token: None,
            user_agent: Some(ua.into()),
        }
    }

    /// `GET path` with the cookie held, then applies the response's
    /// `Set-Cookie` for the session cookie.
    pub async fn get(&mut self, srv: &TestServer, path: &str) -> Resp {
        let mut headers = Vec::new();
        if let Some(token) = &self.token {
            headers.push((COOKIE, cookie_header(token)));
        }
        if let Some(ua) = &self.user_agent {
            headers.push((USER_AGENT, HeaderValue::from_str(ua).expect("ASCII UA")));
        }
        let res = send(srv, path, headers).await;
        if let Some(c) = res.session_cookie() {
            self.token = (!c.is_removal()).then(|| c.value.clone());
        }
        res
    }

    /// Like [`get`](Self::get), asserting 200; answers the body.
    pub async fn body(&mut self, srv: &TestServer, path: &str) -> String {
        let res = self.get(srv, path).await;
        assert_eq!(res.status, StatusCode::OK, "GET {path}: {}", res.body);
        res.body
    }

    /// The token held; panics when none.
    pub fn token(&self) -> &str {
        self.token
            .as_deref()
            .expect("client holds a session cookie")
    }
}

// ---------------------------------------------------------------- Set-Cookie

/// One parsed `Set-Cookie` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetCookie {
    pub raw: String,
    pub name: String,
    pub value: String,
    /// Attributes in order, name as sent, value if any.
    pub attrs: Vec<(String, Option<String>)>,
}

impl SetCookie {
    pub fn parse(raw: &str) -> Self {
        let mut parts = raw.split(';').map(str::trim);
        let first = parts.next().unwrap_or_default();
        let (name, value) = first.split_once('=').unwrap_or((first, ""));
        let attrs = parts
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.trim().to_owned(), Some(v.trim().to_owned())),
                None => (p.to_owned(), None),
            })
            .collect();
        SetCookie {
            raw: raw.to_owned(),
            name: name.trim().to_owned(),
            value: value.trim().to_owned(),
            attrs,
        }
    }

    /// The attribute, case-insensitively: `Some(value)` when present.
    pub fn attr(&self, name: &str) -> Option<Option<&str>> {
        self.attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    pub fn has(&self, name: &str) -> bool {
        self.attr(name).is_some()
    }

    /// The attribute's value (`None` when absent or valueless).
    pub fn value_of(&self, name: &str) -> Option<&str> {
        self.attr(name).flatten()
    }

    pub fn max_age(&self) -> Option<i64> {
        self.value_of("Max-Age")
            .map(|v| v.parse().expect("Max-Age is a number"))
    }

    /// Whether this tells the browser to delete the cookie.
    pub fn is_removal(&self) -> bool {
        self.value.is_empty() || self.max_age().is_some_and(|s| s <= 0)
    }

    /// Asserts the attributes of the default session cookie: `Path=/`,
    /// `Secure`, `HttpOnly`, `SameSite=Lax`, no `Domain`.
    pub fn assert_default_attributes(&self) {
        assert_eq!(self.name, COOKIE_NAME, "{}", self.raw);
        assert_eq!(self.value_of("Path"), Some("/"), "{}", self.raw);
        assert!(self.has("Secure"), "no Secure: {}", self.raw);
        assert!(self.has("HttpOnly"), "no HttpOnly: {}", self.raw);
        assert_eq!(
            self.value_of("SameSite").map(str::to_ascii_lowercase),
            Some("lax".to_owned()),
            "{}",
            self.raw
        );
        assert!(!self.has("Domain"), "unexpected Domain: {}", self.raw);
    }
}

impl Resp {
    /// Every `Set-Cookie` header.
    pub fn set_cookies(&self) -> Vec<SetCookie> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| SetCookie::parse(v.to_str().expect("Set-Cookie is ASCII")))
            .collect()
    }

    /// The `Set-Cookie` for the session cookie, if any (asserting there is
    /// at most one).
    pub fn session_cookie(&self) -> Option<SetCookie> {
        let mut all: Vec<SetCookie> = self
            .set_cookies()
            .into_iter()
            .filter(|c| c.name == COOKIE_NAME)
            .collect();
        assert!(
            all.len() <= 1,
            "several session Set-Cookie headers: {all:?}"
        );
        all.pop()
    }

    /// The new token the response sets (not a removal).
    pub fn new_token(&self) -> Option<String> {
        self.session_cookie()
            .filter(|c| !c.is_removal())
            .map(|c| c.value)
    }

    /// The new token, asserting there is one.
    pub fn expect_token(&self) -> String {
        self.new_token()
            .unwrap_or_else(|| panic!("expected a session cookie, got {:?}", self.headers))
    }

    /// The header `name` as text, asserting it appears at most once.
    pub fn header(&self, name: &str) -> Option<&str> {
        let all: Vec<&HeaderValue> = self.headers.get_all(name).iter().collect();
        assert!(all.len() <= 1, "several {name} headers: {all:?}");
        all.first().map(|v| v.to_str().expect("ASCII header"))
    }

    pub fn cache_control(&self) -> Option<&str> {
        self.headers
            .get(CACHE_CONTROL)
            .map(|v| v.to_str().expect("ASCII"))
    }

    /// Asserts 200 and no `Set-Cookie` at all.
    pub fn assert_ok_without_cookie(&self, what: &str) {
        assert_eq!(self.status, StatusCode::OK, "{what}: {}", self.body);
        assert!(
            self.headers.get(SET_COOKIE).is_none(),
            "{what}: unexpected Set-Cookie {:?}",
            self.headers.get_all(SET_COOKIE)
        );
    }
}

/// Asserts `token` looks like a session token: a tag, a dot, and at least
/// 43 URL-safe base64 characters (256 bits).
pub fn assert_token_shape(token: &str) {
    let url_safe = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let (tag, secret) = token
        .split_once('.')
        .unwrap_or_else(|| panic!("token {token:?} has no tag"));
    assert!(!tag.is_empty() && url_safe(tag), "bad tag in {token:?}");
    assert!(secret.len() >= 43, "secret too short in {token:?}");
    assert!(url_safe(secret), "secret not URL-safe base64 in {token:?}");
}

//! Store outages as HTTP clients see them, on axum and on actix-web, each
//! on a real HTTP server in front of a `RedisStore` on a `redis-server` of
//! the test's own:
//!
//! - Redis is killed while clients keep sending requests (session reads,
//!   session writes, and requests to a route that never extracts the
//!   session), stays down for 1.5 s, and comes back empty on the same port.
//! - Redis stalls for 2 s (`DEBUG SLEEP 2` from a side connection).
//! - With the `postgres` feature, the same crash on a `PostgresStore` (with
//!   and without its local cache) on a PostgreSQL server of the test's own:
//!   `pg_ctl stop -m immediate`, down for 1.5 s, started again with its
//!   data, so the session made before the outage is still there after it.
//!
//! Every response is 200 or 503, never 500 and never a hang: each request
//! ends within the store timeout (per store call) plus a small margin.
//! Session-free requests are always 200. The app recovers by itself. No
//! request or task piles up: the number of requests in flight in the server
//! never exceeds the number of clients and returns to 0, and the runtimes'
//! alive-task counts return to their baselines.
#![cfg(all(feature = "redis", feature = "axum", feature = "actix"))]

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::StatusCode;
use sessionkit::redis::RedisStore;
use sessionkit::{Error, Session, SessionConfig, SessionManager};
#[cfg(feature = "postgres")]
use support::PostgresServer;
use support::RedisServer;

/// The longest one Redis command may take (`RedisStore` setting).
const COMMAND_TIMEOUT: Duration = Duration::from_millis(300);

/// The longest the middleware waits for one store call (`SessionConfig`).
const STORE_TIMEOUT: Duration = Duration::from_millis(500);

/// What a request may take beyond its store calls' timeouts (HTTP, the
/// handler, a busy two-core machine).
const MARGIN: Duration = Duration::from_millis(400);

/// How long Redis stays down.
const OUTAGE: Duration = Duration::from_millis(1500);

/// Concurrent clients, each sending one request at a time.
const CLIENTS: usize = 3;

/// The client-side limit: a request that takes this long has hung.
const HANG: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------- the app

/// `n=<count>` of the session, or `empty`.
async fn read(session: Session) -> Result<String, Error> {
    Ok(match session.get::<u64>("n")? {
        Some(n) => format!("n={n}"),
        None => "empty".to_owned(),
    })
}

/// Increments `n` in the session.
async fn write(session: Session) -> Result<String, Error> {
    let n = session.get::<u64>("n")?.unwrap_or(0) + 1;
    session.insert("n", n)?;
    Ok(format!("n={n}"))
}

/// Never extracts the session.
async fn plain() -> &'static str {
    "plain"
}

/// Requests in flight inside the server (counted by a middleware outside
/// the session middleware), and the runtime that serves them.
#[derive(Default)]
struct Stats {
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    runtime: OnceLock<tokio::runtime::Handle>,
}

impl Stats {
    fn enter(self: &Arc<Self>) -> InFlight {
        let _ = self.runtime.set(tokio::runtime::Handle::current());
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(Arc::clone(self))
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Alive tasks on the runtime that serves requests.
    fn server_tasks(&self) -> usize {
        self.runtime
            .get()
            .expect("the server has served a request")
            .metrics()
            .num_alive_tasks()
    }
}

/// One request in flight; leaves on drop (also when the request is
/// cancelled).
struct InFlight(Arc<Stats>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framework {
    Axum,
    Actix,
}

/// A running server; stops on drop.
struct Server {
    base: String,
    stop: Option<Box<dyn FnOnce() + Send>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
    }
}

async fn serve(fw: Framework, manager: SessionManager, stats: Arc<Stats>) -> Server {
    match fw {
        Framework::Axum => serve_axum(manager, stats).await,
        Framework::Actix => serve_actix(manager, stats).await,
    }
}

/// axum on the test's runtime.
async fn serve_axum(manager: SessionManager, stats: Arc<Stats>) -> Server {
    use axum::routing::get;

    let app = axum::Router::new()
        .route("/read", get(read))
        .route("/write", get(write))
        .route("/plain", get(plain))
        .layer(sessionkit::axum::SessionLayer::new(manager))
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let guard = stats.enter();
                async move {
                    let res = next.run(req).await;
                    drop(guard);
                    res
                }
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("axum server");
    });
    Server {
        base,
        stop: Some(Box::new(move || task.abort())),
    }
}

/// actix-web with one worker, on a thread and actix system of its own.
async fn serve_actix(manager: SessionManager, stats: Arc<Stats>) -> Server {
    use actix_web::dev::Service as _;
    use actix_web::{web, App, HttpServer};

    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                let stats = Arc::clone(&stats);
                App::new()
                    .wrap(sessionkit::actix::SessionMiddleware::new(manager.clone()))
                    .wrap_fn(move |req, srv| {
                        let guard = stats.enter();
                        let fut = srv.call(req);
                        async move {
                            let res = fut.await;
                            drop(guard);
                            res
                        }
                    })
                    .route("/read", web::get().to(read))
                    .route("/write", web::get().to(write))
                    .route("/plain", web::get().to(plain))
            })
            .workers(1)
            .disable_signals()
            .shutdown_timeout(0)
            .bind(("127.0.0.1", 0))
            .expect("bind");
            let addr = server.addrs()[0];
            let server = server.run();
            let _ = ready_tx.send((addr, server.handle()));
            server.await.expect("actix server");
        });
    });
    let (addr, handle) = ready_rx.await.expect("the actix server started");
    Server {
        base: format!("http://{addr}"),
        stop: Some(Box::new(move || {
            drop(handle.stop(false));
            let _ = thread.join();
        })),
    }
}

// ---------------------------------------------------------------- clients

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `/read` with the cookie of a session made before the outage.
    Read,
    /// `/write` with the cookie the client holds (if any).
    Write,
    /// `/plain`: no session.
    Plain,
}

/// One request as a client saw it.
#[derive(Debug, Clone)]
struct Sample {
    kind: Kind,
    /// How many store calls the request may make (load, then save or
    /// create), each bounded by the store timeout.
    store_calls: u32,
    started: Instant,
    elapsed: Duration,
    /// The status, or the client error (a hang or a dropped connection).
    status: Result<StatusCode, String>,
    body: String,
}

impl Sample {
    fn ended(&self) -> Instant {
        self.started + self.elapsed
    }

    fn limit(&self) -> Duration {
        STORE_TIMEOUT * self.store_calls + MARGIN
    }

    fn is(&self, status: StatusCode) -> bool {
        self.status.as_ref().ok() == Some(&status)
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(HANG)
        .build()
        .expect("HTTP client")
}

/// The session token a response sets (not a removal).
fn set_token(res: &reqwest::Response) -> Option<String> {
    res.headers().get_all(SET_COOKIE).iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let token = v.strip_prefix("id=")?.split(';').next()?;
        (!token.is_empty()).then(|| token.to_owned())
    })
}

/// Sends one request and records it; `token` is the cookie to send, updated
/// from the response's `Set-Cookie`.
async fn request(
    http: &reqwest::Client,
    base: &str,
    kind: Kind,
    token: &mut Option<String>,
) -> Sample {
    let path = match kind {
        Kind::Read => "/read",
        Kind::Write => "/write",
        Kind::Plain => "/plain",
    };
    let store_calls = match (kind, &token) {
        (Kind::Plain, _) => 0,
        (Kind::Write, Some(_)) => 2,
        _ => 1,
    };
    let mut req = http.get(format!("{base}{path}"));
    if let (Some(t), false) = (&token, kind == Kind::Plain) {
        req = req.header(COOKIE, format!("id={t}"));
    }
    let started = Instant::now();
    let (status, body) = match req.send().await {
        Ok(res) => {
            if let Some(t) = set_token(&res) {
                *token = Some(t);
            }
            let status = res.status();
            match res.text().await {
                Ok(body) => (Ok(status), body),
                Err(e) => (Err(format!("reading the body: {e}")), String::new()),
            }
        }
        Err(e) => (Err(e.to_string()), String::new()),
    };
    Sample {
        kind,
        store_calls,
        started,
        elapsed: started.elapsed(),
        status,
        body,
    }
}

/// Clients that each send read, write and plain requests in turn until
/// stopped.
struct Load {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(base: &str, read_token: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..CLIENTS)
            .map(|i| {
                let (stop, samples) = (Arc::clone(&stop), Arc::clone(&samples));
                let base = base.to_owned();
                let mut read_token = Some(read_token.to_owned());
                tokio::spawn(async move {
                    let http = http_client();
                    let mut write_token = None;
                    let kinds = [Kind::Read, Kind::Write, Kind::Plain];
                    let mut next = i;
                    while !stop.load(Ordering::SeqCst) {
                        let kind = kinds[next % kinds.len()];
                        next += 1;
                        let token = match kind {
                            Kind::Read => &mut read_token,
                            _ => &mut write_token,
                        };
                        let sample = request(&http, &base, kind, token).await;
                        samples.lock().unwrap().push(sample);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
            })
            .collect();
        Load {
            stop,
            samples,
            tasks,
        }
    }

    fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap().clone()
    }

    /// Waits for a successful session request that started after `after`.
    async fn until_session_ok(&self, after: Instant, limit: Duration) -> Instant {
        let deadline = Instant::now() + limit;
        loop {
            let ok = self
                .samples()
                .into_iter()
                .find(|s| s.kind != Kind::Plain && s.started > after && s.is(StatusCode::OK));
            if let Some(s) = ok {
                return s.started;
            }
            assert!(
                Instant::now() < deadline,
                "no session request succeeded within {limit:?} of the store coming back"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            task.await.expect("a client task panicked");
        }
        let samples = self.samples.lock().unwrap().clone();
        samples
    }
}

// ---------------------------------------------------------------- checks

/// Every response is 200 or 503 within its time limit; session-free
/// requests are 200.
fn assert_bounded(fw: Framework, samples: &[Sample]) {
    for s in samples {
        match &s.status {
            Ok(status) => assert!(
                *status == StatusCode::OK || *status == StatusCode::SERVICE_UNAVAILABLE,
                "{fw:?}: {s:?}"
            ),
            Err(e) => panic!("{fw:?}: a request failed or hung: {e} ({s:?})"),
        }
        assert!(
            s.elapsed <= s.limit(),
            "{fw:?}: a request took {:?}, over its limit of {:?}: {s:?}",
            s.elapsed,
            s.limit()
        );
        if s.kind == Kind::Plain {
            assert!(
                s.is(StatusCode::OK) && s.body == "plain",
                "{fw:?}: a session-free request failed: {s:?}"
            );
        }
    }
}

/// Waits until the alive tasks are back to `baseline`.
async fn settles(fw: Framework, baseline: usize, count: impl Fn() -> usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = count();
        if now <= baseline {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{fw:?}: {now} alive tasks 10 s after the load stopped, baseline {baseline}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn summary(samples: &[Sample]) -> String {
    let count = |kind, status| {
        samples
            .iter()
            .filter(|s| s.kind == kind && s.is(status))
            .count()
    };
    let slowest = |kind| {
        samples
            .iter()
            .filter(|s| s.kind == kind)
            .map(|s| s.elapsed)
            .max()
            .unwrap_or_default()
    };
    [Kind::Read, Kind::Write, Kind::Plain]
        .iter()
        .map(|&k| {
            format!(
                "{k:?}: {} ok, {} unavailable, slowest {:?}",
                count(k, StatusCode::OK),
                count(k, StatusCode::SERVICE_UNAVAILABLE),
                slowest(k)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

// ---------------------------------------------------------------- setup

async fn start_redis(extra: &'static [&'static str]) -> RedisServer {
    tokio::task::spawn_blocking(move || RedisServer::start_with(extra))
        .await
        .expect("start redis-server")
}

/// The store server a "down and back" scenario crashes.
enum Crashed {
    /// Killed, and started again empty on the same port.
    Redis(RedisServer),
    /// `pg_ctl stop -m immediate`, and started again with its data; the
    /// store with its local cache on or off.
    #[cfg(feature = "postgres")]
    Postgres { server: PostgresServer, cache: bool },
}

impl Crashed {
    fn name(&self) -> &'static str {
        match self {
            Crashed::Redis(_) => "Redis",
            #[cfg(feature = "postgres")]
            Crashed::Postgres { .. } => "PostgreSQL",
        }
    }

    async fn manager(&self) -> SessionManager {
        match self {
            Crashed::Redis(server) => manager(server).await,
            #[cfg(feature = "postgres")]
            Crashed::Postgres { server, cache } => {
                let mut builder = sessionkit::postgres::PostgresStore::builder()
                    .url(server.url())
                    .acquire_timeout(COMMAND_TIMEOUT)
                    .statement_timeout(COMMAND_TIMEOUT);
                if *cache {
                    builder = builder.cache(1000);
                }
                let store = builder
                    .build()
                    .await
                    .expect("connect to the test's PostgreSQL");
                SessionManager::new(store, SessionConfig::default().store_timeout(STORE_TIMEOUT))
            }
        }
    }

    /// Crashes the server, keeps it down for [`OUTAGE`], starts it again;
    /// answers when it was surely down and when its restart began
    /// (`pg_ctl stop` and `pg_ctl start` take a while to return).
    fn crash_and_restart(&mut self) -> (Instant, Instant) {
        let down = match self {
            Crashed::Redis(server) => {
                server.stop();
                Instant::now()
            }
            #[cfg(feature = "postgres")]
            Crashed::Postgres { server, .. } => {
                server.stop_immediate();
                Instant::now()
            }
        };
        std::thread::sleep(OUTAGE);
        let restarting = Instant::now();
        match self {
            Crashed::Redis(server) => server.restart(),
            #[cfg(feature = "postgres")]
            Crashed::Postgres { server, .. } => server.start_again(),
        }
        (down, restarting)
    }

    /// What the session made before the outage reads as after it.
    fn read_after(&self) -> &'static str {
        match self {
            // Redis came back empty.
            Crashed::Redis(_) => "empty",
            #[cfg(feature = "postgres")]
            Crashed::Postgres { .. } => "n=1",
        }
    }
}

async fn manager(server: &RedisServer) -> SessionManager {
    let store = RedisStore::builder()
        .url(server.url())
        .command_timeout(COMMAND_TIMEOUT)
        .connection_timeout(COMMAND_TIMEOUT)
        .retry_delay(Duration::from_millis(20), Duration::from_millis(100))
        .build()
        .await
        .expect("connect to the test's redis-server");
    SessionManager::new(store, SessionConfig::default().store_timeout(STORE_TIMEOUT))
}

/// Makes a session holding `n=1`; answers its token.
async fn new_session(http: &reqwest::Client, base: &str) -> String {
    let mut token = None;
    let s = request(http, base, Kind::Write, &mut token).await;
    assert!(s.is(StatusCode::OK), "{s:?}");
    token.expect("a new session sets a cookie")
}

async fn get(http: &reqwest::Client, base: &str, path: &str, token: &str) -> (StatusCode, String) {
    let res = http
        .get(format!("{base}{path}"))
        .header(COOKIE, format!("id={token}"))
        .send()
        .await
        .expect("request");
    let status = res.status();
    (status, res.text().await.expect("body"))
}

// ---------------------------------------------------------------- Redis down

async fn redis_down_and_back(fw: Framework) {
    down_and_back(fw, Crashed::Redis(start_redis(&[]).await)).await;
}

async fn down_and_back(fw: Framework, server: Crashed) {
    let test_runtime = tokio::runtime::Handle::current();
    let what = server.name();
    let stats = Arc::new(Stats::default());
    let app = serve(fw, server.manager().await, Arc::clone(&stats)).await;
    let base = app.base.clone();

    // Warm up, then take the baselines with no client connected.
    let token = {
        let http = http_client();
        let token = new_session(&http, &base).await;
        assert_eq!(get(&http, &base, "/read", &token).await.1, "n=1");
        token
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The test's runtime runs the clients and the Redis connection, and
    // serves axum; actix-web serves on a runtime of its own. A reconnection
    // may start the new connection's task on either.
    let alive_tasks = || {
        let mut n = test_runtime.metrics().num_alive_tasks();
        if fw == Framework::Actix {
            n += stats.server_tasks();
        }
        n
    };
    let baseline = alive_tasks();

    let load = Load::start(&base, &token);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The server crashes, stays down, and comes back on the same port.
    let stopped = Instant::now();
    let (server, (down, restarting)) = tokio::task::spawn_blocking(move || {
        let mut server = server;
        let instants = server.crash_and_restart();
        (server, instants)
    })
    .await
    .expect("restart the store's server");
    let back = Instant::now();
    let recovered = load.until_session_ok(back, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let samples = load.stop().await;
    eprintln!(
        "{fw:?}: {} requests; recovered {:?} after {what} came back; {}",
        samples.len(),
        recovered - back,
        summary(&samples)
    );

    assert_bounded(fw, &samples);
    for s in &samples {
        if s.ended() < stopped {
            assert!(s.is(StatusCode::OK), "{fw:?}: before the outage: {s:?}");
        }
        // Fully inside the outage (the first 100 ms may still find the
        // connection alive), every session request fails cleanly.
        if s.kind != Kind::Plain
            && s.started > down + Duration::from_millis(100)
            && s.ended() < restarting
        {
            assert!(
                s.is(StatusCode::SERVICE_UNAVAILABLE),
                "{fw:?}: during the outage: {s:?}"
            );
        }
        if s.started > recovered {
            assert!(s.is(StatusCode::OK), "{fw:?}: after recovery: {s:?}");
        }
        // The session made before the outage is gone with Redis's data
        // (an anonymous session, not an error), or still there with
        // PostgreSQL's.
        if s.kind == Kind::Read && s.started > recovered {
            assert_eq!(s.body, server.read_after(), "{fw:?} on {what}: {s:?}");
        }
    }
    let during = |kind: Kind, status| {
        samples
            .iter()
            .filter(|s| {
                s.kind == kind && s.started > stopped && s.ended() < restarting && s.is(status)
            })
            .count()
    };
    assert!(
        during(Kind::Read, StatusCode::SERVICE_UNAVAILABLE) > 0
            && during(Kind::Write, StatusCode::SERVICE_UNAVAILABLE) > 0,
        "{fw:?}: the outage was not seen: {}",
        summary(&samples)
    );
    assert!(
        during(Kind::Plain, StatusCode::OK) > 0,
        "{fw:?}: no session-free request ran during the outage"
    );

    // Without restarting the app: a new session is made and read back, and
    // the old one reads as after the restart.
    let http = http_client();
    let fresh = new_session(&http, &base).await;
    assert_ne!(fresh, token);
    assert_eq!(
        get(&http, &base, "/read", &fresh).await,
        (StatusCode::OK, "n=1".to_owned())
    );
    assert_eq!(
        get(&http, &base, "/read", &token).await,
        (StatusCode::OK, server.read_after().to_owned())
    );
    drop(http);

    // No pile-up: at most one request in flight per client, none left, and
    // every task the load made has ended.
    let max = stats.max_in_flight.load(Ordering::SeqCst);
    assert!(max <= CLIENTS, "{fw:?}: {max} requests in flight at once");
    assert_eq!(stats.in_flight(), 0, "{fw:?}: requests still in flight");
    settles(fw, baseline, alive_tasks).await;
    drop(app);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_redis_down_gives_503_and_recovers() {
    redis_down_and_back(Framework::Axum).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actix_redis_down_gives_503_and_recovers() {
    redis_down_and_back(Framework::Actix).await;
}

#[cfg(feature = "postgres")]
async fn postgres_down_and_back(fw: Framework, cache: bool) {
    let server = tokio::task::spawn_blocking(PostgresServer::start)
        .await
        .expect("start PostgreSQL");
    down_and_back(fw, Crashed::Postgres { server, cache }).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_postgres_down_gives_503_and_recovers() {
    postgres_down_and_back(Framework::Axum, false).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actix_postgres_down_gives_503_and_recovers() {
    postgres_down_and_back(Framework::Actix, false).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_cached_postgres_down_gives_503_and_recovers() {
    postgres_down_and_back(Framework::Axum, true).await;
}

// ---------------------------------------------------------------- Redis slow

async fn redis_sleeps(fw: Framework) {
    let server = start_redis(&["--enable-debug-command", "yes"]).await;
    let stats = Arc::new(Stats::default());
    let app = serve(fw, manager(&server).await, Arc::clone(&stats)).await;
    let base = app.base.clone();
    let http = http_client();
    let token = new_session(&http, &base).await;

    // A side connection stalls the whole server for 2 s (a blocking
    // connection, which has no response timeout).
    let side = server.client();
    let sleeping = tokio::task::spawn_blocking(move || {
        let mut con = side.get_connection().expect("side connection");
        let started = Instant::now();
        let _: () = ::redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg(2)
            .query(&mut con)
            .expect("DEBUG SLEEP (is enable-debug-command on?)");
        started.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut samples = Vec::new();
    let stalled_until = Instant::now() + Duration::from_millis(1200);
    while Instant::now() < stalled_until {
        for kind in [Kind::Read, Kind::Plain, Kind::Write] {
            let mut t = match kind {
                Kind::Read => Some(token.clone()),
                _ => None,
            };
            samples.push(request(&http, &base, kind, &mut t).await);
        }
    }
    eprintln!("{fw:?} during DEBUG SLEEP: {}", summary(&samples));
    assert_bounded(fw, &samples);
    for s in &samples {
        if s.kind != Kind::Plain {
            assert!(s.is(StatusCode::SERVICE_UNAVAILABLE), "{fw:?}: {s:?}");
            // Failed by the command timeout, not by waiting for Redis to
            // wake up.
            assert!(
                s.elapsed >= COMMAND_TIMEOUT.mul_f64(0.9) && s.elapsed < Duration::from_secs(1),
                "{fw:?}: {s:?}"
            );
        }
    }
    let slept = sleeping.await.expect("the side connection");
    assert!(slept >= Duration::from_millis(1900), "{slept:?}");

    // Redis is awake: the session made before the stall is still there.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = get(&http, &base, "/read", &token).await;
        if status == StatusCode::OK {
            assert_eq!(body, "n=1", "{fw:?}");
            break;
        }
        assert!(Instant::now() < deadline, "{fw:?}: no recovery: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        get(&http, &base, "/write", &token).await,
        (StatusCode::OK, "n=2".to_owned())
    );
    drop(http);
    let max = stats.max_in_flight.load(Ordering::SeqCst);
    assert!(max <= 1, "{fw:?}: {max} requests in flight at once");
    assert_eq!(stats.in_flight(), 0, "{fw:?}");
    drop(app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_slow_redis_gives_503_after_the_timeout() {
    redis_sleeps(Framework::Axum).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actix_slow_redis_gives_503_after_the_timeout() {
    redis_sleeps(Framework::Actix).await;
}

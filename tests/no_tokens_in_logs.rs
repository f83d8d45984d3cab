//! Log audit: every log line sessionkit writes, at every level, during a
//! flow that takes every path that logs (anonymous write, login, a late
//! write with a replaced token, explicit and periodic rotation, the
//! rotation grace, single-login eviction, a session ended mid-request,
//! logout, revoke, revoke_user, logout everywhere, store failures with both
//! failure policies, and on Redis a corrupt session), through the axum
//! layer, on the memory store and on Redis.
//!
//! Every token the server issued (from `Set-Cookie`, the token header and
//! `Session::token()`) is collected; no log line may contain one, nor its
//! secret part, nor the first half of it. Public session ids may appear,
//! and do (which shows the logs were captured).
//!
//! Each test captures with `tracing::subscriber::set_default` on a
//! current-thread runtime, so the capture sees every event of the flow
//! and tests do not share a global subscriber.
#![cfg(feature = "axum")]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::Path;
use axum::routing::get;
use axum::{Extension, Router};
use http::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use sessionkit::axum::SessionLayer;
use sessionkit::clock::ManualClock;
use sessionkit::store::{
    ClientInfo, Delta, LoadOutcome, LockOutcome, Login, LoginOutcome, NewSession, Retire,
    RotateOutcome, SaveOutcome, Timeouts, Token, Written,
};
use sessionkit::{
    Error, HeaderTransport, LockedSession, MemoryStore, Result, Session, SessionConfig, SessionId,
    SessionInfo, SessionManager, SessionStore, StoreFailure, TokenTransport,
};
use tower::ServiceExt;

/// The response header that carries new tokens (`HeaderTransport::bearer()`).
const TOKEN_HEADER: &str = "x-session-token";

/// How long a token lives before periodic rotation replaces it.
const ROTATE_EVERY: Duration = Duration::from_secs(1);

/// The session lock's lease in the flow.
const LOCK_LEASE: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------- capture

use support::logs::Logs;

/// Every token the server issued in the test.
#[derive(Clone, Default)]
struct Issued(Arc<Mutex<Vec<String>>>);

impl Issued {
    fn add(&self, token: Option<String>) {
        if let Some(t) = token.filter(|t| !t.is_empty()) {
            let mut all = self.0.lock().unwrap();
            if !all.contains(&t) {
                all.push(t);
            }
        }
    }

    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------- a store that fails on demand

/// A store that fails every call while `down`, or only writes while
/// `writes_down` (so a load succeeds and the commit fails).
#[derive(Debug, Clone)]
struct Flaky<S> {
    inner: S,
    down: Arc<AtomicBool>,
    writes_down: Arc<AtomicBool>,
}

impl<S> Flaky<S> {
    fn new(inner: S) -> Self {
        Flaky {
            inner,
            down: Arc::default(),
            writes_down: Arc::default(),
        }
    }

    fn check(&self, write: bool) -> Result<()> {
        if self.down.load(Ordering::SeqCst) || (write && self.writes_down.load(Ordering::SeqCst)) {
            Err(Error::store("injected failure: the store is down"))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl<S: SessionStore> SessionStore for Flaky<S> {
    async fn load(&self, id: &SessionId, timeouts: &Timeouts) -> Result<LoadOutcome> {
        self.check(false)?;
        self.inner.load(id, timeouts).await
    }
    async fn create(
        &self,
        id: &SessionId,
        session: NewSession<'_>,
        timeouts: &Timeouts,
    ) -> Result<Written> {
        self.check(true)?;
        self.inner.create(id, session, timeouts).await
    }
    async fn save(
        &self,
        id: &SessionId,
        delta: &Delta,
        timeouts: &Timeouts,
    ) -> Result<SaveOutcome> {
        self.check(true)?;
        self.inner.save(id, delta, timeouts).await
    }
    async fn login(&self, login: Login<'_>, timeouts: &Timeouts) -> Result<LoginOutcome> {
        self.check(true)?;
        self.inner.login(login, timeouts).await
    }
    async fn rotate(
        &self,
        old: &SessionId,
        new: &SessionId,
        retire: Retire,
        timeouts: &Timeouts,
    ) -> Result<RotateOutcome> {
        self.check(true)?;
        self.inner.rotate(old, new, retire, timeouts).await
    }
    async fn revoke(&self, id: &SessionId) -> Result<bool> {
        self.check(true)?;
        self.inner.revoke(id).await
    }
    async fn revoke_user(&self, user_id: &str, except: Option<&SessionId>) -> Result<u64> {
        self.check(true)?;
        self.inner.revoke_user(user_id, except).await
    }
    async fn sessions_of(&self, user_id: &str, timeouts: &Timeouts) -> Result<Vec<SessionInfo>> {
        self.check(false)?;
        self.inner.sessions_of(user_id, timeouts).await
    }
    async fn lock(
        &self,
        id: &SessionId,
        lease: Duration,
        timeouts: &Timeouts,
    ) -> Result<LockOutcome> {
        self.check(true)?;
        self.inner.lock(id, lease, timeouts).await
    }
    async fn renew_lock(&self, id: &SessionId, fence: u64, lease: Duration) -> Result<bool> {
        self.check(true)?;
        self.inner.renew_lock(id, fence, lease).await
    }
    async fn unlock(&self, id: &SessionId, fence: u64) -> Result<()> {
        self.check(true)?;
        self.inner.unlock(id, fence).await
    }
}

// ---------------------------------------------------------------- the app

type Tokens = Extension<Issued>;

async fn write(
    Extension(issued): Tokens,
    session: Session,
    Path((k, v)): Path<(String, String)>,
) -> Result<&'static str> {
    session.insert(k, v)?;
    issued.add(session.token());
    Ok("ok")
}

async fn read(session: Session) -> Result<String> {
    let mut keys = session.keys();
    keys.sort();
    Ok(format!("{:?} {}", session.user_id(), keys.join(",")))
}

async fn login(
    Extension(issued): Tokens,
    session: Session,
    Path(user): Path<String>,
) -> Result<&'static str> {
    session.login(user).await?;
    issued.add(session.token());
    Ok("ok")
}

async fn rotate(Extension(issued): Tokens, session: Session) -> Result<&'static str> {
    session.rotate().await?;
    issued.add(session.token());
    Ok("ok")
}

async fn logout(session: Session) -> Result<&'static str> {
    session.logout().await?;
    Ok("bye")
}

async fn everywhere(session: Session) -> Result<String> {
    Ok(session.logout_everywhere().await?.to_string())
}

/// Another request ends the session while this one runs; this one's write
/// is then dropped.
async fn ended_meanwhile(session: Session) -> Result<&'static str> {
    let id = session.id().expect("a stored session");
    session.manager().revoke(&id).await?;
    session.insert("late", 1)?;
    Ok("ok")
}

/// Another request replaces the token (explicit rotation) while this one
/// runs; this one's write is then dropped, and the new cookie left alone.
async fn replaced_meanwhile(
    Extension(issued): Tokens,
    headers: http::HeaderMap,
    session: Session,
) -> Result<&'static str> {
    let other = session.manager().load_request(&headers, None).await?;
    other.rotate().await?;
    issued.add(other.token());
    session.insert("late", 1)?;
    Ok("ok")
}

/// A write under the session lock (a new session is stored, then locked).
async fn locked_write(
    Extension(issued): Tokens,
    session: LockedSession,
    Path((k, v)): Path<(String, String)>,
) -> Result<&'static str> {
    session.insert(k, v)?;
    issued.add(session.token());
    Ok("ok")
}

/// Another request of the session waits for the lock this one holds, and
/// gives up.
async fn lock_timeout(headers: http::HeaderMap, session: LockedSession) -> Result<&'static str> {
    let other = session.manager().load_request(&headers, None).await?;
    let _lock = other.lock().await?;
    Ok("unreachable")
}

/// Another request replaces the token while this one holds the lock; this
/// one's commit is then refused (409).
async fn replaced_under_lock(
    Extension(issued): Tokens,
    headers: http::HeaderMap,
    session: LockedSession,
) -> Result<&'static str> {
    let other = session.manager().load_request(&headers, None).await?;
    other.rotate().await?;
    issued.add(other.token());
    session.insert("late", 1)?;
    Ok("ok")
}

fn router(manager: SessionManager, issued: &Issued) -> Router {
    Router::new()
        .route("/write/{k}/{v}", get(write))
        .route("/read", get(read))
        .route("/login/{user}", get(login))
        .route("/rotate", get(rotate))
        .route("/logout", get(logout))
        .route("/everywhere", get(everywhere))
        .route("/ended-meanwhile", get(ended_meanwhile))
        .route("/replaced-meanwhile", get(replaced_meanwhile))
        .route("/locked-write/{k}/{v}", get(locked_write))
        .route("/lock-timeout", get(lock_timeout))
        .route("/replaced-under-lock", get(replaced_under_lock))
        .layer(SessionLayer::new(manager))
        .layer(Extension(issued.clone()))
}

fn config() -> SessionConfig {
    SessionConfig::default()
        .single_login(true)
        .rotation_interval(Some(ROTATE_EVERY))
        .rotation_grace(Duration::from_secs(30))
        .store_timeout(Duration::from_secs(1))
        .lock_timeout(Duration::from_millis(100))
        .lock_lease(LOCK_LEASE)
        .token_transport(TokenTransport::CookieThenHeader(HeaderTransport::bearer()))
}

/// A browser (or an API client, with `bearer`): keeps the token the server
/// sets.
#[derive(Clone, Default)]
struct Client {
    token: Option<String>,
    bearer: bool,
}

struct Reply {
    status: StatusCode,
    body: String,
}

impl Client {
    fn holding(token: &Option<String>) -> Self {
        Client {
            token: token.clone(),
            bearer: false,
        }
    }

    async fn get(&mut self, app: &Router, issued: &Issued, path: &str) -> Reply {
        let mut req = Request::get(path);
        if let Some(t) = &self.token {
            req = if self.bearer {
                req.header(AUTHORIZATION, format!("Bearer {t}"))
            } else {
                req.header(COOKIE, format!("id={t}"))
            };
        }
        let res = app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let from_header = res
            .headers()
            .get(TOKEN_HEADER)
            .map(|v| v.to_str().unwrap().to_owned());
        issued.add(from_header.clone());
        for c in res.headers().get_all(SET_COOKIE) {
            let value = c.to_str().unwrap();
            let token = value
                .strip_prefix("id=")
                .and_then(|v| v.split(';').next())
                .unwrap_or_default();
            issued.add(Some(token.to_owned()));
            self.token = (!token.is_empty()).then(|| token.to_owned());
        }
        if let Some(t) = from_header {
            self.token = Some(t);
        }
        let body = res.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }
}

// ---------------------------------------------------------------- the flow

/// What a backend lets the flow do besides requests.
enum Backend {
    Memory {
        clock: ManualClock,
        store: Flaky<MemoryStore>,
    },
    #[cfg(feature = "redis")]
    Redis {
        server: support::RedisServer,
        store: sessionkit::redis::RedisStore,
    },
}

impl Backend {
    fn memory() -> Self {
        let clock = ManualClock::starting_now();
        let store = MemoryStore::builder()
            .clock(clock.clone())
            .purge_interval(None)
            .build();
        Backend::Memory {
            clock,
            store: Flaky::new(store),
        }
    }

    fn store(&self) -> Arc<dyn SessionStore> {
        match self {
            Backend::Memory { store, .. } => Arc::new(store.clone()),
            #[cfg(feature = "redis")]
            Backend::Redis { store, .. } => Arc::new(store.clone()),
        }
    }

    async fn advance(&self, by: Duration) {
        match self {
            Backend::Memory { clock, .. } => clock.advance(by),
            #[cfg(feature = "redis")]
            Backend::Redis { .. } => tokio::time::sleep(by).await,
        }
    }

    /// Makes every store call fail (or only writes), or heals the store.
    fn set_down(&mut self, down: bool, writes_only: bool) {
        match self {
            Backend::Memory { store, .. } => {
                store.down.store(down && !writes_only, Ordering::SeqCst);
                store
                    .writes_down
                    .store(down && writes_only, Ordering::SeqCst);
            }
            #[cfg(feature = "redis")]
            Backend::Redis { server, .. } => {
                if down {
                    server.stop();
                } else {
                    server.restart();
                }
            }
        }
    }
}

/// Runs the flow on `backend`; answers the tokens issued, the public ids
/// they name, and the log text.
async fn flow(mut backend: Backend) -> (Vec<String>, Vec<SessionId>, String) {
    let logs = Logs::default();
    let _capture = logs.capture();
    let issued = Issued::default();
    let manager = SessionManager::from_arc(backend.store(), config());
    let app = router(manager.clone(), &issued);
    let lenient = router(
        SessionManager::from_arc(
            backend.store(),
            config().on_store_failure(StoreFailure::Continue),
        ),
        &issued,
    );
    let ok = |r: Reply, what: &str| assert_eq!(r.status, StatusCode::OK, "{what}: {}", r.body);

    // Anonymous write, then login (a new token; the old one is "moved").
    let mut alice = Client::default();
    ok(
        alice.get(&app, &issued, "/write/a/1").await,
        "anonymous write",
    );
    let anonymous = alice.token.clone();
    ok(alice.get(&app, &issued, "/login/alice").await, "login");
    let mut late = Client::holding(&anonymous);
    ok(late.get(&app, &issued, "/write/late/1").await, "late write");

    // Explicit rotation, then a late write with the replaced token.
    let before_rotate = alice.token.clone();
    ok(alice.get(&app, &issued, "/rotate").await, "rotate");
    assert_ne!(alice.token, before_rotate);
    ok(
        Client::holding(&before_rotate)
            .get(&app, &issued, "/write/late/2")
            .await,
        "late write after rotate",
    );

    // Another request rotates the token while one with it runs.
    ok(
        Client::holding(&alice.token)
            .get(&app, &issued, "/replaced-meanwhile")
            .await,
        "replaced meanwhile",
    );
    let rotated = issued.all().last().cloned();
    alice.token = rotated;
    ok(alice.get(&app, &issued, "/read").await, "after replaced");

    // Periodic rotation, and the old token used within the grace period.
    backend
        .advance(ROTATE_EVERY + Duration::from_millis(200))
        .await;
    let before_periodic = alice.token.clone();
    ok(alice.get(&app, &issued, "/write/b/2").await, "periodic");
    assert_ne!(alice.token, before_periodic, "periodic rotation");
    let mut grace = Client::holding(&before_periodic);
    ok(grace.get(&app, &issued, "/write/c/3").await, "grace write");
    let r = grace.get(&app, &issued, "/read").await;
    assert!(
        r.body.contains("c"),
        "the grace token reads the session: {}",
        r.body
    );

    // Single login: a second device evicts the first.
    let mut phone = Client {
        token: None,
        bearer: true,
    };
    ok(
        phone.get(&app, &issued, "/login/alice").await,
        "second login",
    );
    let r = alice.get(&app, &issued, "/read").await;
    assert!(r.body.starts_with("None"), "evicted: {}", r.body);
    ok(phone.get(&app, &issued, "/read").await, "bearer read");

    // A session ended while a request with it runs.
    ok(
        phone.get(&app, &issued, "/ended-meanwhile").await,
        "ended meanwhile",
    );

    // Session locks: a locked write (a new session is stored, then locked;
    // then a logged-in one), a lock timeout, a token replaced under the
    // lock, a holder whose lease ran out (its commit is fenced), and a lost
    // renewal.
    let mut ivy = Client::default();
    ok(
        ivy.get(&app, &issued, "/locked-write/l/1").await,
        "locked write, new session",
    );
    ok(ivy.get(&app, &issued, "/login/ivy").await, "login ivy");
    ok(
        ivy.get(&app, &issued, "/locked-write/l/2").await,
        "locked write",
    );
    let r = ivy.get(&app, &issued, "/lock-timeout").await;
    assert_eq!(r.status, StatusCode::LOCKED, "{}", r.body);
    let r = Client::holding(&ivy.token)
        .get(&app, &issued, "/replaced-under-lock")
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    ivy.token = issued.all().last().cloned();
    ok(
        ivy.get(&app, &issued, "/read").await,
        "after replaced under lock",
    );
    let ivy_token = Token::parse(ivy.token.as_deref().unwrap()).unwrap();
    let open = || manager.load(Some(ivy_token.clone()), ClientInfo::default());
    let stale = open().await.unwrap();
    drop(stale.lock().await.unwrap());
    stale.insert("stale", 1).unwrap();
    backend
        .advance(LOCK_LEASE + Duration::from_millis(200))
        .await;
    let fresh = open().await.unwrap();
    let held = fresh.lock().await.unwrap();
    // On the memory store the clock jumps past the lease under the guard:
    // the next renewal finds the lock lost.
    backend
        .advance(LOCK_LEASE + Duration::from_millis(200))
        .await;
    tokio::time::sleep(LOCK_LEASE).await;
    drop(held);
    manager.commit(&fresh).await.unwrap();
    let err = manager.commit(&stale).await.expect_err("fenced").error;
    assert!(matches!(err, Error::LockLost), "{err:?}");

    // Logout, revoke, revoke_user, logout everywhere.
    let mut bob = Client::default();
    ok(bob.get(&app, &issued, "/login/bob").await, "login bob");
    ok(bob.get(&app, &issued, "/logout").await, "logout");
    let mut carol = Client::default();
    ok(
        carol.get(&app, &issued, "/login/carol").await,
        "login carol",
    );
    let carol_id = Token::parse(carol.token.as_deref().unwrap()).unwrap().id();
    assert!(manager.revoke(&carol_id).await.unwrap());
    let mut dave = Client::default();
    ok(dave.get(&app, &issued, "/login/dave").await, "login dave");
    assert_eq!(manager.revoke_user("dave").await.unwrap(), 1);
    ok(dave.get(&app, &issued, "/read").await, "revoked read");
    let mut erin = Client::default();
    ok(erin.get(&app, &issued, "/login/erin").await, "login erin");
    ok(erin.get(&app, &issued, "/everywhere").await, "everywhere");

    // The store fails: 503 by default, a session-less request with
    // `Continue`; then it comes back.
    let mut frank = Client::default();
    ok(
        frank.get(&app, &issued, "/login/frank").await,
        "login frank",
    );
    let frank_token = frank.token.clone();
    backend.set_down(true, false);
    let r = frank.get(&app, &issued, "/read").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    let r = Client::default().get(&app, &issued, "/write/x/1").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    let r = Client::holding(&frank_token)
        .get(&lenient, &issued, "/read")
        .await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "None "));
    backend.set_down(false, false);
    let mut healed = false;
    for _ in 0..50 {
        if frank.get(&app, &issued, "/write/back/1").await.status == StatusCode::OK {
            healed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healed, "the store came back");
    if matches!(backend, Backend::Memory { .. }) {
        // Loads work, writes fail: the commit's failure, both policies.
        let mut gina = Client::default();
        ok(gina.get(&app, &issued, "/login/gina").await, "login gina");
        backend.set_down(true, true);
        let r = Client::holding(&gina.token)
            .get(&app, &issued, "/write/y/1")
            .await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
        let r = Client::holding(&gina.token)
            .get(&lenient, &issued, "/write/y/2")
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        backend.set_down(false, false);
    }

    // A corrupt session (Redis only: the memory store holds no encoded
    // data).
    #[cfg(feature = "redis")]
    if let Backend::Redis { server, store } = &backend {
        let mut henry = Client::default();
        ok(henry.get(&app, &issued, "/write/k/v").await, "henry");
        let id = Token::parse(henry.token.as_deref().unwrap()).unwrap().id();
        server.command(&["HSET", &store.session_key(&id), "d:k", "{not json"]);
        let r = henry.get(&app, &issued, "/read").await;
        assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "None "));
    }

    drop(_capture);
    let tokens = issued.all();
    let ids = tokens
        .iter()
        .map(|t| Token::parse(t).expect("an issued token parses").id())
        .collect();
    (tokens, ids, logs.text())
}

/// No line holds a token, its secret, or the first half of its secret;
/// some hold public ids; every path that logs was taken.
fn audit(backend: &str, tokens: &[String], ids: &[SessionId], logs: &str, expected: &[&str]) {
    assert!(
        tokens.len() >= 12,
        "{backend}: only {} tokens",
        tokens.len()
    );
    for token in tokens {
        let (_tag, secret) = token.split_once('.').expect("tag.secret");
        assert_eq!(secret.len(), 43, "{token}");
        for needle in [token.as_str(), secret, &secret[..22]] {
            if let Some(line) = logs.lines().find(|l| l.contains(needle)) {
                panic!("{backend}: a log line holds a token: {line}");
            }
        }
    }
    let with_ids = logs
        .lines()
        .filter(|l| ids.iter().any(|id| l.contains(id.as_str())))
        .count();
    assert!(
        with_ids > 0,
        "{backend}: no log line names a session; were logs captured?\n{logs}"
    );
    for message in expected {
        assert!(
            logs.contains(message),
            "{backend}: no {message:?} in the logs:\n{logs}"
        );
    }
    eprintln!(
        "{backend}: {} log lines, {with_ids} naming a session, {} tokens checked",
        logs.lines().count(),
        tokens.len()
    );
}

/// Messages every backend's flow must log.
const COMMON: [&str; 13] = [
    "session locked",
    "session lock released",
    "gave up waiting for the session lock",
    "token replaced under the session lock",
    "session lock lost before the commit",
    "token replaced by another request",
    "login evicted older sessions",
    "session ended by another request",
    "logged out",
    "logged out everywhere",
    "session error",
    "continuing without a session",
    "ERROR",
];

#[tokio::test(flavor = "current_thread")]
async fn memory_store_logs_carry_no_token() {
    let (tokens, ids, logs) = flow(Backend::memory()).await;
    let mut expected = COMMON.to_vec();
    expected.push("the session's changes are lost");
    expected.push("session lock lost: its lease ran out");
    audit("memory", &tokens, &ids, &logs, &expected);
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "current_thread")]
async fn redis_store_logs_carry_no_token() {
    let server = support::RedisServer::start();
    let store = sessionkit::redis::RedisStore::builder()
        .url(server.url())
        .command_timeout(Duration::from_millis(300))
        .retry_delay(Duration::from_millis(20), Duration::from_millis(100))
        .build()
        .await
        .expect("connect to the test's redis-server");
    let (tokens, ids, logs) = flow(Backend::Redis { server, store }).await;
    let mut expected = COMMON.to_vec();
    expected.push("corrupt session");
    audit("redis", &tokens, &ids, &logs, &expected);
}

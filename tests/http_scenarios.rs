//! HTTP behaviour of the session middleware in axum and actix-web: cookies,
//! reading and writing, what is (not) written, concurrent deltas, bad input,
//! store failures.
//!
//! Scenarios take a `support::Backend` and a `http_client::Framework`, and
//! run on every store × framework over real HTTP; move time only with
//! `backend.advance`. Per-user policies, login, logout and expiry are in
//! `policy_scenarios.rs`; header tokens in `header_scenarios.rs`.

mod http_client;
mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http::header::COOKIE;
use http::{HeaderValue, StatusCode};
use sessionkit::clock::ManualClock;
use sessionkit::store::{
    Delta, LoadOutcome, LockOutcome, Login, LoginOutcome, LogoutOutcome, NewSession, Retire,
    RotateOutcome, SaveOutcome, Timeouts, Written,
};
use sessionkit::{
    Error, MemoryStore, Result, Session, SessionConfig, SessionId, SessionInfo, SessionManager,
    SessionStore, StoreFailure,
};

use http_client::*;
use support::Backend;

scenario_tests!(@topologies
    continue_on_store_failure_serves_without_a_session,
    cookie_attributes_and_defaults,
    persistent_cookie_max_age_is_refreshed_by_touch,
    create_read_update_remove_across_requests,
    unchanged_session_writes_nothing,
    concurrent_requests_changing_different_keys_both_keep_their_change,
    bad_cookies_give_a_fresh_anonymous_session,
    store_failure_gives_503_and_recovers,
    slow_store_gives_503_within_the_timeout,
);

// ---------------------------------------------------------------- 1. cookies

async fn cookie_attributes_and_defaults(backend: Backend, fw: Framework) {
    let srv = app(fw, backend.manager(SessionConfig::default())).await;

    let res = get_with(&srv, "/set/a/1", None).await;
    assert_eq!(res.status, StatusCode::OK);
    let cookie = res.session_cookie().expect("first write sets the cookie");
    cookie.assert_default_attributes();
    assert!(
        !cookie.has("Max-Age"),
        "browser-session cookie by default: {}",
        cookie.raw
    );
    assert!(
        !cookie.has("Expires"),
        "browser-session cookie by default: {}",
        cookie.raw
    );
    assert_token_shape(&cookie.value);
    assert_eq!(res.cache_control(), Some("no-store"));
    assert_eq!(res.set_cookies().len(), 1, "only the session cookie");

    // Another first write gets another token.
    let other = get_with(&srv, "/set/a/1", None).await.expect_token();
    assert_token_shape(&other);
    assert_ne!(other, cookie.value);

    // The cookie works.
    assert_eq!(body_of(&srv, "/get/a", &cookie.value).await, "1");

    // Persistent cookie: Max-Age is the time the session has left.
    let idle = Duration::from_secs(20 * 60);
    let persistent = app(
        fw,
        backend.manager(
            SessionConfig::default()
                .persistent_cookie(true)
                .idle_timeout(idle),
        ),
    )
    .await;
    let res = get_with(&persistent, "/set/a/1", None).await;
    let cookie = res.session_cookie().expect("first write sets the cookie");
    cookie.assert_default_attributes();
    let max_age = cookie.max_age().expect("persistent cookie has Max-Age");
    assert!(
        (1190..=1200).contains(&max_age),
        "Max-Age {max_age} should be about the idle timeout (1200 s)"
    );
    assert_eq!(res.cache_control(), Some("no-store"));

    // Non-default attributes are honoured.
    let custom = app(
        fw,
        backend.manager(
            SessionConfig::default()
                .path("/app")
                .domain(Some("example.com".to_owned()))
                .same_site(sessionkit::SameSite::Strict)
                .secure(false)
                .http_only(false),
        ),
    )
    .await;
    let res = get_with(&custom, "/set/a/1", None).await;
    let c = res.session_cookie().expect("cookie");
    assert_eq!(c.value_of("Path"), Some("/app"), "{}", c.raw);
    assert_eq!(c.value_of("Domain"), Some("example.com"), "{}", c.raw);
    assert_eq!(
        c.value_of("SameSite")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("strict")
    );
    assert!(!c.has("Secure") && !c.has("HttpOnly"), "{}", c.raw);
}

async fn persistent_cookie_max_age_is_refreshed_by_touch(backend: Backend, fw: Framework) {
    // idle 2 s: the touch interval is capped at 1 s.
    let config = SessionConfig::default().idle_timeout(Duration::from_secs(2));
    let plain = app(fw, backend.manager(config.clone())).await;
    let persistent = app(fw, backend.manager(config.persistent_cookie(true))).await;

    let plain_token = get_with(&plain, "/set/a/1", None).await.expect_token();
    let res = get_with(&persistent, "/set/a/1", None).await;
    let persistent_token = res.expect_token();
    assert_eq!(res.session_cookie().unwrap().max_age(), Some(2));

    // A read within the touch interval moves nothing: no cookie.
    get_with(&persistent, "/get/a", Some(&persistent_token))
        .await
        .assert_ok_without_cookie("read before the touch interval");

    backend.advance(Duration::from_millis(1500)).await;

    // The touch moves the idle deadline: a persistent cookie is re-sent with
    // the same token and a fresh Max-Age; a browser-session cookie is not.
    let res = get_with(&persistent, "/get/a", Some(&persistent_token)).await;
    assert_eq!(res.body, "1");
    let c = res
        .session_cookie()
        .expect("touched persistent cookie is refreshed");
    assert_eq!(c.value, persistent_token, "refresh keeps the token");
    c.assert_default_attributes();
    let max_age = c.max_age().expect("Max-Age");
    assert!((1..=2).contains(&max_age), "Max-Age {max_age}");
    assert_eq!(res.cache_control(), Some("no-store"));

    let res = get_with(&plain, "/get/a", Some(&plain_token)).await;
    assert_eq!(res.body, "1");
    res.assert_ok_without_cookie("touch of a browser-session cookie");
}

// ---------------------------------------------------------------- 2. CRUD

async fn create_read_update_remove_across_requests(backend: Backend, fw: Framework) {
    let srv = app(fw, backend.manager(SessionConfig::default())).await;
    let mut c = Client::new();

    assert_eq!(c.body(&srv, "/incr").await, "1");
    let token = c.token().to_owned();
    for expected in 2..=5 {
        let res = c.get(&srv, "/incr").await;
        assert_eq!(res.body, expected.to_string());
        res.assert_ok_without_cookie("update of a stored session");
    }
    assert_eq!(c.token(), token, "the token does not change on updates");

    assert_eq!(c.body(&srv, "/set/name/bob").await, "ok");
    assert_eq!(c.body(&srv, "/get/name").await, "bob");
    assert_eq!(c.body(&srv, "/set/name/carol").await, "ok");
    assert_eq!(c.body(&srv, "/get/name").await, "carol");
    assert_eq!(c.body(&srv, "/keys").await, "n,name");

    assert_eq!(c.body(&srv, "/remove/name").await, "true");
    assert_eq!(c.body(&srv, "/remove/name").await, "false");
    assert_eq!(c.body(&srv, "/get/name").await, NONE);
    assert_eq!(c.body(&srv, "/get/n").await, "5");

    // Another client sees none of it.
    let mut other = Client::new();
    assert_eq!(other.body(&srv, "/get/n").await, NONE);
    assert_eq!(other.body(&srv, "/incr").await, "1");
    assert_eq!(c.body(&srv, "/get/n").await, "5");

    // Clear empties the session but keeps it (same cookie, counting restarts).
    assert_eq!(c.body(&srv, "/set/x/y").await, "ok");
    let res = c.get(&srv, "/clear").await;
    res.assert_ok_without_cookie("clear");
    assert_eq!(c.body(&srv, "/keys").await, "");
    assert_eq!(c.body(&srv, "/get/n").await, NONE);
    let res = c.get(&srv, "/incr").await;
    assert_eq!(res.body, "1");
    res.assert_ok_without_cookie("write after clear");
    assert_eq!(c.token(), token);
    assert_eq!(c.body(&srv, "/keys").await, "n");
}

// ---------------------------------------------------------------- 3. no writes

/// Delegates to another store and counts calls per method.
#[derive(Debug)]
struct CountingStore {
    inner: Arc<dyn SessionStore>,
    calls: Mutex<HashMap<&'static str, usize>>,
    saves: Mutex<Vec<Delta>>,
}

impl CountingStore {
    fn new(inner: Arc<dyn SessionStore>) -> Self {
        CountingStore {
            inner,
            calls: Mutex::default(),
            saves: Mutex::default(),
        }
    }

    fn count(&self, method: &'static str) {
        *self.calls.lock().unwrap().entry(method).or_default() += 1;
    }

    fn get(&self, method: &str) -> usize {
        self.calls.lock().unwrap().get(method).copied().unwrap_or(0)
    }

    fn total(&self) -> usize {
        self.calls.lock().unwrap().values().sum()
    }

    fn reset(&self) {
        self.calls.lock().unwrap().clear();
        self.saves.lock().unwrap().clear();
    }
}

#[async_trait]
impl SessionStore for CountingStore {
    async fn load(&self, id: &SessionId, timeouts: &Timeouts) -> Result<LoadOutcome> {
        self.count("load");
        self.inner.load(id, timeouts).await
    }

    async fn create(
        &self,
        id: &SessionId,
        session: NewSession<'_>,
        timeouts: &Timeouts,
    ) -> Result<Written> {
        self.count("create");
        self.inner.create(id, session, timeouts).await
    }

    async fn save(
        &self,
        id: &SessionId,
        delta: &Delta,
        timeouts: &Timeouts,
    ) -> Result<SaveOutcome> {
        self.count("save");
        self.saves.lock().unwrap().push(delta.clone());
        self.inner.save(id, delta, timeouts).await
    }

    async fn login(&self, login: Login<'_>, timeouts: &Timeouts) -> Result<LoginOutcome> {
        self.count("login");
        self.inner.login(login, timeouts).await
    }

    async fn rotate(
        &self,
        old: &SessionId,
        new: &SessionId,
        retire: Retire,
        timeouts: &Timeouts,
    ) -> Result<RotateOutcome> {
        self.count("rotate");
        self.inner.rotate(old, new, retire, timeouts).await
    }

    async fn revoke(&self, id: &SessionId) -> Result<bool> {
        self.count("revoke");
        self.inner.revoke(id).await
    }

    async fn logout(&self, id: &SessionId, timeouts: &Timeouts) -> Result<LogoutOutcome> {
        self.count("logout");
        self.inner.logout(id, timeouts).await
    }

    async fn revoke_user(&self, user_id: &str, except: Option<&SessionId>) -> Result<u64> {
        self.count("revoke_user");
        self.inner.revoke_user(user_id, except).await
    }

    async fn sessions_of(&self, user_id: &str, timeouts: &Timeouts) -> Result<Vec<SessionInfo>> {
        self.count("sessions_of");
        self.inner.sessions_of(user_id, timeouts).await
    }

    async fn lock(
        &self,
        id: &SessionId,
        lease: Duration,
        timeouts: &Timeouts,
    ) -> Result<LockOutcome> {
        self.count("lock");
        self.inner.lock(id, lease, timeouts).await
    }

    async fn renew_lock(&self, id: &SessionId, fence: u64, lease: Duration) -> Result<bool> {
        self.count("renew_lock");
        self.inner.renew_lock(id, fence, lease).await
    }

    async fn unlock(&self, id: &SessionId, fence: u64) -> Result<()> {
        self.count("unlock");
        self.inner.unlock(id, fence).await
    }
}

async fn unchanged_session_writes_nothing(backend: Backend, fw: Framework) {
    let counting = Arc::new(CountingStore::new(backend.store()));
    let config = SessionConfig::default().touch_interval(Duration::from_secs(600));
    let srv = app(fw, SessionManager::from_arc(counting.clone(), config)).await;

    // Anonymous requests that write nothing: no store call, no cookie.
    for path in ["/whoami", "/get/a", "/keys", "/id", "/remove/a", "/clear"] {
        get_with(&srv, path, None)
            .await
            .assert_ok_without_cookie(path);
    }
    assert_eq!(counting.total(), 0, "anonymous reads touched the store");

    // First write: one create, nothing else.
    let token = get_with(&srv, "/set/a/1", None).await.expect_token();
    assert_eq!(counting.get("create"), 1);
    assert_eq!(counting.total(), 1);
    get_with(&srv, "/set/b/2", Some(&token)).await;
    counting.reset();

    // Read-only requests: one load each, no write, no cookie.
    for _ in 0..3 {
        let res = get_with(&srv, "/get/a", Some(&token)).await;
        assert_eq!(res.body, "1");
        res.assert_ok_without_cookie("read-only request");
    }
    // Writing the value already there changes nothing either; so does
    // removing a key that is absent.
    get_with(&srv, "/set/a/1", Some(&token))
        .await
        .assert_ok_without_cookie("rewrite of an equal value");
    get_with(&srv, "/remove/zzz", Some(&token))
        .await
        .assert_ok_without_cookie("removal of an absent key");
    assert_eq!(counting.get("load"), 5);
    assert_eq!(counting.get("save"), 0, "an unchanged session was saved");
    assert_eq!(
        counting.get("create"),
        0,
        "an unchanged session was created"
    );
    assert_eq!(counting.total(), 5);

    // A change writes one delta with only the changed key.
    counting.reset();
    get_with(&srv, "/set/b/3", Some(&token))
        .await
        .assert_ok_without_cookie("update");
    assert_eq!((counting.get("load"), counting.get("save")), (1, 1));
    assert_eq!(counting.total(), 2);
    let saves = counting.saves.lock().unwrap().clone();
    assert_eq!(
        saves,
        vec![Delta {
            clear: false,
            remove: vec![],
            set: vec![("b".to_owned(), serde_json::json!("3"))],
            fence: None,
        }],
        "only the changed key is written"
    );

    // A well-formed but unknown token: one load, nothing created, no cookie.
    counting.reset();
    let unknown = get_with(&srv, "/set/q/1", None).await.expect_token();
    backend
        .manager(SessionConfig::default())
        .revoke(&token_id(&srv, &unknown).await)
        .await
        .unwrap();
    counting.reset();
    let res = get_with(&srv, "/get/q", Some(&unknown)).await;
    assert_eq!(res.body, NONE);
    res.assert_ok_without_cookie("read with an unknown token");
    assert_eq!(counting.get("load"), 1);
    assert_eq!(counting.total(), 1);
}

/// The public id of the session `token` names, via the `/id` route.
async fn token_id(srv: &TestServer, token: &str) -> SessionId {
    body_of(srv, "/id", token)
        .await
        .parse()
        .expect("a session id")
}

// ---------------------------------------------------------------- 4. delta merge

async fn concurrent_requests_changing_different_keys_both_keep_their_change(
    backend: Backend,
    fw: Framework,
) {
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let b = barrier.clone();
    let srv = with_layer(
        fw,
        routes().route(
            "/sync-set/{key}/{value}",
            move |session: Session, params: Vec<String>| {
                let b = b.clone();
                async move {
                    let [key, value] = <[String; 2]>::try_from(params).expect("two params");
                    // Both requests have loaded the session before either writes.
                    let before = session.keys().len();
                    b.wait().await;
                    session.insert(key, value)?;
                    Ok::<_, Error>(before.to_string())
                }
            },
        ),
        backend.manager(SessionConfig::default()),
    )
    .await;

    let mut c = Client::new();
    c.body(&srv, "/set/base/0").await;
    let token = c.token().to_owned();

    let (a, b) = tokio::join!(
        tokio::spawn({
            let r = srv.clone();
            let t = token.clone();
            async move { get_with(&r, "/sync-set/left/1", Some(&t)).await }
        }),
        tokio::spawn({
            let r = srv.clone();
            let t = token.clone();
            async move { get_with(&r, "/sync-set/right/2", Some(&t)).await }
        }),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    // Each saw only `base`: they really ran concurrently.
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "1"));
    assert_eq!((b.status, b.body.as_str()), (StatusCode::OK, "1"));

    assert_eq!(c.body(&srv, "/keys").await, "base,left,right");
    assert_eq!(c.body(&srv, "/get/left").await, "1");
    assert_eq!(c.body(&srv, "/get/right").await, "2");
    assert_eq!(c.body(&srv, "/get/base").await, "0");
}

// ---------------------------------------------------------------- 10. bad cookies

async fn bad_cookies_give_a_fresh_anonymous_session(backend: Backend, fw: Framework) {
    let manager = backend.manager(SessionConfig::default());
    let srv = app(fw, manager.clone()).await;

    // A real session with data and a user, and a revoked one.
    let mut real = Client::new();
    real.body(&srv, "/set/secret/42").await;
    real.body(&srv, "/login/alice").await;
    let token = real.token().to_owned();
    let mut gone = Client::new();
    gone.body(&srv, "/set/secret/43").await;
    gone.body(&srv, "/login/bob").await;
    let revoked = gone.token().to_owned();
    assert_eq!(manager.revoke_user("bob").await.unwrap(), 1);

    // One character of the secret changed.
    let tampered = {
        let mut t = token.clone().into_bytes();
        let i = t.len() - 10;
        t[i] = if t[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(t).unwrap()
    };
    let tag_changed = {
        let mut t = token.clone().into_bytes();
        t[0] = if t[0] == b'A' { b'B' } else { b'A' };
        String::from_utf8(t).unwrap()
    };
    let hv = |s: &str| HeaderValue::from_str(s).unwrap();
    let mut non_utf8 = b"id=\xff\xfe".to_vec();
    non_utf8.extend_from_slice(&token.as_bytes()[2..]);

    let cases: Vec<(&str, Vec<HeaderValue>)> = vec![
        ("empty value", vec![hv("id=")]),
        ("empty header", vec![hv("")]),
        ("garbage", vec![hv("id=garbage")]),
        ("syntax soup", vec![hv(";;=; id ; ==;id=;=x")]),
        (
            "10 kB value",
            vec![hv(&format!("id={}", "A".repeat(10 * 1024)))],
        ),
        (
            "20 kB header",
            vec![hv(&format!("x={}; id={token}", "A".repeat(20 * 1024)))],
        ),
        (
            "token-length junk",
            vec![hv(&format!("id={}", "+".repeat(token.len())))],
        ),
        (
            "non-UTF-8",
            vec![HeaderValue::from_bytes(&non_utf8).unwrap()],
        ),
        ("tampered secret", vec![hv(&format!("id={tampered}"))]),
        ("tampered tag", vec![hv(&format!("id={tag_changed}"))]),
        ("token plus a char", vec![hv(&format!("id={token}A"))]),
        ("revoked session", vec![hv(&format!("id={revoked}"))]),
        (
            "other cookie name",
            vec![hv(&format!("ID={token}; sid={token}"))],
        ),
        (
            "several Cookie headers",
            vec![
                hv("a=1"),
                hv("id=garbage"),
                hv(&format!("id={tampered}")),
                hv("id="),
            ],
        ),
    ];

    for (what, headers) in cases {
        let with = |path: &'static str| {
            let headers: Vec<_> = headers.iter().map(|v| (COOKIE, v.clone())).collect();
            let srv = srv.clone();
            async move { get_with_headers(&srv, path, headers).await }
        };
        let res = with("/keys").await;
        assert_eq!(res.status, StatusCode::OK, "{what}: {}", res.body);
        assert_eq!(res.body, "", "{what}: saw data");
        assert!(res.session_cookie().is_none(), "{what}: read set a cookie");
        assert_eq!(with("/whoami").await.body, ANONYMOUS, "{what}");
        assert_eq!(with("/get/secret").await.body, NONE, "{what}");

        // A write gets a brand-new session, never the one named.
        let res = with("/set/fresh/1").await;
        assert_eq!(res.status, StatusCode::OK, "{what}: {}", res.body);
        let fresh = res.expect_token();
        assert_ne!(fresh, token, "{what}");
        assert_ne!(fresh, revoked, "{what}");
        assert_eq!(body_of(&srv, "/keys", &fresh).await, "fresh", "{what}");
        assert_eq!(whoami(&srv, &fresh).await, ANONYMOUS, "{what}");
    }

    // The real session was not disturbed, and is found among several headers.
    assert_eq!(whoami(&srv, &token).await, "alice");
    let res = get_with_headers(
        &srv,
        "/get/secret",
        vec![
            (COOKIE, hv("theme=dark; id=garbage")),
            (COOKIE, hv(&format!("lang=en; id={token}"))),
        ],
    )
    .await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "42"));
    assert_eq!(whoami(&srv, &revoked).await, ANONYMOUS);
}

// ---------------------------------------------------------------- 11. purge

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_purge_frees_memory() {
    // The purge is the memory store's; the layer in front does not matter,
    // but both are exercised.
    for fw in Framework::all() {
        let clock = ManualClock::starting_now();
        let store = MemoryStore::builder()
            .clock(clock.clone())
            .purge_interval(Some(Duration::from_millis(20)))
            .build();
        let config = SessionConfig::default()
            .idle_timeout(Duration::from_secs(2))
            .rotation_grace(Duration::from_secs(5));
        let manager = SessionManager::new(store.clone(), config);
        let srv = app(fw, manager.clone()).await;

        let mut tokens = Vec::new();
        for _ in 0..5 {
            tokens.push(get_with(&srv, "/set/a/1", None).await.expect_token());
        }
        let mut user = Client::new();
        user.body(&srv, "/set/a/1").await;
        user.body(&srv, "/login/alice").await; // a session and a "moved" marker
        assert_eq!(store.len(), 7);

        // The purge task runs but keeps what is live.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(store.len(), 7, "purge removed live sessions");
        assert_eq!(body_of(&srv, "/get/a", &tokens[0]).await, "1");

        clock.advance(Duration::from_secs(10));
        // ~200 ms is plenty (the purge runs every 20 ms); allow more on a busy machine.
        let deadline = Instant::now() + Duration::from_secs(1);
        while !store.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(store.len(), 0, "expired sessions were not purged");
        assert!(store.is_empty());
        assert!(manager.sessions_of("alice").await.unwrap().is_empty());
        assert_eq!(body_of(&srv, "/get/a", &tokens[0]).await, NONE);
    }
}

// ---------------------------------------------------------------- 12. no layer

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_layer_is_a_500_that_names_the_layer() {
    for fw in Framework::all() {
        let srv = without_layer(fw, routes()).await; // no session middleware
        let layer = match fw {
            Framework::Axum => "SessionLayer",
            #[cfg(feature = "actix")]
            Framework::Actix => "SessionMiddleware",
        };
        for path in ["/whoami", "/set/a/1"] {
            let res = get_with(&srv, path, None).await;
            assert_eq!(
                res.status,
                StatusCode::INTERNAL_SERVER_ERROR,
                "{fw:?} {path}"
            );
            assert!(res.body.contains(layer), "{fw:?} {path}: {}", res.body);
            assert!(res.body.contains("layer"), "{fw:?} {path}: {}", res.body);
            assert!(
                res.session_cookie().is_none(),
                "{fw:?} {path}: cookie without a layer"
            );
        }
    }
}

// ---------------------------------------------------------------- 14. store failure

const UP: u8 = 0;
const DOWN: u8 = 1;
const SLOW: u8 = 2;

/// Delegates to another store; when down every call fails, when slow every
/// call first sleeps far longer than any store timeout.
#[derive(Debug)]
struct FlakyStore {
    inner: Arc<dyn SessionStore>,
    mode: AtomicU8,
    calls: std::sync::atomic::AtomicUsize,
}

impl FlakyStore {
    fn new(inner: Arc<dyn SessionStore>) -> Self {
        FlakyStore {
            inner,
            mode: AtomicU8::new(UP),
            calls: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    /// How many store calls were made, failed ones included.
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    async fn gate(&self) -> Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match self.mode.load(Ordering::SeqCst) {
            DOWN => Err(Error::store("down")),
            SLOW => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl SessionStore for FlakyStore {
    async fn load(&self, id: &SessionId, timeouts: &Timeouts) -> Result<LoadOutcome> {
        self.gate().await?;
        self.inner.load(id, timeouts).await
    }

    async fn create(
        &self,
        id: &SessionId,
        session: NewSession<'_>,
        timeouts: &Timeouts,
    ) -> Result<Written> {
        self.gate().await?;
        self.inner.create(id, session, timeouts).await
    }

    async fn save(
        &self,
        id: &SessionId,
        delta: &Delta,
        timeouts: &Timeouts,
    ) -> Result<SaveOutcome> {
        self.gate().await?;
        self.inner.save(id, delta, timeouts).await
    }

    async fn login(&self, login: Login<'_>, timeouts: &Timeouts) -> Result<LoginOutcome> {
        self.gate().await?;
        self.inner.login(login, timeouts).await
    }

    async fn rotate(
        &self,
        old: &SessionId,
        new: &SessionId,
        retire: Retire,
        timeouts: &Timeouts,
    ) -> Result<RotateOutcome> {
        self.gate().await?;
        self.inner.rotate(old, new, retire, timeouts).await
    }

    async fn revoke(&self, id: &SessionId) -> Result<bool> {
        self.gate().await?;
        self.inner.revoke(id).await
    }

    async fn logout(&self, id: &SessionId, timeouts: &Timeouts) -> Result<LogoutOutcome> {
        self.gate().await?;
        self.inner.logout(id, timeouts).await
    }

    async fn revoke_user(&self, user_id: &str, except: Option<&SessionId>) -> Result<u64> {
        self.gate().await?;
        self.inner.revoke_user(user_id, except).await
    }

    async fn sessions_of(&self, user_id: &str, timeouts: &Timeouts) -> Result<Vec<SessionInfo>> {
        self.gate().await?;
        self.inner.sessions_of(user_id, timeouts).await
    }

    async fn lock(
        &self,
        id: &SessionId,
        lease: Duration,
        timeouts: &Timeouts,
    ) -> Result<LockOutcome> {
        self.gate().await?;
        self.inner.lock(id, lease, timeouts).await
    }

    async fn renew_lock(&self, id: &SessionId, fence: u64, lease: Duration) -> Result<bool> {
        self.gate().await?;
        self.inner.renew_lock(id, fence, lease).await
    }

    async fn unlock(&self, id: &SessionId, fence: u64) -> Result<()> {
        self.gate().await?;
        self.inner.unlock(id, fence).await
    }
}

fn assert_unavailable(res: &Resp, what: &str) {
    assert_eq!(
        res.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{what}: {}",
        res.body
    );
    assert!(
        res.body.contains("unavailable"),
        "{what}: body should say the store is unavailable: {}",
        res.body
    );
    assert!(
        !res.body.contains("down"),
        "{what}: store internals leaked: {}",
        res.body
    );
}

async fn store_failure_gives_503_and_recovers(backend: Backend, fw: Framework) {
    let flaky = Arc::new(FlakyStore::new(backend.store()));
    let srv = app(
        fw,
        SessionManager::from_arc(flaky.clone(), SessionConfig::default()),
    )
    .await;
    let mut c = Client::new();
    c.body(&srv, "/set/a/1").await;
    let token = c.token().to_owned();

    flaky.set(DOWN);
    for path in ["/get/a", "/set/a/2", "/whoami", "/login/alice", "/logout"] {
        let res = get_with(&srv, path, Some(&token)).await;
        assert_unavailable(&res, path);
        assert!(
            res.session_cookie().is_none(),
            "{path}: cookie changed on failure"
        );
    }
    // An anonymous write must store a session: that fails too.
    assert_unavailable(&get_with(&srv, "/set/b/1", None).await, "anonymous write");
    // An anonymous read needs no store at all.
    get_with(&srv, "/whoami", None)
        .await
        .assert_ok_without_cookie("anonymous read while the store is down");
    // A handler that never asks for the session is untouched by the outage,
    // even when the request carries a session cookie: loading is lazy.
    let calls_before_plain = flaky.calls();
    let res = get_with(&srv, PLAIN, Some(&token)).await;
    assert_eq!(res.body, PLAIN_BODY);
    res.assert_ok_without_cookie("a session-free route while the store is down");
    assert_eq!(
        flaky.calls(),
        calls_before_plain,
        "a session-free route makes no store call"
    );

    // The store comes back: the session is intact and usable.
    flaky.set(UP);
    assert_eq!(body_of(&srv, "/get/a", &token).await, "1");
    assert_eq!(body_of(&srv, "/set/a/3", &token).await, "ok");
    assert_eq!(body_of(&srv, "/get/a", &token).await, "3");
}

async fn continue_on_store_failure_serves_without_a_session(backend: Backend, fw: Framework) {
    let flaky = Arc::new(FlakyStore::new(backend.store()));
    let f = flaky.clone();
    let config = SessionConfig::default().on_store_failure(StoreFailure::Continue);
    let srv = with_layer(
        fw,
        routes().route("/fail-at-save", move |session: Session, _| {
            let f = f.clone();
            async move {
                // The load worked; the store dies before the write.
                f.set(DOWN);
                session.insert("a", "lost")?;
                Ok::<_, Error>("handler done")
            }
        }),
        SessionManager::from_arc(flaky.clone(), config),
    )
    .await;
    let mut c = Client::new();
    c.body(&srv, "/set/a/1").await;
    c.body(&srv, "/login/ada").await;
    let token = c.token().to_owned();

    flaky.set(DOWN);
    let res = get_with(&srv, "/whoami", Some(&token)).await;
    res.assert_ok_without_cookie("a load failure lets the request through");
    assert_eq!(res.body, ANONYMOUS, "with a stand-in anonymous session");
    let res = get_with(&srv, "/set/a/2", Some(&token)).await;
    res.assert_ok_without_cookie("a write to the stand-in session");
    assert_eq!(res.body, "ok");

    flaky.set(UP);
    let res = get_with(&srv, "/fail-at-save", Some(&token)).await;
    assert_eq!(res.status, StatusCode::OK, "the handler's response is kept");
    assert_eq!(res.body, "handler done");
    assert!(res.session_cookie().is_none());

    flaky.set(UP);
    assert_eq!(
        whoami(&srv, &token).await,
        "ada",
        "the real session is intact"
    );
    assert_eq!(
        body_of(&srv, "/get/a", &token).await,
        "1",
        "nothing written while the store was down"
    );
}

async fn slow_store_gives_503_within_the_timeout(backend: Backend, fw: Framework) {
    let flaky = Arc::new(FlakyStore::new(backend.store()));
    let f = flaky.clone();
    let srv = with_layer(
        fw,
        routes().route("/slow-save", move |session: Session, _| {
            let f = f.clone();
            async move {
                // The load was fast; the save will be slow.
                f.set(SLOW);
                session.insert("late", 1)?;
                Ok::<_, Error>("handler done")
            }
        }),
        SessionManager::from_arc(
            flaky.clone(),
            SessionConfig::default().store_timeout(Duration::from_millis(100)),
        ),
    )
    .await;
    let token = get_with(&srv, "/set/a/1", None).await.expect_token();

    let timed = |path: &'static str, mode: u8| {
        let srv = srv.clone();
        let token = token.clone();
        let flaky = flaky.clone();
        async move {
            flaky.set(mode);
            let started = Instant::now();
            let res = get_with(&srv, path, Some(&token)).await;
            let took = started.elapsed();
            assert_unavailable(&res, path);
            assert!(took < Duration::from_secs(1), "{path}: took {took:?}");
            assert!(took >= Duration::from_millis(100), "{path}: took {took:?}");
        }
    };
    timed("/get/a", SLOW).await; // slow load
    timed("/set/b/1", SLOW).await; // slow load
    timed("/slow-save", UP).await; // fast load, slow save

    // The store answers again: nothing half-written, the session works.
    flaky.set(UP);
    assert_eq!(body_of(&srv, "/keys", &token).await, "a");
    assert_eq!(body_of(&srv, "/set/c/1", &token).await, "ok");
    assert_eq!(body_of(&srv, "/keys", &token).await, "a,c");
}

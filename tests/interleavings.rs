//! Every interleaving of the store steps of a few concurrent requests, on
//! the memory store: the lifecycle rule of the crate docs ("Parallel
//! requests") checked systematically, not by chance.
//!
//! A `Stepped` store wraps a `MemoryStore` and parks every call until the
//! explorer lets exactly one parked request go. Requests are manager-level
//! (load, handler work, commit), each a task tagged with its index. The
//! explorer replays a schedule prefix and branches at every point where
//! more than one request is parked (stateless model checking), so every
//! order of store steps is run once. Checked in each run, for every
//! response: no removal cookie while the session or its successor lives;
//! every cookie set names a live session of the right user; every write
//! answered 2xx is in the store unless the rule says it is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use sessionkit::clock::ManualClock;
use sessionkit::store::{
    ClientInfo, Delta, LoadOutcome, LockOutcome, Login, LoginOutcome, LogoutOutcome, NewSession,
    Retire, RotateOutcome, SaveOutcome, Timeouts, Token, Written,
};
use sessionkit::{
    MemoryStore, Result, Session, SessionConfig, SessionId, SessionInfo, SessionManager,
    SessionStore,
};
use tokio::sync::oneshot;

tokio::task_local! {
    static WHO: usize;
}

/// The store steps taken in one run: (request, operation), in order.
type Trace = Arc<Mutex<Vec<(usize, &'static str)>>>;

/// The store calls waiting for the explorer: (request, its release).
type Parked = Arc<Mutex<Vec<(usize, oneshot::Sender<()>)>>>;

#[derive(Debug, Clone)]
struct Stepped {
    inner: MemoryStore,
    parked: Parked,
    trace: Trace,
}

impl Stepped {
    /// Parks the calling request until the explorer releases it. Calls made
    /// outside a tagged request (set-up, checks) run at once.
    async fn step(&self, op: &'static str) {
        let Ok(who) = WHO.try_with(|w| *w) else {
            return;
        };
        let (tx, rx) = oneshot::channel();
        self.parked.lock().unwrap().push((who, tx));
        rx.await.expect("the explorer releases every parked call");
        self.trace.lock().unwrap().push((who, op));
    }
}

#[async_trait]
impl SessionStore for Stepped {
    async fn load(&self, id: &SessionId, t: &Timeouts) -> Result<LoadOutcome> {
        self.step("load").await;
        self.inner.load(id, t).await
    }
    async fn create(&self, id: &SessionId, s: NewSession<'_>, t: &Timeouts) -> Result<Written> {
        self.step("create").await;
        self.inner.create(id, s, t).await
    }
    async fn save(&self, id: &SessionId, d: &Delta, t: &Timeouts) -> Result<SaveOutcome> {
        self.step("save").await;
        self.inner.save(id, d, t).await
    }
    async fn login(&self, l: Login<'_>, t: &Timeouts) -> Result<LoginOutcome> {
        self.step("login").await;
        self.inner.login(l, t).await
    }
    async fn rotate(
        &self,
        old: &SessionId,
        new: &SessionId,
        r: Retire,
        t: &Timeouts,
    ) -> Result<RotateOutcome> {
        self.step("rotate").await;
        self.inner.rotate(old, new, r, t).await
    }
    async fn revoke(&self, id: &SessionId) -> Result<bool> {
        self.step("revoke").await;
        self.inner.revoke(id).await
    }
    async fn logout(&self, id: &SessionId, t: &Timeouts) -> Result<LogoutOutcome> {
        self.step("logout").await;
        self.inner.logout(id, t).await
    }
    async fn revoke_user(&self, user: &str, except: Option<&SessionId>) -> Result<u64> {
        self.step("revoke_user").await;
        self.inner.revoke_user(user, except).await
    }
    async fn sessions_of(&self, user: &str, t: &Timeouts) -> Result<Vec<SessionInfo>> {
        self.step("sessions_of").await;
        self.inner.sessions_of(user, t).await
    }
    async fn lock(&self, id: &SessionId, lease: Duration, t: &Timeouts) -> Result<LockOutcome> {
        self.step("lock").await;
        self.inner.lock(id, lease, t).await
    }
    async fn renew_lock(&self, id: &SessionId, fence: u64, lease: Duration) -> Result<bool> {
        self.inner.renew_lock(id, fence, lease).await
    }
    async fn unlock(&self, id: &SessionId, fence: u64) -> Result<()> {
        self.step("unlock").await;
        self.inner.unlock(id, fence).await
    }
}

/// What a request's handler does between load and commit.
#[derive(Debug, Clone)]
enum Work {
    Read,
    Write(&'static str),
    Login(&'static str),
    Rotate,
    /// Revokes the session the token names, through the manager (an admin
    /// or another device), without touching this request's session.
    RevokeOther(SessionId),
}

/// One response, as the checks need it.
#[derive(Debug, Clone)]
struct Response {
    ok: bool,
    /// `Some(None)`: a removal cookie; `Some(Some(token))`: a new token.
    cookie: Option<Option<String>>,
}

/// A world: store, manager, and the token the browser holds before the
/// concurrent requests.
struct World {
    store: Stepped,
    manager: SessionManager,
    clock: ManualClock,
}

fn world(config: SessionConfig) -> World {
    let clock = ManualClock::starting_now();
    let inner = MemoryStore::builder()
        .clock(clock.clone())
        .purge_interval(None)
        .build();
    let store = Stepped {
        inner,
        parked: Arc::default(),
        trace: Arc::default(),
    };
    let manager = SessionManager::new(store.clone(), config);
    World {
        store,
        manager,
        clock,
    }
}

fn cookie_of(headers: &sessionkit::http::ResponseHeaders) -> Option<Option<String>> {
    headers.iter().find_map(|(name, value, _)| {
        if name != "set-cookie" {
            return None;
        }
        let (_, rest) = value.split_once('=')?;
        let token = rest.split(';').next().unwrap_or_default().to_owned();
        let removal = token.is_empty() || value.contains("Max-Age=0");
        Some((!removal).then_some(token))
    })
}

async fn request(manager: SessionManager, token: Option<String>, work: Work) -> Response {
    let token = token.and_then(|t| Token::parse(&t));
    let session: Session = manager.load(token, ClientInfo::default()).await.unwrap();
    let handled = match work {
        Work::Read => session.get::<String>("seed").map(|_| ()),
        Work::Write(key) => session.insert(key, "v"),
        Work::Login(user) => session.login(user).await,
        Work::Rotate => session.rotate().await,
        Work::RevokeOther(id) => manager.revoke(&id).await.map(|_| ()),
    };
    match manager.commit(&session).await {
        Ok(headers) => Response {
            ok: handled.is_ok(),
            cookie: cookie_of(&headers),
        },
        Err(failed) => Response {
            ok: false,
            cookie: cookie_of(&failed.headers),
        },
    }
}

/// Runs `works` concurrently, releasing parked store calls in the order
/// `choose` picks among the parked requests. Returns the responses and
/// the branching points met (how many were parked at each step).
async fn run(
    w: &World,
    token: &str,
    works: &[Work],
    prefix: &[usize],
) -> (Vec<Response>, Vec<usize>) {
    w.store.trace.lock().unwrap().clear();
    let mut tasks = Vec::new();
    for (i, work) in works.iter().enumerate() {
        let fut = request(w.manager.clone(), Some(token.to_owned()), work.clone());
        tasks.push(tokio::spawn(WHO.scope(i, fut)));
    }
    let mut widths = Vec::new();
    let mut step = 0;
    loop {
        // Quiescence: every request is parked or done.
        let mut spins = 0;
        loop {
            tokio::task::yield_now().await;
            let parked = w.store.parked.lock().unwrap().len();
            let done = tasks.iter().filter(|t| t.is_finished()).count();
            if parked + done == tasks.len() {
                break;
            }
            spins += 1;
            assert!(spins < 10_000, "a request neither parks nor ends");
        }
        let mut parked = std::mem::take(&mut *w.store.parked.lock().unwrap());
        if parked.is_empty() {
            break;
        }
        parked.sort_by_key(|(who, _)| *who);
        let pick = prefix.get(step).copied().unwrap_or(0).min(parked.len() - 1);
        widths.push(parked.len());
        let (_, go) = parked.remove(pick);
        w.store.parked.lock().unwrap().extend(parked);
        go.send(()).unwrap();
        step += 1;
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("request task"));
    }
    (out, widths)
}

/// Every schedule, depth first: the next prefix after `prefix` given the
/// widths met on its run, or `None` when all were run.
fn next_prefix(mut prefix: Vec<usize>, widths: &[usize]) -> Option<Vec<usize>> {
    prefix.resize(widths.len(), 0);
    while let Some(last) = prefix.pop() {
        if last + 1 < widths[prefix.len()] {
            prefix.push(last + 1);
            return Some(prefix);
        }
    }
    None
}

/// Explores every schedule of `works` against a fresh world from `setup`,
/// and calls `check` on each run. Returns how many schedules ran.
async fn explore<S, F>(setup: S, works: impl Fn(&SessionId) -> Vec<Work>, check: F) -> usize
where
    S: Fn() -> BoxFuture<'static, (World, String)>,
    F: for<'a> Fn(
        &'a World,
        &'a str,
        &'a [Response],
        &'a [(usize, &'static str)],
    ) -> BoxFuture<'a, ()>,
{
    let mut prefix = Vec::new();
    let mut runs = 0;
    loop {
        let (w, token) = setup().await;
        let id = Token::parse(&token).unwrap().id();
        let (responses, widths) = run(&w, &token, &works(&id), &prefix).await;
        let trace = w.store.trace.lock().unwrap().clone();
        check(&w, &token, &responses, &trace).await;
        runs += 1;
        match next_prefix(prefix, &widths) {
            Some(p) => prefix = p,
            None => return runs,
        }
    }
}

/// Logs `user` in outside the explored requests; the token.
async fn logged_in(manager: &SessionManager, user: &str, seed: bool) -> String {
    let s = manager.load(None, ClientInfo::default()).await.unwrap();
    if seed {
        s.insert("seed", "1").unwrap();
    }
    s.login(user).await.unwrap();
    let headers = manager.commit(&s).await.unwrap();
    cookie_of(&headers).flatten().expect("login sets a cookie")
}

/// An anonymous stored session with `seed`; the token.
async fn anonymous(manager: &SessionManager) -> String {
    let s = manager.load(None, ClientInfo::default()).await.unwrap();
    s.insert("seed", "1").unwrap();
    let headers = manager.commit(&s).await.unwrap();
    cookie_of(&headers)
        .flatten()
        .expect("first write sets a cookie")
}

/// What a token reads now: (user, data).
async fn reads(
    manager: &SessionManager,
    token: &str,
) -> Option<(Option<String>, HashMap<String, String>)> {
    let s = manager
        .load(Token::parse(token), ClientInfo::default())
        .await
        .unwrap();
    s.id()?;
    let data = s
        .keys()
        .into_iter()
        .map(|k| {
            let v: String = s.get(&k).unwrap().unwrap_or_default();
            (k, v)
        })
        .collect();
    Some((s.user_id(), data))
}

fn index_of(trace: &[(usize, &str)], who: usize, op: &str) -> Option<usize> {
    trace.iter().position(|(w, o)| *w == who && *o == op)
}

#[tokio::test(flavor = "current_thread")]
async fn periodic_rotation_raced_by_siblings() {
    let config = || {
        SessionConfig::default()
            .rotation_interval(Some(Duration::from_secs(60)))
            .rotation_grace(Duration::from_secs(30))
    };
    let setup = || -> BoxFuture<'static, (World, String)> {
        Box::pin(async move {
            let w = world(config());
            let token = logged_in(&w.manager, "ada", false).await;
            w.clock.advance(Duration::from_secs(61));
            (w, token)
        })
    };
    let works = |_: &SessionId| vec![Work::Write("a"), Work::Write("b"), Work::Read];
    let runs = explore(setup, works, |w, token, responses, _| {
        Box::pin(async move {
            let mut tokens = vec![token.to_owned()];
            for (i, r) in responses.iter().enumerate() {
                assert!(r.ok, "request {i} failed: {responses:?}");
                let cookie = r.cookie.clone();
                assert_ne!(
                    cookie,
                    Some(None),
                    "request {i} clears the cookie: {responses:?}"
                );
                tokens.extend(cookie.flatten());
            }
            assert!(
                tokens.len() <= 2,
                "one rotation, one new cookie: {responses:?}"
            );
            // Whatever order the browser applies them in, its token works
            // and holds every write.
            for t in &tokens {
                let (user, data) = reads(&w.manager, t).await.expect("token works");
                assert_eq!(user.as_deref(), Some("ada"));
                assert!(data.contains_key("a") && data.contains_key("b"), "{data:?}");
            }
        })
    })
    .await;
    eprintln!("interleavings: periodic rotation, 3 requests: {runs} schedules");
    assert!(
        runs > 20,
        "the requests really interleave ({runs} schedules)"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn login_raced_by_writers_with_the_pre_login_token() {
    let setup = || -> BoxFuture<'static, (World, String)> {
        Box::pin(async move {
            let w = world(SessionConfig::default());
            let token = anonymous(&w.manager).await;
            (w, token)
        })
    };
    let works = |_: &SessionId| vec![Work::Login("ada"), Work::Write("a"), Work::Write("b")];
    let runs = explore(setup, works, |w, _token, responses, trace| {
        Box::pin(async move {
            let login = responses[0]
                .cookie
                .clone()
                .flatten()
                .expect("login sets a cookie");
            for (i, r) in responses.iter().enumerate().skip(1) {
                assert!(r.ok, "writer {i} failed");
                assert_eq!(r.cookie, None, "writer {i} sets a cookie: {responses:?}");
            }
            let (user, data) = reads(&w.manager, &login).await.expect("login token works");
            assert_eq!(user.as_deref(), Some("ada"));
            assert_eq!(
                data.get("seed").map(String::as_str),
                Some("1"),
                "data carried"
            );
            let login_at = index_of(trace, 0, "login").unwrap();
            for (i, key) in [(1, "a"), (2, "b")] {
                let saved_before = index_of(trace, i, "save").is_some_and(|s| s < login_at);
                assert_eq!(
                    data.contains_key(key),
                    saved_before,
                    "write {key} saved before the login is carried, after it dropped: {trace:?}"
                );
            }
        })
    })
    .await;
    eprintln!("interleavings: login + 2 writers: {runs} schedules");
    assert!(runs > 20);
}

#[tokio::test(flavor = "current_thread")]
async fn explicit_rotation_raced_by_writers() {
    let setup = || -> BoxFuture<'static, (World, String)> {
        Box::pin(async move {
            let w = world(SessionConfig::default());
            let token = logged_in(&w.manager, "ada", false).await;
            (w, token)
        })
    };
    let works = |_: &SessionId| vec![Work::Rotate, Work::Write("a"), Work::Write("b")];
    let runs = explore(setup, works, |w, _token, responses, trace| {
        Box::pin(async move {
            let new = responses[0]
                .cookie
                .clone()
                .flatten()
                .expect("rotate sets a cookie");
            for (i, r) in responses.iter().enumerate().skip(1) {
                assert!(r.ok, "writer {i} failed");
                assert_eq!(r.cookie, None, "writer {i} sets a cookie: {responses:?}");
            }
            let (user, data) = reads(&w.manager, &new).await.expect("new token works");
            assert_eq!(user.as_deref(), Some("ada"));
            let rotate_at = index_of(trace, 0, "rotate").unwrap();
            for (i, key) in [(1, "a"), (2, "b")] {
                let saved_before = index_of(trace, i, "save").is_some_and(|s| s < rotate_at);
                assert_eq!(data.contains_key(key), saved_before, "{key}: {trace:?}");
            }
        })
    })
    .await;
    eprintln!("interleavings: rotate + 2 writers: {runs} schedules");
    assert!(runs > 20);
}

#[tokio::test(flavor = "current_thread")]
async fn revoke_raced_by_a_login_from_the_same_session() {
    let setup = || -> BoxFuture<'static, (World, String)> {
        Box::pin(async move {
            let w = world(SessionConfig::default());
            let token = anonymous(&w.manager).await;
            (w, token)
        })
    };
    let works = |id: &SessionId| vec![Work::Login("ada"), Work::RevokeOther(id.clone())];
    let runs = explore(setup, works, |w, _token, responses, trace| {
        Box::pin(async move {
            let login = responses[0]
                .cookie
                .clone()
                .flatten()
                .expect("login sets a cookie");
            let (user, data) = reads(&w.manager, &login).await.expect("login token works");
            assert_eq!(user.as_deref(), Some("ada"));
            let revoked_first = index_of(trace, 1, "revoke") < index_of(trace, 0, "login");
            assert_eq!(
                data.contains_key("seed"),
                !revoked_first,
                "a revoked session's data is never carried into a login: {trace:?}"
            );
        })
    })
    .await;
    eprintln!("interleavings: login + revoke: {runs} schedules");
    assert!(runs >= 3);
}

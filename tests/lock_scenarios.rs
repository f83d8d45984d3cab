//! Session locks end to end: the `LockedSession` extractor over real HTTP
//! on every store × framework (`scenario_tests!`), and the manager-level
//! semantics of `Session::lock` on every store (`backend_tests!`).
//!
//! Time moves only with `backend.advance` (the memory store's clock is
//! manual); leases and timeouts are short so the suite stays fast.

mod http_client;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use sessionkit::store::{ClientInfo, Token};
use sessionkit::{Error, Session, SessionConfig, SessionManager};
use tokio::sync::Notify;

use http_client::*;
use support::Backend;

scenario_tests!(
    locked_increments_are_exact_under_concurrency,
    unlocked_increments_lose_updates_under_concurrency,
    lock_timeout_is_a_423_within_the_timeout,
    holder_past_its_lease_gets_lock_lost_and_does_not_overwrite,
    locking_a_new_session_stores_it,
);

backend_tests!(
    lock_starts_from_the_latest_data_and_keeps_pending_changes,
    lock_is_released_at_commit_not_when_the_guard_drops,
    lock_is_reentrant_within_a_request,
    renewal_keeps_the_lock_while_the_guard_lives,
    a_request_dropped_without_commit_releases_its_lock,
    logout_under_the_lock_ends_it,
    rotation_under_the_lock,
);

/// How many concurrent requests the increment scenarios send.
const CONCURRENT: u64 = 32;

/// The longest a scenario waits for a handler to signal.
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(10);

async fn signalled(n: &Notify, what: &str) {
    tokio::time::timeout(SIGNAL_TIMEOUT, n.notified())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// The standard routes plus `/locked-incr`: `/incr` under `LockedSession`.
fn lock_routes() -> Routes {
    routes().route_locked("/locked-incr", |session, _| async move {
        let n: u64 = session.get("n")?.unwrap_or(0) + 1;
        session.insert("n", n)?;
        // Let other requests interleave, as real work would.
        tokio::task::yield_now().await;
        Ok(n.to_string())
    })
}

/// A stored session holding `x` (not `n`): the counter starts absent.
async fn stored_session(srv: &TestServer) -> String {
    let mut c = Client::new();
    c.body(srv, "/set/x/1").await;
    c.token().to_owned()
}

/// Sends `CONCURRENT` requests to `path` at once with `token`.
async fn concurrently(srv: &TestServer, path: &'static str, token: &str) -> Vec<Resp> {
    let tasks: Vec<_> = (0..CONCURRENT)
        .map(|_| {
            let srv = srv.clone();
            let token = token.to_owned();
            tokio::spawn(async move { get_with(&srv, path, Some(&token)).await })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("request task"));
    }
    out
}

// ---------------------------------------------------------------- HTTP

async fn locked_increments_are_exact_under_concurrency(backend: Backend, fw: Framework) {
    // Generous: the point is the count, not the speed of a debug build.
    let config = SessionConfig::default().lock_timeout(Duration::from_secs(30));
    let srv = with_layer(fw, lock_routes(), backend.manager(config)).await;
    let token = stored_session(&srv).await;

    let started = Instant::now();
    let replies = concurrently(&srv, "/locked-incr", &token).await;
    let took = started.elapsed();
    let mut seen = Vec::new();
    for r in &replies {
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert!(r.session_cookie().is_none(), "no cookie change");
        seen.push(r.body.parse::<u64>().expect("a number"));
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=CONCURRENT).collect::<Vec<_>>(),
        "each request saw every earlier increment"
    );
    assert_eq!(
        body_of(&srv, "/get/n", &token).await,
        CONCURRENT.to_string()
    );
    println!(
        "with the lock, {} × {fw:?}: {CONCURRENT} concurrent increments left n = {CONCURRENT} in {took:?}",
        backend.name()
    );
}

async fn unlocked_increments_lose_updates_under_concurrency(backend: Backend, fw: Framework) {
    let srv = app(fw, backend.manager(SessionConfig::default())).await;
    let token = stored_session(&srv).await;

    let replies = concurrently(&srv, "/incr", &token).await;
    for r in &replies {
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let n: u64 = body_of(&srv, "/get/n", &token)
        .await
        .parse()
        .expect("a number");
    // Last writer wins per key: how many are lost depends on timing.
    assert!((1..=CONCURRENT).contains(&n), "n = {n}");
    println!(
        "without the lock, {} × {fw:?}: {CONCURRENT} concurrent increments left n = {n} ({} lost)",
        backend.name(),
        CONCURRENT - n
    );
}

async fn lock_timeout_is_a_423_within_the_timeout(backend: Backend, fw: Framework) {
    let timeout = Duration::from_millis(300);
    let holding = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let (h, r) = (holding.clone(), release.clone());
    let routes = lock_routes().route_locked("/hold", move |_session, _| {
        let (holding, release) = (h.clone(), r.clone());
        async move {
            holding.notify_one();
            release.notified().await;
            Ok("held")
        }
    });
    let config = SessionConfig::default().lock_timeout(timeout);
    let srv = with_layer(fw, routes, backend.manager(config)).await;
    let token = stored_session(&srv).await;

    let holder = {
        let (srv, token) = (srv.clone(), token.clone());
        tokio::spawn(async move { get_with(&srv, "/hold", Some(&token)).await })
    };
    signalled(&holding, "the holder").await;

    let started = Instant::now();
    let res = get_with(&srv, "/locked-incr", Some(&token)).await;
    let took = started.elapsed();
    assert_eq!(res.status, StatusCode::LOCKED, "{}", res.body);
    assert!(res.body.contains("locked"), "{}", res.body);
    assert!(
        took >= timeout && took < timeout + Duration::from_secs(2),
        "answered after {took:?} (timeout {timeout:?})"
    );
    assert!(res.session_cookie().is_none());
    // A route that does not lock is not blocked.
    assert_eq!(body_of(&srv, "/get/x", &token).await, "1");

    release.notify_one();
    let held = holder.await.expect("holder task");
    assert_eq!((held.status, held.body.as_str()), (StatusCode::OK, "held"));
    // Released at the holder's commit: the next lock is taken at once, and
    // the refused request wrote nothing.
    assert_eq!(body_of(&srv, "/locked-incr", &token).await, "1");
}

async fn holder_past_its_lease_gets_lock_lost_and_does_not_overwrite(
    backend: Backend,
    fw: Framework,
) {
    let lease = Duration::from_millis(300);
    let stalled = Arc::new(Notify::new());
    let resume = Arc::new(Notify::new());
    let (st, re) = (stalled.clone(), resume.clone());
    // Takes the lock, changes `n`, then drops the guard (which stops the
    // lease's renewal) and stalls past the lease before its commit.
    let routes = lock_routes().route("/stall", move |session, _| {
        let (stalled, resume) = (st.clone(), re.clone());
        async move {
            let lock = session.lock().await?;
            session.insert("n", 100)?;
            drop(lock);
            stalled.notify_one();
            resume.notified().await;
            Ok("stalled")
        }
    });
    let config = SessionConfig::default().lock_lease(lease);
    let srv = with_layer(fw, routes, backend.manager(config)).await;
    let token = stored_session(&srv).await;

    let stalling = {
        let (srv, token) = (srv.clone(), token.clone());
        tokio::spawn(async move { get_with(&srv, "/stall", Some(&token)).await })
    };
    signalled(&stalled, "the stalling holder").await;
    backend.advance(lease + Duration::from_millis(200)).await;

    // The lease ran out: another request takes the lock and commits.
    assert_eq!(body_of(&srv, "/locked-incr", &token).await, "1");

    resume.notify_one();
    let late = stalling.await.expect("stalling task");
    assert_eq!(late.status, StatusCode::CONFLICT, "{}", late.body);
    assert!(late.body.contains("lock"), "{}", late.body);
    assert!(late.session_cookie().is_none(), "the cookie is left alone");
    assert_eq!(
        body_of(&srv, "/get/n", &token).await,
        "1",
        "the stale holder's write was refused"
    );
}

async fn locking_a_new_session_stores_it(backend: Backend, fw: Framework) {
    let srv = with_layer(fw, lock_routes(), backend.manager(SessionConfig::default())).await;
    let mut c = Client::new();
    let res = c.get(&srv, "/locked-incr").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body, "1");
    let cookie = res.session_cookie().expect("the new session's cookie");
    cookie.assert_default_attributes();
    // Locked and unlocked routes share the session.
    assert_eq!(c.body(&srv, "/incr").await, "2");
    assert_eq!(c.body(&srv, "/locked-incr").await, "3");
    assert_eq!(c.body(&srv, "/get/n").await, "3");
}

// ---------------------------------------------------------------- manager

fn client() -> ClientInfo {
    ClientInfo::default()
}

/// A stored session with `pairs`; answers its token.
async fn stored(manager: &SessionManager, pairs: &[(&str, i64)]) -> Token {
    let s = manager.load(None, client()).await.unwrap();
    for (k, v) in pairs {
        s.insert(*k, v).unwrap();
    }
    manager.commit(&s).await.unwrap();
    Token::parse(&s.token().expect("a new token")).expect("a valid token")
}

async fn open(manager: &SessionManager, token: &Token) -> Session {
    manager.load(Some(token.clone()), client()).await.unwrap()
}

fn get(s: &Session, k: &str) -> Option<i64> {
    s.get(k).unwrap()
}

async fn lock_starts_from_the_latest_data_and_keeps_pending_changes(b: Backend) {
    let manager = b.manager(SessionConfig::default());
    let token = stored(&manager, &[("a", 1), ("b", 1), ("c", 1)]).await;
    let mine = open(&manager, &token).await;
    let other = open(&manager, &token).await;

    // Another request changes `b` and removes `c` after this one loaded.
    other.insert("b", 2).unwrap();
    other.remove("c");
    manager.commit(&other).await.unwrap();
    assert_eq!(get(&mine, "b"), Some(1), "loaded before the change");

    // This request changes `a` and adds `d`, then locks.
    mine.insert("a", 10).unwrap();
    mine.insert("d", 4).unwrap();
    let lock = mine.lock().await.unwrap();
    assert_eq!(get(&mine, "b"), Some(2), "the latest data");
    assert_eq!(get(&mine, "c"), None, "the latest data");
    assert_eq!(
        (get(&mine, "a"), get(&mine, "d")),
        (Some(10), Some(4)),
        "changes made before lock() are kept"
    );
    drop(lock);
    manager.commit(&mine).await.unwrap();

    let after = open(&manager, &token).await;
    let mut keys = after.keys();
    keys.sort();
    assert_eq!(keys, ["a", "b", "d"]);
    assert_eq!(
        (get(&after, "a"), get(&after, "b"), get(&after, "d")),
        (Some(10), Some(2), Some(4))
    );
}

async fn lock_is_released_at_commit_not_when_the_guard_drops(b: Backend) {
    let manager = b.manager(SessionConfig::default().lock_timeout(Duration::from_millis(150)));
    let token = stored(&manager, &[("n", 0)]).await;
    let first = open(&manager, &token).await;
    let lock = first.lock().await.unwrap();
    first.insert("n", 1).unwrap();
    drop(lock);

    // The change is not written yet: the lock is still held.
    let second = open(&manager, &token).await;
    let started = Instant::now();
    let err = second.lock().await.expect_err("still held");
    assert!(matches!(err, Error::LockTimeout(_)), "{err:?}");
    assert_eq!(err.status(), StatusCode::LOCKED);
    assert!(started.elapsed() >= Duration::from_millis(150));

    // The commit writes, then releases.
    manager.commit(&first).await.unwrap();
    let _lock = second.lock().await.unwrap();
    assert_eq!(get(&second, "n"), Some(1), "the holder's write is there");
}

async fn lock_is_reentrant_within_a_request(b: Backend) {
    let manager = b.manager(SessionConfig::default().lock_timeout(Duration::from_millis(150)));
    let token = stored(&manager, &[("n", 0)]).await;
    let s = open(&manager, &token).await;
    let first = s.lock().await.unwrap();
    let clone = s.clone();
    let second = clone.lock().await.expect("no wait for itself");
    assert_eq!(first.fence(), second.fence());
    drop(first);
    drop(second);
    let third = s.lock().await.expect("still ours");
    assert_eq!(third.fence(), clone.lock().await.unwrap().fence());
    third.insert("n", 1).unwrap();
    manager.commit(&s).await.unwrap();
    assert_eq!(get(&open(&manager, &token).await, "n"), Some(1));
    // Released by the commit.
    let again = open(&manager, &token).await;
    let lock = again.lock().await.unwrap();
    assert!(lock.fence() > third.fence());
}

async fn renewal_keeps_the_lock_while_the_guard_lives(b: Backend) {
    // Renewed every 200 ms; the store's clock moves at most as fast as real
    // time below, so a renewal may run up to 400 ms late.
    let lease = Duration::from_millis(600);
    let manager = b.manager(
        SessionConfig::default()
            .lock_lease(lease)
            .lock_timeout(Duration::from_millis(50)),
    );
    let token = stored(&manager, &[("n", 0)]).await;
    let holder = open(&manager, &token).await;
    let lock = holder.lock().await.unwrap();
    holder.insert("n", 1).unwrap();
    // More than the lease passes, in steps the renewal keeps up with.
    for _ in 0..8 {
        b.advance(Duration::from_millis(100)).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let other = open(&manager, &token).await;
    let err = other.lock().await.expect_err("renewed, so still held");
    assert!(matches!(err, Error::LockTimeout(_)), "{err:?}");

    // Without the guard the lease runs out; another request takes over, and
    // the stale holder's commit is refused.
    drop(lock);
    b.advance(lease + Duration::from_millis(200)).await;
    let _taken = other.lock().await.expect("the lease ran out");
    other.insert("n", 2).unwrap();
    let err = manager.commit(&holder).await.expect_err("fenced").error;
    assert!(matches!(err, Error::LockLost), "{err:?}");
    assert_eq!(err.status(), StatusCode::CONFLICT);
    manager.commit(&other).await.unwrap();
    assert_eq!(get(&open(&manager, &token).await, "n"), Some(2));
}

async fn a_request_dropped_without_commit_releases_its_lock(b: Backend) {
    let manager = b.manager(SessionConfig::default().lock_timeout(Duration::from_secs(2)));
    let token = stored(&manager, &[("n", 0)]).await;
    let dropped = open(&manager, &token).await;
    let lock = dropped.lock().await.unwrap();
    dropped.insert("n", 1).unwrap();
    // The handler panicked, or the client went away: no commit.
    drop(lock);
    drop(dropped);
    let next = open(&manager, &token).await;
    let started = Instant::now();
    let _lock = next.lock().await.expect("released in the background");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "released, not left to the 10 s lease: {:?}",
        started.elapsed()
    );
    assert_eq!(
        get(&next, "n"),
        Some(0),
        "the dropped request wrote nothing"
    );
}

async fn logout_under_the_lock_ends_it(b: Backend) {
    let manager = b.manager(SessionConfig::default().lock_timeout(Duration::from_millis(150)));
    let token = stored(&manager, &[("n", 0)]).await;
    let s = open(&manager, &token).await;
    let other = open(&manager, &token).await; // in flight meanwhile
    let _lock = s.lock().await.unwrap();
    s.logout().await.unwrap();
    let err = s.lock().await.expect_err("ended");
    assert!(matches!(err, Error::SessionEnded), "{err:?}");
    let err = other
        .lock()
        .await
        .expect_err("ended, not waiting for the lock");
    assert!(matches!(err, Error::SessionEnded), "{err:?}");
    manager.commit(&s).await.unwrap();
    // A request that arrives afterwards gets a fresh session, as ever.
    let fresh = open(&manager, &token).await;
    assert_eq!(fresh.id(), None);

    // Login under the lock: the new session is this request's alone, and
    // unlocked once committed.
    let token = stored(&manager, &[("n", 0)]).await;
    let s = open(&manager, &token).await;
    let lock = s.lock().await.unwrap();
    s.insert("n", 5).unwrap();
    s.login("lou").await.unwrap();
    s.insert("m", 6).unwrap();
    drop(lock);
    manager.commit(&s).await.unwrap();
    let new = Token::parse(&s.token().expect("the login's token")).unwrap();
    let after = open(&manager, &new).await;
    assert_eq!((get(&after, "n"), get(&after, "m")), (Some(5), Some(6)));
    let _lock = after.lock().await.expect("not left locked");
}

async fn rotation_under_the_lock(b: Backend) {
    let every = Duration::from_millis(400);
    let config = SessionConfig::default()
        .lock_timeout(Duration::from_millis(150))
        .rotation_interval(Some(every));
    let manager = b.manager(config);
    let new_token = |s: &Session| Token::parse(&s.token().expect("a new token")).unwrap();

    // The holder rotates (privilege change): its commit writes, and the new
    // session is not left locked.
    let token = stored(&manager, &[("n", 0)]).await;
    let s = open(&manager, &token).await;
    let lock = s.lock().await.unwrap();
    s.insert("n", 1).unwrap();
    s.rotate().await.unwrap();
    s.insert("m", 1).unwrap();
    drop(lock);
    manager.commit(&s).await.unwrap();
    let token = new_token(&s);
    let after = open(&manager, &token).await;
    assert_eq!((get(&after, "n"), get(&after, "m")), (Some(1), Some(1)));
    drop(after.lock().await.expect("not left locked"));
    manager.commit(&after).await.unwrap();

    // Another request rotates while this one holds the lock: this one's
    // commit is refused, and the rotated session is not blocked.
    let holder = open(&manager, &token).await;
    let other = open(&manager, &token).await;
    let lock = holder.lock().await.unwrap();
    holder.insert("n", 2).unwrap();
    other.rotate().await.unwrap();
    manager.commit(&other).await.unwrap();
    drop(lock);
    let err = manager
        .commit(&holder)
        .await
        .expect_err("replaced under the lock")
        .error;
    assert!(matches!(err, Error::LockLost), "{err:?}");
    let token = new_token(&other);
    let after = open(&manager, &token).await;
    drop(after.lock().await.expect("not blocked"));
    assert_eq!(get(&after, "n"), Some(1), "the refused write is not there");
    manager.commit(&after).await.unwrap();

    // Periodic rotation at the holder's commit: the lock moves to the new
    // token, the fenced write lands, and the lock is released there.
    b.advance(every + Duration::from_millis(100)).await;
    let holder = open(&manager, &token).await;
    let lock = holder.lock().await.unwrap();
    holder.insert("n", 3).unwrap();
    drop(lock);
    manager.commit(&holder).await.unwrap();
    let token = new_token(&holder);
    let after = open(&manager, &token).await;
    assert_eq!(get(&after, "n"), Some(3));
    let lock = after.lock().await.expect("released after the rotation");
    drop(lock);
    manager.commit(&after).await.unwrap();
}

//! Issue 10, "Tracking-table leak": the client-side cache's connection runs
//! every script with `CLIENT TRACKING ON NOLOOP`, and Redis keeps a tracking
//! entry for every key such a script reads, or (Redis 7.0) for every key it
//! declares, until that key is modified or the client disconnects, including
//! keys that do not exist. Cookies that name no session must not leave
//! entries behind, or anyone could fill the server's tracking table (1M
//! entries by default) with random cookies and set off invalidation storms.
//!
//! Each test floods an axum app (in-process, `tower::ServiceExt::oneshot`,
//! 32 requests in flight) over a `RedisStore` with `client_cache(1000)` on a
//! `redis-server` of its own, and reads `tracking_total_keys` from `INFO`
//! before and after. Entries for keys that exist are legitimate (they go
//! when the key is modified or expires); the tests allow 100 entries beyond
//! the keys that exist. Run with `--nocapture` to see the figures.
#![cfg(all(feature = "redis", feature = "axum"))]

mod support;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use ::redis::aio::MultiplexedConnection;
use axum::Router;
use futures::stream::{self, StreamExt};
use http::StatusCode;
use sessionkit::redis::RedisStore;
use sessionkit::store::{Tag, Token};
use sessionkit::{SessionConfig, SessionManager};
use support::axum_app::{app, send_as, Reply};
use support::redis_server::command_stats;
use support::RedisServer;

/// Requests in flight at once.
const IN_FLIGHT: usize = 32;

/// Tracking entries a flood may leave beyond the keys that exist.
const SLACK: u64 = 100;

// ---------------------------------------------------------------- helpers

async fn start() -> RedisServer {
    tokio::task::spawn_blocking(RedisServer::start)
        .await
        .expect("start redis-server")
}

async fn cached(server: &RedisServer) -> RedisStore {
    RedisStore::builder()
        .url(server.url())
        .client_cache(1000)
        .build()
        .await
        .expect("connect with a client-side cache")
}

/// A test connection of its own (RESP2, no tracking).
async fn con(server: &RedisServer) -> MultiplexedConnection {
    server
        .client()
        .get_multiplexed_async_connection()
        .await
        .expect("test connection")
}

/// A random cookie value that parses as a token (the store is asked about
/// it) and names no session.
fn random_cookie() -> String {
    Token::generate(&Tag::random()).as_str().to_owned()
}

/// The server's tracking table, from `INFO stats`.
#[derive(Debug, Clone, Copy)]
struct Tracking {
    /// Keys in the table (`tracking_total_keys`).
    keys: u64,
    /// (key, client) pairs (`tracking_total_items`).
    items: u64,
}

fn info_field(info: &str, name: &str) -> u64 {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("INFO has no {name}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("INFO {name}: {e}"))
}

async fn tracking(con: &mut MultiplexedConnection) -> Tracking {
    let info: String = ::redis::cmd("INFO")
        .arg("stats")
        .query_async(con)
        .await
        .expect("INFO stats");
    Tracking {
        keys: info_field(&info, "tracking_total_keys"),
        items: info_field(&info, "tracking_total_items"),
    }
}

async fn dbsize(con: &mut MultiplexedConnection) -> u64 {
    ::redis::cmd("DBSIZE")
        .query_async(con)
        .await
        .expect("DBSIZE")
}

/// The `CLIENT LIST` lines of the clients with tracking on (flag `t`): the
/// store's cache connection. (`CLIENT TRACKINGINFO` only describes the
/// connection that sends it, so the store's own figures are not reachable
/// from here; with one tracking client, `tracking_total_items` is its
/// count.)
async fn tracking_clients(con: &mut MultiplexedConnection) -> Vec<String> {
    let list: String = ::redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(con)
        .await
        .expect("CLIENT LIST");
    list.lines()
        .filter(|l| {
            l.split(' ')
                .find_map(|f| f.strip_prefix("flags="))
                .is_some_and(|flags| flags.contains('t'))
        })
        .map(str::to_owned)
        .collect()
}

/// Calls per command since `before` (`INFO commandstats`; commands run
/// inside scripts included, the test's own `INFO`, `DBSIZE` and `CLIENT`
/// excluded), printed: what a flood cost the server.
async fn commands_since(
    con: &mut MultiplexedConnection,
    before: &BTreeMap<String, u64>,
    what: &str,
) -> BTreeMap<String, u64> {
    let now = command_stats(con).await;
    let ran: BTreeMap<String, u64> = now
        .iter()
        .filter(|(name, _)| {
            !matches!(name.as_str(), "info" | "dbsize") && !name.starts_with("client")
        })
        .map(|(name, n)| (name.clone(), n - before.get(name).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    eprintln!("[tracking_leak] {what}: commands run {ran:?}");
    ran
}

/// Prints the figures of one moment.
async fn report(con: &mut MultiplexedConnection, when: &str) -> Tracking {
    let t = tracking(con).await;
    let keys = dbsize(con).await;
    eprintln!(
        "[tracking_leak] {when}: tracking_total_keys={} tracking_total_items={} dbsize={keys}",
        t.keys, t.items
    );
    t
}

/// Runs `n` jobs, `IN_FLIGHT` at a time, and returns their results.
async fn flood<F, Fut, T>(n: usize, job: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T>,
{
    stream::iter(0..n)
        .map(job)
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await
}

fn ok(reply: &Reply, what: &str) {
    assert_eq!(reply.status, StatusCode::OK, "{what}: {}", reply.body);
}

/// The token a reply set, or a panic.
fn set_token(reply: &Reply, what: &str) -> String {
    ok(reply, what);
    match reply.token.as_deref() {
        Some(t) if !t.is_empty() => t.to_owned(),
        _ => panic!("{what} set no session cookie"),
    }
}

/// The store's tracking connection, checked to exist (else every figure
/// here would be 0 for the wrong reason) and printed.
async fn the_tracking_client(con: &mut MultiplexedConnection) {
    let clients = tracking_clients(con).await;
    for c in &clients {
        eprintln!("[tracking_leak] tracking client: {c}");
    }
    assert_eq!(
        clients.len(),
        1,
        "one connection (the store's cache) has tracking on"
    );
}

// ---------------------------------------------------------------- tests

/// 100,000 reads with random well-formed cookies: each one is a `load` of a
/// session key that does not exist (and of the index of a random tag).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_cookies_leave_no_tracking_entries() {
    const REQUESTS: usize = 100_000;
    let server = start().await;
    let store = cached(&server).await;
    let router: Router = app(SessionManager::new(store.clone(), SessionConfig::default()));
    let mut con = con(&server).await;

    // One read first, so the tracked connection is up before "before".
    ok(
        &send_as(&router, "/read", Some(&random_cookie()), None).await,
        "warm-up read",
    );
    the_tracking_client(&mut con).await;
    let before = report(&mut con, "random reads, before").await;
    let stats = command_stats(&mut con).await;

    let started = Instant::now();
    let replies = flood(REQUESTS, |_| {
        let router = router.clone();
        async move { send_as(&router, "/read", Some(&random_cookie()), None).await }
    })
    .await;
    let took = started.elapsed();
    for r in &replies {
        ok(r, "read with a random cookie");
        assert_eq!(r.body, "empty", "a random cookie names no session");
    }

    eprintln!("[tracking_leak] {REQUESTS} random reads in {took:?}");
    let ran = commands_since(&mut con, &stats, "random reads").await;
    let calls = ran.get("evalsha").copied().unwrap_or(0);
    assert!(
        calls >= REQUESTS as u64,
        "every random cookie reached the store ({calls} script calls for {REQUESTS} requests)"
    );
    let after = report(&mut con, "random reads, after").await;
    the_tracking_client(&mut con).await;
    let grown = after.keys.saturating_sub(before.keys);
    assert!(
        grown <= SLACK,
        "{REQUESTS} random cookies left {grown} tracking entries (at most {SLACK} allowed)"
    );
    assert_eq!(dbsize(&mut con).await, 0, "reads created nothing");
}

/// 10,000 anonymous sessions, each created by a write with a random cookie,
/// then written again with its new cookie, then written under its lock:
/// entries may remain for the session keys (they exist, and the cache
/// relies on them), not for the index keys of their random tags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_sessions_leave_entries_only_for_live_keys() {
    const SESSIONS: usize = 10_000;
    let server = start().await;
    let store = cached(&server).await;
    let router: Router = app(SessionManager::new(store.clone(), SessionConfig::default()));
    let mut con = con(&server).await;

    ok(
        &send_as(&router, "/read", Some(&random_cookie()), None).await,
        "warm-up read",
    );
    the_tracking_client(&mut con).await;
    let before = report(&mut con, "anonymous writes, before").await;
    let stats = command_stats(&mut con).await;

    let started = Instant::now();
    flood(SESSIONS, |_| {
        let router = router.clone();
        async move {
            let created = send_as(&router, "/write/k/v1", Some(&random_cookie()), None).await;
            let token = set_token(&created, "write with a random cookie");
            ok(
                &send_as(&router, "/write/k/v2", Some(&token), None).await,
                "second write",
            );
            ok(
                &send_as(&router, "/locked-write/k/v3", Some(&token), None).await,
                "locked write",
            );
            let read = send_as(&router, "/read", Some(&token), None).await;
            ok(&read, "read back");
            assert_eq!(read.body, "k=\"v3\"", "the session holds the last write");
        }
    })
    .await;
    eprintln!(
        "[tracking_leak] {SESSIONS} anonymous sessions x 4 requests in {:?}",
        started.elapsed()
    );

    commands_since(&mut con, &stats, "anonymous writes").await;
    let after = report(&mut con, "anonymous writes, after").await;
    the_tracking_client(&mut con).await;
    let live = dbsize(&mut con).await;
    assert_eq!(
        live, SESSIONS as u64,
        "one key per session (no index, lock or stray key)"
    );
    let grown = after.keys.saturating_sub(before.keys);
    assert!(
        grown <= live + SLACK,
        "{SESSIONS} anonymous sessions left {grown} tracking entries for {live} keys \
         (at most {} allowed)",
        live + SLACK
    );
    // Not fixed by tracking nothing: the cache still hears about the
    // sessions it read.
    assert!(
        grown + SLACK >= live,
        "only {grown} of {live} live sessions are tracked"
    );
}

/// Logged-in sessions: login from an anonymous session, a read with the
/// replaced cookie (a moved marker), writes, a locked write; then half log
/// out and half expire. Index keys exist while their user has a session;
/// once every key is gone, no entry may stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logged_in_sessions_leave_no_entries_once_gone() {
    const USERS: usize = 2_000;
    let server = start().await;
    let store = cached(&server).await;
    let config = SessionConfig::default()
        .idle_timeout(Duration::from_secs(3))
        .rotation_grace(Duration::from_secs(1));
    let router: Router = app(SessionManager::new(store.clone(), config));
    let mut con = con(&server).await;

    ok(
        &send_as(&router, "/read", Some(&random_cookie()), None).await,
        "warm-up read",
    );
    the_tracking_client(&mut con).await;
    let before = report(&mut con, "logins, before").await;
    let stats = command_stats(&mut con).await;

    let started = Instant::now();
    flood(USERS, |i| {
        let router = router.clone();
        async move {
            let created = send_as(&router, "/write/k/v1", Some(&random_cookie()), None).await;
            let anon = set_token(&created, "anonymous write");
            let login = send_as(&router, &format!("/login/user-{i}"), Some(&anon), None).await;
            let token = set_token(&login, "login");
            // The replaced cookie finds the moved marker.
            ok(
                &send_as(&router, "/read", Some(&anon), None).await,
                "read with the replaced cookie",
            );
            ok(
                &send_as(&router, "/write/k/v2", Some(&token), None).await,
                "logged-in write",
            );
            ok(
                &send_as(&router, "/locked-write/k/v3", Some(&token), None).await,
                "logged-in locked write",
            );
            let read = send_as(&router, "/read", Some(&token), None).await;
            ok(&read, "logged-in read");
            assert_eq!(read.body, "k=\"v3\"", "the session holds the last write");
            if i % 2 == 0 {
                ok(
                    &send_as(&router, "/logout", Some(&token), None).await,
                    "logout",
                );
            }
        }
    })
    .await;
    eprintln!(
        "[tracking_leak] {USERS} users x 6-7 requests in {:?}",
        started.elapsed()
    );

    commands_since(&mut con, &stats, "logins").await;
    let after = report(&mut con, "logins, after").await;
    the_tracking_client(&mut con).await;
    let live = dbsize(&mut con).await;
    let grown = after.keys.saturating_sub(before.keys);
    assert!(
        grown <= live + SLACK,
        "{USERS} logins left {grown} tracking entries for {live} keys (at most {} allowed)",
        live + SLACK
    );

    // Markers (1 s), sessions (3 s idle) and their indexes expire; Redis
    // frees an expired key's entry when it deletes the key.
    let deadline = Instant::now() + Duration::from_secs(30);
    while dbsize(&mut con).await > 0 {
        assert!(
            Instant::now() < deadline,
            "keys still there 30 s after their expiry"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let gone = report(&mut con, "logins, after every key expired").await;
    let left = gone.keys.saturating_sub(before.keys);
    assert!(
        left <= SLACK,
        "{left} tracking entries stayed after every key was gone (at most {SLACK} allowed)"
    );
}

/// Rotated sessions (a rotation interval of 1 ms: every write rotates):
/// anonymous ones, one rotated under its lock (the lock moves to the new
/// id), reads with the first cookie through the aliases, and half of them
/// logged in and rotated again as a user's session. Once every key is
/// gone, no entry may stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_sessions_leave_no_entries_once_gone() {
    const SESSIONS: usize = 2_000;
    let server = start().await;
    let store = cached(&server).await;
    let config = SessionConfig::default()
        .idle_timeout(Duration::from_secs(3))
        .rotation_grace(Duration::from_secs(1))
        .rotation_interval(Some(Duration::from_millis(1)));
    let router: Router = app(SessionManager::new(store.clone(), config));
    let mut con = con(&server).await;

    ok(
        &send_as(&router, "/read", Some(&random_cookie()), None).await,
        "warm-up read",
    );
    the_tracking_client(&mut con).await;
    let before = report(&mut con, "rotations, before").await;
    let stats = command_stats(&mut con).await;

    let tick = || tokio::time::sleep(Duration::from_millis(3));
    let started = Instant::now();
    flood(SESSIONS, |i| {
        let router = router.clone();
        async move {
            let created = send_as(&router, "/write/k/v1", Some(&random_cookie()), None).await;
            let first = set_token(&created, "anonymous write");
            tick().await;
            let rotated = send_as(&router, "/write/k/v2", Some(&first), None).await;
            let second = set_token(&rotated, "rotating write");
            assert_ne!(second, first, "the write rotated the token");
            tick().await;
            let locked = send_as(&router, "/locked-write/k/v3", Some(&second), None).await;
            let third = set_token(&locked, "rotating locked write");
            assert_ne!(third, second, "the locked write rotated the token");
            // Through two aliases.
            let read = send_as(&router, "/read", Some(&first), None).await;
            ok(&read, "read with the first cookie");
            assert_eq!(read.body, "k=\"v3\"", "the aliases lead to the last write");
            if i % 2 == 1 {
                let login = send_as(&router, &format!("/login/user-{i}"), Some(&third), None).await;
                let user = set_token(&login, "login");
                tick().await;
                let rotated = send_as(&router, "/write/k/v4", Some(&user), None).await;
                let again = set_token(&rotated, "rotating logged-in write");
                assert_ne!(again, user, "the logged-in write rotated the token");
            }
        }
    })
    .await;
    eprintln!(
        "[tracking_leak] {SESSIONS} rotated sessions x 4-6 requests in {:?}",
        started.elapsed()
    );

    commands_since(&mut con, &stats, "rotations").await;
    let after = report(&mut con, "rotations, after").await;
    the_tracking_client(&mut con).await;
    let live = dbsize(&mut con).await;
    let grown = after.keys.saturating_sub(before.keys);
    assert!(
        grown <= live + SLACK,
        "{SESSIONS} rotated sessions left {grown} tracking entries for {live} keys \
         (at most {} allowed)",
        live + SLACK
    );

    // Aliases (1 s) and sessions (3 s idle) expire.
    let deadline = Instant::now() + Duration::from_secs(30);
    while dbsize(&mut con).await > 0 {
        assert!(
            Instant::now() < deadline,
            "keys still there 30 s after their expiry"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let gone = report(&mut con, "rotations, after every key expired").await;
    let left = gone.keys.saturating_sub(before.keys);
    assert!(
        left <= SLACK,
        "{left} tracking entries stayed after every key was gone (at most {SLACK} allowed)"
    );
}

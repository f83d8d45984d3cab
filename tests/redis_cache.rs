//! The client-side cache of `RedisStore` (`RedisStoreBuilder::client_cache`),
//! on `redis-server`s of the tests' own: what a cached read costs (counted
//! by the server, `INFO commandstats`), invalidation across instances,
//! revocation within 100 ms, expiry on the Redis clock, reconnection, the
//! LRU bound and the batched idle-expiry touches.
//!
//! The rules every store keeps also run with the cache on: see
//! `Backend::RedisCached` in `support/mod.rs` (`store_conformance.rs`,
//! `manager_ops.rs`).
#![cfg(all(feature = "redis", feature = "axum"))]

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ::redis::aio::MultiplexedConnection;
use ::redis::AsyncCommands;
use axum::Router;
use serde_json::json;
use sessionkit::redis::RedisStore;
use sessionkit::store::{
    ClientInfo, Data, Delta, LoadOutcome, LockOutcome, Login, LoginOutcome, NewSession, Retire,
    SaveOutcome, Tag, Timeouts, Token,
};
use sessionkit::{SessionConfig, SessionId, SessionManager, SessionStore, UserLimit};
use support::axum_app::{app, send_as};
use support::outcomes::LoadOutcomeExt;
use support::redis_server::command_stats;
use support::RedisServer;

// ---------------------------------------------------------------- helpers

async fn start() -> RedisServer {
    tokio::task::spawn_blocking(RedisServer::start)
        .await
        .expect("start redis-server")
}

async fn cached(server: &RedisServer, max: usize) -> RedisStore {
    RedisStore::builder()
        .url(server.url())
        .client_cache(max)
        .build()
        .await
        .expect("connect with a client-side cache")
}

async fn con(server: &RedisServer) -> MultiplexedConnection {
    server
        .client()
        .get_multiplexed_async_connection()
        .await
        .expect("test connection")
}

fn timeouts(idle_ms: u64, touch_ms: u64) -> Timeouts {
    Timeouts {
        idle: Duration::from_millis(idle_ms),
        absolute: Duration::from_secs(3600),
        touch_interval: Duration::from_millis(touch_ms),
    }
}

/// Long idle timeout, touches every 10 minutes: nothing is due in a test.
fn calm() -> Timeouts {
    timeouts(3_600_000, 600_000)
}

fn data(pairs: &[(&str, serde_json::Value)]) -> Data {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn set(k: &str, v: serde_json::Value) -> Delta {
    Delta {
        set: vec![(k.to_owned(), v)],
        ..Delta::default()
    }
}

async fn create(store: &RedisStore, d: &Data, t: &Timeouts) -> SessionId {
    let id = Token::generate(&Tag::random()).id();
    let client = ClientInfo::default();
    store
        .create(
            &id,
            NewSession {
                data: d,
                client: &client,
            },
            t,
        )
        .await
        .unwrap();
    id
}

async fn value(store: &RedisStore, id: &SessionId, t: &Timeouts) -> Option<serde_json::Value> {
    match store.load(id, t).await.unwrap() {
        LoadOutcome::Live(l) => Some(l.data.get("k").cloned().unwrap_or_default()),
        LoadOutcome::Superseded | LoadOutcome::Missing => None,
    }
}

/// Commands that are the cache's connection bookkeeping, not a request's
/// cost: the handshake of a (re)connection, `CLIENT TRACKING` once per
/// connection, and the heartbeat of a quiet connection.
const BOOKKEEPING: [&str; 4] = ["hello", "client|setinfo", "client|tracking", "ping"];

/// What the server ran between two snapshots, `INFO` and bookkeeping
/// excluded (commands run inside scripts included).
fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter(|(name, _)| *name != "info" && !BOOKKEEPING.contains(&name.as_str()))
        .map(|(name, n)| (name.clone(), n - before.get(name).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Commands an app sends; every other command ran inside a script.
fn sent(delta: &BTreeMap<String, u64>) -> u64 {
    ["evalsha", "eval", "script|load", "evalsha_ro", "eval_ro"]
        .iter()
        .map(|c| delta.get(*c).copied().unwrap_or(0))
        .sum()
}

/// Polls `check` every 2 ms until it holds or `limit` passed; returns how
/// long it took.
async fn within<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return Some(started.elapsed());
        }
        if started.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

// ---------------------------------------------------------------- cost

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_read_issues_no_command() {
    let server = start().await;
    let store = cached(&server, 100).await;
    let mut con = con(&server).await;
    let id = create(&store, &data(&[("k", json!(1))]), &calm()).await;

    let before = command_stats(&mut con).await;
    let first = store.load(&id, &calm()).await.unwrap().live();
    let miss = delta(&before, &command_stats(&mut con).await);
    assert_eq!(sent(&miss), 1, "the first read goes to Redis: {miss:?}");

    let before = command_stats(&mut con).await;
    for _ in 0..100 {
        let hit = store.load(&id, &calm()).await.unwrap().live();
        assert_eq!(hit.data, first.data);
        assert_eq!(hit.meta, first.meta);
        assert_eq!(hit.id, first.id);
        assert_eq!(hit.expires_at_ms, first.expires_at_ms);
        assert!(!hit.touched);
        assert!(hit.now_ms >= first.now_ms);
    }
    let hits = delta(&before, &command_stats(&mut con).await);
    assert!(
        hits.is_empty(),
        "100 cached reads ran commands on the server: {hits:?}"
    );
    let stats = store.client_cache_stats().unwrap();
    assert!(stats.hits >= 100, "{stats:?}");
    assert_eq!(store.cached_len(), 1);
}

/// Sends a request through the shared app; returns the token a
/// `Set-Cookie` set and the body.
async fn send(router: &Router, path: &str, token: Option<&str>) -> (Option<String>, String) {
    let reply = send_as(router, path, token, None).await;
    assert!(reply.status.is_success(), "{path}: {}", reply.status);
    (reply.token, reply.body)
}

/// Commands the server ran for one request, bookkeeping and `INFO`
/// excluded: `(sent by the app, all)`.
async fn measure(
    con: &mut MultiplexedConnection,
    router: &Router,
    path: &str,
    token: Option<&str>,
) -> (u64, BTreeMap<String, u64>, Option<String>) {
    let before = command_stats(con).await;
    let (new_token, _) = send(router, path, token).await;
    let d = delta(&before, &command_stats(con).await);
    (sent(&d), d, new_token)
}

/// Prints (run with `--nocapture`) and checks issue 5's targets with the
/// cache warm: a read 0 commands, a write 1, a login 1, a logout 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_commands_per_request_with_the_cache() {
    let server = start().await;
    let store = cached(&server, 1000).await;
    let router = app(SessionManager::new(store.clone(), SessionConfig::default()));
    let mut con = con(&server).await;

    let anon = send(&router, "/write/k/v", None).await.0.unwrap();
    // Warm: the first read of a session goes to Redis and caches it.
    let (cold, _, _) = measure(&mut con, &router, "/read", Some(&anon)).await;
    let (warm, warm_all, _) = measure(&mut con, &router, "/read", Some(&anon)).await;
    let (write, _, _) = measure(&mut con, &router, "/write/k/w", Some(&anon)).await;
    // A save caches what it wrote: the next write's load is a hit too.
    let (write_again, _, _) = measure(&mut con, &router, "/write/k/x", Some(&anon)).await;
    let (read_after_write, _, _) = measure(&mut con, &router, "/read", Some(&anon)).await;
    let (login_fresh, _, user) = measure(&mut con, &router, "/login/grace", None).await;
    let user = user.unwrap();
    let (login_anon, _, moved) = measure(&mut con, &router, "/login/grace", Some(&anon)).await;
    assert!(moved.is_some());
    let (first_read_user, _, _) = measure(&mut con, &router, "/read", Some(&user)).await;
    let (logout, _, _) = measure(&mut con, &router, "/logout", Some(&user)).await;
    let (after_logout, _, _) = measure(&mut con, &router, "/read", Some(&user)).await;

    let rows = [
        ("read, cache cold (first read)", cold),
        ("read, cache warm", warm),
        ("write, cache warm", write),
        ("write again (save refilled the cache)", write_again),
        ("read after own write", read_after_write),
        ("login, no prior session", login_fresh),
        ("login from a cached anonymous session", login_anon),
        ("first read after login", first_read_user),
        ("logout, cache warm", logout),
        ("read with the logged-out token", after_logout),
    ];
    println!("Redis commands per request with the client-side cache (INFO commandstats deltas; INFO and connection bookkeeping excluded):");
    for (what, n) in &rows {
        println!("{what:<40} {n}");
    }
    assert!(warm_all.is_empty(), "{warm_all:?}");
    let got: Vec<u64> = rows.iter().map(|(_, n)| *n).collect();
    assert_eq!(got, vec![1, 0, 1, 1, 0, 1, 1, 1, 1, 1]);
}

// ---------------------------------------------------------------- invalidation

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_instance_invalidates_the_other() {
    let server = start().await;
    let a = cached(&server, 100).await;
    let b = cached(&server, 100).await;
    let t = calm();
    let id = create(&a, &data(&[("k", json!(1))]), &t).await;
    assert_eq!(value(&b, &id, &t).await, Some(json!(1)));
    assert_eq!(value(&b, &id, &t).await, Some(json!(1)));
    assert_eq!(b.cached_len(), 1);
    let hits = b.client_cache_stats().unwrap().hits;
    assert!(hits >= 1);

    assert!(matches!(
        a.save(&id, &set("k", json!(2)), &t).await.unwrap(),
        SaveOutcome::Saved(_)
    ));
    let took = within(Duration::from_millis(100), || async {
        value(&b, &id, &t).await == Some(json!(2))
    })
    .await
    .expect("B saw A's write within 100 ms");
    println!("B saw A's write after {took:?}");
    assert!(b.client_cache_stats().unwrap().invalidations >= 1);
    // And B caches the new value again.
    assert_eq!(value(&b, &id, &t).await, Some(json!(2)));

    // A write by any client, not only a store, invalidates too.
    let mut con = con(&server).await;
    let _: () = con.hset(b.session_key(&id), "d:k", "3").await.unwrap();
    within(Duration::from_millis(100), || async {
        value(&b, &id, &t).await == Some(json!(3))
    })
    .await
    .expect("B saw redis-cli's write");

    // B's own write updates its copy; A sees it.
    let _ = a.load(&id, &t).await.unwrap();
    b.save(&id, &set("k", json!(4)), &t).await.unwrap();
    assert_eq!(value(&b, &id, &t).await, Some(json!(4)));
    within(Duration::from_millis(100), || async {
        value(&a, &id, &t).await == Some(json!(4))
    })
    .await
    .expect("A saw B's write");
    // B's own write (NOLOOP: no push to B) left the key tracked for B.
    let _: () = con.hset(b.session_key(&id), "d:k", "5").await.unwrap();
    within(Duration::from_millis(100), || async {
        value(&b, &id, &t).await == Some(json!(5))
    })
    .await
    .expect("still tracked after B's own write");
}

/// Locks and fenced writes keep every instance's cache in step: a lock
/// always goes to Redis and refreshes the taker's copy, a fenced write
/// updates the writer's copy and invalidates the others', and a refused
/// (fenced) write changes no copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_keep_every_cache_in_step() {
    let server = start().await;
    let a = cached(&server, 100).await;
    let b = cached(&server, 100).await;
    let mut con = con(&server).await;
    let t = calm();
    let lease = Duration::from_secs(10);
    let fenced = |v: i64, fence: u64| Delta {
        fence: Some(fence),
        ..set("k", json!(v))
    };
    let id = create(&a, &data(&[("k", json!(1))]), &t).await;
    assert_eq!(value(&a, &id, &t).await, Some(json!(1)));
    assert_eq!(value(&b, &id, &t).await, Some(json!(1)));

    // A's lock goes to Redis, and its reply is A's cached copy.
    let before = command_stats(&mut con).await;
    let LockOutcome::Acquired { fence, loaded } = a.lock(&id, lease, &t).await.unwrap() else {
        panic!("the lock is free")
    };
    assert_eq!(loaded.data["k"], json!(1));
    assert_eq!(value(&a, &id, &t).await, Some(json!(1)));
    let cost = delta(&before, &command_stats(&mut con).await);
    assert_eq!(sent(&cost), 1, "the lock, then a cache hit: {cost:?}");

    // A's fenced write: A's copy is the new one at once, B's is invalidated.
    let out = a.save(&id, &fenced(2, fence), &t).await.unwrap();
    assert!(matches!(out, SaveOutcome::Saved(_)), "{out:?}");
    let before = command_stats(&mut con).await;
    assert_eq!(value(&a, &id, &t).await, Some(json!(2)));
    assert!(delta(&before, &command_stats(&mut con).await).is_empty());
    within(Duration::from_millis(100), || async {
        value(&b, &id, &t).await == Some(json!(2))
    })
    .await
    .expect("B saw A's fenced write");

    // B waits for A; once A releases, B starts from A's write, and B's
    // write reaches A.
    assert!(matches!(
        b.lock(&id, lease, &t).await.unwrap(),
        LockOutcome::Held { .. }
    ));
    a.unlock(&id, fence).await.unwrap();
    let LockOutcome::Acquired { fence: f2, loaded } = b.lock(&id, lease, &t).await.unwrap() else {
        panic!("released")
    };
    assert_eq!(loaded.data["k"], json!(2));
    let out = b.save(&id, &fenced(3, f2), &t).await.unwrap();
    assert!(matches!(out, SaveOutcome::Saved(_)), "{out:?}");
    within(Duration::from_millis(100), || async {
        value(&a, &id, &t).await == Some(json!(3))
    })
    .await
    .expect("A saw B's write");

    // A's stale write is refused, and no copy changes.
    let out = a.save(&id, &fenced(99, fence), &t).await.unwrap();
    assert_eq!(out, SaveOutcome::Fenced);
    assert_eq!(value(&a, &id, &t).await, Some(json!(3)));
    assert_eq!(value(&b, &id, &t).await, Some(json!(3)));
    let stored: String = con.hget(a.session_key(&id), "d:k").await.unwrap();
    assert_eq!(stored, "3");

    // Both instances still track the key after their own lock writes.
    let _: () = con.hset(a.session_key(&id), "d:k", "4").await.unwrap();
    for store in [&a, &b] {
        within(Duration::from_millis(100), || async {
            value(store, &id, &t).await == Some(json!(4))
        })
        .await
        .expect("an outside write reaches every instance");
    }
}

/// A touch too close to the key's Redis expiry to be batched happens inline
/// in the load script, which writes the key: the store must still be told
/// about the next change by someone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_touch_keeps_the_key_tracked() {
    let server = start().await;
    let store = cached(&server, 100).await;
    let mut con = con(&server).await;
    // Idle 2 s (under the batching margin), touch due after 100 ms.
    let t = timeouts(2000, 100);
    let id = create(&store, &data(&[("k", json!(1))]), &t).await;
    assert!(!store.load(&id, &t).await.unwrap().live().touched);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let before = command_stats(&mut con).await;
    assert!(store.load(&id, &t).await.unwrap().live().touched);
    let d = delta(&before, &command_stats(&mut con).await);
    assert_eq!(sent(&d), 1, "touched inline by the load script: {d:?}");
    // From here on no touch is due: only an invalidation can end the copy.
    let t = timeouts(2000, 1000);
    let hits = store.client_cache_stats().unwrap().hits;
    assert_eq!(value(&store, &id, &t).await, Some(json!(1)));
    assert_eq!(store.client_cache_stats().unwrap().hits, hits + 1);
    let _: () = con.hset(store.session_key(&id), "d:k", "2").await.unwrap();
    within(Duration::from_millis(300), || async {
        value(&store, &id, &t).await == Some(json!(2))
    })
    .await
    .expect("still tracked after the load script's touch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_on_one_instance_is_refused_by_the_other_within_100ms() {
    let server = start().await;
    let a = SessionManager::new(cached(&server, 100).await, SessionConfig::default());
    let b_store = cached(&server, 100).await;
    let b = SessionManager::new(b_store.clone(), SessionConfig::default());

    let s = a.load(None, ClientInfo::default()).await.unwrap();
    s.insert("k", 1).unwrap();
    s.login("ada").await.unwrap();
    a.commit(&s).await.unwrap();
    let token = Token::parse(&s.token().unwrap()).unwrap();
    let id = token.id();

    // B caches the session; a request on B is in flight with it.
    let on_b = b
        .load(Some(token.clone()), ClientInfo::default())
        .await
        .unwrap();
    assert_eq!(on_b.user_id().as_deref(), Some("ada"));
    let hits = b_store.client_cache_stats().unwrap().hits;
    let again = b
        .load(Some(token.clone()), ClientInfo::default())
        .await
        .unwrap();
    assert_eq!(again.user_id().as_deref(), Some("ada"));
    assert_eq!(
        b_store.client_cache_stats().unwrap().hits,
        hits + 1,
        "served from B's cache"
    );

    assert!(a.revoke(&id).await.unwrap());
    let revoked_at = Instant::now();
    let took = within(Duration::from_millis(100), || async {
        let s = b
            .load(Some(token.clone()), ClientInfo::default())
            .await
            .unwrap();
        s.user_id().is_none() && s.id().is_none()
    })
    .await
    .expect("B refused the revoked session within 100 ms");
    println!("B refused the revoked session {took:?} after A's revoke returned");
    assert!(revoked_at.elapsed() < Duration::from_millis(200));

    // The request in flight on B cannot bring it back.
    on_b.insert("k", 2).unwrap();
    let headers = b.commit(&on_b).await.unwrap();
    let cleared = headers
        .iter()
        .any(|(name, value, _)| name == "set-cookie" && value.contains("Max-Age=0"));
    assert!(cleared, "B clears the cookie");
    assert_eq!(
        b_store
            .save(&id, &set("k", json!(3)), &calm())
            .await
            .unwrap(),
        SaveOutcome::Gone
    );
    let mut con = con(&server).await;
    assert!(!con
        .exists::<_, bool>(b_store.session_key(&id))
        .await
        .unwrap());
    assert_eq!(
        b_store.load(&id, &calm()).await.unwrap(),
        LoadOutcome::Missing
    );
}

/// A login that follows a rotation alias retires the successor, a key the
/// login was not asked about: this store's own write (no invalidation push,
/// NOLOOP), so the cache must drop its copy itself. A request that loaded
/// the session before a periodic rotation logs in with the old id while
/// the browser already reads with the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_through_an_alias_drops_the_retired_successor() {
    let server = start().await;
    let store = cached(&server, 100).await;
    let t = calm();
    let tag = Tag::random();
    let old = Token::generate(&tag).id();
    let client = ClientInfo::default();
    let d = data(&[("k", json!("before login"))]);
    store
        .create(
            &old,
            NewSession {
                data: &d,
                client: &client,
            },
            &t,
        )
        .await
        .unwrap();
    let successor = Token::generate(&tag).id();
    store
        .rotate(&old, &successor, Retire::Alias(Duration::from_secs(30)), &t)
        .await
        .unwrap();
    assert!(store.load(&successor, &t).await.unwrap().is_live());
    assert!(store.load(&successor, &t).await.unwrap().is_live());
    assert_eq!(store.cached_len(), 1, "the successor is cached");

    let new = Token::generate(&Tag::for_user("ada")).id();
    let out = store
        .login(
            Login {
                old: Some(&old),
                new: &new,
                user_id: "ada",
                delta: &Delta::default(),
                client: &client,
                limit: UserLimit::Unlimited,
                moved_grace: Duration::from_secs(30),
            },
            &t,
        )
        .await
        .unwrap();
    assert!(matches!(out, LoginOutcome::LoggedIn { .. }), "{out:?}");
    let plain = RedisStore::connect(&server.url()).await.unwrap();
    assert_eq!(
        plain.load(&successor, &t).await.unwrap(),
        LoadOutcome::Superseded,
        "Redis holds the moved marker"
    );
    assert_eq!(
        store.load(&successor, &t).await.unwrap(),
        LoadOutcome::Superseded,
        "the cache no longer serves the retired session"
    );
}

// ---------------------------------------------------------------- expiry

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_never_serves_past_the_keys_ttl() {
    let server = start().await;
    let store = cached(&server, 100).await;

    // Idle timeout 1 s; no touch is due before it.
    let t = timeouts(1000, 5000);
    let id = create(&store, &data(&[("k", json!(1))]), &t).await;
    assert!(store.load(&id, &t).await.unwrap().is_live());
    assert!(store.load(&id, &t).await.unwrap().is_live());
    assert_eq!(store.cached_len(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(store.load(&id, &t).await.unwrap(), LoadOutcome::Missing);

    // The absolute deadline, as Redis reported it in the key's expiry.
    let t = Timeouts {
        idle: Duration::from_secs(60),
        absolute: Duration::from_millis(800),
        touch_interval: Duration::from_secs(30),
    };
    let id = create(&store, &data(&[("k", json!(1))]), &t).await;
    let l = store.load(&id, &t).await.unwrap().live();
    assert_eq!(l.expires_at_ms, l.meta.absolute_deadline_ms);
    let hit = store.load(&id, &t).await.unwrap().live();
    assert_eq!(hit.expires_at_ms, l.expires_at_ms);
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(store.load(&id, &t).await.unwrap(), LoadOutcome::Missing);
    assert_eq!(store.cached_len(), 0);
}

// ---------------------------------------------------------------- reconnection

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_connection_empties_the_cache_and_tracking_comes_back() {
    let server = start().await;
    let a = cached(&server, 100).await;
    let b = cached(&server, 100).await;
    let t = calm();
    let id = create(&a, &data(&[("k", json!(1))]), &t).await;
    assert_eq!(value(&a, &id, &t).await, Some(json!(1)));
    assert_eq!(a.cached_len(), 1);
    let resets = a.client_cache_stats().unwrap().resets;

    // Every client connection but the killer's.
    server.command(&["CLIENT", "KILL", "TYPE", "normal"]);
    within(Duration::from_secs(2), || async { a.cached_len() == 0 })
        .await
        .expect("the disconnection emptied the cache");
    assert!(a.client_cache_stats().unwrap().resets > resets);

    // The next read goes to Redis, on a new connection...
    let mut con = con(&server).await;
    let before = command_stats(&mut con).await;
    assert_eq!(value(&a, &id, &t).await, Some(json!(1)));
    let d = delta(&before, &command_stats(&mut con).await);
    assert_eq!(sent(&d), 1, "{d:?}");
    assert_eq!(a.cached_len(), 1);
    let hits = a.client_cache_stats().unwrap().hits;
    assert_eq!(value(&a, &id, &t).await, Some(json!(1)));
    assert_eq!(a.client_cache_stats().unwrap().hits, hits + 1);
    // ...where tracking is on again: B's write still reaches A.
    b.save(&id, &set("k", json!(2)), &t).await.unwrap();
    within(Duration::from_millis(100), || async {
        value(&a, &id, &t).await == Some(json!(2))
    })
    .await
    .expect("invalidations arrive after the reconnection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_empties_the_cache_and_tracking_comes_back() {
    let mut server = start().await;
    let a = RedisStore::builder()
        .url(server.url())
        .client_cache(100)
        .retry_delay(Duration::from_millis(20), Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    let t = calm();
    let id = create(&a, &data(&[("k", json!(1))]), &t).await;
    assert_eq!(value(&a, &id, &t).await, Some(json!(1)));
    assert_eq!(a.cached_len(), 1);

    // Down: the cache is emptied, and reads fail (503) instead of serving
    // copies that can no longer be invalidated.
    server.stop();
    within(Duration::from_secs(2), || async { a.cached_len() == 0 })
        .await
        .expect("the disconnection emptied the cache");
    let started = Instant::now();
    assert!(a.load(&id, &t).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(3));

    // Back on the same port, empty (no persistence): the session is gone.
    let server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .unwrap();
    let loaded = within(Duration::from_secs(5), || async {
        matches!(a.load(&id, &t).await, Ok(LoadOutcome::Missing))
    })
    .await;
    assert!(loaded.is_some(), "the next read went to the new server");

    let b = cached(&server, 100).await;
    let id = create(&b, &data(&[("k", json!(1))]), &t).await;
    assert_eq!(value(&a, &id, &t).await, Some(json!(1)));
    assert_eq!(value(&a, &id, &t).await, Some(json!(1)));
    assert_eq!(a.cached_len(), 1);
    b.save(&id, &set("k", json!(2)), &t).await.unwrap();
    within(Duration::from_millis(100), || async {
        value(&a, &id, &t).await == Some(json!(2))
    })
    .await
    .expect("invalidations arrive after the restart");
}

// ---------------------------------------------------------------- memory

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_holds_at_most_max_sessions() {
    let server = start().await;
    let store = cached(&server, 5).await;
    let t = calm();
    let mut ids = Vec::new();
    for i in 0..40 {
        let id = create(&store, &data(&[("k", json!(i))]), &t).await;
        assert_eq!(value(&store, &id, &t).await, Some(json!(i)));
        assert!(store.cached_len() <= 5, "{}", store.cached_len());
        ids.push(id);
    }
    assert_eq!(store.cached_len(), 5);
    let stats = store.client_cache_stats().unwrap();
    assert_eq!((stats.entries, stats.capacity), (5, 5));

    // The five most recent are hits; the oldest is read from Redis again.
    let mut con = con(&server).await;
    let before = command_stats(&mut con).await;
    for (i, id) in ids.iter().enumerate().skip(35) {
        assert_eq!(value(&store, id, &t).await, Some(json!(i)));
    }
    let d = delta(&before, &command_stats(&mut con).await);
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(value(&store, &ids[0], &t).await, Some(json!(0)));
    let d = delta(&before, &command_stats(&mut con).await);
    assert_eq!(sent(&d), 1);
    assert_eq!(store.cached_len(), 5);
}

// ---------------------------------------------------------------- touches

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_reads_batch_their_idle_expiry_touches() {
    let server = start().await;
    let store = cached(&server, 100).await;
    let mut con = con(&server).await;
    // Idle 30 s, touch due every 100 ms.
    let t = timeouts(30_000, 100);
    let id = create(&store, &data(&[("k", json!(1))]), &t).await;
    let key = store.session_key(&id);
    let seen_before: i64 = con.hget(&key, "@seen").await.unwrap();
    let expiry_before: i64 = ::redis::cmd("PEXPIRETIME")
        .arg(&key)
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(store.load(&id, &t).await.unwrap().is_live());

    let before = command_stats(&mut con).await;
    let started = Instant::now();
    let (mut reads, mut touched) = (0u32, 0u32);
    let mut last_expiry = 0;
    while started.elapsed() < Duration::from_millis(2500) {
        let l = store.load(&id, &t).await.unwrap().live();
        assert!(
            l.expires_at_ms >= last_expiry,
            "the reported expiry only grows"
        );
        last_expiry = l.expires_at_ms;
        reads += 1;
        touched += u32::from(l.touched);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Let the last batch go out.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let d = delta(&before, &command_stats(&mut con).await);
    let touch_calls = d.get("evalsha").copied().unwrap_or(0);
    let stats = store.client_cache_stats().unwrap();
    println!(
        "{reads} cached reads in 2.5 s, {touched} reported a touch, {touch_calls} touch calls reached Redis ({stats:?}); server: {d:?}"
    );
    assert!(reads > 200, "{reads}");
    assert!(touched >= 10, "touches were due and reported: {touched}");
    assert!(
        (1..=6).contains(&touch_calls),
        "touches are batched: {touch_calls} calls for {reads} reads"
    );
    assert_eq!(
        u64::from(touch_calls > 0),
        u64::from(stats.touches_flushed > 0)
    );
    let seen_after: i64 = con.hget(&key, "@seen").await.unwrap();
    let expiry_after: i64 = ::redis::cmd("PEXPIRETIME")
        .arg(&key)
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        seen_after >= seen_before + 2000,
        "@seen moved: {seen_before} -> {seen_after}"
    );
    // The key's expiry moves in steps (up to a touch interval ahead), but always
    // covers the idle deadline of the latest `@seen`.
    assert!(
        expiry_after > expiry_before && expiry_after >= seen_after + 30_000,
        "the idle deadline in Redis moved: {expiry_before} -> {expiry_after} (seen {seen_after})"
    );
    // The flush's own write did not take the key out of tracking: another
    // client's write still invalidates the copy.
    let _: () = con.hset(&key, "d:k", "7").await.unwrap();
    within(Duration::from_millis(100), || async {
        value(&store, &id, &t).await == Some(json!(7))
    })
    .await
    .expect("still tracked after a batched touch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batched_touch_of_a_session_gone_meanwhile_is_a_no_op() {
    let server = start().await;
    let a = cached(&server, 100).await;
    let b = cached(&server, 100).await;
    let t = timeouts(30_000, 100);
    let id = create(&a, &data(&[("k", json!(1))]), &t).await;
    assert!(a.load(&id, &t).await.unwrap().is_live());
    tokio::time::sleep(Duration::from_millis(150)).await;
    let l = a.load(&id, &t).await.unwrap().live();
    assert!(l.touched, "a touch was due and queued");
    assert!(b.revoke(&id).await.unwrap());
    // Wait for the flush.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(a.client_cache_stats().unwrap().touches_flushed >= 1);
    let mut con = con(&server).await;
    assert!(
        !con.exists::<_, bool>(a.session_key(&id)).await.unwrap(),
        "the touch did not bring the session back"
    );
    assert_eq!(a.load(&id, &t).await.unwrap(), LoadOutcome::Missing);
}

// ---------------------------------------------------------------- races

/// Two cached instances and concurrent reads and writes on a few sessions:
/// once the traffic stops, every instance reads what Redis holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_traffic_leaves_every_cache_agreeing_with_redis() {
    let server = start().await;
    let a = cached(&server, 100).await;
    let b = cached(&server, 100).await;
    let plain = RedisStore::connect(&server.url()).await.unwrap();
    let t = calm();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(create(&a, &data(&[("k", json!(0))]), &t).await);
    }
    let mut tasks = Vec::new();
    for worker in 0..8u64 {
        let store = if worker % 2 == 0 {
            a.clone()
        } else {
            b.clone()
        };
        let ids = ids.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..60u64 {
                let id = &ids[((worker + i) % 3) as usize];
                if (worker * 7 + i) % 3 == 0 {
                    let v = json!(worker * 1000 + i);
                    store.save(id, &set("k", v), &calm()).await.unwrap();
                } else {
                    store.load(id, &calm()).await.unwrap().live();
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    for id in &ids {
        let truth = plain.load(id, &t).await.unwrap().live();
        for (name, store) in [("a", &a), ("b", &b)] {
            let seen = store.load(id, &t).await.unwrap().live();
            assert_eq!(seen.data, truth.data, "instance {name}");
            assert_eq!(seen.meta.version, truth.meta.version, "instance {name}");
        }
    }
    let (sa, sb) = (
        a.client_cache_stats().unwrap(),
        b.client_cache_stats().unwrap(),
    );
    println!("a: {sa:?}\nb: {sb:?}");
    assert!(sa.hits + sb.hits > 0);
}

// ---------------------------------------------------------------- setup

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_is_off_by_default_and_needs_its_own_connection() {
    let server = start().await;
    let plain = RedisStore::connect(&server.url()).await.unwrap();
    assert_eq!(plain.cached_len(), 0);
    assert!(plain.client_cache_stats().is_none());
    let off = RedisStore::builder()
        .url(server.url())
        .client_cache(0)
        .build()
        .await
        .unwrap();
    assert!(off.client_cache_stats().is_none());

    let manager = ::redis::aio::ConnectionManager::new(server.client())
        .await
        .unwrap();
    let err = RedisStore::builder()
        .connection_manager(manager)
        .client_cache(10)
        .build()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("client_cache"), "{err}");

    // A client works (and a lazy store connects on first use).
    let lazy = RedisStore::builder()
        .client(server.client())
        .client_cache(10)
        .lazy_connect(true)
        .build()
        .await
        .unwrap();
    let id = create(&lazy, &data(&[("k", json!(1))]), &calm()).await;
    assert_eq!(value(&lazy, &id, &calm()).await, Some(json!(1)));
    assert_eq!(lazy.cached_len(), 1);
}

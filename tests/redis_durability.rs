//! Issue 10, what `RedisStore` promises about writes Redis may not keep, on
//! servers of the tests' own:
//!
//! - **`maxmemory` under `noeviction`.** Once Redis refuses writes with
//!   `OOM`, every store call that runs a script fails with the typed
//!   `Error::StoreFull` (loads included: the scripts carry no `no-writes`
//!   flag, and Redis refuses such scripts at the limit), HTTP requests get
//!   a 503 whose body says nothing of Redis, and nothing changes in Redis;
//!   once memory is freed, logout works again.
//! - **Durable revocations** (`durable_revocations(1, 500 ms)`, Sentinel
//!   with one replica): a revocation returns once the replica has it (the
//!   session is gone there at once); with the replica `SIGSTOP`ped it fails
//!   with `Error::NotDurable { acked: 0, wanted: 1 }` after the `WAIT`
//!   timeout, while reads and writes through the same store are not held
//!   up by the `WAIT`.
//!
//! Each test prints its figures (run with `--nocapture`).
#![cfg(all(feature = "redis", feature = "axum"))]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::redis::aio::MultiplexedConnection;
use sessionkit::redis::RedisStore;
use sessionkit::store::{LoadOutcome, SaveOutcome, Token};
use sessionkit::{Error, SessionConfig, SessionId, SessionManager, SessionStore};
use support::axum_app::{app, send_as, Reply};
use support::redis_cluster::{info_field, poll, query_text};
use support::redis_sentinel::RedisSentinel;
use support::redis_server::signal;
use support::store_k::{calm, create, ms, set_k, try_create, value};
use support::RedisServer;

/// The `WAIT` timeout of the durable revocations.
const WAIT_TIMEOUT: Duration = Duration::from_millis(500);

/// What the body of a store failure may say to the client.
const UNAVAILABLE: &str = "session store unavailable";

// ---------------------------------------------------------------- helpers

fn id_of(token: &str) -> SessionId {
    Token::parse(token).expect("a token").id()
}

/// Whether `r` is the typed store-full error; panics with what it is
/// otherwise.
#[track_caller]
fn assert_full<T: std::fmt::Debug>(what: &str, r: &sessionkit::Result<T>) {
    assert!(
        matches!(r, Err(Error::StoreFull)),
        "{what}: expected Err(StoreFull), got {r:?}"
    );
}

/// A store failure as the client sees it: 503, a body that names no
/// internals, and no cookie change.
#[track_caller]
fn assert_unavailable(what: &str, reply: &Reply) {
    assert_eq!(reply.status, 503, "{what}: {}", reply.body);
    assert_eq!(reply.body, UNAVAILABLE, "{what}");
    for internal in ["OOM", "maxmemory", "redis", "Redis", "WAIT", "replica"] {
        assert!(!reply.body.contains(internal), "{what}: {}", reply.body);
    }
}

async fn con(server: &RedisServer) -> MultiplexedConnection {
    server
        .client()
        .get_multiplexed_async_connection()
        .await
        .expect("test connection")
}

async fn cmd_text(con: &mut MultiplexedConnection, args: &[&str]) -> Result<String, String> {
    let mut cmd = ::redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async::<::redis::Value>(con)
        .await
        .map(|v| support::redis_server::text(&v))
        .map_err(|e| format!("{:?} {e}", e.code()))
}

/// `DUMP` of each key (the exact stored value) and whether it has a TTL.
async fn snapshot(con: &mut MultiplexedConnection, keys: &[String]) -> Vec<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    for key in keys {
        let dump: Vec<u8> = ::redis::cmd("DUMP")
            .arg(key)
            .query_async(con)
            .await
            .expect("DUMP");
        assert!(!dump.is_empty(), "{key} exists");
        let pttl: i64 = ::redis::cmd("PTTL")
            .arg(key)
            .query_async(con)
            .await
            .expect("PTTL");
        out.push((dump, pttl > 0));
    }
    out
}

async fn used_memory(con: &mut MultiplexedConnection) -> (u64, u64) {
    let info = cmd_text(con, &["INFO", "memory"]).await.unwrap();
    let field = |name| {
        info_field(&info, name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in INFO memory"))
    };
    (field("used_memory"), field("maxmemory"))
}

// ---------------------------------------------------------------- OOM

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_maxmemory_under_noeviction_store_calls_fail_as_store_full_and_change_nothing() {
    let server = tokio::task::spawn_blocking(|| {
        RedisServer::start_with(&["--maxmemory", "4mb", "--maxmemory-policy", "noeviction"])
    })
    .await
    .expect("start redis-server");
    let store = RedisStore::builder()
        .url(server.url())
        .command_timeout(Duration::from_secs(1))
        .build()
        .await
        .expect("connect");
    let cached = RedisStore::builder()
        .url(server.url())
        .client_cache(100)
        .build()
        .await
        .expect("connect with a cache");
    let manager = SessionManager::new(store.clone(), SessionConfig::default());
    let router = app(manager.clone());
    let mut con = con(&server).await;

    // Sessions: an anonymous one and a logged-in one through HTTP, one
    // through the store (cached by the second store).
    let anon = send_as(&router, "/write/k/v", None, None)
        .await
        .token
        .unwrap();
    let user = send_as(&router, "/login/alice", None, None)
        .await
        .token
        .unwrap();
    let (anon_id, user_id) = (id_of(&anon), id_of(&user));
    let id = create(&store, 1).await;
    for _ in 0..2 {
        assert_eq!(value(&cached, &id).await.unwrap(), Some(1));
    }
    assert_eq!(
        send_as(&router, "/read", Some(&anon), None).await.body,
        "k=\"v\""
    );
    let keys = vec![
        store.session_key(&anon_id),
        store.session_key(&user_id),
        store.session_key(&id),
        store.user_index_key("alice"),
    ];
    let before = snapshot(&mut con, &keys).await;

    // Fill memory with junk until Redis refuses a write.
    let junk = "x".repeat(16 * 1024);
    let mut junk_keys = 0usize;
    let refusal = loop {
        let r = cmd_text(&mut con, &["SET", &format!("junk:{junk_keys}"), &junk]).await;
        match r {
            Ok(_) => junk_keys += 1,
            Err(e) => break e,
        }
        assert!(junk_keys < 10_000, "4 MB never filled");
    };
    assert!(refusal.contains("OOM"), "the refusal: {refusal}");
    // Right after the refusal, used memory hovers around the limit (client
    // buffers come and go), so a write may slip through now and then: put
    // the limit 256 KB under what is used, so that every write is refused.
    let (filled, _) = used_memory(&mut con).await;
    let limit = (filled - 256 * 1024).to_string();
    cmd_text(&mut con, &["CONFIG", "SET", "maxmemory", &limit])
        .await
        .unwrap();
    let (used, max) = used_memory(&mut con).await;
    assert!(used > max, "used_memory {used} over maxmemory {max}");
    let probe = cmd_text(&mut con, &["SET", "junk:probe", "x"]).await;
    assert!(
        probe.as_ref().is_err_and(|e| e.contains("OOM")),
        "a small write is refused: {probe:?}"
    );

    // Every store call runs a script; at the limit Redis refuses them all.
    let started = Instant::now();
    let load = store.load(&id, &calm()).await;
    let load_took = started.elapsed();
    let save = store.save(&id, &set_k(2), &calm()).await;
    let created = try_create(&store, 3).await;
    let revoke = store.revoke(&id).await;
    let manager_revoke = manager.revoke(&user_id).await;
    let revoke_user = manager.revoke_user("alice").await;
    let sessions_of = manager.sessions_of("alice").await;
    // A cached copy still serves reads; the cached store's writes fail too.
    let cached_load = value(&cached, &id).await;
    let cached_revoke = cached.revoke(&id).await;
    let cached_load_after = value(&cached, &id).await;
    // Through HTTP.
    let logout = send_as(&router, "/logout", Some(&user), None).await;
    let read = send_as(&router, "/read", Some(&anon), None).await;
    let write = send_as(&router, "/write/k/w", Some(&anon), None).await;
    let login = send_as(&router, "/login/bob", None, None).await;
    let after = snapshot(&mut con, &keys).await;

    println!("maxmemory 4 MB, noeviction:");
    println!(
        "  {junk_keys} junk keys of 16 KB until Redis refused with {refusal:?}; then maxmemory {max}, used_memory {used}"
    );
    println!("  store.load {load:?} (after {})", ms(load_took));
    println!("  store.save {save:?}");
    println!("  store.create {created:?}");
    println!("  store.revoke {revoke:?}; manager.revoke {manager_revoke:?}; manager.revoke_user {revoke_user:?}");
    println!("  manager.sessions_of {sessions_of:?}");
    println!(
        "  cached store: load (cached) {cached_load:?}; revoke {cached_revoke:?}; load after the failed revoke {cached_load_after:?}"
    );
    for (what, r) in [
        ("/logout", &logout),
        ("/read", &read),
        ("/write", &write),
        ("/login", &login),
    ] {
        println!(
            "  HTTP {what}: {} {:?}, Set-Cookie token {:?}",
            r.status, r.body, r.token
        );
    }

    // A read needs no memory: the Lua-free read (issue 11) still serves at
    // the limit, where a script that might write was refused.
    assert!(
        matches!(&load, Ok(LoadOutcome::Live(l)) if l.data.get("k") == Some(&serde_json::json!(1))),
        "a read is served at the limit: {load:?}"
    );
    assert_full("store.save", &save);
    assert_full("store.create", &created);
    assert_full("store.revoke", &revoke);
    assert_full("manager.revoke", &manager_revoke);
    assert_full("manager.revoke_user", &revoke_user);
    assert_full("manager.sessions_of", &sessions_of);
    assert_full("cached store revoke", &cached_revoke);
    assert_eq!(
        cached_load.as_ref().ok(),
        Some(&Some(1)),
        "a cached copy serves reads at the limit: {cached_load:?}"
    );
    assert!(
        matches!(cached_load_after, Ok(Some(1)) | Err(Error::StoreFull)),
        "after a failed revoke the cached store serves the unchanged copy or fails as full: {cached_load_after:?}"
    );
    assert_eq!(
        (read.status.as_u16(), read.body.as_str(), &read.token),
        (200, "k=\"v\"", &None),
        "a read-only request is served at the limit"
    );
    for (what, r) in [("/logout", &logout), ("/write", &write), ("/login", &login)] {
        assert_unavailable(what, r);
        assert_eq!(r.token, None, "{what}: the cookie must not change");
    }
    assert_eq!(after, before, "nothing changed in Redis");
    assert!(after.iter().all(|(_, ttl)| *ttl), "every key kept its TTL");

    // Free memory: logout works again, and the rest follows.
    for i in 0..junk_keys {
        cmd_text(&mut con, &["DEL", &format!("junk:{i}")])
            .await
            .expect("DEL is allowed at the limit");
    }
    let (used_after, _) = used_memory(&mut con).await;
    let logout = send_as(&router, "/logout", Some(&user), None).await;
    assert_eq!(logout.status, 200, "{}", logout.body);
    assert_eq!(logout.body, "bye");
    assert_eq!(logout.token.as_deref(), Some(""), "the cookie is cleared");
    assert_eq!(
        cmd_text(&mut con, &["EXISTS", &keys[1]]).await.unwrap(),
        "0",
        "the session is gone"
    );
    assert_eq!(value(&store, &id).await.unwrap(), Some(1));
    assert!(store.revoke(&id).await.unwrap());
    assert_eq!(value(&store, &id).await.unwrap(), None);
    assert_eq!(
        send_as(&router, "/read", Some(&anon), None).await.body,
        "k=\"v\""
    );
    println!("  after freeing memory (used_memory {used_after}): /logout 200, the session gone; revoke and loads work");
}

// ---------------------------------------------------------------- WAIT

/// The `process_id` a server on `port` reports.
fn pid_of(port: u16) -> u32 {
    let info = query_text(port, &["INFO", "server"]).expect("INFO server");
    info_field(&info, "process_id")
        .and_then(|p| p.parse().ok())
        .expect("process_id")
}

/// A `SIGSTOP`ped process, `SIGCONT`ed on drop (also when a test fails).
struct Paused(Option<u32>);

impl Paused {
    fn new(pid: u32) -> Self {
        signal(pid, "STOP");
        Paused(Some(pid))
    }

    fn resume(mut self) {
        if let Some(pid) = self.0.take() {
            signal(pid, "CONT");
        }
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = std::process::Command::new("kill")
                .arg("-CONT")
                .arg(pid.to_string())
                .status();
        }
    }
}

/// One call of the side load: when it started, what it was and how long
/// it took.
type Call = (Instant, &'static str, Duration, bool);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// Latencies of the calls that started in `[from, to)`: (count, p50, p99,
/// max, failures).
fn latencies(
    log: &[Call],
    from: Instant,
    to: Instant,
) -> (usize, Duration, Duration, Duration, usize) {
    let mut took: Vec<Duration> = log
        .iter()
        .filter(|(t, ..)| *t >= from && *t < to)
        .map(|(_, _, d, _)| *d)
        .collect();
    took.sort();
    let failed = log
        .iter()
        .filter(|(t, _, _, ok)| *t >= from && *t < to && !ok)
        .count();
    (
        took.len(),
        percentile(&took, 0.5),
        percentile(&took, 0.99),
        took.last().copied().unwrap_or_default(),
        failed,
    )
}

fn show(l: (usize, Duration, Duration, Duration, usize)) -> String {
    format!(
        "{} calls, p50 {}, p99 {}, max {}, {} failed",
        l.0,
        ms(l.1),
        ms(l.2),
        ms(l.3),
        l.4
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_revocations_wait_for_the_replica_and_hold_up_nothing_else() {
    let started = Instant::now();
    let sentinel = tokio::task::spawn_blocking(RedisSentinel::start)
        .await
        .expect("start the sentinel setup");
    let setup_took = started.elapsed();
    let store = RedisStore::builder()
        .sentinel(sentinel.master_name(), sentinel.sentinel_urls())
        .durable_revocations(1, WAIT_TIMEOUT)
        .command_timeout(Duration::from_secs(1))
        .build()
        .await
        .expect("connect through the sentinels");
    let manager = SessionManager::new(store.clone(), SessionConfig::default());
    let router = app(manager.clone());
    let master = sentinel.master_port();
    let replica = *sentinel
        .data_ports()
        .iter()
        .find(|&&p| p != master)
        .unwrap();
    let on_replica =
        |key: &str| query_text(replica, &["EXISTS", key]).expect("EXISTS on the replica");

    // Replica up: a revocation returns once the replica has it.
    let id = create(&store, 1).await;
    let key = store.session_key(&id);
    poll(
        Duration::from_secs(5),
        "the session on the replica",
        || match on_replica(&key).as_str() {
            "1" => Ok(()),
            other => Err(other.to_owned()),
        },
    );
    let t = Instant::now();
    let revoked = store.revoke(&id).await;
    let durable_took = t.elapsed();
    assert!(revoked.as_ref().is_ok_and(|live| *live), "{revoked:?}");
    assert_eq!(
        on_replica(&key),
        "0",
        "gone on the replica when revoke returns"
    );
    let user = send_as(&router, "/login/alice", None, None)
        .await
        .token
        .unwrap();
    let t = Instant::now();
    let logout = send_as(&router, "/logout", Some(&user), None).await;
    let logout_took = t.elapsed();
    assert_eq!((logout.status.as_u16(), logout.body.as_str()), (200, "bye"));
    assert_eq!(on_replica(&store.session_key(&id_of(&user))), "0");
    send_as(&router, "/login/alice", None, None)
        .await
        .token
        .unwrap();
    assert_eq!(manager.revoke_user("alice").await.unwrap(), 1);

    // Side load through the same store: reads and writes of other sessions.
    let side: Vec<SessionId> = {
        let mut v = Vec::new();
        for i in 0..4 {
            v.push(create(&store, i).await);
        }
        v
    };
    let stop = Arc::new(AtomicBool::new(false));
    let log: Arc<Mutex<Vec<Call>>> = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = side
        .iter()
        .cloned()
        .map(|id| {
            let (store, stop, log) = (store.clone(), stop.clone(), log.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let t = Instant::now();
                    let ok = matches!(store.load(&id, &calm()).await, Ok(LoadOutcome::Live(_)));
                    log.lock().unwrap().push((t, "load", t.elapsed(), ok));
                    let t = Instant::now();
                    let ok = matches!(
                        store.save(&id, &set_k(n), &calm()).await,
                        Ok(SaveOutcome::Saved(_))
                    );
                    log.lock().unwrap().push((t, "save", t.elapsed(), ok));
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline_from = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline_to = Instant::now();

    // Replica paused: the revocation happens on the master but is not
    // durable.
    let victim = create(&store, 7).await;
    let victim_key = store.session_key(&victim);
    let paused = Paused::new(pid_of(replica));
    let paused_at = Instant::now();
    let wait_from = Instant::now();
    let not_durable = store.revoke(&victim).await;
    let wait_to = Instant::now();
    let wait_took = wait_to - wait_from;
    let on_master = query_text(master, &["EXISTS", &victim_key]).unwrap();
    sessionkit::SessionStore::load(&store, &victim, &calm())
        .await
        .map(|o| assert!(matches!(o, LoadOutcome::Missing), "{o:?}"))
        .expect("load on the master");
    send_as(&router, "/login/alice", None, None)
        .await
        .token
        .unwrap();
    let t = Instant::now();
    let revoke_user = manager.revoke_user("alice").await;
    let revoke_user_took = t.elapsed();
    let user = send_as(&router, "/login/alice", None, None)
        .await
        .token
        .unwrap();
    let t = Instant::now();
    let logout = send_as(&router, "/logout", Some(&user), None).await;
    let logout_503_took = t.elapsed();
    let paused_for = paused_at.elapsed();
    paused.resume();
    let resumed = Instant::now();
    poll(
        Duration::from_secs(10),
        "the replica to catch up",
        || match on_replica(&victim_key).as_str() {
            "0" => Ok(()),
            other => Err(other.to_owned()),
        },
    );
    let caught_up = resumed.elapsed();
    let retry = store.revoke(&victim).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let log = log.lock().unwrap();
    let baseline = latencies(&log, baseline_from, baseline_to);
    let during = latencies(&log, wait_from, wait_to);

    println!("durable_revocations(1, {WAIT_TIMEOUT:?}) on Sentinel (master 127.0.0.1:{master}, replica 127.0.0.1:{replica}):");
    println!("  setup start {}", ms(setup_took));
    println!(
        "  replica up: revoke {} (then gone on the replica), HTTP logout {}",
        ms(durable_took),
        ms(logout_took)
    );
    println!(
        "  replica SIGSTOPped: revoke -> {not_durable:?} after {}; EXISTS on the master {on_master}",
        ms(wait_took)
    );
    println!(
        "  revoke_user -> {revoke_user:?} after {}; HTTP logout {} {:?} after {}",
        ms(revoke_user_took),
        logout.status,
        logout.body,
        ms(logout_503_took)
    );
    println!("  side load (load + save of 4 other sessions, same store):");
    println!("    before the WAIT : {}", show(baseline));
    println!("    during the WAIT : {}", show(during));
    println!(
        "  replica paused {}; caught up {} after SIGCONT; retried revoke -> {retry:?}",
        ms(paused_for),
        ms(caught_up)
    );

    assert!(
        matches!(
            not_durable,
            Err(Error::NotDurable {
                acked: 0,
                wanted: 1
            })
        ),
        "{not_durable:?}"
    );
    assert!(
        wait_took >= WAIT_TIMEOUT - Duration::from_millis(10)
            && wait_took <= WAIT_TIMEOUT + Duration::from_millis(400),
        "NotDurable after {wait_took:?}, the WAIT timeout is {WAIT_TIMEOUT:?}"
    );
    assert_eq!(on_master, "0", "the revocation happened on the master");
    assert!(
        matches!(
            revoke_user,
            Err(Error::NotDurable {
                acked: 0,
                wanted: 1
            })
        ),
        "{revoke_user:?}"
    );
    assert_unavailable("logout, not durable", &logout);
    assert!(
        matches!(retry, Ok(false)),
        "a retry once the replica is back: {retry:?}"
    );
    assert!(
        during.0 >= 20,
        "too few side calls during the WAIT: {during:?}"
    );
    assert_eq!(during.4, 0, "side calls failed during the WAIT");
    assert!(
        during.3 < Duration::from_millis(150),
        "a side call took {} during the WAIT",
        ms(during.3)
    );
}

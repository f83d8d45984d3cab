//! Redis-specific checks of `RedisStore`, each on a `redis-server` of its own:
//! what is stored (no token, prefixed keys, TTLs), index pruning, atomic
//! per-user limits under concurrency, expiry on the Redis clock, corrupt
//! data, Cluster slots, and the commands each request costs.
//!
//! The behaviour shared with every store is in `store_conformance.rs`,
//! `http_scenarios.rs` and `policy_scenarios.rs`, which run on Redis too.
#![cfg(all(feature = "redis", feature = "axum"))]

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncCommands, Value};
use axum::Router;
use http::StatusCode;
use serde_json::json;
use sessionkit::redis::{key_slot, RedisStore};
use sessionkit::store::{
    ClientInfo, Delta, LoadOutcome, LockOutcome, Login, LoginOutcome, NewSession, Retire,
    RotateOutcome, SaveOutcome, Tag, Timeouts, Token,
};
use sessionkit::{
    Error, MaxSessionsPolicy, SessionConfig, SessionId, SessionManager, SessionStore, UserLimit,
};
use support::axum_app::{app, send_as, Reply};
use support::outcomes::LoadOutcomeExt;
use support::redis_server::command_stats;
use support::RedisServer;

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

// ---------------------------------------------------------------- helpers

async fn start() -> RedisServer {
    tokio::task::spawn_blocking(RedisServer::start)
        .await
        .expect("start redis-server")
}

async fn store(server: &RedisServer, prefix: &str) -> RedisStore {
    RedisStore::builder()
        .url(server.url())
        .key_prefix(prefix)
        .build()
        .await
        .expect("connect")
}

async fn con(server: &RedisServer) -> MultiplexedConnection {
    server
        .client()
        .get_multiplexed_async_connection()
        .await
        .expect("test connection")
}

async fn send(router: &Router, path: &str, token: Option<&str>) -> Reply {
    send_as(router, path, token, Some(UA)).await
}

fn id_of(token: &str) -> SessionId {
    Token::parse(token).expect("a token").id()
}

/// Every key with its type, TTL and every value it holds, as text.
async fn dump(con: &mut MultiplexedConnection) -> BTreeMap<String, (String, i64, Vec<String>)> {
    let keys: Vec<String> = con.keys("*").await.unwrap();
    let mut out = BTreeMap::new();
    for key in keys {
        let kind: String = ::redis::cmd("TYPE")
            .arg(&key)
            .query_async(con)
            .await
            .unwrap();
        let ttl: i64 = con.pttl(&key).await.unwrap();
        let values: Vec<String> = match kind.as_str() {
            "hash" => {
                let v: Vec<String> = con.hgetall(&key).await.unwrap();
                v
            }
            "zset" => con.zrange_withscores(&key, 0, -1).await.unwrap(),
            "string" => vec![con.get(&key).await.unwrap()],
            "set" => con.smembers(&key).await.unwrap(),
            "list" => con.lrange(&key, 0, -1).await.unwrap(),
            other => vec![format!("<{other}>")],
        };
        out.insert(key, (kind, ttl, values));
    }
    out
}

/// Session hashes (not markers) that belong to `user`.
async fn live_sessions_of(con: &mut MultiplexedConnection, user: &str) -> usize {
    let mut n = 0;
    for (key, (kind, _, values)) in dump(con).await {
        if kind == "hash" && key.contains(":s:") {
            let pairs: Vec<_> = values.chunks(2).collect();
            if pairs.iter().any(|p| p[0] == "@user" && p[1] == user) {
                n += 1;
            }
        }
    }
    n
}

fn timeouts(idle_ms: u64) -> Timeouts {
    Timeouts {
        idle: Duration::from_millis(idle_ms),
        absolute: Duration::from_secs(3600),
        touch_interval: Duration::from_millis(idle_ms / 2),
    }
}

// ---------------------------------------------------------------- what is stored

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump_holds_no_token_and_every_key_is_prefixed() {
    let server = start().await;
    let store = store(&server, "acme:sess").await;
    let router = app(SessionManager::new(store, SessionConfig::default()));
    let mut tokens = Vec::new();

    let a1 = send(&router, "/write/color/blue", None)
        .await
        .token
        .unwrap();
    assert!(send(&router, "/write/size/xl", Some(&a1))
        .await
        .token
        .is_none());
    let a2 = send(&router, "/login/alice", Some(&a1))
        .await
        .token
        .unwrap();
    send(&router, "/write/x/1", Some(&a2)).await;
    let b1 = send(&router, "/login/alice", None).await.token.unwrap();
    send(&router, "/three", Some(&b1)).await;
    let c1 = send(&router, "/write/z/3", None).await.token.unwrap();
    assert_eq!(
        send(&router, "/read", Some(&a2)).await.body,
        "color=\"blue\",size=\"xl\",x=\"1\""
    );
    tokens.extend([a1, a2, b1, c1]);

    let mut con = con(&server).await;
    let dump = dump(&mut con).await;
    assert!(
        dump.len() >= 5,
        "sessions, a marker and an index: {dump:#?}"
    );
    let mut kinds = HashSet::new();
    for (key, (kind, ttl, values)) in &dump {
        assert!(key.starts_with("acme:sess:{"), "{key} lacks the prefix");
        assert!(*ttl > 0, "{key} has no TTL ({ttl})");
        kinds.insert(kind.clone());
        for token in &tokens {
            let secret = token.split_once('.').unwrap().1;
            for text in std::iter::once(key).chain(values) {
                assert!(
                    !text.contains(token.as_str()) && !text.contains(secret),
                    "{key} holds a token"
                );
            }
        }
    }
    assert!(
        kinds.contains("hash") && kinds.contains("zset"),
        "{kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_drops_expired_and_revoked_members() {
    let server = start().await;
    let store = store(&server, "sk").await;
    let index = store.user_index_key("dave");
    let manager = SessionManager::new(
        store,
        SessionConfig::default().idle_timeout(Duration::from_secs(1)),
    );
    let login = |m: SessionManager| async move {
        let s = m.load(None, ClientInfo::default()).await.unwrap();
        s.login("dave").await.unwrap();
        s.id().unwrap()
    };
    let s1 = login(manager.clone()).await;
    let s2 = login(manager.clone()).await;
    let mut con = con(&server).await;
    assert_eq!(con.zcard::<_, usize>(&index).await.unwrap(), 2);

    assert!(manager.revoke(&s2).await.unwrap());
    let members: Vec<String> = con.zrange(&index, 0, -1).await.unwrap();
    assert_eq!(
        members,
        vec![s1.hash_part().to_owned()],
        "revoke removes its member"
    );

    tokio::time::sleep(Duration::from_millis(700)).await;
    let s3 = login(manager.clone()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // s1 has expired (idle 1 s) but nothing has read the index since.
    assert_eq!(con.zcard::<_, usize>(&index).await.unwrap(), 2);
    let listed = manager.sessions_of("dave").await.unwrap();
    assert_eq!(listed.iter().map(|s| &s.id).collect::<Vec<_>>(), vec![&s3]);
    let members: Vec<String> = con.zrange(&index, 0, -1).await.unwrap();
    assert_eq!(
        members,
        vec![s3.hash_part().to_owned()],
        "the expired member was pruned"
    );
    let ttl: i64 = con.pttl(&index).await.unwrap();
    // Keys and scores run up to a touch interval past the idle deadline (the
    // scripts move them only when activity passes them; reads check `@seen`).
    assert!(
        ttl > 0 && ttl <= 1000 + 500,
        "the index lives as long as its last session: {ttl}"
    );

    assert_eq!(manager.revoke_user("dave").await.unwrap(), 1);
    assert!(
        !con.exists::<_, bool>(&index).await.unwrap(),
        "an empty index is gone"
    );
}

// ---------------------------------------------------------------- concurrency

async fn concurrent_logins(config: SessionConfig, user: &'static str) -> (usize, usize, usize) {
    let server = start().await;
    let store = store(&server, "sk").await;
    let index = store.user_index_key(user);
    let manager = SessionManager::new(store, config);
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let m = manager.clone();
            tokio::spawn(async move {
                let s = m.load(None, ClientInfo::default()).await?;
                s.insert("i", i)?;
                s.login(user).await?;
                m.commit(&s).await.map_err(|e| e.error)?;
                Ok::<_, Error>(s.id())
            })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().unwrap().is_some());
    }
    let listed = manager.sessions_of(user).await.unwrap().len();
    let mut con = con(&server).await;
    let indexed = con.zcard::<_, usize>(&index).await.unwrap();
    (listed, indexed, live_sessions_of(&mut con, user).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_logins_under_single_login_leave_one() {
    let got = concurrent_logins(SessionConfig::default().single_login(true), "erin").await;
    assert_eq!(got, (1, 1, 1), "(listed, indexed, session hashes)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_logins_under_max_five_leave_five() {
    let config = SessionConfig::default().max_sessions_per_user(5, MaxSessionsPolicy::EvictOldest);
    let got = concurrent_logins(config, "frank").await;
    assert_eq!(got, (5, 5, 5), "(listed, indexed, session hashes)");
}

// ---------------------------------------------------------------- expiry

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_follows_the_redis_clock() {
    let server = start().await;
    let store = store(&server, "sk").await;
    let router = app(SessionManager::new(
        store.clone(),
        SessionConfig::default().idle_timeout(Duration::from_secs(1)),
    ));
    let mut con = con(&server).await;

    // Redis expires the key by itself: the app does nothing for 1.5 s.
    let token = send(&router, "/write/k/v", None).await.token.unwrap();
    let key = store.session_key(&id_of(&token));
    let ttl: i64 = con.pttl(&key).await.unwrap();
    assert!(
        ttl > 0 && ttl <= 1000 + 500,
        "TTL = idle timeout, and at most one touch interval more: {ttl}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !con.exists::<_, bool>(&key).await.unwrap(),
        "Redis expired the session"
    );
    let r = send(&router, "/read", Some(&token)).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "empty"));

    // A key that outlives its deadline (TTL pushed out by hand) is still
    // refused: the read checks the Redis time (PEXPIRETIME - PTTL of the
    // key), and the next write deletes it.
    let token = send(&router, "/write/k/v", None).await.token.unwrap();
    let id = id_of(&token);
    let key = store.session_key(&id);
    let _: bool = con.pexpire(&key, 60_000).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(con.exists::<_, bool>(&key).await.unwrap());
    assert_eq!(
        store.load(&id, &timeouts(1000)).await.unwrap(),
        LoadOutcome::Missing
    );
    let delta = Delta {
        set: vec![("k".to_owned(), serde_json::json!("w"))],
        ..Default::default()
    };
    assert_eq!(
        store.save(&id, &delta, &timeouts(1000)).await.unwrap(),
        SaveOutcome::Gone
    );
    assert!(
        !con.exists::<_, bool>(&key).await.unwrap(),
        "the save script deleted it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_lifetime_is_not_extended_by_activity() {
    let server = start().await;
    let store = store(&server, "sk").await;
    let router = app(SessionManager::new(
        store.clone(),
        SessionConfig::default()
            .idle_timeout(Duration::from_secs(10))
            .absolute_timeout(Duration::from_secs(2))
            .touch_interval(Duration::from_millis(100)),
    ));
    let token = send(&router, "/write/k/v", None).await.token.unwrap();
    let mut con = con(&server).await;
    let ttl: i64 = con.pttl(store.session_key(&id_of(&token))).await.unwrap();
    assert!(
        ttl > 0 && ttl <= 2000,
        "TTL = time to the absolute deadline: {ttl}"
    );
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(send(&router, "/read", Some(&token)).await.body, "k=\"v\"");
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(send(&router, "/read", Some(&token)).await.body, "empty");
}

// ---------------------------------------------------------------- bad data

use support::logs::Logs;

#[tokio::test(flavor = "current_thread")]
async fn corrupt_sessions_give_a_fresh_session_and_a_warning() {
    let logs = Logs::default();
    let _guard = logs.capture_at(tracing::Level::WARN);

    let server = start().await;
    let store = store(&server, "sk").await;
    let router = app(SessionManager::new(store.clone(), SessionConfig::default()));
    let mut con = con(&server).await;

    type Corrupt = fn(&str) -> ::redis::Cmd;
    let cases: [(&str, Corrupt); 4] = [
        ("invalid JSON in a data field", |k| {
            ::redis::Cmd::hset(k, "d:k", "{not json")
        }),
        ("a plain string at the key", |k| {
            ::redis::Cmd::set(k, "garbage")
        }),
        ("a list at the key", |k| ::redis::Cmd::rpush(k, "garbage")),
        ("a missing metadata field", |k| {
            ::redis::Cmd::hdel(k, "@deadline")
        }),
    ];
    for (what, corrupt) in cases {
        let token = send(&router, "/write/k/v", None).await.token.unwrap();
        let id = id_of(&token);
        let key = store.session_key(&id);
        if what.contains("at the key") {
            let _: () = con.del(&key).await.unwrap();
        }
        let _: Value = corrupt(&key).query_async(&mut con).await.unwrap();

        let r = send(&router, "/read", Some(&token)).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (StatusCode::OK, "empty"),
            "{what}"
        );
        assert_eq!(
            store.load(&id, &timeouts(60_000)).await.unwrap(),
            LoadOutcome::Missing,
            "{what}"
        );
        let r = send(&router, "/write/k/w", Some(&token)).await;
        assert_eq!(r.status, StatusCode::OK, "{what}");
        let fresh = r.token.expect("a fresh session gets a new token");
        assert_ne!(fresh, token, "{what}");
        assert_eq!(send(&router, "/read", Some(&fresh)).await.body, "k=\"w\"");

        let text = logs.text();
        assert!(
            text.contains("corrupt session") && text.contains(id.as_str()),
            "{what}: {text}"
        );
        assert!(!text.contains(&token), "a token was logged");
    }
}

// ---------------------------------------------------------------- failures

/// Sends until the answer is 200, for at most `limit`.
async fn until_ok(router: &Router, path: &str, limit: Duration) -> Reply {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let r = send(router, path, None).await;
        if r.status == StatusCode::OK || tokio::time::Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_gives_503_and_the_app_recovers() {
    let mut server = start().await;
    let config = SessionConfig::default().store_timeout(Duration::from_secs(1));
    let eager = RedisStore::builder()
        .url(server.url())
        .command_timeout(Duration::from_millis(500))
        .retry_delay(Duration::from_millis(50), Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let router = app(SessionManager::new(eager, config.clone()));
    let token = send(&router, "/write/k/v", None).await.token.unwrap();

    server.stop();
    // A store built while Redis is down, connecting on first use.
    let lazy = RedisStore::builder()
        .url(server.url())
        .command_timeout(Duration::from_millis(500))
        .lazy_connect(true)
        .build()
        .await
        .expect("a lazy store builds without Redis");
    let lazy_router = app(SessionManager::new(lazy, config));
    for router in [&router, &lazy_router] {
        let started = std::time::Instant::now();
        let r = send(router, "/read", Some(&token)).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            send(router, "/write/k/v", None).await.status,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    // Redis comes back empty (no persistence here): both apps recover by
    // themselves, reconnecting and reloading their scripts.
    let mut server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .unwrap();
    for router in [&router, &lazy_router] {
        let r = until_ok(router, "/write/k/again", Duration::from_secs(10)).await;
        assert_eq!(r.status, StatusCode::OK, "recovered");
        let fresh = r.token.unwrap();
        assert_eq!(
            send(router, "/read", Some(&fresh)).await.body,
            "k=\"again\""
        );
    }
    assert_eq!(send(&router, "/read", Some(&token)).await.body, "empty");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_redis_gives_503_within_the_command_timeout() {
    let server = start().await;
    let store = RedisStore::builder()
        .url(server.url())
        .command_timeout(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    let router = app(SessionManager::new(store, SessionConfig::default()));
    let token = send(&router, "/write/k/v", None).await.token.unwrap();

    // Every client's commands wait 1.5 s.
    server.command(&["CLIENT", "PAUSE", "1500", "ALL"]);
    let started = std::time::Instant::now();
    let r = send(&router, "/read", Some(&token)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(send(&router, "/read", Some(&token)).await.body, "k=\"v\"");
}

// ---------------------------------------------------------------- cluster

/// Runs every operation on a single-node Redis Cluster. A script whose keys,
/// declared or derived, left one slot would fail with a cross-slot error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_runs_on_a_cluster_node() {
    let server = tokio::task::spawn_blocking(RedisServer::start_cluster_node)
        .await
        .unwrap();
    let store = store(&server, "app").await;
    let t = timeouts(60_000);
    let client = ClientInfo::default();
    let data = [("a".to_owned(), json!(1))].into_iter().collect();
    let set = |k: &str| Delta {
        set: vec![(k.to_owned(), json!(true))],
        ..Delta::default()
    };
    let user_id = |u: &str| Token::generate(&Tag::for_user(u)).id();
    let login_delta = set("at_login");
    let (delta_ref, client_ref, login_store) = (&login_delta, &client, store.clone());
    let login = move |old: Option<SessionId>, new: SessionId, limit: UserLimit| {
        let store = login_store.clone();
        async move {
            let login = Login {
                old: old.as_ref(),
                new: &new,
                user_id: "ann",
                delta: delta_ref,
                client: client_ref,
                limit,
                moved_grace: Duration::from_secs(30),
            };
            store.login(login, &t).await.unwrap()
        }
    };

    let anon = Token::generate(&Tag::random()).id();
    store
        .create(
            &anon,
            NewSession {
                data: &data,
                client: &client,
            },
            &t,
        )
        .await
        .unwrap();
    assert!(store.load(&anon, &t).await.unwrap().is_live());
    assert!(matches!(
        store.save(&anon, &set("b"), &t).await.unwrap(),
        SaveOutcome::Saved(_)
    ));

    // Locks: take, renew, fenced save, release.
    let lease = Duration::from_secs(30);
    let lock = |id: SessionId| {
        let store = store.clone();
        async move {
            match store.lock(&id, lease, &t).await.unwrap() {
                LockOutcome::Acquired { fence, .. } => fence,
                other => panic!("lock {id}: {other:?}"),
            }
        }
    };
    let fence = lock(anon.clone()).await;
    assert!(store.renew_lock(&anon, fence, lease).await.unwrap());
    let fenced = Delta {
        fence: Some(fence),
        ..set("l")
    };
    assert!(matches!(
        store.save(&anon, &fenced, &t).await.unwrap(),
        SaveOutcome::Saved(_)
    ));
    store.unlock(&anon, fence).await.unwrap();
    let _held = lock(anon.clone()).await;

    // Login from an anonymous session: two scripts, two slots (the
    // retire script drops the old session's lock).
    let first = user_id("ann");
    login(Some(anon.clone()), first.clone(), UserLimit::Unlimited).await;
    assert_eq!(
        store.save(&anon, &set("c"), &t).await.unwrap(),
        SaveOutcome::Superseded
    );
    // Re-login from the user's own (locked) session: one script.
    let _held = lock(first.clone()).await;
    let second = user_id("ann");
    login(Some(first.clone()), second.clone(), UserLimit::Unlimited).await;
    let third = user_id("ann");
    login(None, third.clone(), UserLimit::Unlimited).await;
    // Locked sessions, one of which the next login evicts.
    let _held = lock(second.clone()).await;
    let _held = lock(third.clone()).await;
    let max2 = UserLimit::Max {
        max: 2,
        policy: MaxSessionsPolicy::EvictOldest,
    };
    let fourth = user_id("ann");
    let out = login(None, fourth.clone(), max2).await;
    assert!(
        matches!(out, LoginOutcome::LoggedIn { ref evicted, .. } if evicted.len() == 1),
        "{out:?}"
    );
    let reject = UserLimit::Max {
        max: 2,
        policy: MaxSessionsPolicy::RejectNew,
    };
    assert_eq!(
        login(None, user_id("ann"), reject).await,
        LoginOutcome::Rejected { max: 2 }
    );

    // Rotation with an alias (moving the lock), followed by load, save,
    // renew and release through the alias.
    let locked = lock(fourth.clone()).await;
    let rotated = user_id("ann");
    store
        .rotate(
            &fourth,
            &rotated,
            Retire::Alias(Duration::from_secs(30)),
            &t,
        )
        .await
        .unwrap();
    assert_eq!(store.load(&fourth, &t).await.unwrap().live().id, rotated);
    assert!(matches!(
        store.save(&fourth, &set("d"), &t).await.unwrap(),
        SaveOutcome::SavedToSuccessor(_)
    ));
    assert!(store.renew_lock(&fourth, locked, lease).await.unwrap());
    store.unlock(&fourth, locked).await.unwrap();
    let _held = lock(rotated.clone()).await;
    let moved = user_id("ann");
    store
        .rotate(&rotated, &moved, Retire::Moved(Duration::from_secs(30)), &t)
        .await
        .unwrap();
    // The alias now leads to a moved marker: superseded, for every script
    // that follows it.
    assert_eq!(
        store.load(&fourth, &t).await.unwrap(),
        LoadOutcome::Superseded
    );
    assert_eq!(
        store.save(&fourth, &set("e"), &t).await.unwrap(),
        SaveOutcome::Superseded
    );
    assert_eq!(
        store
            .rotate(&fourth, &user_id("ann"), Retire::Alias(lease), &t)
            .await
            .unwrap(),
        RotateOutcome::Superseded
    );

    assert_eq!(store.sessions_of("ann", &t).await.unwrap().len(), 2);
    assert_eq!(store.revoke_user("ann", Some(&moved)).await.unwrap(), 1);
    assert!(store.revoke(&moved).await.unwrap());
    assert!(store.sessions_of("ann", &t).await.unwrap().is_empty());
    let mut con = con(&server).await;
    let keys: Vec<String> = con.keys("*").await.unwrap();
    assert!(
        !keys.iter().any(|k| k.contains(":l:")),
        "every lock went with its session: {keys:?}"
    );

    // Login through an alias chain of an anonymous session: the old
    // session's slot and the user's.
    let tag = Tag::random();
    let chain: Vec<SessionId> = (0..3).map(|_| Token::generate(&tag).id()).collect();
    store
        .create(
            &chain[0],
            NewSession {
                data: &data,
                client: &client,
            },
            &t,
        )
        .await
        .unwrap();
    for pair in chain.windows(2) {
        let out = store
            .rotate(&pair[0], &pair[1], Retire::Alias(lease), &t)
            .await
            .unwrap();
        assert!(matches!(out, RotateOutcome::Rotated(_)), "{out:?}");
    }
    let last = user_id("ann");
    let out = login(Some(chain[0].clone()), last.clone(), UserLimit::Unlimited).await;
    let LoginOutcome::LoggedIn { data: carried, .. } = out else {
        panic!("{out:?}")
    };
    assert_eq!(
        carried.get("a"),
        Some(&json!(1)),
        "carried through the chain"
    );
    assert_eq!(
        store.load(&chain[2], &t).await.unwrap(),
        LoadOutcome::Superseded
    );

    // The crate's slot function agrees with the server's.
    let _held = lock(last).await;
    let keys: Vec<String> = con.keys("*").await.unwrap();
    assert!(keys.len() >= 3, "{keys:?}");
    for key in keys
        .iter()
        .map(String::as_str)
        .chain(["foo", "{x}y", "a{}b", "123456789"])
    {
        let slot: u16 = ::redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(key_slot(key), slot, "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_live_beside_their_session_and_survive_outside_interference() {
    let server = start().await;
    let store = store(&server, "app").await;
    let mut con = con(&server).await;
    let t = timeouts(60_000);
    let client = ClientInfo::default();
    let data = [("n".to_owned(), json!(1))].into_iter().collect();
    let id = Token::generate(&Tag::random()).id();
    store
        .create(
            &id,
            NewSession {
                data: &data,
                client: &client,
            },
            &t,
        )
        .await
        .unwrap();
    let session_key = store.session_key(&id);
    let lock_key = store.lock_key(&id);
    assert_eq!(key_slot(&lock_key), key_slot(&session_key));
    assert!(lock_key.starts_with("app:{"), "{lock_key}");
    assert!(lock_key.contains(":l:"), "{lock_key}");
    let lease = Duration::from_secs(5);
    let lock = |expect: &'static str| {
        let store = store.clone();
        let id = id.clone();
        async move {
            let out = store.lock(&id, lease, &t).await.unwrap();
            match (&out, expect) {
                (LockOutcome::Acquired { fence, .. }, "acquired") => *fence,
                (LockOutcome::Held { .. }, "held") | (LockOutcome::Gone, "gone") => 0,
                _ => panic!("expected {expect}, got {out:?}"),
            }
        }
    };

    // The lock key holds the fence, with the lease as its TTL; the session
    // hash holds the counter.
    let fence = lock("acquired").await;
    let held: String = con.get(&lock_key).await.unwrap();
    assert_eq!(held, fence.to_string());
    let pttl: i64 = con.pttl(&lock_key).await.unwrap();
    assert!(0 < pttl && pttl <= 5_000, "{pttl}");
    let counter: String = con.hget(&session_key, "@fence").await.unwrap();
    assert_eq!(counter, fence.to_string());
    assert!(store.renew_lock(&id, fence, lease).await.unwrap());
    store.unlock(&id, fence).await.unwrap();
    assert!(!con.exists::<_, bool>(&lock_key).await.unwrap());

    // A lock key without a TTL, or of another type, would block the session
    // forever: it is dropped.
    let _: () = con.set(&lock_key, "999").await.unwrap();
    let f = lock("acquired").await;
    assert!(f > fence);
    store.unlock(&id, f).await.unwrap();
    let _: () = con.hset(&lock_key, "a", "b").await.unwrap();
    let _: () = con.pexpire(&lock_key, 60_000).await.unwrap();
    let f = lock("acquired").await;
    assert!(!store.renew_lock(&id, f - 1, lease).await.unwrap());
    assert!(store.renew_lock(&id, f, lease).await.unwrap());
    store.unlock(&id, f).await.unwrap();

    // A corrupt fence counter makes the session unlockable (with a
    // warning), never a store error.
    let _: () = con.hset(&session_key, "@fence", "many").await.unwrap();
    lock("gone").await;
    assert!(
        store.load(&id, &t).await.unwrap().is_live(),
        "the session itself still loads"
    );

    // Revocation deletes the lock key at once.
    let _: () = con.hdel(&session_key, "@fence").await.unwrap();
    let _f = lock("acquired").await;
    assert!(store.revoke(&id).await.unwrap());
    assert!(!con.exists::<_, bool>(&lock_key).await.unwrap());
    assert!(!con.exists::<_, bool>(&session_key).await.unwrap());
}

// ---------------------------------------------------------------- costs

/// What one request cost: commands the app sent, and commands run inside
/// its scripts (which `INFO commandstats` also counts).
struct Cost {
    sent: u64,
    inside: BTreeMap<String, u64>,
}

impl Cost {
    /// The commands run inside scripts or sent plainly, with their counts.
    fn commands(&self) -> Vec<(&str, u64)> {
        self.inside.iter().map(|(k, v)| (k.as_str(), *v)).collect()
    }
}

/// Commands an app sends; every other command in the stats ran inside a
/// script.
const SENT_BY_APP: [&str; 5] = ["evalsha", "eval", "script|load", "evalsha_ro", "eval_ro"];

async fn measure(
    con: &mut MultiplexedConnection,
    router: &Router,
    path: &str,
    token: Option<&str>,
) -> (Cost, Reply) {
    let before = command_stats(con).await;
    let reply = send(router, path, token).await;
    let after = command_stats(con).await;
    let mut cost = Cost {
        sent: 0,
        inside: BTreeMap::new(),
    };
    for (name, n) in &after {
        // The first INFO is counted by the second; neither is the app's.
        let delta = n - before.get(name).copied().unwrap_or(0);
        if delta == 0 || name == "info" {
            continue;
        }
        if SENT_BY_APP.contains(&name.as_str()) {
            cost.sent += delta;
        } else {
            cost.inside.insert(name.clone(), delta);
        }
    }
    (cost, reply)
}

async fn memory_usage(con: &mut MultiplexedConnection, key: &str) -> u64 {
    ::redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(key)
        .arg("SAMPLES")
        .arg(0)
        .query_async(con)
        .await
        .unwrap()
}

/// Prints (run with `--nocapture`) and checks the Redis commands each kind of
/// request costs, and the memory one logged-in session takes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_commands_per_request() {
    let server = start().await;
    let store = store(&server, "sessionkit").await;
    let router = app(SessionManager::new(store.clone(), SessionConfig::default()));
    let mut con = con(&server).await;

    let anon = send(&router, "/write/k/v", None).await.token.unwrap();
    let mut rows = Vec::new();
    let (read, _) = measure(&mut con, &router, "/read", Some(&anon)).await;
    let (write, _) = measure(&mut con, &router, "/write/k/w", Some(&anon)).await;
    let (locked, _) = measure(&mut con, &router, "/locked-write/k/x", Some(&anon)).await;
    let (login_fresh, r) = measure(&mut con, &router, "/login/grace", None).await;
    let user_token = r.token.unwrap();
    let (login_anon, r) = measure(&mut con, &router, "/login/grace", Some(&anon)).await;
    assert!(r.token.is_some());
    let (logout, _) = measure(&mut con, &router, "/logout", Some(&user_token)).await;
    // The same through `LazySession`: no read before the login or logout.
    let anon2 = send(&router, "/write/k/v", None).await.token.unwrap();
    let (lazy_login, r) = measure(&mut con, &router, "/lazy-login/grace", Some(&anon2)).await;
    let lazy_token = r.token.unwrap();
    let (lazy_logout, r) = measure(&mut con, &router, "/lazy-logout", Some(&lazy_token)).await;
    assert_eq!(
        r.token.as_deref(),
        Some(""),
        "the lazy logout clears the cookie"
    );
    assert_eq!(
        send(&router, "/read", Some(&lazy_token)).await.body,
        "empty",
        "the lazy logout ended the session"
    );
    rows.extend([
        ("read-only request", read),
        ("write request", write),
        ("write under LockedSession", locked),
        ("login, no prior session", login_fresh),
        ("login from an anonymous session", login_anon),
        ("logout", logout),
        ("LazySession login from anonymous", lazy_login),
        ("LazySession logout", lazy_logout),
    ]);

    println!("Redis commands per request (INFO commandstats deltas, INFO itself excluded):");
    println!(
        "{:<34} {:>7}  other commands (inside the scripts, or the read pipeline)",
        "request", "scripts"
    );
    for (what, cost) in &rows {
        let inside: Vec<String> = cost
            .inside
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!("{what:<34} {:>7}  {}", cost.sent, inside.join(", "));
    }

    // One logged-in session with three small keys (fresh login, then one
    // write), with a browser's User-Agent and without one. A value longer
    // than `hash-max-listpack-value` (64 bytes by default; browser
    // User-Agents are longer) turns the hash from a listpack into a
    // hashtable; raising that setting keeps sessions compact.
    let mut sizes = Vec::new();
    for (label, ua, listpack_value) in [
        ("browser User-Agent (70 B), default config", Some(UA), None),
        ("no User-Agent, default config", None, None),
        (
            "browser User-Agent, hash-max-listpack-value 256",
            Some(UA),
            Some("256"),
        ),
    ] {
        if let Some(v) = listpack_value {
            let _: () = ::redis::cmd("CONFIG")
                .arg("SET")
                .arg("hash-max-listpack-value")
                .arg(v)
                .query_async(&mut con)
                .await
                .unwrap();
        }
        let user = format!("mem{}", sizes.len());
        let token = send_as(&router, &format!("/login/{user}"), None, ua)
            .await
            .token
            .unwrap();
        send_as(&router, "/three", Some(&token), ua).await;
        let session_key = store.session_key(&id_of(&token));
        let index_key = store.user_index_key(&user);
        let fields: Vec<String> = con.hgetall(&session_key).await.unwrap();
        let encoding: String = ::redis::cmd("OBJECT")
            .arg("ENCODING")
            .arg(&session_key)
            .query_async(&mut con)
            .await
            .unwrap();
        let session_bytes = memory_usage(&mut con, &session_key).await;
        let index_bytes = memory_usage(&mut con, &index_key).await;
        println!(
            "MEMORY USAGE, {label}: session {session_bytes} B ({encoding}, {} fields: {}), index {index_bytes} B (1 member)",
            fields.len() / 2,
            fields.chunks(2).map(|p| p[0].as_str()).collect::<Vec<_>>().join(" ")
        );
        sizes.push(session_bytes);
    }

    let sent: Vec<u64> = rows.iter().map(|(_, c)| c.sent).collect();
    assert_eq!(
        sent,
        vec![0, 0, 3, 1, 1, 1, 1, 1],
        "script calls of: read (none: the Lua-free read), write (none: a transaction), locked write (lock, save, unlock), login, login from anonymous (retired in the login script on a non-Cluster server), logout (logout), and the same two through LazySession"
    );
    // Through `LazySession`, a login or logout is that one script call and
    // nothing else: the eager ones' commands less the read pipeline.
    let read_pipeline = ["hgetall", "pexpiretime", "pttl"];
    for (eager, lazy) in [(&rows[4].1, &rows[6].1), (&rows[5].1, &rows[7].1)] {
        let mut expected = eager.inside.clone();
        for cmd in read_pipeline {
            let n = expected.get_mut(cmd).expect("the eager request read first");
            *n -= 1;
            if *n == 0 {
                expected.remove(cmd);
            }
        }
        assert_eq!(
            lazy.inside, expected,
            "a LazySession login/logout reads nothing first"
        );
    }
    // The read is one pipeline of three cheap commands (issue 11).
    let read_cmds = rows[0].1.commands();
    assert_eq!(
        read_cmds,
        vec![("hgetall", 1), ("pexpiretime", 1), ("pttl", 1)]
    );
    // The write is that read, then one transaction (issue 11): it reads the
    // markers and times, writes the delta, bumps `@ver`, and gives a key
    // that did not exist a TTL of 1 ms.
    let write_cmds = rows[1].1.commands();
    assert_eq!(
        write_cmds,
        vec![
            ("exec", 1),
            ("hgetall", 1),
            ("hincrby", 1),
            ("hmget", 1),
            ("hset", 1),
            ("multi", 1),
            ("pexpire", 1),
            ("pexpiretime", 2),
            ("pttl", 2)
        ]
    );
    // A browser's User-Agent is stored in pieces of at most 64 bytes, so
    // the hash stays a listpack at Redis's default configuration (it was a
    // hashtable of about 900 bytes).
    assert!(sizes.iter().all(|b| *b < 512), "{sizes:?}");
}

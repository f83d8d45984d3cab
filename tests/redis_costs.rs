//! Costs that must not grow with work (issue 11), counted in Redis
//! commands (`INFO commandstats`, which also counts commands run inside
//! scripts), never timed: login costs the same whether the user holds 10 or
//! 2,000 sessions, with or without a per-user limit; the Lua-free read
//! queues its idle-deadline touch and a batch applies it.
//!
//! Needs `redis-server` on the PATH (`apt-get install redis-server`).

mod support;

use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::AsyncCommands;
use sessionkit::redis::RedisStore;
use sessionkit::store::{
    ClientInfo, Delta, LoadOutcome, Login, LoginOutcome, Tag, Timeouts, Token,
};
use sessionkit::{MaxSessionsPolicy, SessionId, SessionStore, UserLimit};
use support::redis_server::command_stats;
use support::redis_server::store_on_own_server;
use support::RedisServer;

fn timeouts() -> Timeouts {
    Timeouts {
        idle: Duration::from_secs(600),
        absolute: Duration::from_secs(3600),
        touch_interval: Duration::from_secs(60),
    }
}

async fn setup() -> (RedisServer, RedisStore, MultiplexedConnection) {
    store_on_own_server(None).await
}

async fn login(store: &RedisStore, user: &str, limit: UserLimit) -> LoginOutcome {
    let new = Token::generate(&Tag::for_user(user)).id();
    login_as(store, &new, user, limit, &timeouts()).await
}

/// A login with no prior session, as the new session `new`.
async fn login_as(
    store: &RedisStore,
    new: &SessionId,
    user: &str,
    limit: UserLimit,
    t: &Timeouts,
) -> LoginOutcome {
    let (delta, client) = (Delta::default(), ClientInfo::default());
    let login = Login {
        old: None,
        new,
        user_id: user,
        delta: &delta,
        client: &client,
        limit,
        moved_grace: Duration::ZERO,
    };
    store.login(login, t).await.expect("login")
}

/// Commands Redis ran (inside scripts included) for one more login, less
/// the index's `PEXPIREAT`: sent only when the new session outlives the
/// index's TTL, which a login in the same millisecond as the last does not
/// (a flake of one command, not a cost that grows).
async fn login_cost(
    store: &RedisStore,
    con: &mut MultiplexedConnection,
    user: &str,
    limit: UserLimit,
) -> u64 {
    let before = command_stats(con).await;
    login(store, user, limit).await;
    let after = command_stats(con).await;
    after
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "info" | "pexpireat"))
        .map(|(name, n)| n - before.get(name).copied().unwrap_or(0))
        .sum()
}

async fn hold(store: &RedisStore, user: &str, n: usize) {
    for _ in 0..n {
        login(store, user, UserLimit::Unlimited).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_cost_does_not_grow_with_the_users_sessions() {
    let (_server, store, mut con) = setup().await;
    let big_limit = UserLimit::Max {
        max: 100_000,
        policy: MaxSessionsPolicy::EvictOldest,
    };
    hold(&store, "few", 10).await;
    hold(&store, "many", 2_000).await;
    for limit in [UserLimit::Unlimited, big_limit] {
        let few = login_cost(&store, &mut con, "few", limit).await;
        let many = login_cost(&store, &mut con, "many", limit).await;
        println!("{limit:?}: commands per login, 10 sessions {few}, 2,000 sessions {many}");
        assert_eq!(few, many, "{limit:?}: login walked the user's sessions");
    }
    // At the limit, each login evicts exactly one session: the oldest.
    let at_limit = UserLimit::Max {
        max: 2_000,
        policy: MaxSessionsPolicy::EvictOldest,
    };
    // (The first brings the user down from 2,002 sessions.)
    login(&store, "many", at_limit).await;
    let evicting = login_cost(&store, &mut con, "many", at_limit).await;
    let again = login_cost(&store, &mut con, "many", at_limit).await;
    assert_eq!(
        evicting, again,
        "a steady state at the limit costs the same"
    );
    let LoginOutcome::LoggedIn { evicted, .. } = login(&store, "many", at_limit).await else {
        panic!("evict-oldest never rejects");
    };
    assert_eq!(evicted.len(), 1);
    let listed = store.sessions_of("many", &timeouts()).await.unwrap();
    assert_eq!(listed.len(), 2_000);
    assert!(!listed.iter().any(|s| s.id == evicted[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_login_finds_the_live_count_without_walking() {
    let (_server, store, _con) = setup().await;
    let reject = UserLimit::Max {
        max: 3,
        policy: MaxSessionsPolicy::RejectNew,
    };
    for _ in 0..3 {
        assert!(matches!(
            login(&store, "r", reject).await,
            LoginOutcome::LoggedIn { .. }
        ));
    }
    assert_eq!(
        login(&store, "r", reject).await,
        LoginOutcome::Rejected { max: 3 }
    );
    // A revoked session frees its place at once.
    let first = store.sessions_of("r", &timeouts()).await.unwrap()[0]
        .id
        .clone();
    assert!(store.revoke(&first).await.unwrap());
    assert!(matches!(
        login(&store, "r", reject).await,
        LoginOutcome::LoggedIn { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_sessions_leave_the_index_by_score() {
    let (_server, store, mut con) = setup().await;
    let short = Timeouts {
        idle: Duration::from_millis(300),
        absolute: Duration::from_secs(3600),
        touch_interval: Duration::from_millis(100),
    };
    let new = Token::generate(&Tag::for_user("u")).id();
    login_as(&store, &new, "u", UserLimit::Unlimited, &short).await;
    let index = store.user_index_key("u");
    let (member, score): (String, i64) = {
        let v: Vec<(String, i64)> = con.zrange_withscores(&index, 0, -1).await.unwrap();
        v[0].clone()
    };
    assert_eq!(member, new.hash_part());
    let expire_at: i64 = ::redis::cmd("PEXPIRETIME")
        .arg(store.session_key(&new))
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(score, expire_at, "the score is the session's expiry");
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Another login prunes it without reading it.
    hold(&store, "u", 1).await;
    let members: Vec<String> = con.zrange(&index, 0, -1).await.unwrap();
    assert_eq!(members.len(), 1);
    assert_ne!(members[0], new.hash_part());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_runs_no_script_until_its_touch_is_due() {
    let (_server, store, mut con) = setup().await;
    let t = Timeouts {
        idle: Duration::from_secs(60),
        absolute: Duration::from_secs(3600),
        touch_interval: Duration::from_millis(300),
    };
    let id = Token::generate(&Tag::for_user("t")).id();
    login_as(&store, &id, "t", UserLimit::Unlimited, &t).await;
    let key = store.session_key(&id);
    let seen_at_login: i64 = con.hget(&key, "@seen").await.unwrap();
    let scripts = |before: &std::collections::BTreeMap<String, u64>,
                   after: &std::collections::BTreeMap<String, u64>| {
        ["evalsha", "eval"]
            .iter()
            .map(|c| after.get(*c).unwrap_or(&0) - before.get(*c).unwrap_or(&0))
            .sum::<u64>()
    };

    // Not due: the pipeline alone, nothing written.
    let before = command_stats(&mut con).await;
    let LoadOutcome::Live(first) = store.load(&id, &t).await.unwrap() else {
        panic!("the session is live");
    };
    let after = command_stats(&mut con).await;
    assert!(!first.touched);
    assert_eq!(scripts(&before, &after), 0, "a read runs no script");
    assert_eq!(
        after.get("hgetall"),
        before.get("hgetall").map(|n| n + 1).as_ref()
    );

    // Due: the load script touches in the same step.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = command_stats(&mut con).await;
    let LoadOutcome::Live(due) = store.load(&id, &t).await.unwrap() else {
        panic!("the session is live");
    };
    let after = command_stats(&mut con).await;
    assert!(due.touched, "the touch was due");
    assert_eq!(scripts(&before, &after), 1);
    let seen: i64 = con.hget(&key, "@seen").await.unwrap();
    assert!(seen > seen_at_login && seen == due.meta.last_seen_ms);
    let ttl: i64 = con.pttl(&key).await.unwrap();
    assert!(ttl > 59_000, "the TTL was refreshed: {ttl}");
    let score: i64 = con
        .zscore(store.user_index_key("t"), id.hash_part())
        .await
        .unwrap();
    assert!(score >= seen + 60_000, "the index score follows: {score}");
}

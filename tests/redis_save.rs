//! The Lua-free save of `RedisStore` (issue 11): one `MULTI`/`EXEC` that
//! writes first and is judged afterwards on what it read before its writes.
//! These check that the writes it cannot take back leave nothing behind:
//! a session that ended, a rotation marker, a session past its idle
//! deadline whose key still lives.
#![cfg(feature = "redis")]

mod support;

use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::AsyncCommands;
use serde_json::json;
use sessionkit::redis::RedisStore;
use sessionkit::store::{
    Login, NewSession, Retire, RotateOutcome, SaveOutcome, Tag, Timeouts, Token,
};
use sessionkit::{SessionId, SessionStore, UserLimit};
use support::outcomes::LoadOutcomeExt;
use support::records::{anon_id, client, data, set, user_id_for};
use support::redis_server::store_on_own_server;
use support::RedisServer;

fn timeouts() -> Timeouts {
    Timeouts {
        idle: Duration::from_secs(60),
        absolute: Duration::from_secs(3600),
        touch_interval: Duration::from_secs(30),
    }
}

async fn setup() -> (RedisServer, RedisStore, MultiplexedConnection) {
    store_on_own_server(Some("save")).await
}

async fn logged_in(store: &RedisStore, user: &str) -> SessionId {
    let id = user_id_for(user);
    store
        .login(
            Login {
                old: None,
                new: &id,
                user_id: user,
                delta: &set("cart", json!([1])),
                client: &client(),
                limit: UserLimit::Unlimited,
                moved_grace: Duration::from_secs(10),
            },
            &timeouts(),
        )
        .await
        .expect("login");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_to_an_ended_session_leaves_no_key() {
    let (_server, store, mut con) = setup().await;
    let id = anon_id();
    let d = data(&[("a", json!(1))]);
    store
        .create(
            &id,
            NewSession {
                data: &d,
                client: &client(),
            },
            &timeouts(),
        )
        .await
        .expect("create");
    let key = store.session_key(&id);
    // Ended between the request's load and its save (a revoke elsewhere).
    let _: () = con.del(&key).await.unwrap();
    let out = store.save(&id, &set("b", json!(2)), &timeouts()).await;
    assert_eq!(out.unwrap(), SaveOutcome::Gone);
    // The transaction's HSET made the key again; its 1 ms TTL ends it.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let exists: bool = con.exists(&key).await.unwrap();
    assert!(!exists, "the written fields of an ended session are gone");
    let keys: Vec<String> = con.keys("*").await.unwrap();
    assert!(keys.is_empty(), "nothing is left: {keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_through_a_rotation_alias_leaves_the_marker_bare() {
    let (_server, store, mut con) = setup().await;
    let old = logged_in(&store, "ada").await;
    let new = Token::generate(&Tag::for_user("ada")).id();
    let out = store
        .rotate(
            &old,
            &new,
            Retire::Alias(Duration::from_secs(10)),
            &timeouts(),
        )
        .await
        .unwrap();
    assert!(matches!(out, RotateOutcome::Rotated(_)), "{out:?}");
    let marker = store.session_key(&old);
    let before: Vec<(String, String)> = con.hgetall(&marker).await.unwrap();

    let out = store
        .save(&old, &set("late", json!("x")), &timeouts())
        .await;
    assert!(
        matches!(out, Ok(SaveOutcome::SavedToSuccessor(_))),
        "{out:?}"
    );
    let after: Vec<(String, String)> = con.hgetall(&marker).await.unwrap();
    assert_eq!(after, before, "the delta was taken out of the marker");
    assert_eq!(after.len(), 1, "a marker holds its alias alone: {after:?}");
    let l = store.load(&new, &timeouts()).await.unwrap().live();
    assert_eq!(
        l.data.get("late"),
        Some(&json!("x")),
        "written to the successor"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_past_the_idle_deadline_does_not_revive_the_session() {
    let (_server, store, mut con) = setup().await;
    let id = logged_in(&store, "bob").await;
    let key = store.session_key(&id);
    let index = store.user_index_key("bob");
    // Last seen just over the idle timeout ago, the key still alive: a key
    // may outlive the idle deadline by up to one touch interval.
    let seen: i64 = con.hget(&key, "@seen").await.unwrap();
    let _: () = con.hset(&key, "@seen", seen - 61_000).await.unwrap();
    let ttl: i64 = con.pttl(&key).await.unwrap();
    assert!(ttl > 0, "the key lives on: {ttl}");

    let out = store.save(&id, &set("late", json!(1)), &timeouts()).await;
    assert_eq!(out.unwrap(), SaveOutcome::Gone);
    let exists: bool = con.exists(&key).await.unwrap();
    assert!(!exists, "the expired session is deleted, not written back");
    let score: Option<f64> = con.zscore(&index, id.hash_part()).await.unwrap();
    assert_eq!(score, None, "and it leaves its user's index");
    assert!(!store.load(&id, &timeouts()).await.unwrap().is_live());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_save_writes_only_the_delta_and_moves_no_deadline() {
    let (_server, store, mut con) = setup().await;
    let id = logged_in(&store, "cy").await;
    let key = store.session_key(&id);
    let expire_before: i64 = ::redis::cmd("PEXPIRETIME")
        .arg(&key)
        .query_async(&mut con)
        .await
        .unwrap();
    let ver_before: i64 = con.hget(&key, "@ver").await.unwrap();
    let out = store.save(&id, &set("n", json!(5)), &timeouts()).await;
    let Ok(SaveOutcome::Saved(w)) = out else {
        panic!("saved: {out:?}")
    };
    assert!(w.expires_at_ms > w.now_ms);
    let expire_after: i64 = ::redis::cmd("PEXPIRETIME")
        .arg(&key)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(
        expire_after, expire_before,
        "the load touches; a save does not"
    );
    let ver_after: i64 = con.hget(&key, "@ver").await.unwrap();
    assert_eq!(ver_after, ver_before + 1, "every write bumps the version");
    let l = store.load(&id, &timeouts()).await.unwrap().live();
    assert_eq!(l.data.get("n"), Some(&json!(5)));
    assert_eq!(l.data.get("cart"), Some(&json!([1])), "other keys kept");
}

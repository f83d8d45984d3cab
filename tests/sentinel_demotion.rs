//! A write sent after the Sentinel master was demoted reaches the new
//! master: the sentinels kill the old master's clients when they demote it,
//! the store's link hears the disconnection (a RESP3 push) and its next call
//! asks the sentinels again, so the caller sees a successful save, not a
//! 503. (A call that races the demotion gets `READONLY` and is retried once
//! on the new master, within the command timeout.) The heartbeat is slowed
//! down here so that it is not what moves the store.
#![cfg(feature = "redis")]

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use sessionkit::redis::RedisStore;
use sessionkit::store::{Delta, NewSession, SaveOutcome, SessionStore, Timeouts};
use support::records::{anon_id, client, data};
use support::redis_cluster::{query, query_text, role};
use support::redis_sentinel::RedisSentinel;

fn timeouts() -> Timeouts {
    Timeouts {
        idle: Duration::from_secs(120),
        absolute: Duration::from_secs(600),
        touch_interval: Duration::from_secs(60),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_after_the_master_was_demoted_goes_to_the_new_master() {
    let sentinel = tokio::task::spawn_blocking(RedisSentinel::start)
        .await
        .expect("start the sentinel setup");
    let store = RedisStore::builder()
        .sentinel(sentinel.master_name(), sentinel.sentinel_urls())
        .heartbeat_interval(Duration::from_secs(600))
        .command_timeout(Duration::from_secs(2))
        .build()
        .await
        .expect("connect through the sentinels");
    let old = sentinel.master_port();
    let new = *sentinel
        .data_ports()
        .iter()
        .find(|&&p| p != old)
        .expect("a replica");
    let id = anon_id();
    store
        .create(
            &id,
            NewSession {
                data: &data(&[("k", json!(1))]),
                client: &client(),
            },
            &timeouts(),
        )
        .await
        .expect("create on the first master");
    // Replicated before the switch (a graceful failover waits for it too).
    query(old, &["WAIT", "1", "1000"]).expect("WAIT");

    query(
        sentinel.sentinel_ports()[0],
        &["SENTINEL", "FAILOVER", sentinel.master_name()],
    )
    .expect("SENTINEL FAILOVER");
    let started = Instant::now();
    while role(old).as_deref() != Ok("slave") || role(new).as_deref() != Ok("master") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the failover did not complete: old {:?}, new {:?}",
            role(old),
            role(new)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let demoted_after = started.elapsed();

    // The store's connection still goes to the old master, now a replica.
    let delta = Delta {
        set: vec![("k".to_owned(), json!(2))],
        ..Delta::default()
    };
    let t = Instant::now();
    let outcome = store.save(&id, &delta, &timeouts()).await;
    let took = t.elapsed();
    eprintln!(
        "old master demoted {demoted_after:?} after SENTINEL FAILOVER; the save took {took:?}: {outcome:?}"
    );
    assert!(
        matches!(outcome, Ok(SaveOutcome::Saved(_))),
        "the save refused with READONLY was not retried on the new master: {outcome:?}"
    );
    assert!(took < Duration::from_secs(2), "within the command timeout");
    let key = store.session_key(&id);
    assert_eq!(
        query_text(new, &["HGET", &key, "d:k"]).unwrap(),
        "2",
        "the write is on the new master"
    );
}

//! The persistence hook on Redis, counted and across a restart: off sends
//! nothing more than before, on adds one queue script per write that
//! schedules a session's persistence and a read before each logout
//! (`INFO commandstats`); jobs, pending and in flight, survive a restart
//! of Redis with its append-only file: none is lost.
#![cfg(feature = "redis")]

mod http_client;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use sessionkit::persist::{PersistReason, PersistWorker};
use sessionkit::redis::RedisStore;
use sessionkit::{SessionConfig, SessionManager};

use http_client::cost::{one_visit, VISIT};
use http_client::{with_layer, Framework};
use support::browser::Browser;
use support::events::id_of;
use support::persist::{quick, Recorder};
use support::redis_server::RedisServer;

async fn watched(server: &RedisServer) -> RedisStore {
    RedisStore::builder()
        .url(server.url())
        .expiry_events(true)
        .build()
        .await
        .expect("a Redis store with expiry events")
}

/// Persistence off: the commands of a visit are those of a manager that
/// never heard of it. On: one `EVALSHA` (the queue's script) more for
/// each write that schedules the session's persistence (first write,
/// write, login), none for reads, and for the logout the job's plus the
/// read of the session's data (one pipeline of plain reads).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistence_costs_one_script_per_write_and_nothing_when_off() {
    let server = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap();
    let mut con = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let store = watched(&server).await;
    let config = SessionConfig::default();
    let off = one_visit(SessionManager::new(store.clone(), config.clone()), &mut con).await;
    let queue_keys: Vec<String> = redis::cmd("KEYS")
        .arg("*{persist}*")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        queue_keys.is_empty(),
        "persistence off wrote {queue_keys:?}"
    );
    let on_manager = SessionManager::new(store.clone(), config)
        .with_persistence(store.persist_queue().unwrap(), Duration::from_secs(60));
    let on = one_visit(on_manager, &mut con).await;
    let extra_scripts = [1, 0, 1, 1, 0, 1];
    for (i, step) in VISIT.iter().enumerate() {
        let total = |m: &BTreeMap<String, u64>| m.values().sum::<u64>();
        println!(
            "{step:12} persistence off: {:2} commands {:?}; on: {:2} commands {:?}",
            total(&off[i]),
            off[i],
            total(&on[i]),
            on[i]
        );
        let extra = on[i].clone();
        let scripts = |m: &BTreeMap<String, u64>| m.get("evalsha").copied().unwrap_or(0);
        assert_eq!(
            scripts(&extra),
            scripts(&off[i]) + extra_scripts[i],
            "{step}: persistence adds {} scripts: {extra:?} vs {:?}",
            extra_scripts[i],
            off[i]
        );
        // What the added scripts run inside (Redis counts those too): the
        // queue's commands, and the logout's read of the session.
        for (name, n) in &off[i] {
            assert!(
                extra.get(name).copied().unwrap_or(0) >= *n,
                "{step}: persistence removed {name}: {extra:?}"
            );
        }
        for name in extra.keys() {
            let same = extra.get(name) == off[i].get(name);
            let inside = matches!(
                name.as_str(),
                "evalsha"
                    | "time"
                    | "hget"
                    | "hset"
                    | "zadd"
                    | "zscore"
                    | "hgetall"
                    | "pexpiretime"
                    | "pttl"
            );
            assert!(same || inside, "{step}: persistence sent {name}: {extra:?}");
        }
    }
}

/// Jobs in Redis across a restart with the append-only file: a pending
/// job (a logout's), a due one (`persist_now`) and one a worker had
/// claimed when Redis went down are all handled once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_job_is_lost_across_a_redis_restart() {
    let server = tokio::task::spawn_blocking(|| {
        RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"])
    })
    .await
    .unwrap();
    let store = watched(&server).await;
    let queue = store.persist_queue().unwrap();
    let a = SessionManager::new(store.clone(), SessionConfig::default())
        .with_persistence(queue.clone(), Duration::from_secs(3600));
    let srv = with_layer(Framework::Axum, http_client::routes(), a.clone()).await;
    let (b1, b2, b3) = (Browser::new(), Browser::new(), Browser::new());
    for (b, user) in [(&b1, "lee"), (&b2, "max"), (&b3, "ned")] {
        b.send(&srv, &format!("/login/{user}")).await;
        b.send(&srv, &format!("/set/who/{user}")).await;
    }
    let (s1, s2, s3) = (
        id_of(&b1, &srv).await,
        id_of(&b2, &srv).await,
        id_of(&b3, &srv).await,
    );
    b1.send(&srv, "/logout").await;
    a.persist_now(&s2).await.unwrap();
    // The in-flight one: claimed with a short lease by a worker that then
    // loses Redis.
    use sessionkit::persist::PersistQueue;
    let claimed = queue.claim(16, Duration::from_secs(1)).await.unwrap();
    assert_eq!(
        claimed.len(),
        2,
        "the logout's and persist_now's: {claimed:?}"
    );
    a.persist_now(&s3).await.unwrap();

    let server = tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.restart();
        server
    })
    .await
    .unwrap();
    let rec = Recorder::default();
    let worker = PersistWorker::spawn(&a, rec.hook(0), quick()).unwrap();
    rec.wait(&s1, PersistReason::LoggedOut, "the logout's job")
        .await;
    rec.wait(&s2, PersistReason::OnDemand, "the claimed job")
        .await;
    rec.wait(&s3, PersistReason::OnDemand, "the due job").await;
    let logout = &rec.done(&s1, PersistReason::LoggedOut)[0];
    assert_eq!(logout.record.data.as_ref().unwrap()["who"], "lee");
    assert_eq!(logout.record.attempt, 2, "claimed once before the restart");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rec.calls().len(), 3, "each once: {:#?}", rec.calls());
    worker.shutdown().await;
    drop(server);
}

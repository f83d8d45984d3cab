//! The persistence hook (`sessionkit::persist`) across instances: two
//! instances on one store, each running a worker with the same hook, one
//! serving HTTP (axum or actix-web) to browser-like clients. Every
//! occurrence (a live session's interval, logout, revoke, eviction, expiry,
//! "log out other devices") reaches the hook exactly once, with its user
//! and data; a failing hook is retried and succeeds, or is given up with an
//! error in the log; a worker that dies holding a job leaves it to another;
//! `persist_now`, `persist_all` and shutdown flush. On memory, Redis
//! (standalone, Cluster, Sentinel, with and without the client cache) and
//! PostgreSQL. Redis restarts and command counts: `tests/redis_persist.rs`.

mod http_client;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use sessionkit::events::ExpiryReason;
use sessionkit::persist::{PersistOptions, PersistReason, PersistWorker};
use sessionkit::{MaxSessionsPolicy, SessionConfig, SessionId, SessionManager};

use http_client::{routes, with_layer, Framework};
use support::browser::{start_browser, Browser};
use support::events::{expiry_instances, id_of};
use support::persist::{queue_of, quick, Recorder};
use support::{Backend, Concrete};

/// How long after a change a live session is persisted.
const INTERVAL: Duration = Duration::from_secs(1);

/// The idle timeout of these scenarios (the touch interval is half).
const IDLE: Duration = Duration::from_secs(4);

/// Two instances of the backend with persistence on.
async fn instances(
    backend: &Backend,
    config: SessionConfig,
) -> (Concrete, SessionManager, SessionManager) {
    let (ca, cb) = expiry_instances(backend).await;
    let a = SessionManager::from_arc(ca.store(), config.clone())
        .with_persistence(queue_of(&ca), INTERVAL);
    let b = SessionManager::from_arc(cb.store(), config).with_persistence(queue_of(&cb), INTERVAL);
    (ca, a, b)
}

/// Moves time past a session's idle expiry and lets the store find it
/// (the memory backend is purged by hand; the others purge or watch).
async fn expire(backend: &Backend, store: &Concrete) {
    backend.advance(IDLE + Duration::from_secs(1)).await;
    if let Concrete::Memory(m) = store {
        m.purge_expired();
    }
}

fn data_keys(call: &support::persist::Call) -> Vec<String> {
    let mut keys: Vec<String> = call
        .record
        .data
        .as_ref()
        .map(|d| d.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

/// Every kind of occurrence, caused over HTTP on instance A (in parallel
/// where a browser would) and through the managers, handled by the two
/// instances' workers: each reaches the hook once, with its user and data.
async fn each_occurrence_is_persisted_once_across_two_instances(backend: Backend, fw: Framework) {
    let config = SessionConfig::default()
        .idle_timeout(IDLE)
        .max_sessions_per_user(2, MaxSessionsPolicy::EvictOldest);
    let (ca, a, b) = instances(&backend, config).await;
    let rec = Recorder::default();
    let wa = PersistWorker::spawn(&a, rec.hook(0), quick()).unwrap();
    let wb = PersistWorker::spawn(&b, rec.hook(1), quick()).unwrap();
    let srv = with_layer(fw, routes(), a.clone()).await;

    // A live session changed by parallel requests: one call after the
    // interval, with every change.
    let alice = start_browser(&srv, Some("alice")).await;
    let paths: Vec<String> = ["/set/a/1", "/set/b/2", "/set/c/3", "/incr"]
        .iter()
        .map(|p| (*p).to_owned())
        .collect();
    alice.parallel(&srv, &paths).await;
    let s_alice = id_of(&alice, &srv).await;
    backend.advance(INTERVAL).await;
    let live = rec
        .wait(&s_alice, PersistReason::Interval, "alice's interval")
        .await;
    assert_eq!(live.record.user.as_deref(), Some("alice"));
    assert_eq!(data_keys(&live), ["a", "b", "c", "n"], "{live:?}");

    // Logout, racing reads of the same browser: its data as it was.
    let racing: Vec<String> = ["/logout", "/get/a", "/get/b"]
        .iter()
        .map(|p| (*p).to_owned())
        .collect();
    alice.parallel(&srv, &racing).await;
    let out = rec
        .wait(&s_alice, PersistReason::LoggedOut, "alice's logout")
        .await;
    assert_eq!(out.record.user.as_deref(), Some("alice"));
    assert_eq!(data_keys(&out), ["a", "b", "c", "n"], "{out:?}");

    // Revoked from the other instance.
    let bob = start_browser(&srv, Some("bob")).await;
    bob.send(&srv, "/set/k/v").await;
    let s_bob = id_of(&bob, &srv).await;
    assert!(b.revoke(&s_bob).await.unwrap());
    let revoked = rec
        .wait(&s_bob, PersistReason::Revoked, "bob's revoke")
        .await;
    assert_eq!(revoked.record.user.as_deref(), Some("bob"));
    assert_eq!(data_keys(&revoked), ["k"]);

    // Evicted by a third login of the user (limit 2).
    let carols: Vec<Browser> = (0..3).map(|_| Browser::new()).collect();
    let mut s_carol = Vec::new();
    for (i, c) in carols.iter().enumerate() {
        c.send(&srv, "/login/carol").await;
        c.send(&srv, &format!("/set/c/{i}")).await;
        s_carol.push(id_of(c, &srv).await);
        // Apart on the store's clock, so "least recently used" is one.
        backend.advance(Duration::from_millis(20)).await;
    }
    let live: Vec<SessionId> = a
        .sessions_of("carol")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    let gone: Vec<&SessionId> = s_carol.iter().filter(|s| !live.contains(s)).collect();
    assert_eq!(
        gone.len(),
        1,
        "one of the three evicted: {s_carol:?}, live {live:?}"
    );
    let s_evicted = gone[0].clone();
    let evicted = rec
        .wait(&s_evicted, PersistReason::Evicted, "carol's eviction")
        .await;
    assert_eq!(evicted.record.user.as_deref(), Some("carol"));
    assert_eq!(s_evicted, s_carol[0], "the least recently used went");
    let data = evicted.record.data.as_ref().expect("read before the login");
    assert_eq!(data["c"], "0", "{evicted:?}");

    // "Log out other devices".
    let eve1 = start_browser(&srv, Some("eve")).await;
    eve1.send(&srv, "/set/e/1").await;
    let eve2 = start_browser(&srv, Some("eve")).await;
    let (s_eve1, s_eve2) = (id_of(&eve1, &srv).await, id_of(&eve2, &srv).await);
    assert_eq!(a.revoke_user_except("eve", &s_eve2).await.unwrap(), 1);
    let other = rec
        .wait(&s_eve1, PersistReason::Revoked, "eve's other device")
        .await;
    assert_eq!(data_keys(&other), ["e"]);

    // Expiry, with no request: the data as it was.
    let dave = start_browser(&srv, Some("dave")).await;
    dave.send(&srv, "/set/y/1").await;
    let s_dave = id_of(&dave, &srv).await;
    expire(&backend, &ca).await;
    let expired = rec
        .wait(
            &s_dave,
            PersistReason::Expired(ExpiryReason::Idle),
            "dave's expiry",
        )
        .await;
    assert_eq!(expired.record.user.as_deref(), Some("dave"));
    assert_eq!(data_keys(&expired), ["y"]);

    // Nothing twice, whichever worker took it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut seen: BTreeMap<(SessionId, String), usize> = BTreeMap::new();
    for c in rec.calls() {
        assert!(c.ok, "no call failed: {c:?}");
        *seen
            .entry((c.record.session.clone(), format!("{:?}", c.record.reason)))
            .or_default() += 1;
    }
    for ((session, reason), n) in &seen {
        assert_eq!(*n, 1, "{reason} of {session} reached the hook {n} times");
    }
    for ended in [&s_alice, &s_bob, &s_evicted, &s_eve1] {
        assert!(
            !seen
                .keys()
                .any(|(s, r)| s == ended && r.starts_with("Expired")),
            "{ended} ended before it could expire"
        );
    }
    let instances: std::collections::BTreeSet<usize> =
        rec.calls().iter().map(|c| c.instance).collect();
    println!(
        "{}: {} calls, by instances {instances:?}",
        backend.name(),
        rec.calls().len()
    );
    wa.shutdown().await;
    wb.shutdown().await;
    drop(eve2);
}

/// Eight devices of one user logging in at once (limit 2, evict the
/// oldest), then one logging out while others write: every evicted
/// session reaches the hook once, as evicted, and nothing else twice.
async fn parallel_logins_persist_each_eviction_once(backend: Backend, fw: Framework) {
    let config = SessionConfig::default().max_sessions_per_user(2, MaxSessionsPolicy::EvictOldest);
    let (_, a, b) = instances(&backend, config).await;
    let rec = Recorder::default();
    let wa = PersistWorker::spawn(&a, rec.hook(0), quick()).unwrap();
    let wb = PersistWorker::spawn(&b, rec.hook(1), quick()).unwrap();
    let srv = with_layer(fw, routes(), a.clone()).await;
    let devices: Vec<Browser> = (0..8).map(|_| Browser::new()).collect();
    let logins =
        futures::future::join_all(devices.iter().map(|d| d.send(&srv, "/login/olga"))).await;
    // Each login answers its new session's id.
    let ids: Vec<SessionId> = logins
        .iter()
        .map(|e| {
            assert_eq!(e.status, http::StatusCode::OK, "{e:?}");
            e.body.parse().expect("a session id")
        })
        .collect();
    let live: Vec<SessionId> = a
        .sessions_of("olga")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(live.len(), 2, "the limit holds");
    let evicted: Vec<&SessionId> = ids.iter().filter(|id| !live.contains(id)).collect();
    assert_eq!(evicted.len(), 6, "ids {ids:?}, live {live:?}");
    for id in &evicted {
        rec.wait(id, PersistReason::Evicted, "a parallel login's eviction")
            .await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut seen: BTreeMap<(SessionId, String), usize> = BTreeMap::new();
    for c in rec.calls() {
        *seen
            .entry((c.record.session.clone(), format!("{:?}", c.record.reason)))
            .or_default() += 1;
    }
    for ((session, reason), n) in &seen {
        assert_eq!(*n, 1, "{reason} of {session} reached the hook {n} times");
    }
    wa.shutdown().await;
    wb.shutdown().await;
}

scenario_tests!(
    @topologies
    each_occurrence_is_persisted_once_across_two_instances,
    parallel_logins_persist_each_eviction_once,
);

/// A hook that fails twice, then succeeds: retried after a backoff, and
/// the third attempt's success ends the job.
async fn a_failing_hook_is_retried_until_it_succeeds(backend: Backend) {
    let (_, a, _) = instances(&backend, SessionConfig::default()).await;
    let rec = Recorder::failing_first(2);
    let worker = PersistWorker::spawn(&a, rec.hook(0), quick()).unwrap();
    let session = a.load(None, Default::default()).await.unwrap();
    session.login("frank").await.unwrap();
    session.insert("k", 1).unwrap();
    a.commit(&session).await.unwrap();
    let id = session.id().unwrap();
    session.logout().await.unwrap();
    // Retries wait on the store's clock (a manual one in memory).
    let deadline = tokio::time::Instant::now() + support::persist::WAIT;
    while rec.done(&id, PersistReason::LoggedOut).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no success: {:#?}",
            rec.calls()
        );
        backend.advance(Duration::from_millis(100)).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done = rec
        .wait(&id, PersistReason::LoggedOut, "frank's logout")
        .await;
    assert_eq!(done.record.attempt, 3, "{done:?}");
    let attempts: Vec<(u32, bool)> = rec
        .calls()
        .iter()
        .filter(|c| c.record.session == id && c.record.reason == PersistReason::LoggedOut)
        .map(|c| (c.record.attempt, c.ok))
        .collect();
    assert_eq!(attempts, [(1, false), (2, false), (3, true)]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        rec.done(&id, PersistReason::LoggedOut).len(),
        1,
        "not called again"
    );
    worker.shutdown().await;
}

/// `persist_now` and `persist_all` run the hook now, not at the interval's
/// end; shutdown handles what is due (on memory, everything pending).
async fn on_demand_and_shutdown_flush(backend: Backend) {
    let config = SessionConfig::default();
    let (ca, a, _) = instances(&backend, config).await;
    // Persistence an hour after each change: only on-demand calls come.
    let a = a.with_persistence(queue_of(&ca), Duration::from_secs(3600));
    let rec = Recorder::default();
    let options = PersistOptions {
        poll: Duration::from_millis(50),
        ..quick()
    };
    let worker = PersistWorker::spawn(&a, rec.hook(0), options).unwrap();
    let mut ids = Vec::new();
    for user in ["gina", "hal", "ivy"] {
        let s = a.load(None, Default::default()).await.unwrap();
        s.login(user).await.unwrap();
        s.insert("who", user).unwrap();
        a.commit(&s).await.unwrap();
        ids.push(s.id().unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rec.calls().is_empty(), "nothing due yet: {:?}", rec.calls());

    a.persist_now(&ids[0]).await.unwrap();
    let now = rec
        .wait(&ids[0], PersistReason::OnDemand, "persist_now")
        .await;
    assert_eq!(now.record.data.as_ref().unwrap()["who"], "gina");
    assert_eq!(now.record.user.as_deref(), Some("gina"));

    // The other two are pending: persist_all brings them forward.
    assert_eq!(a.persist_all().await.unwrap(), 2);
    rec.wait(&ids[1], PersistReason::Interval, "persist_all, hal")
        .await;
    rec.wait(&ids[2], PersistReason::Interval, "persist_all, ivy")
        .await;
    worker.shutdown().await;

    // Shutdown: a worker that would not poll again for an hour still
    // handles what is due when stopped, and on memory what is pending.
    let rec = Recorder::default();
    let lazy = PersistOptions {
        poll: Duration::from_secs(3600),
        ..quick()
    };
    let worker = PersistWorker::spawn(&a, rec.hook(0), lazy).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let s = a.load(None, Default::default()).await.unwrap();
    s.login("jay").await.unwrap();
    a.commit(&s).await.unwrap();
    let jay = s.id().unwrap();
    a.persist_now(&ids[0]).await.unwrap();
    worker.shutdown().await;
    assert_eq!(
        rec.done(&ids[0], PersistReason::OnDemand).len(),
        1,
        "the due job, at shutdown"
    );
    let pending_flushed = rec.done(&jay, PersistReason::Interval).len();
    match ca {
        Concrete::Memory(_) => assert_eq!(pending_flushed, 1, "memory: pending jobs flushed"),
        _ => assert_eq!(
            pending_flushed, 0,
            "shared stores: other instances handle it when due"
        ),
    }
}

/// A worker that claimed a job and died (its lease runs out unsettled):
/// another instance's worker handles it, as attempt 2.
async fn a_dead_workers_job_goes_to_another(backend: Backend) {
    let (ca, a, b) = instances(&backend, SessionConfig::default()).await;
    let s = a.load(None, Default::default()).await.unwrap();
    s.login("kim").await.unwrap();
    a.commit(&s).await.unwrap();
    let id = s.id().unwrap();
    a.persist_now(&id).await.unwrap();
    // Instance A's "worker" claims it with a 1 s lease, then dies.
    let queue = queue_of(&ca);
    let claimed = queue.claim(16, Duration::from_secs(1)).await.unwrap();
    assert!(
        claimed.iter().any(|c| c.key == format!("l:{id}")),
        "{claimed:?}"
    );
    let rec = Recorder::default();
    let worker = PersistWorker::spawn(&b, rec.hook(1), quick()).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        rec.done(&id, PersistReason::OnDemand).is_empty(),
        "leased to A still"
    );
    backend.advance(Duration::from_secs(1)).await;
    let call = rec
        .wait(&id, PersistReason::OnDemand, "the dead worker's job")
        .await;
    assert_eq!(call.record.attempt, 2);
    // The dead worker's late settle changes nothing.
    for c in &claimed {
        queue
            .settle(c, sessionkit::persist::Settle::Done)
            .await
            .unwrap();
    }
    worker.shutdown().await;
}

backend_tests!(
    @topologies
    a_failing_hook_is_retried_until_it_succeeds,
    on_demand_and_shutdown_flush,
    a_dead_workers_job_goes_to_another,
);

/// A hook that always fails: called `max_attempts` times, then given up
/// with an error in the log naming the session, and never called again.
#[tokio::test(flavor = "current_thread")]
async fn a_hook_that_keeps_failing_is_given_up_with_an_error_logged() {
    let logs = support::logs::Logs::default();
    let _guard = logs.capture();
    let backend = Backend::memory().await;
    let (_, a, _) = instances(&backend, SessionConfig::default()).await;
    let rec = Recorder::failing_first(u32::MAX);
    let options = PersistOptions {
        max_attempts: 3,
        ..quick()
    };
    let worker = PersistWorker::spawn(&a, rec.hook(0), options).unwrap();
    let s = a.load(None, Default::default()).await.unwrap();
    s.login("pat").await.unwrap();
    let id = s.id().unwrap();
    s.logout().await.unwrap();
    let deadline = tokio::time::Instant::now() + support::persist::WAIT;
    while rec.calls().len() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "{:#?}", rec.calls());
        backend.advance(Duration::from_secs(1)).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..10 {
        backend.advance(Duration::from_secs(60)).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let attempts: Vec<u32> = rec.calls().iter().map(|c| c.record.attempt).collect();
    assert_eq!(attempts, [1, 2, 3], "three attempts, then none");
    worker.shutdown().await;
    let text = logs.text();
    let gave_up: Vec<&str> = text.lines().filter(|l| l.contains("giving up")).collect();
    assert_eq!(gave_up.len(), 1, "one give-up line: {text}");
    assert!(gave_up[0].contains("ERROR"), "{}", gave_up[0]);
    assert!(
        gave_up[0].contains(&id.to_string()),
        "names the session: {}",
        gave_up[0]
    );
    assert!(gave_up[0].contains("attempts=3"), "{}", gave_up[0]);
}

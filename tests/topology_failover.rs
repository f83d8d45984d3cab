//! Failovers under steady load (issue 10), on axum and on actix-web, with
//! the client-side cache on and off, each on a real HTTP server in front of
//! a `RedisStore` on a topology of the test's own:
//!
//! - Cluster, `CLUSTER FAILOVER` on the replica of a primary that holds
//!   sessions (a coordinated switch: no acknowledged write may be lost);
//! - Cluster, `kill -9` of a primary that holds sessions (its replica is
//!   promoted after `cluster-node-timeout`, 1 s in the harness);
//! - Sentinel, `kill -9` of the master.
//!
//! Four clients loop over sessions made before the failover (spread over
//! the three primaries on a Cluster): reads and increments, plus probes of
//! sessions revoked (logout, `SessionManager::revoke`) with
//! `durable_revocations(1, 1 s)` just before the failover. Checked:
//!
//! - every response is 200 or 503 (401 or 503 for a revoked session: a 2xx
//!   would be a revoked session back alive), never a client error, a hang
//!   or another 5xx; no session is lost or has its cookie replaced;
//! - the service is back, without an app restart, within 10 s of the new
//!   primary taking over (the harness's wait returning), and stays up;
//! - every session made before the failover is readable after it, with
//!   its data; no revoked session is back;
//! - after a manual failover, no acknowledged write is lost.
//!
//! Each test prints its figures (`--nocapture`): statuses counted, the 503
//! window (first 503 sent to last 503 answered) and the recovery time
//! (from the new primary taking over to the start of the all-2xx stretch
//! that lasted; 0 when the 503s had ended before the harness saw the new
//! primary).
//!
//! What a `kill -9` may lose: Redis replicates asynchronously, so a write
//! acknowledged by the primary but not yet sent to its replica is lost when
//! the primary dies. The sessions are made, then a marker is written and
//! `WAIT 1 5000`ed on every primary (a replica that acknowledged the marker
//! has everything written before it), so the sessions themselves survive;
//! increments the load makes during the last milliseconds before the kill
//! may be lost, and are counted ("acknowledged writes lost"), not failed.
//! Revocations are made durable by the store itself (`WAIT` after each).
//!
//! They need `redis-server` and `redis-cli` (and fail, not skip, without).
//! The tests of this file run one at a time (two 6-node Clusters under load
//! on a 2-core machine would time each other out).
#![cfg(all(feature = "redis", feature = "axum", feature = "actix"))]

mod http_client;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use http_client::{routes, with_layer, Client, Framework, TestServer};
use sessionkit::redis::RedisStore;
use sessionkit::{Error, SessionConfig, SessionId, SessionManager};
use support::load::{self, LiveSession, Load, ReadBack, Sample, ME};
use support::redis_cluster::{connect, key_slot, query_on, ClusterView, RedisCluster};
use support::redis_sentinel::RedisSentinel;

/// One test at a time in this binary.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Looping clients.
const CLIENTS: usize = 4;

/// Live sessions per primary on a Cluster (all on the master for
/// Sentinel: `SESSIONS_PER_PRIMARY * 3`).
const SESSIONS_PER_PRIMARY: usize = 3;

/// Revoked sessions probed by the load (half by logout, half by
/// `SessionManager::revoke`).
const REVOKED: usize = 4;

/// The spec: service back within this long of the new primary taking over.
const RECOVERY_LIMIT: Duration = Duration::from_secs(10);

/// How long the service must stay all-2xx to count as back.
const STABLE_STRETCH: Duration = Duration::from_secs(2);

/// Steady load before the failover.
const WARM_UP: Duration = Duration::from_millis(500);

const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);

// ---------------------------------------------------------------- app

/// The standard routes plus [`ME`]: the user id, or 401 for a session that
/// is not logged in (an anonymous or revoked one).
async fn serve(fw: Framework, manager: SessionManager) -> TestServer {
    let routes = routes().route(ME, |session, _| async move {
        session.user_id().ok_or(Error::SessionEnded)
    });
    with_layer(fw, routes, manager).await
}

fn manager(store: &RedisStore) -> SessionManager {
    SessionManager::new(
        store.clone(),
        SessionConfig::default().store_timeout(Duration::from_secs(2)),
    )
}

/// The settings every store of this file shares: short timeouts and
/// retries, a 250 ms heartbeat, durable revocations.
fn tuned(
    builder: sessionkit::redis::RedisStoreBuilder,
    cache: bool,
) -> sessionkit::redis::RedisStoreBuilder {
    let builder = builder
        .command_timeout(COMMAND_TIMEOUT)
        .connection_timeout(COMMAND_TIMEOUT)
        .retry_delay(Duration::from_millis(20), Duration::from_millis(200))
        .heartbeat_interval(Duration::from_millis(250))
        .durable_revocations(1, Duration::from_millis(1000));
    if cache {
        builder.client_cache(1000)
    } else {
        builder
    }
}

/// A live session made through `srv`: `n=1` and `w=<label>`.
struct Made {
    token: String,
    id: SessionId,
    label: String,
}

async fn make_session(srv: &TestServer, label: String) -> Made {
    let mut c = Client::new();
    assert_eq!(c.body(srv, "/incr").await, "1");
    assert_eq!(c.body(srv, &format!("/set/w/{label}")).await, "ok");
    let id: SessionId = c.body(srv, "/id").await.parse().expect("a session id");
    Made {
        token: c.token().to_owned(),
        id,
        label,
    }
}

/// A logged-in session of `user`, made through `srv`.
struct LoggedIn {
    client: Client,
    user: String,
    id: SessionId,
    /// The token of the login (the client forgets it on logout).
    token: String,
}

async fn log_in(srv: &TestServer, user: &str) -> LoggedIn {
    let mut client = Client::new();
    let id: SessionId = client
        .body(srv, &format!("/login/{user}"))
        .await
        .parse()
        .expect("a session id");
    assert_eq!(client.body(srv, ME).await, user);
    let token = client.token().to_owned();
    LoggedIn {
        client,
        user: user.to_owned(),
        id,
        token,
    }
}

/// Revokes the first half of `sessions` by `/logout`, the rest with
/// `SessionManager::revoke`; each may get `NotDurable` (503) on a loaded
/// machine, and is then retried (the docs say retrying is harmless), at
/// most 3 times. Hands each token to the load.
async fn revoke_all(
    srv: &TestServer,
    manager: &SessionManager,
    sessions: &mut [LoggedIn],
    load: &Load,
) {
    let half = sessions.len() / 2;
    for (i, s) in sessions.iter_mut().enumerate() {
        let token = s.token.clone();
        let mut tries = 0;
        loop {
            tries += 1;
            let done = if i < half {
                let res = s.client.get(srv, "/logout").await;
                match res.status.as_u16() {
                    200 => true,
                    503 => false,
                    other => panic!("logout of {}: {other} {}", s.user, res.body),
                }
            } else {
                match manager.revoke(&s.id).await {
                    Ok(ended) => {
                        assert!(ended || tries > 1, "revoke of {}: not live", s.user);
                        true
                    }
                    Err(Error::NotDurable { acked, wanted }) => {
                        eprintln!(
                            "revoke of {}: NotDurable ({acked}/{wanted}); retrying",
                            s.user
                        );
                        false
                    }
                    Err(e) => panic!("revoke of {}: {e}", s.user),
                }
            };
            if done {
                break;
            }
            assert!(tries < 3, "the revocation of {} never got durable", s.user);
        }
        load.revoke(token);
    }
}

/// Deals `sessions` out to [`CLIENTS`] clients, round-robin.
fn deal(sessions: &[Made]) -> Vec<Vec<LiveSession>> {
    let mut out = vec![Vec::new(); CLIENTS];
    for (i, m) in sessions.iter().enumerate() {
        out[i % CLIENTS].push(LiveSession {
            token: m.token.clone(),
            n: 1,
        });
    }
    out
}

/// Where [`deal`] put the `i`-th session: its client and its index there.
fn dealt(i: usize) -> (usize, usize) {
    (i % CLIENTS, i / CLIENTS)
}

/// The highest counter a 2xx answered for each (client, session).
fn acknowledged(samples: &[Sample]) -> BTreeMap<(usize, usize), u64> {
    let mut out = BTreeMap::new();
    for s in samples {
        if let Some(v) = s.value() {
            let e = out.entry((s.client, s.session)).or_insert(0);
            *e = (*e).max(v);
        }
    }
    out
}

/// Every session made before the failover reads back with its data (its
/// counter at least `floor(i)`), and every revoked one is refused, and not
/// listed by `sessions_of`.
async fn check_after(
    srv: &TestServer,
    manager: &SessionManager,
    made: &[Made],
    revoked: &[LoggedIn],
    floor: impl Fn(usize) -> u64,
) -> ReadBack {
    let base = srv.base_url();
    let mut rb = ReadBack::new();
    for (i, m) in made.iter().enumerate() {
        let (status, body) = rb.get(&base, "/get/w", &m.token).await;
        assert_eq!(
            (status, body.as_str()),
            (200, m.label.as_str()),
            "session {i} ({}) after the failover",
            m.id
        );
        let (status, body) = rb.get(&base, "/get/n", &m.token).await;
        assert_eq!(status, 200, "session {i}: {body}");
        let n: u64 = body
            .parse()
            .unwrap_or_else(|_| panic!("session {i} lost its counter: {body}"));
        assert!(n >= floor(i), "session {i}: n={n}, below {}", floor(i));
    }
    for s in revoked {
        let (status, body) = rb.get(&base, ME, &s.token).await;
        assert_eq!(
            status, 401,
            "{}'s revoked session after the failover: {body}",
            s.user
        );
        let listed = manager.sessions_of(&s.user).await.expect("sessions_of");
        assert!(
            listed.iter().all(|l| l.id != s.id),
            "{}'s revoked session is listed again: {listed:?}",
            s.user
        );
    }
    rb
}

/// The figures of one case, printed, and the common assertions.
fn report(
    case: &str,
    fw: Framework,
    cache: bool,
    samples: &[Sample],
    in_place: Instant,
    recovered: Instant,
    took: Duration,
) {
    let window = load::window_503_ms(samples);
    let recovery = recovered.saturating_duration_since(in_place);
    let last_503 = load::window_503(samples);
    eprintln!(
        "FIGURES {case} {fw:?} cache={}: {}; 503 window {window} ms; recovery {} ms after the new primary took over (failover itself {} ms){}",
        if cache { "on" } else { "off" },
        load::counts_line(samples),
        recovery.as_millis(),
        took.as_millis(),
        match last_503 {
            Some((_, b)) if b > in_place => format!("; last 503 {} ms after the new primary", (b - in_place).as_millis()),
            Some(_) => "; every 503 ended before the harness saw the new primary".to_owned(),
            None => "; no 503".to_owned(),
        }
    );
    let bad = load::violations(samples);
    assert!(
        bad.is_empty(),
        "{case} {fw:?}: {} bad responses, first: {}",
        bad.len(),
        bad[0]
    );
    assert!(
        recovery <= RECOVERY_LIMIT,
        "{case} {fw:?}: recovery took {recovery:?}"
    );
}

// ---------------------------------------------------------------- Cluster

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClusterFailover {
    /// `CLUSTER FAILOVER` on the replica.
    Manual,
    /// `kill -9` of the primary; its replica is promoted.
    Kill,
}

/// Runs `f` on the cluster on a blocking thread (the harness sleeps and
/// uses blocking connections) and hands the cluster back.
async fn blocking<T: Send + 'static>(
    cluster: RedisCluster,
    f: impl FnOnce(&mut RedisCluster) -> T + Send + 'static,
) -> (RedisCluster, T) {
    tokio::task::spawn_blocking(move || {
        let mut cluster = cluster;
        let out = f(&mut cluster);
        (cluster, out)
    })
    .await
    .expect("the harness panicked")
}

/// Writes a marker on each primary of `view` and `WAIT`s for one replica to
/// acknowledge it: everything written on that primary before the marker is
/// then on its replica too (the replication stream is ordered).
fn replicated(view: &ClusterView) {
    let primaries: BTreeSet<u16> = view
        .nodes
        .iter()
        .filter(|n| n.is_primary() && !n.slots.is_empty())
        .map(|n| n.port)
        .collect();
    for p in primaries {
        let key = (0..)
            .map(|i| format!("marker{{{i}}}"))
            .find(|k| view.owner(key_slot(k)) == Some(p))
            .expect("a key of each primary");
        let mut con = connect(p).expect("connect to a primary");
        query_on(&mut con, p, &["SET", &key, "1"]).expect("SET the marker");
        let acked = query_on(&mut con, p, &["WAIT", "1", "5000"]).expect("WAIT");
        assert_eq!(
            acked,
            ::redis::Value::Int(1),
            "the replica of 127.0.0.1:{p} did not acknowledge"
        );
    }
}

async fn cluster_failover(kind: ClusterFailover, fw: Framework, cache: bool) {
    let _serial = SERIAL.lock().await;
    let case = match kind {
        ClusterFailover::Manual => "cluster-manual-failover",
        ClusterFailover::Kill => "cluster-kill-primary",
    };
    let t0 = Instant::now();
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .expect("start the cluster");
    let (cluster, view) = blocking(cluster, |c| c.view()).await;
    let store = tuned(RedisStore::builder().cluster(cluster.nodes()), cache)
        .build()
        .await
        .expect("connect to the cluster");
    let manager = manager(&store);
    let srv = serve(fw, manager.clone()).await;
    let owner = |id: &SessionId| {
        view.owner(key_slot(store.session_key(id)))
            .expect("an owner")
    };

    // Live sessions, SESSIONS_PER_PRIMARY on each primary.
    let mut per_primary: BTreeMap<u16, usize> = BTreeMap::new();
    let mut made = Vec::new();
    for i in 0..300 {
        if made.len() == 3 * SESSIONS_PER_PRIMARY {
            break;
        }
        let m = make_session(&srv, format!("s{i}")).await;
        let n = per_primary.entry(owner(&m.id)).or_insert(0);
        if *n < SESSIONS_PER_PRIMARY {
            *n += 1;
            made.push(m);
        }
    }
    assert_eq!(
        made.len(),
        3 * SESSIONS_PER_PRIMARY,
        "sessions per primary: {per_primary:?}"
    );
    // The victim: the primary of the first session.
    let victim = owner(&made[0].id);
    let (cluster, replica) = blocking(cluster, move |c| c.replicas_of(victim)[0]).await;
    let victim_slots: Vec<u16> = made
        .iter()
        .map(|m| key_slot(store.session_key(&m.id)))
        .filter(|&s| view.owner(s) == Some(victim))
        .collect();

    // Sessions to revoke during the load: users whose slot is the victim's.
    let users: Vec<String> = (0..)
        .map(|i| format!("user{i}"))
        .filter(|u| view.owner(key_slot(store.user_index_key(u))) == Some(victim))
        .take(REVOKED)
        .collect();
    let mut revoked = Vec::new();
    for u in &users {
        revoked.push(log_in(&srv, u).await);
    }

    // Everything so far is on the replicas.
    let view2 = view.clone();
    let (cluster, ()) = blocking(cluster, move |_| replicated(&view2)).await;
    let setup = t0.elapsed();

    let load = Load::start(&srv.base_url(), deal(&made));
    tokio::time::sleep(WARM_UP).await;
    revoke_all(&srv, &manager, &mut revoked, &load).await;

    let failing = Instant::now();
    let (cluster, ()) = blocking(cluster, move |c| match kind {
        ClusterFailover::Manual => c.failover(replica),
        ClusterFailover::Kill => {
            c.kill(victim);
            c.wait_until_ok(Duration::from_secs(30));
        }
    })
    .await;
    let in_place = Instant::now();
    let recovered = load
        .until_stable(in_place, STABLE_STRETCH, RECOVERY_LIMIT)
        .await;
    let samples = load.stop().await;
    report(
        case,
        fw,
        cache,
        &samples,
        in_place,
        recovered,
        in_place - failing,
    );

    // The replica serves the victim's slots now.
    let (cluster, after) = blocking(cluster, |c| c.view()).await;
    for &slot in &victim_slots {
        assert_eq!(
            after.owner(slot),
            Some(replica),
            "slot {slot} after the failover"
        );
    }
    let lost = load::regressions(&samples);
    eprintln!("{case} {fw:?}: {} acknowledged writes lost", lost.len());
    if kind == ClusterFailover::Manual {
        // A manual failover waits for the replica to catch up first.
        assert!(
            lost.is_empty(),
            "{case} {fw:?}: acknowledged writes lost: {:?}",
            &lost[..lost.len().min(3)]
        );
    }
    let acked = acknowledged(&samples);
    let floor = |i: usize| match kind {
        ClusterFailover::Manual => acked.get(&dealt(i)).copied().unwrap_or(1),
        ClusterFailover::Kill => 1,
    };
    let rb = check_after(&srv, &manager, &made, &revoked, floor).await;
    eprintln!(
        "{case} {fw:?}: read back after the load, 503s retried: {:?}",
        rb.retried_503
    );

    // A new login works, on the promoted primary too.
    let user = (0..)
        .map(|i| format!("after{i}"))
        .find(|u| after.owner(key_slot(store.user_index_key(u))) == Some(replica))
        .expect("a user of the promoted primary");
    log_in(&srv, &user).await;
    if let Some(stats) = store.client_cache_stats() {
        eprintln!("{case} {fw:?}: client cache {stats:?}");
    }
    eprintln!(
        "{case} {fw:?}: setup {setup:?}, whole case {:?}",
        t0.elapsed()
    );
    drop(srv);
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_manual_failover_axum_cached() {
    cluster_failover(ClusterFailover::Manual, Framework::Axum, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_manual_failover_actix_uncached() {
    cluster_failover(ClusterFailover::Manual, Framework::Actix, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_primary_killed_axum_uncached() {
    cluster_failover(ClusterFailover::Kill, Framework::Axum, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_primary_killed_actix_cached() {
    cluster_failover(ClusterFailover::Kill, Framework::Actix, true).await;
}

// ---------------------------------------------------------------- Sentinel

async fn sentinel_failover(fw: Framework, cache: bool) {
    let _serial = SERIAL.lock().await;
    let case = "sentinel-kill-master";
    let t0 = Instant::now();
    let setup = tokio::task::spawn_blocking(RedisSentinel::start)
        .await
        .expect("start the sentinels");
    let store = tuned(
        RedisStore::builder().sentinel(setup.master_name(), setup.sentinel_urls()),
        cache,
    )
    .build()
    .await
    .expect("connect through the sentinels");
    let manager = manager(&store);
    let srv = serve(fw, manager.clone()).await;

    let mut made = Vec::new();
    for i in 0..3 * SESSIONS_PER_PRIMARY {
        made.push(make_session(&srv, format!("s{i}")).await);
    }
    let mut revoked = Vec::new();
    for i in 0..REVOKED {
        revoked.push(log_in(&srv, &format!("user{i}")).await);
    }
    let (setup, old_master) = tokio::task::spawn_blocking(move || {
        let master = setup.master_port();
        let mut con = connect(master).expect("connect to the master");
        query_on(&mut con, master, &["SET", "marker", "1"]).expect("SET the marker");
        let acked = query_on(&mut con, master, &["WAIT", "1", "5000"]).expect("WAIT");
        assert_eq!(
            acked,
            ::redis::Value::Int(1),
            "the replica did not acknowledge"
        );
        (setup, master)
    })
    .await
    .expect("the harness panicked");
    let setup_took = t0.elapsed();

    let load = Load::start(&srv.base_url(), deal(&made));
    tokio::time::sleep(WARM_UP).await;
    revoke_all(&srv, &manager, &mut revoked, &load).await;

    let failing = Instant::now();
    let (setup, new_master) = tokio::task::spawn_blocking(move || {
        let mut setup = setup;
        assert_eq!(setup.kill_master(), old_master);
        let new_master = setup.wait_for_new_master(Duration::from_secs(30));
        (setup, new_master)
    })
    .await
    .expect("the harness panicked");
    let in_place = Instant::now();
    assert_ne!(new_master, old_master);
    let recovered = load
        .until_stable(in_place, STABLE_STRETCH, RECOVERY_LIMIT)
        .await;
    let samples = load.stop().await;
    report(
        case,
        fw,
        cache,
        &samples,
        in_place,
        recovered,
        in_place - failing,
    );
    let lost = load::regressions(&samples);
    eprintln!("{case} {fw:?}: {} acknowledged writes lost", lost.len());

    let rb = check_after(&srv, &manager, &made, &revoked, |_| 1).await;
    eprintln!(
        "{case} {fw:?}: read back after the load, 503s retried: {:?}",
        rb.retried_503
    );
    log_in(&srv, "after").await;
    if let Some(stats) = store.client_cache_stats() {
        eprintln!("{case} {fw:?}: client cache {stats:?}");
    }
    eprintln!(
        "{case} {fw:?}: setup {setup_took:?}, whole case {:?}",
        t0.elapsed()
    );
    drop(srv);
    drop(setup);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_master_killed_axum_cached() {
    sentinel_failover(Framework::Axum, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_master_killed_actix_uncached() {
    sentinel_failover(Framework::Actix, false).await;
}

//! Resharding under load (issue 10), on axum and on actix-web, with the
//! client-side cache on and off: `redis-cli --cluster reshard` moves slots
//! that hold sessions (logged-in sessions, their user index with them) from
//! one primary to another while four clients loop over them (reads and
//! increments) and over sessions elsewhere.
//!
//! Checked: every response is 200 or 503 (no other 5xx, no client error or
//! hang), no session lost or its cookie replaced, no acknowledged write
//! lost (`MIGRATE` moves each key atomically); the service is all-2xx
//! again within 10 s of the reshard ending; afterwards every session made
//! before is readable with its data, served by its new primary, and still
//! listed by `sessions_of`.
//!
//! Each test prints its figures (`--nocapture`): statuses counted, the 503
//! window and how long the reshard took. They need `redis-server` and
//! `redis-cli` (and fail, not skip, without), and run one at a time.
#![cfg(all(feature = "redis", feature = "axum", feature = "actix"))]

mod http_client;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use http_client::{routes, with_layer, Client, Framework, TestServer};
use sessionkit::redis::RedisStore;
use sessionkit::{Error, SessionConfig, SessionId, SessionManager};
use support::load::{self, LiveSession, Load, ReadBack, Sample, ME};
use support::redis_cluster::{key_slot, RedisCluster};

/// One test at a time in this binary.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Looping clients.
const CLIENTS: usize = 4;

/// Slots moved: `redis-cli --cluster reshard` takes the source's lowest
/// slots first (checked below).
const MOVE: u32 = 1000;

/// Logged-in sessions in the slots that move.
const MOVING_SESSIONS: usize = 8;

/// Anonymous sessions that stay where they are (on any primary).
const STAYING_SESSIONS: usize = 4;

const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);

async fn serve(fw: Framework, manager: SessionManager) -> TestServer {
    let routes = routes().route(ME, |session, _| async move {
        session.user_id().ok_or(Error::SessionEnded)
    });
    with_layer(fw, routes, manager).await
}

/// A session made before the reshard: `n=1`, `w=<label>`.
struct Made {
    token: String,
    id: SessionId,
    label: String,
    user: Option<String>,
}

async fn make(srv: &TestServer, user: Option<&str>, label: String) -> Made {
    let mut c = Client::new();
    if let Some(u) = user {
        c.body(srv, &format!("/login/{u}")).await;
    }
    assert_eq!(c.body(srv, "/incr").await, "1");
    assert_eq!(c.body(srv, &format!("/set/w/{label}")).await, "ok");
    let id: SessionId = c.body(srv, "/id").await.parse().expect("a session id");
    Made {
        token: c.token().to_owned(),
        id,
        label,
        user: user.map(str::to_owned),
    }
}

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

async fn reshard_under_load(fw: Framework, cache: bool) {
    let _serial = SERIAL.lock().await;
    let t0 = Instant::now();
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .expect("start the cluster");
    let (cluster, view) = blocking(cluster, |c| c.view()).await;
    let primaries: Vec<u16> = view
        .nodes
        .iter()
        .filter(|n| n.is_primary() && !n.slots.is_empty())
        .map(|n| n.port)
        .collect();
    let (from, to) = (primaries[0], primaries[1]);
    let from_slots: Vec<u16> = view
        .nodes
        .iter()
        .find(|n| n.port == from)
        .expect("the source")
        .slots
        .iter()
        .flat_map(|&(a, b)| a..=b)
        .collect();
    let moving: BTreeSet<u16> = from_slots[..MOVE as usize].iter().copied().collect();

    let mut builder = RedisStore::builder()
        .cluster(cluster.nodes())
        .command_timeout(COMMAND_TIMEOUT)
        .connection_timeout(COMMAND_TIMEOUT)
        .retry_delay(Duration::from_millis(20), Duration::from_millis(200))
        .heartbeat_interval(Duration::from_millis(250));
    if cache {
        builder = builder.client_cache(1000);
    }
    let store = builder.build().await.expect("connect to the cluster");
    let manager = SessionManager::new(store.clone(), SessionConfig::default());
    let srv = serve(fw, manager.clone()).await;

    // Logged-in sessions of users whose slot moves, and anonymous ones
    // whose slot stays.
    let users: Vec<String> = (0..)
        .map(|i| format!("user{i}"))
        .filter(|u| moving.contains(&key_slot(store.user_index_key(u))))
        .take(MOVING_SESSIONS)
        .collect();
    let mut made = Vec::new();
    for (i, u) in users.iter().enumerate() {
        made.push(make(&srv, Some(u), format!("m{i}")).await);
    }
    let mut staying = 0;
    for i in 0..200 {
        if staying == STAYING_SESSIONS {
            break;
        }
        let m = make(&srv, None, format!("s{i}")).await;
        if !moving.contains(&key_slot(store.session_key(&m.id))) {
            staying += 1;
            made.push(m);
        }
    }
    assert_eq!(staying, STAYING_SESSIONS);
    for m in &made[..MOVING_SESSIONS] {
        assert!(moving.contains(&key_slot(store.session_key(&m.id))));
    }
    let setup = t0.elapsed();

    let mut dealt = vec![Vec::new(); CLIENTS];
    let mut place = Vec::new();
    for (i, m) in made.iter().enumerate() {
        place.push((i % CLIENTS, dealt[i % CLIENTS].len()));
        dealt[i % CLIENTS].push(LiveSession {
            token: m.token.clone(),
            n: 1,
        });
    }
    let load = Load::start(&srv.base_url(), dealt);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let resharding = Instant::now();
    let (cluster, after) = blocking(cluster, move |c| {
        c.reshard(from, to, MOVE);
        c.view()
    })
    .await;
    let done = Instant::now();
    let recovered = load
        .until_stable(done, Duration::from_secs(2), Duration::from_secs(10))
        .await;
    let samples = load.stop().await;
    let during = samples
        .iter()
        .filter(|s| s.started >= resharding && s.ended <= done)
        .count();
    eprintln!(
        "FIGURES reshard {fw:?} cache={}: {}; 503 window {} ms; reshard of {MOVE} slots took {} ms ({during} requests during it); all-2xx {} ms after it ended",
        if cache { "on" } else { "off" },
        load::counts_line(&samples),
        load::window_503_ms(&samples),
        (done - resharding).as_millis(),
        recovered.saturating_duration_since(done).as_millis(),
    );
    let bad = load::violations(&samples);
    assert!(
        bad.is_empty(),
        "{fw:?}: {} bad responses, first: {}",
        bad.len(),
        bad[0]
    );
    let lost = load::regressions(&samples);
    assert!(
        lost.is_empty(),
        "{fw:?}: acknowledged writes lost: {:?}",
        &lost[..lost.len().min(3)]
    );
    assert!(during > 0, "{fw:?}: no request ran during the reshard");

    // The slots moved (the lowest of the source's, as planned), sessions
    // with them.
    for &slot in &moving {
        assert_eq!(after.owner(slot), Some(to), "slot {slot} after the reshard");
    }
    let acked = acknowledged(&samples);
    let base = srv.base_url();
    let mut rb = ReadBack::new();
    for (i, m) in made.iter().enumerate() {
        let (status, body) = rb.get(&base, "/get/w", &m.token).await;
        assert_eq!(
            (status, body.as_str()),
            (200, m.label.as_str()),
            "session {i} ({}) after the reshard",
            m.id
        );
        let (status, body) = rb.get(&base, "/get/n", &m.token).await;
        assert_eq!(status, 200, "session {i}: {body}");
        let n: u64 = body.parse().expect("a counter");
        let floor = acked.get(&place[i]).copied().unwrap_or(1);
        assert!(
            n >= floor,
            "session {i}: n={n}, but {floor} was acknowledged"
        );
        if let Some(u) = &m.user {
            let (status, body) = rb.get(&base, ME, &m.token).await;
            assert_eq!((status, body.as_str()), (200, u.as_str()));
            let listed = manager.sessions_of(u).await.expect("sessions_of");
            assert!(
                listed.iter().any(|l| l.id == m.id),
                "{u}'s session is not listed after the reshard: {listed:?}"
            );
        }
    }
    eprintln!(
        "reshard {fw:?}: read back after the load, 503s retried: {:?}",
        rb.retried_503
    );
    if let Some(stats) = store.client_cache_stats() {
        eprintln!("reshard {fw:?}: client cache {stats:?}");
    }
    eprintln!(
        "reshard {fw:?}: setup {setup:?}, whole case {:?}",
        t0.elapsed()
    );
    drop(srv);
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reshard_under_load_axum_cached() {
    reshard_under_load(Framework::Axum, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reshard_under_load_actix_uncached() {
    reshard_under_load(Framework::Actix, false).await;
}

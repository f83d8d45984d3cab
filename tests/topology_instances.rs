//! Two app instances on one Redis Cluster (issue 10): instance A (axum)
//! and instance B (actix-web), each with a `RedisStore` and a
//! `SessionManager` of its own, the same `SessionConfig`. Users spread over
//! the three primaries log in through A; through B their sessions are seen
//! (user and data), listed by `sessions_of`, and revoked (by logout and by
//! `SessionManager::revoke`); A then refuses them. With the client cache
//! on, A had those sessions cached (its hit counter says so) when B
//! revoked them: A's refusal proves the invalidation crossed instances
//! (Redis's tracking push from the session's primary to A's link there).
//! The delay from B's revoke returning to A refusing is printed.
#![cfg(all(feature = "redis", feature = "axum", feature = "actix"))]

mod http_client;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use http_client::{routes, with_layer, Client, Framework, TestServer};
use sessionkit::redis::RedisStore;
use sessionkit::{Error, SessionConfig, SessionId, SessionManager};
use support::load::ME;
use support::redis_cluster::{key_slot, RedisCluster};

/// One test at a time in this binary.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Users per primary, each with two sessions.
const USERS_PER_PRIMARY: usize = 2;

/// How long A may take to refuse a session B revoked: one push delivery
/// (well under a millisecond on loopback), with room for a loaded machine.
const INVALIDATION_LIMIT: Duration = Duration::from_secs(1);

async fn serve(fw: Framework, manager: SessionManager) -> TestServer {
    let routes = routes().route(ME, |session, _| async move {
        session.user_id().ok_or(Error::SessionEnded)
    });
    with_layer(fw, routes, manager).await
}

struct Instance {
    store: RedisStore,
    manager: SessionManager,
    srv: TestServer,
}

async fn instance(cluster: &RedisCluster, fw: Framework, cache: bool) -> Instance {
    let mut builder = RedisStore::builder()
        .cluster(cluster.nodes())
        .command_timeout(Duration::from_millis(500))
        .heartbeat_interval(Duration::from_millis(250));
    if cache {
        builder = builder.client_cache(1000);
    }
    let store = builder.build().await.expect("connect to the cluster");
    let manager = SessionManager::new(store.clone(), SessionConfig::default());
    let srv = serve(fw, manager.clone()).await;
    Instance {
        store,
        manager,
        srv,
    }
}

/// A session logged in through A.
struct Login {
    user: String,
    client: Client,
    token: String,
    id: SessionId,
    /// What it holds at `v`.
    value: String,
}

fn hits(i: &Instance) -> u64 {
    i.store.client_cache_stats().map_or(0, |s| s.hits)
}

/// Polls A with `token` until it answers 401; the delay since `since`,
/// and how many requests it took.
async fn refused_on(a: &Instance, token: &str, since: Instant, what: &str) -> (Duration, usize) {
    let mut tries = 0;
    loop {
        tries += 1;
        let r = http_client::get_with(&a.srv, ME, Some(token)).await;
        match r.status.as_u16() {
            401 => return (since.elapsed(), tries),
            200 => assert!(
                since.elapsed() < INVALIDATION_LIMIT,
                "{what}: A still serves it {:?} after B revoked it",
                since.elapsed()
            ),
            other => panic!("{what}: A answered {other} {}", r.body),
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn two_instances(cache: bool) {
    let _serial = SERIAL.lock().await;
    let t0 = Instant::now();
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .expect("start the cluster");
    let (cluster, view) = tokio::task::spawn_blocking(move || {
        let view = cluster.view();
        (cluster, view)
    })
    .await
    .expect("the harness panicked");
    let a = instance(&cluster, Framework::Axum, cache).await;
    let b = instance(&cluster, Framework::Actix, cache).await;

    // USERS_PER_PRIMARY users on each primary, two sessions each, logged
    // in through A, with data set through A.
    let mut per_primary: BTreeMap<u16, usize> = BTreeMap::new();
    let mut users = Vec::new();
    for i in 0.. {
        if users.len() == 3 * USERS_PER_PRIMARY {
            break;
        }
        let u = format!("user{i}");
        let owner = view
            .owner(key_slot(a.store.user_index_key(&u)))
            .expect("an owner");
        let n = per_primary.entry(owner).or_insert(0);
        if *n < USERS_PER_PRIMARY {
            *n += 1;
            users.push(u);
        }
    }
    let mut logins = Vec::new();
    for u in &users {
        for device in 0..2 {
            let mut client = Client::new();
            let id: SessionId = client
                .body(&a.srv, &format!("/login/{u}"))
                .await
                .parse()
                .expect("a session id");
            let v = format!("{u}-{device}");
            assert_eq!(client.body(&a.srv, &format!("/set/v/{v}")).await, "ok");
            let token = client.token().to_owned();
            logins.push(Login {
                user: u.clone(),
                client,
                token,
                id,
                value: v,
            });
        }
    }

    // Seen through B (and, read twice through A, cached by A).
    let a_hits = hits(&a);
    for l in &logins {
        for srv in [&a.srv, &a.srv, &b.srv, &b.srv] {
            assert_eq!(http_client::body_of(srv, ME, &l.token).await, l.user);
            assert_eq!(http_client::body_of(srv, "/get/v", &l.token).await, l.value);
        }
    }
    if cache {
        assert!(
            hits(&a) >= a_hits + logins.len() as u64,
            "A served no reads from its cache: {:?}",
            a.store.client_cache_stats()
        );
        assert!(hits(&b) > 0, "{:?}", b.store.client_cache_stats());
    }

    // Listed through B, as A lists them.
    for u in &users {
        let mut through_b: Vec<SessionId> = b
            .manager
            .sessions_of(u)
            .await
            .expect("sessions_of through B")
            .into_iter()
            .map(|s| {
                assert_eq!(&s.user_id, u);
                s.id
            })
            .collect();
        through_b.sort();
        let mut made: Vec<SessionId> = logins
            .iter()
            .filter(|l| &l.user == u)
            .map(|l| l.id.clone())
            .collect();
        made.sort();
        assert_eq!(through_b, made, "{u}'s sessions listed through B");
        let mut through_a: Vec<SessionId> = a
            .manager
            .sessions_of(u)
            .await
            .expect("sessions_of through A")
            .into_iter()
            .map(|s| s.id)
            .collect();
        through_a.sort();
        assert_eq!(through_a, made, "{u}'s sessions listed through A");
    }

    // Revoked through B: each user's first session by logout (B's HTTP
    // route, with the cookie A set), the second by `revoke`; then A
    // refuses them, and neither instance lists them.
    let a_invalidations = a.store.client_cache_stats().map_or(0, |s| s.invalidations);
    let mut delays = Vec::new();
    let mut first_try = 0;
    for (i, l) in logins.iter_mut().enumerate() {
        if cache {
            // A has it cached right now.
            assert_eq!(http_client::body_of(&a.srv, ME, &l.token).await, l.user);
        }
        if i % 2 == 0 {
            let r = l.client.get(&b.srv, "/logout").await;
            assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "bye"));
        } else {
            assert!(b.manager.revoke(&l.id).await.expect("revoke through B"));
        }
        let revoked = Instant::now();
        let (delay, tries) = refused_on(&a, &l.token, revoked, &l.user).await;
        if tries == 1 {
            first_try += 1;
        }
        delays.push(delay);
        let r = http_client::get_with(&b.srv, ME, Some(&l.token)).await;
        assert_eq!(r.status.as_u16(), 401, "B after its own revoke: {}", r.body);
    }
    for u in &users {
        for m in [&a.manager, &b.manager] {
            assert!(m.sessions_of(u).await.expect("sessions_of").is_empty());
        }
    }
    delays.sort();
    let stats = a.store.client_cache_stats();
    eprintln!(
        "FIGURES two-instances cache={}: {} sessions of {} users over 3 primaries logged in on A, seen, listed and revoked on B; A refused each after B's revoke within {:?} (median {:?}); {first_try} of {} refused by A's first request after it; A's cache {stats:?}",
        if cache { "on" } else { "off" },
        logins.len(),
        users.len(),
        delays.last().copied().unwrap_or_default(),
        delays[delays.len() / 2],
        logins.len(),
    );
    if cache {
        let invalidations = stats.map_or(0, |s| s.invalidations);
        assert!(
            invalidations >= a_invalidations + logins.len() as u64,
            "A received {} invalidations for {} revocations",
            invalidations - a_invalidations,
            logins.len()
        );
    }
    eprintln!("two-instances: whole case {:?}", t0.elapsed());
    drop(a);
    drop(b);
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_sessions_on_the_cluster_cached() {
    two_instances(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_sessions_on_the_cluster_uncached() {
    two_instances(false).await;
}

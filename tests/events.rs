//! Lifecycle events across instances (`sessionkit::events`): two instances
//! on one store, one serving HTTP (axum or actix-web), both subscribed;
//! every event type reaches both, in order, with the right session, user
//! and reason; parallel logins give one event per login; events name
//! session ids, never tokens. On every store: memory, Redis (standalone,
//! Cluster, Sentinel, with and without the client cache) and PostgreSQL.
//!
//! Redis-only tests at the end: events off send no command, events on
//! cost exactly one `XADD` per event (counted with `INFO commandstats`),
//! and a feed carries on across a Redis restart.

mod http_client;
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use sessionkit::events::{
    EventFeed, EventKind, ExpiryReason, RevokeScope, RotationReason, SessionEvent,
};
use sessionkit::{Error, MaxSessionsPolicy, Session, SessionConfig, SessionId};

use http_client::{routes, with_layer, Framework, Routes};
use support::browser::{start_browser, Browser};
use support::{Backend, Concrete};

/// How long an expected event may take to arrive (feeds poll every 100 ms).
const WAIT: Duration = Duration::from_secs(10);

/// How long a feed must stay silent to show that no further event came.
const QUIET: Duration = Duration::from_millis(600);

/// The periodic rotation interval of the scenario below.
const ROTATE_EVERY: Duration = Duration::from_secs(3);

async fn next(feed: &mut EventFeed, expecting: &str) -> SessionEvent {
    match tokio::time::timeout(WAIT, feed.recv()).await {
        Ok(Ok(event)) => event,
        Ok(Err(e)) => panic!("expecting {expecting}: the feed said {e}"),
        Err(_) => panic!("expecting {expecting}: no event within {WAIT:?}"),
    }
}

async fn assert_quiet(feed: &mut EventFeed, after: &str) {
    if let Ok(got) = tokio::time::timeout(QUIET, feed.recv()).await {
        panic!("no event expected after {after}, got {got:?}");
    }
}

/// The id the server gives the browser's current session.
async fn id_of(b: &Browser, srv: &http_client::TestServer) -> SessionId {
    let body = b.body(srv, "/id").await;
    body.parse()
        .unwrap_or_else(|e| panic!("/id answered {body:?}: {e}"))
}

fn app() -> Routes {
    routes().route("/rotate-now", |session: Session, _| async move {
        session.rotate().await?;
        Ok::<_, Error>("rotated".to_owned())
    })
}

/// Checks one event against what was expected, naming the step.
fn check(
    step: &str,
    got: &SessionEvent,
    kind: &EventKind,
    session: Option<&SessionId>,
    user: Option<&str>,
) {
    assert_eq!(&got.kind, kind, "{step}: kind of {got:?}");
    assert_eq!(got.session.as_ref(), session, "{step}: session of {got:?}");
    assert_eq!(got.user.as_deref(), user, "{step}: user of {got:?}");
}

/// Every kind of event but expiry, caused on instance A (over HTTP, and
/// through its manager) and one on instance B, seen in the same order with
/// the same ids by feeds on both.
async fn every_event_type_reaches_both_instances(backend: Backend, fw: Framework) {
    let config = SessionConfig::default()
        .rotation_interval(Some(ROTATE_EVERY))
        .max_sessions_per_user(2, MaxSessionsPolicy::EvictOldest);
    let a = backend.concrete().manager_with_events(config.clone());
    let b = backend.second_concrete().await.manager_with_events(config);
    let mut feed_a = a.events().await.expect("subscribe on instance A");
    let mut feed_b = b.events().await.expect("subscribe on instance B");
    let srv = with_layer(fw, app(), a.clone()).await;
    let mut seen = Vec::new();
    macro_rules! expect {
        ($step:expr, $kind:expr, $session:expr, $user:expr) => {{
            let got = next(&mut feed_b, $step).await;
            check($step, &got, &$kind, $session, $user);
            let mirror = next(&mut feed_a, $step).await;
            assert_eq!(mirror, got, "{}: instance A saw another event", $step);
            seen.push(got);
        }};
    }

    let b1 = start_browser(&srv, None).await;
    let anon = id_of(&b1, &srv).await;
    expect!("first write", EventKind::Created, Some(&anon), None);

    b1.send(&srv, "/login/alice").await;
    let s1 = id_of(&b1, &srv).await;
    expect!(
        "login",
        EventKind::LoggedIn {
            previous: Some(anon.clone())
        },
        Some(&s1),
        Some("alice")
    );

    b1.send(&srv, "/rotate-now").await;
    let s2 = id_of(&b1, &srv).await;
    expect!(
        "explicit rotation",
        EventKind::Rotated {
            previous: s1,
            reason: RotationReason::Explicit
        },
        Some(&s2),
        Some("alice")
    );

    backend
        .advance(ROTATE_EVERY + Duration::from_millis(100))
        .await;
    b1.send(&srv, "/set/k/v").await;
    let s3 = id_of(&b1, &srv).await;
    assert_ne!(s3, s2, "the rotation interval passed: the write rotates");
    expect!(
        "periodic rotation",
        EventKind::Rotated {
            previous: s2,
            reason: RotationReason::Periodic
        },
        Some(&s3),
        Some("alice")
    );

    let b2 = start_browser(&srv, Some("alice")).await;
    let t2 = id_of(&b2, &srv).await;
    expect!(
        "second device",
        EventKind::LoggedIn { previous: None },
        Some(&t2),
        Some("alice")
    );
    let b3 = start_browser(&srv, Some("alice")).await;
    let t3 = id_of(&b3, &srv).await;
    expect!(
        "third device",
        EventKind::LoggedIn { previous: None },
        Some(&t3),
        Some("alice")
    );
    // The least recently used goes, "to within one touch interval" on
    // Redis (see `MaxSessionsPolicy::EvictOldest`): b1's or b2's.
    let evicted = next(&mut feed_b, "limit of 2").await;
    assert_eq!(evicted, next(&mut feed_a, "limit of 2").await);
    let gone = evicted.session.clone().expect("names the evicted session");
    let survivor = match gone {
        ref g if *g == s3 => t2.clone(),
        ref g if *g == t2 => s3.clone(),
        other => panic!("evicted {other}, neither of alice's older sessions {s3} and {t2}"),
    };
    check(
        "limit of 2",
        &evicted,
        &EventKind::Evicted { by: t3.clone() },
        Some(&gone),
        Some("alice"),
    );
    seen.push(evicted);

    assert!(a.revoke_of_user("alice", &survivor).await.unwrap());
    expect!(
        "revoke one",
        EventKind::Revoked {
            scope: RevokeScope::One
        },
        Some(&survivor),
        Some("alice")
    );

    let b4 = start_browser(&srv, Some("alice")).await;
    let t4 = id_of(&b4, &srv).await;
    expect!(
        "fourth device",
        EventKind::LoggedIn { previous: None },
        Some(&t4),
        Some("alice")
    );
    assert_eq!(a.revoke_user_except("alice", &t3).await.unwrap(), 1);
    expect!(
        "log out other devices",
        EventKind::Revoked {
            scope: RevokeScope::AllButOne {
                kept: t3.clone(),
                count: 1
            }
        },
        None,
        Some("alice")
    );

    b3.send(&srv, "/logout").await;
    expect!("logout", EventKind::LoggedOut, Some(&t3), Some("alice"));

    let b5 = start_browser(&srv, Some("bob")).await;
    let t5 = id_of(&b5, &srv).await;
    expect!(
        "bob logs in",
        EventKind::LoggedIn { previous: None },
        Some(&t5),
        Some("bob")
    );
    // Caused on instance B: A's feed must see it too.
    assert_eq!(b.revoke_user("bob").await.unwrap(), 1);
    expect!(
        "log out everywhere, on B",
        EventKind::Revoked {
            scope: RevokeScope::AllOfUser { count: 1 }
        },
        None,
        Some("bob")
    );

    // Nothing that ended nothing is reported.
    assert!(!a.revoke(&t3).await.unwrap());
    assert_eq!(a.revoke_user("nobody").await.unwrap(), 0);
    assert_quiet(&mut feed_b, "revocations that ended nothing").await;

    let ids: Vec<&str> = seen.iter().map(|e| e.id.as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(ids, sorted, "event ids increase in recording order");
    let times: Vec<i64> = seen.iter().map(|e| e.at_ms).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "store times in order: {times:?}"
    );
    let tokens: Vec<String> = [&b1, &b2, &b3, &b4, &b5]
        .iter()
        .flat_map(|b| b.log())
        .filter_map(|e| e.sent_token)
        .collect();
    for event in &seen {
        let text = format!("{event:?}");
        for t in &tokens {
            assert!(
                !text.contains(t.as_str()),
                "an event shows a token: {event:?}"
            );
        }
    }
}

/// Browsers send requests in parallel: a login racing four writes of the
/// same session gives one `LoggedIn` (from the anonymous session) and no
/// `Created`; eight devices logging in at once under single login give
/// eight `LoggedIn` and an `Evicted` for each session but the survivor.
async fn parallel_logins_give_one_event_each(backend: Backend, fw: Framework) {
    let config = SessionConfig::default().single_login(true);
    let a = backend.concrete().manager_with_events(config.clone());
    let b = backend.second_concrete().await.manager_with_events(config);
    let mut feed = b.events().await.expect("subscribe on instance B");
    let srv = with_layer(fw, app(), a.clone()).await;

    let browser = start_browser(&srv, None).await;
    let anon = id_of(&browser, &srv).await;
    let created = next(&mut feed, "the first write").await;
    check(
        "first write",
        &created,
        &EventKind::Created,
        Some(&anon),
        None,
    );
    let paths: Vec<String> = ["/login/carol", "/set/a/1", "/set/b/2", "/set/c/3", "/incr"]
        .iter()
        .map(|p| (*p).to_owned())
        .collect();
    browser.parallel(&srv, &paths).await;
    let login = next(&mut feed, "the login").await;
    let carol = id_of(&browser, &srv).await;
    check(
        "login racing writes",
        &login,
        &EventKind::LoggedIn {
            previous: Some(anon),
        },
        Some(&carol),
        Some("carol"),
    );
    assert_quiet(&mut feed, "a login racing writes").await;

    let devices: Vec<Browser> = (0..8).map(|_| Browser::new()).collect();
    futures::future::join_all(devices.iter().map(|d| d.send(&srv, "/login/dave"))).await;
    let mut logged_in = BTreeSet::new();
    let mut evicted = BTreeSet::new();
    for i in 0..15 {
        let event = next(&mut feed, &format!("event {i} of 8 logins and 7 evictions")).await;
        assert_eq!(event.user.as_deref(), Some("dave"), "{event:?}");
        let session = event.session.clone().expect("names its session");
        match event.kind {
            EventKind::LoggedIn { previous: None } => assert!(logged_in.insert(session)),
            EventKind::Evicted { .. } => assert!(evicted.insert(session)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_quiet(&mut feed, "8 logins and 7 evictions").await;
    let live: BTreeSet<SessionId> = a
        .sessions_of("dave")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(live.len(), 1, "single login leaves one session");
    let mut accounted = evicted.clone();
    accounted.extend(live.iter().cloned());
    assert_eq!(
        logged_in, accounted,
        "every login but the survivor's was evicted, and said so"
    );
}

/// Two instances of the backend's store with expiry events on: on Redis
/// with `expiry_events(true)`, on PostgreSQL with a 200 ms purge (memory:
/// the one store, purged by the test).
async fn expiry_instances(backend: &Backend) -> (Concrete, Concrete) {
    #[cfg(feature = "redis")]
    use sessionkit::redis::RedisStore;
    match backend {
        Backend::Memory { store, .. } | Backend::MemoryPaused { store } => (
            Concrete::Memory(store.clone()),
            Concrete::Memory(store.clone()),
        ),
        #[cfg(feature = "redis")]
        _ if backend.name().starts_with("redis") => {
            let cache = backend.name().ends_with("cached");
            let mut pair = Vec::new();
            for first in [true, false] {
                let builder = match backend {
                    Backend::Redis { server, .. } | Backend::RedisCached { server, .. } => {
                        RedisStore::builder().url(server.url())
                    }
                    Backend::RedisCluster {
                        cluster, prefix, ..
                    }
                    | Backend::RedisClusterCached {
                        cluster, prefix, ..
                    } => RedisStore::builder()
                        .cluster(cluster.nodes())
                        .key_prefix(prefix.as_str()),
                    Backend::RedisSentinel {
                        sentinel, prefix, ..
                    }
                    | Backend::RedisSentinelCached {
                        sentinel, prefix, ..
                    } => RedisStore::builder()
                        .sentinel(sentinel.master_name(), sentinel.sentinel_urls())
                        .key_prefix(prefix.as_str()),
                    _ => unreachable!("a Redis backend"),
                };
                let builder = if first && cache {
                    builder.client_cache(1000)
                } else {
                    builder
                };
                let store = builder
                    .expiry_events(true)
                    .build()
                    .await
                    .expect("a Redis store with expiry events");
                pair.push(Concrete::Redis(store));
            }
            let b = pair.pop().expect("two stores");
            (pair.pop().expect("two stores"), b)
        }
        #[cfg(feature = "postgres")]
        Backend::Postgres { server, schema, .. }
        | Backend::PostgresCached { server, schema, .. } => {
            let cache = matches!(backend, Backend::PostgresCached { .. });
            let build = |cache: bool| async move {
                let builder = sessionkit::postgres::PostgresStore::builder()
                    .url(server.url())
                    .schema(schema.as_str())
                    .purge_interval(Some(Duration::from_millis(200)));
                let builder = if cache { builder.cache(1000) } else { builder };
                Concrete::Postgres(builder.build().await.expect("a PostgreSQL store"))
            };
            (build(cache).await, build(false).await)
        }
        #[allow(unreachable_patterns)]
        _ => unreachable!("every backend is listed"),
    }
}

/// Skips events until one of `kind`'s shape for `user` (a login's
/// `Created`, say).
async fn until(
    feed: &mut EventFeed,
    what: &str,
    user: &str,
    f: fn(&EventKind) -> bool,
) -> SessionEvent {
    loop {
        let e = next(feed, what).await;
        if f(&e.kind) && e.user.as_deref() == Some(user) {
            return e;
        }
    }
}

/// A session that runs out of idle time with no request is reported once,
/// on both instances, with its user and its data as they were; one ended
/// by logout first is not reported as expired; the expired session is
/// gone.
async fn expiry_is_reported_once_with_user_and_data(backend: Backend, fw: Framework) {
    const IDLE: Duration = Duration::from_secs(2);
    let config = SessionConfig::default().idle_timeout(IDLE);
    let (ca, cb) = expiry_instances(&backend).await;
    let a = ca.manager_with_events(config.clone());
    let b = cb.manager_with_events(config);
    let mut feed_a = a.events().await.expect("subscribe on instance A");
    let mut feed_b = b.events().await.expect("subscribe on instance B");
    let srv = with_layer(fw, app(), a.clone()).await;

    let alice = start_browser(&srv, Some("alice")).await;
    alice.send(&srv, "/set/cart/3").await;
    let id = id_of(&alice, &srv).await;
    let bob = start_browser(&srv, Some("bob")).await;
    bob.send(&srv, "/logout").await;
    for feed in [&mut feed_a, &mut feed_b] {
        until(feed, "alice's login", "alice", |k| {
            matches!(k, EventKind::LoggedIn { .. })
        })
        .await;
        until(feed, "bob's logout", "bob", |k| *k == EventKind::LoggedOut).await;
    }

    backend.advance(IDLE + Duration::from_millis(200)).await;
    if let Concrete::Memory(store) = &ca {
        store.purge_expired();
    }
    let got = next(&mut feed_b, "alice's expiry").await;
    let mut data = serde_json::Map::new();
    data.insert("cart".to_owned(), serde_json::json!("3"));
    check(
        "expiry",
        &got,
        &EventKind::Expired {
            reason: ExpiryReason::Idle,
            data,
        },
        Some(&id),
        Some("alice"),
    );
    assert_eq!(
        next(&mut feed_a, "alice's expiry on A").await,
        got,
        "instance A saw another event"
    );
    assert_quiet(&mut feed_b, "the expiry (reported once, and not bob's)").await;
    assert!(
        a.sessions_of("alice").await.unwrap().is_empty(),
        "the expired session is gone"
    );
}

/// Browsers send requests in parallel: five at once with the cookie of a
/// session that has just expired (on Redis: before its shadow ran out,
/// so the requests, not the watcher, find it expired first) get none of
/// its data, and it is still reported, once, with its data as it was.
async fn parallel_requests_on_an_expired_session_leave_its_report(backend: Backend, fw: Framework) {
    const IDLE: Duration = Duration::from_secs(2);
    let config = SessionConfig::default().idle_timeout(IDLE);
    let (ca, cb) = expiry_instances(&backend).await;
    let a = ca.manager_with_events(config.clone());
    let b = cb.manager_with_events(config);
    let mut feed = b.events().await.expect("subscribe on instance B");
    let srv = with_layer(fw, app(), a.clone()).await;
    let browser = start_browser(&srv, Some("alice")).await;
    browser.send(&srv, "/set/cart/3").await;
    let old = id_of(&browser, &srv).await;
    until(&mut feed, "the login", "alice", |k| {
        matches!(k, EventKind::LoggedIn { .. })
    })
    .await;
    // Once the touch is due (half the idle timeout), a read moves the
    // expiry with a touch interval's slack: on Redis the shadow then runs
    // out a second after the session does.
    backend.advance(Duration::from_millis(1100)).await;
    assert_eq!(browser.body(&srv, "/get/cart").await, "3");
    backend.advance(IDLE + Duration::from_millis(200)).await;
    let paths: Vec<String> = [
        "/get/cart",
        "/set/x/1",
        "/login/alice",
        "/incr",
        "/get/cart",
    ]
    .iter()
    .map(|p| (*p).to_owned())
    .collect();
    for e in browser.parallel(&srv, &paths).await {
        assert_eq!(e.status, http::StatusCode::OK, "{e:?}");
        assert_ne!(
            e.body, "3",
            "a request read the expired session's data: {e:?}"
        );
    }
    if let Concrete::Memory(store) = &ca {
        store.purge_expired();
    }
    let mut data = serde_json::Map::new();
    data.insert("cart".to_owned(), serde_json::json!("3"));
    let expected = EventKind::Expired {
        reason: ExpiryReason::Idle,
        data,
    };
    let mut reports = 0;
    loop {
        let wait = if reports == 0 { WAIT } else { QUIET };
        let Ok(got) = tokio::time::timeout(wait, feed.recv()).await else {
            break;
        };
        let got = got.expect("the feed runs");
        if got.session.as_ref() == Some(&old) {
            check(
                "the expired session",
                &got,
                &expected,
                Some(&old),
                Some("alice"),
            );
            reports += 1;
        }
    }
    assert_eq!(reports, 1, "the expiry is reported once");
}

scenario_tests!(
    @topologies
    every_event_type_reaches_both_instances,
    parallel_logins_give_one_event_each,
    expiry_is_reported_once_with_user_and_data,
    parallel_requests_on_an_expired_session_leave_its_report,
);

/// A tracker's operations, on instance A and on B, reach B's feed of that
/// tracker in order, naming the tracker and the key (and a write's
/// version); racing compare-and-set writes give one event per write that
/// landed; another tracker's feed and the managers' feeds carry none of
/// them, and a removal of nothing sends nothing.
async fn keyed_events_reach_both_instances(backend: Backend) {
    use sessionkit::events::KeyedChange;
    use sessionkit::tracker::{Tracker, TrackerError};

    let a: Tracker<u32> =
        Tracker::from_arc(backend.keyed_store(), "jobs").with_events(backend.concrete().events());
    let second = backend.second_concrete().await;
    let b: Tracker<u32> =
        Tracker::from_arc(backend.second_keyed_store().await, "jobs").with_events(second.events());
    let other: Tracker<u32> =
        Tracker::from_arc(backend.keyed_store(), "other").with_events(backend.concrete().events());
    let mut feed = b.events().await.expect("subscribe to B's tracker");
    let mut others = other.events().await.expect("subscribe to another tracker");
    let manager = second.manager_with_events(SessionConfig::default());
    let mut cookies = manager.events().await.expect("subscribe to B's manager");
    let mut expect = async |step: &str, change: KeyedChange| {
        let got = next(&mut feed, step).await;
        assert_eq!(
            got.kind,
            EventKind::Keyed {
                tracker: "jobs".to_owned(),
                key: "j1".to_owned(),
                change
            },
            "{step}"
        );
        assert_eq!((got.session, got.user), (None, None), "{step}");
    };

    let started = a.start("j1", &1).await.unwrap();
    expect("start", KeyedChange::Started).await;
    let v2 = a.update("j1", &2, started.version).await.unwrap();
    expect("update", KeyedChange::Updated { version: v2 }).await;
    let (_, mut lock) = a.get_locked("j1").await.unwrap();
    let v3 = lock.update(&3).await.unwrap().version;
    expect(
        "update under the lock",
        KeyedChange::Updated { version: v3 },
    )
    .await;
    lock.finish().await.unwrap();
    expect("finish under the lock", KeyedChange::Finished).await;
    b.resume("j1").await.unwrap();
    expect("resume, on B", KeyedChange::Resumed).await;

    let current = a.get("j1").await.unwrap().version;
    let racers: Vec<_> = (0..8u32)
        .map(|i| {
            let t = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { t.update("j1", &(10 + i), current).await })
        })
        .collect();
    let mut landed = Vec::new();
    for r in racers {
        match r.await.unwrap() {
            Ok(v) => landed.push(v),
            Err(TrackerError::Conflict { .. }) => {}
            Err(e) => panic!("a racing update failed: {e}"),
        }
    }
    assert_eq!(landed.len(), 1, "compare-and-set: one racing write lands");
    expect(
        "the racing write that landed",
        KeyedChange::Updated { version: landed[0] },
    )
    .await;

    assert!(a.remove("j1").await.unwrap());
    expect("remove", KeyedChange::Removed).await;
    assert!(!a.remove("j1").await.unwrap());
    assert_quiet(&mut feed, "a removal of nothing").await;
    assert_quiet(&mut others, "another tracker's operations").await;
    assert_quiet(&mut cookies, "keyed operations (a manager's feed)").await;
}

backend_tests!(@topologies keyed_events_reach_both_instances);

/// Events on Redis, counted: off sends no stream command and the same
/// commands as before; on adds one `XADD` per event and nothing to reads
/// and writes.
#[cfg(feature = "redis")]
mod redis_cost {
    use std::collections::BTreeMap;

    use std::time::Duration;

    use sessionkit::redis::RedisStore;
    use sessionkit::{SessionConfig, SessionManager};

    use super::http_client::{with_layer, Framework};
    use super::support::browser::Browser;
    use super::support::redis_server::{command_stats, RedisServer};

    /// Commands the server ran during `step`, by name (the `INFO` that
    /// counts them left out).
    async fn counted<F: std::future::Future<Output = ()>>(
        con: &mut redis::aio::MultiplexedConnection,
        step: F,
    ) -> BTreeMap<String, u64> {
        let before = command_stats(con).await;
        step.await;
        let after = command_stats(con).await;
        after
            .into_iter()
            // The counting itself, and the lock-release subscriber's
            // heartbeat, which runs on its own clock.
            .filter(|(name, _)| !matches!(name.as_str(), "info" | "ping"))
            .filter_map(|(name, n)| {
                let d = n - before.get(&name).copied().unwrap_or(0);
                (d > 0).then_some((name, d))
            })
            .collect()
    }

    /// The commands of: first write, read, write, login, read, logout.
    async fn one_visit(
        manager: SessionManager,
        con: &mut redis::aio::MultiplexedConnection,
    ) -> Vec<BTreeMap<String, u64>> {
        let srv = with_layer(Framework::Axum, super::app(), manager).await;
        let b = Browser::new();
        let mut out = Vec::new();
        for path in [
            "/set/a/1",
            "/get/a",
            "/set/b/2",
            "/login/erin",
            "/get/a",
            "/logout",
        ] {
            out.push(
                counted(con, async {
                    b.send(&srv, path).await;
                })
                .await,
            );
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_cost_one_xadd_per_event_and_nothing_when_off() {
        let server = tokio::task::spawn_blocking(RedisServer::start)
            .await
            .unwrap();
        let mut con = server
            .client()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let store = RedisStore::connect(&server.url()).await.unwrap();
        let config = SessionConfig::default();
        let off = one_visit(SessionManager::new(store.clone(), config.clone()), &mut con).await;
        let on_manager =
            SessionManager::new(store.clone(), config.clone()).with_events(store.events());
        let on = one_visit(on_manager, &mut con).await;
        let watched = RedisStore::builder()
            .url(server.url())
            .expiry_events(true)
            .build()
            .await
            .unwrap();
        let expiry_manager =
            SessionManager::new(watched.clone(), config).with_events(watched.events());
        let expiry = one_visit(expiry_manager, &mut con).await;
        let steps = ["first write", "read", "write", "login", "read", "logout"];
        let events = [1, 0, 0, 1, 0, 1];
        // A new session's TTL is set once (create, login): one shadow `SET`.
        let shadows = [1, 0, 0, 1, 0, 0];
        for (i, step) in steps.iter().enumerate() {
            let total = |m: &BTreeMap<String, u64>| m.values().sum::<u64>();
            println!(
                "{step:12} events off: {:2} commands {:?}; on: {:2} commands {:?}",
                total(&off[i]),
                off[i],
                total(&on[i]),
                on[i]
            );
            for name in ["xadd", "xread", "xrevrange"] {
                assert!(
                    !off[i].contains_key(name),
                    "{step}: events off sent {name}: {:?}",
                    off[i]
                );
            }
            let mut extra = on[i].clone();
            match extra.get_mut("xadd") {
                Some(n) if *n == events[i] => {
                    extra.remove("xadd");
                }
                None if events[i] == 0 => {}
                other => panic!("{step}: expected {} XADD, got {other:?}", events[i]),
            }
            assert_eq!(
                extra, off[i],
                "{step}: events on changed the other commands"
            );
            let total = |m: &BTreeMap<String, u64>| m.values().sum::<u64>();
            println!(
                "{step:12} with expiry events: {:2} commands {:?}",
                total(&expiry[i]),
                expiry[i]
            );
            let mut more = expiry[i].clone();
            let sets = |m: &BTreeMap<String, u64>| m.get("set").copied().unwrap_or(0);
            assert_eq!(
                sets(&more),
                sets(&on[i]) + shadows[i],
                "{step}: expiry events add {} shadow SET: {more:?}",
                shadows[i]
            );
            more.remove("set");
            let mut plain = on[i].clone();
            plain.remove("set");
            assert_eq!(plain, more, "{step}: expiry events changed other commands");
        }
    }

    /// A feed across a restart of Redis (with its append-only file): it
    /// reconnects by itself and delivers what was recorded before it lost
    /// the connection and after; a logout attempted while Redis is down
    /// fails (503) and records nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_feed_carries_on_across_a_redis_restart() {
        let mut server = tokio::task::spawn_blocking(|| {
            RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"])
        })
        .await
        .unwrap();
        let store = RedisStore::connect(&server.url()).await.unwrap();
        let other = RedisStore::connect(&server.url()).await.unwrap();
        let a = SessionManager::new(store.clone(), SessionConfig::default())
            .with_events(store.events());
        let b = SessionManager::new(other.clone(), SessionConfig::default())
            .with_events(other.events());
        let mut feed = b.events().await.unwrap();
        let srv = with_layer(Framework::Axum, super::app(), a.clone()).await;
        let browser = Browser::new();
        browser.send(&srv, "/login/frank").await;
        let first = super::next(&mut feed, "the login before the restart").await;
        assert_eq!(first.user.as_deref(), Some("frank"));

        let mut server = tokio::task::spawn_blocking(move || {
            server.stop();
            server
        })
        .await
        .unwrap();
        let down = browser.send(&srv, "/logout").await;
        assert_eq!(
            down.status,
            http::StatusCode::SERVICE_UNAVAILABLE,
            "logout with Redis down"
        );
        let server = tokio::task::spawn_blocking(move || {
            server.restart();
            server
        })
        .await
        .unwrap();
        // The store's connection comes back on its own; wait for it.
        let deadline = std::time::Instant::now() + super::WAIT;
        while a.sessions_of("frank").await.is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the store did not reconnect"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Recorded by instance A before B's feed has read again.
        browser.send(&srv, "/logout").await;
        let second = Browser::new();
        second.send(&srv, "/login/grace").await;
        let after: Vec<_> = [
            super::next(&mut feed, "the logout after the restart").await,
            super::next(&mut feed, "the login after the restart").await,
        ]
        .into_iter()
        .map(|e| (e.kind, e.user))
        .collect();
        assert_eq!(
            after,
            vec![
                (
                    sessionkit::events::EventKind::LoggedOut,
                    Some("frank".to_owned())
                ),
                (
                    sessionkit::events::EventKind::LoggedIn { previous: None },
                    Some("grace".to_owned())
                ),
            ]
        );
        super::assert_quiet(&mut feed, "the restart").await;
        drop(server);
    }
}

/// Expiry events where the server refuses `CONFIG` (managed Redis): the
/// build fails saying what to configure; with the server configured and
/// `configure_notifications(false)`, expiries are reported.
#[cfg(feature = "redis")]
mod redis_notifications {
    use std::time::Duration;

    use sessionkit::events::{EventKind, ExpiryReason};
    use sessionkit::redis::RedisStore;
    use sessionkit::store::ClientInfo;
    use sessionkit::{SessionConfig, SessionManager};

    use super::support::redis_server::RedisServer;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_refusing_config_fails_the_build_with_what_to_set() {
        let server = tokio::task::spawn_blocking(|| {
            RedisServer::start_with(&["--rename-command", "CONFIG", ""])
        })
        .await
        .unwrap();
        let refused = RedisStore::builder()
            .url(server.url())
            .expiry_events(true)
            .build()
            .await
            .expect_err("CONFIG is refused: the build cannot make sure of the notices");
        let message = refused.to_string();
        for part in [
            "notify-keyspace-events",
            "Ex",
            "configure_notifications(false)",
        ] {
            assert!(message.contains(part), "{part:?} in {message:?}");
        }
        // Without expiry events the same server serves.
        RedisStore::builder()
            .url(server.url())
            .build()
            .await
            .expect("no CONFIG needed without expiry events");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_preconfigured_server_reports_expiries_without_config() {
        let server = tokio::task::spawn_blocking(|| {
            RedisServer::start_with(&[
                "--rename-command",
                "CONFIG",
                "",
                "--notify-keyspace-events",
                "Ex",
            ])
        })
        .await
        .unwrap();
        let store = RedisStore::builder()
            .url(server.url())
            .expiry_events(true)
            .configure_notifications(false)
            .build()
            .await
            .expect("trusts the server's configuration");
        let config = SessionConfig::default().idle_timeout(Duration::from_secs(1));
        let manager = SessionManager::new(store.clone(), config).with_events(store.events());
        let mut feed = manager.events().await.unwrap();
        let session = manager.load(None, ClientInfo::default()).await.unwrap();
        session.login("ivy").await.unwrap();
        let login = super::next(&mut feed, "the login").await;
        let expired = super::next(&mut feed, "the expiry").await;
        assert_eq!(expired.session, login.session);
        assert_eq!(expired.user.as_deref(), Some("ivy"));
        assert_eq!(
            expired.kind,
            EventKind::Expired {
                reason: ExpiryReason::Idle,
                data: serde_json::Map::new()
            }
        );
    }
}

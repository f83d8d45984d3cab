//! Lifecycle events across instances (`sessionkit::events`): two instances
//! on one store, one serving HTTP (axum or actix-web), both subscribed;
//! every event type reaches both, in order, with the right session, user
//! and reason; parallel logins give one event per login; events name
//! session ids, never tokens. On every store: memory, Redis (standalone,
//! Cluster, Sentinel, with and without the client cache) and PostgreSQL.
//! Expiry: `tests/expiry_events.rs`; keyed sessions: `tests/keyed_events.rs`;
//! Redis command counts and a restart: `tests/redis_events.rs`.

mod http_client;
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use sessionkit::events::{EventKind, RevokeScope, RotationReason};
use sessionkit::{Error, MaxSessionsPolicy, Session, SessionConfig, SessionId};

use http_client::{routes, with_layer, Framework, Routes};
use support::browser::{start_browser, Browser};
use support::events::{assert_quiet, check, id_of, next};
use support::Backend;

/// The periodic rotation interval of the scenario below.
const ROTATE_EVERY: Duration = Duration::from_secs(3);

/// The standard routes, and `/rotate-now` (an explicit rotation).
pub fn app() -> Routes {
    routes().route("/rotate-now", |session: Session, _| async move {
        session.rotate().await?;
        Ok::<_, Error>("rotated".to_owned())
    })
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

scenario_tests!(
    @topologies
    every_event_type_reaches_both_instances,
    parallel_logins_give_one_event_each,
);

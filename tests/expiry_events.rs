//! Expiry events (`EventKind::Expired`) across instances: a session that
//! runs out of time with no request is reported once, with its user and
//! data, on every store (memory and PostgreSQL from their purge, Redis from
//! keyspace notifications with `expiry_events(true)`, standalone, Cluster
//! and Sentinel) and both frameworks, also when requests race it; and what
//! a Redis that refuses `CONFIG` does.

mod http_client;
mod support;

use std::time::Duration;

use sessionkit::events::{EventKind, ExpiryReason};
use sessionkit::SessionConfig;

use http_client::{routes, with_layer, Framework};
use support::browser::start_browser;
use support::events::{assert_quiet, check, expiry_instances, id_of, next, until, QUIET, WAIT};
use support::{Backend, Concrete};

/// The idle timeout of these scenarios (the touch interval is half).
const IDLE: Duration = Duration::from_secs(2);

/// Two instances with expiry events on, both subscribed, A serving HTTP.
struct Watching {
    a_store: Concrete,
    a: sessionkit::SessionManager,
    feed_a: sessionkit::events::EventFeed,
    feed_b: sessionkit::events::EventFeed,
    srv: http_client::TestServer,
}

async fn watching(backend: &Backend, fw: Framework) -> Watching {
    let config = SessionConfig::default().idle_timeout(IDLE);
    let (ca, cb) = expiry_instances(backend).await;
    let a = ca.manager_with_events(config.clone());
    let b = cb.manager_with_events(config);
    let feed_a = a.events().await.expect("subscribe on instance A");
    let feed_b = b.events().await.expect("subscribe on instance B");
    let srv = with_layer(fw, routes(), a.clone()).await;
    Watching {
        a_store: ca,
        a,
        feed_a,
        feed_b,
        srv,
    }
}

/// A session that runs out of idle time with no request is reported once,
/// on both instances, with its user and its data as they were; one ended
/// by logout first is not reported as expired; the expired session is
/// gone.
async fn expiry_is_reported_once_with_user_and_data(backend: Backend, fw: Framework) {
    let Watching {
        a_store: ca,
        a,
        mut feed_a,
        mut feed_b,
        srv,
    } = watching(&backend, fw).await;

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
    let Watching {
        a_store: ca,
        feed_b: mut feed,
        srv,
        ..
    } = watching(&backend, fw).await;
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
    expiry_is_reported_once_with_user_and_data,
    parallel_requests_on_an_expired_session_leave_its_report,
);

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

    use super::next;
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
        let login = next(&mut feed, "the login").await;
        let expired = next(&mut feed, "the expiry").await;
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

//! Events on Redis, counted and across a restart: events off send no
//! stream command and the same commands as before; on add one `XADD` per
//! event, and expiry events one shadow `SET` where a session's expiry
//! moves (`INFO commandstats`); a feed carries on across a Redis restart.
#![cfg(feature = "redis")]

mod http_client;
mod support;

/// Events on Redis, counted: off sends no stream command and the same
/// commands as before; on adds one `XADD` per event and nothing to reads
/// and writes.
mod redis_cost {
    use std::collections::BTreeMap;

    use std::time::Duration;

    use sessionkit::redis::RedisStore;
    use sessionkit::{SessionConfig, SessionManager};

    use super::http_client::cost::one_visit;
    use super::http_client::{with_layer, Framework};
    use super::support::browser::Browser;
    use super::support::redis_server::RedisServer;

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
        let srv = with_layer(Framework::Axum, super::http_client::routes(), a.clone()).await;
        let browser = Browser::new();
        browser.send(&srv, "/login/frank").await;
        let first = super::support::events::next(&mut feed, "the login before the restart").await;
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
        let deadline = std::time::Instant::now() + super::support::events::WAIT;
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
            super::support::events::next(&mut feed, "the logout after the restart").await,
            super::support::events::next(&mut feed, "the login after the restart").await,
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
        super::support::events::assert_quiet(&mut feed, "the restart").await;
        drop(server);
    }
}

//! The tracker conformance suite (`sessionkit::testing::tracker`): every
//! keyed-session operation's success and error cases, lock and
//! optimistic-update contention, expiry per state, and finish/resume races
//! between two instances, on every store: memory (paused Tokio time), Redis
//! standalone, Cluster and Sentinel, PostgreSQL.

mod support;

use std::sync::Arc;
use std::time::Duration;

use sessionkit::testing::tracker::KeyedHarness;
use sessionkit::tracker::KeyedStore;
use support::Backend;

/// A backend as the tracker suite sees it, with its second instance
/// (opened up front: the PostgreSQL builder's future is not `Send` enough
/// for `async_trait`).
struct Harness(Backend, Arc<dyn KeyedStore>);

#[async_trait::async_trait]
impl KeyedHarness for Harness {
    fn store(&self) -> Arc<dyn KeyedStore> {
        self.0.keyed_store()
    }

    async fn second_store(&self) -> Arc<dyn KeyedStore> {
        Arc::clone(&self.1)
    }

    async fn advance(&self, by: Duration) {
        self.0.advance(by).await
    }
}

/// One module per store, one test per scenario in each.
macro_rules! on_store {
    ($module:ident, $backend:ident $(, $($paused:tt)+)?) => {
        mod $module {
            async fn harness() -> super::Harness {
                let backend = super::support::Backend::$backend().await;
                let second = backend.second_keyed_store().await;
                super::Harness(backend, second)
            }
            sessionkit::tracker_conformance_tests!($($($paused)+)? harness);
        }
    };
}

on_store!(memory, memory_paused, @paused);
#[cfg(feature = "redis")]
on_store!(redis, redis);
#[cfg(feature = "redis")]
on_store!(redis_cluster, redis_cluster);
#[cfg(feature = "redis")]
on_store!(redis_sentinel, redis_sentinel);
#[cfg(feature = "postgres")]
on_store!(postgres, postgres);

/// Where keyed sessions live in Redis, beside cookie sessions under the
/// same prefix, and how fast a waiter hears of a release.
#[cfg(feature = "redis")]
mod redis_layout {
    use std::time::Duration;

    use sessionkit::store::{ClientInfo, Data, NewSession, Tag, Timeouts};
    use sessionkit::tracker::Tracker;
    use sessionkit::SessionId;

    use super::support::Backend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keyed_sessions_are_one_hash_apart_from_cookie_sessions() {
        let backend = Backend::redis().await;
        let Backend::Redis { server, store } = &backend else {
            unreachable!()
        };
        let cookies = backend.store();
        let id = sessionkit::store::Token::generate(&Tag::random()).id();
        let _: &SessionId = &id;
        let data = Data::from([("k".to_owned(), serde_json::json!(1))]);
        let new = NewSession {
            data: &data,
            client: &ClientInfo::default(),
        };
        cookies
            .create(
                &id,
                new,
                &Timeouts {
                    idle: Duration::from_secs(60),
                    absolute: Duration::from_secs(600),
                    touch_interval: Duration::from_secs(1),
                },
            )
            .await
            .expect("create a cookie session");
        let t: Tracker<u32> = Tracker::new(store.clone(), "chat");
        t.start(id.hash_part(), &7)
            .await
            .expect("start a keyed session");
        let keyed_key = format!("sessionkit:{{{}}}:k", t.id(id.hash_part()));
        let keys = server.command(&["KEYS", "sessionkit:*"]);
        let mut keys: Vec<&str> = keys.lines().collect();
        keys.sort();
        let mut expected = vec![store.session_key(&id), keyed_key.clone()];
        expected.sort();
        assert_eq!(keys, expected, "one hash per keyed session, no other key");
        assert_eq!(server.command(&["TYPE", &keyed_key]), "hash");
        // The key expires with the session (Redis clock), not later.
        let pttl: i64 = server.command(&["PTTL", &keyed_key]).parse().expect("pttl");
        assert!(pttl > 0 && pttl <= 30 * 60 * 1000, "PTTL {pttl}");
        // Each side's operations leave the other alone.
        cookies.revoke(&id).await.expect("revoke");
        assert_eq!(
            t.get(id.hash_part()).await.expect("keyed untouched").value,
            7
        );
        t.remove(id.hash_part()).await.expect("remove");
        assert_eq!(server.command(&["EXISTS", &keyed_key]), "0");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiter_on_another_instance_is_woken_by_the_release() {
        let backend = Backend::redis().await;
        let a: Tracker<u32> = Tracker::from_arc(backend.keyed_store(), "jobs");
        let b: Tracker<u32> = Tracker::from_arc(backend.second_keyed_store().await, "jobs");
        a.start("job", &0).await.expect("start");
        // Let b's release subscription come up.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut worst = Duration::ZERO;
        for _ in 0..10 {
            let held = a.lock("job").await.expect("lock");
            let waiter = {
                let b = b.clone();
                tokio::spawn(async move {
                    let lock = b.lock("job").await.expect("b waits for the lock");
                    let woke = tokio::time::Instant::now();
                    lock.release().await.expect("release");
                    woke
                })
            };
            // b finds it held (and polls no faster than its backoff).
            tokio::time::sleep(Duration::from_millis(150)).await;
            let released = tokio::time::Instant::now();
            assert!(held.release().await.expect("release"));
            let woke = waiter.await.expect("waiter");
            worst = worst.max(woke - released);
        }
        println!("keyed lock handed over to another instance within {worst:?} (worst of 10)");
        // The notice takes a round trip or two; a waiter that missed it
        // would poll (5 to 50 ms apart) or wait out its 500 ms recheck.
        assert!(worst < Duration::from_millis(300), "woken after {worst:?}");
    }
}

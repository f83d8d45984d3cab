//! The tracker conformance suite: every keyed-session operation's success
//! and error cases, lock and optimistic-update contention, expiry per state,
//! and finish/resume races between two instances, on every store: memory
//! (paused Tokio time), Redis standalone, Cluster and Sentinel, PostgreSQL.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sessionkit::tracker::{Expiry, KeyedState, Tracker, TrackerError, TrackerSettings};
use support::Backend;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Conversation {
    turns: Vec<String>,
    count: u32,
}

fn conv(first: &str) -> Conversation {
    Conversation {
        turns: vec![first.to_owned()],
        count: 0,
    }
}

fn tracker(backend: &Backend) -> Tracker<Conversation> {
    Tracker::from_arc(backend.keyed_store(), "chat")
}

/// One test per store for each scenario; the memory store runs on paused
/// Tokio time, the others on their real clocks.
macro_rules! tracker_tests {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "current_thread", start_paused = true)]
                async fn $name() {
                    super::$name(super::support::Backend::memory_paused().await).await
                }
            )*
        }
        tracker_tests!(@mod redis, redis, "redis"; $($name),*);
        tracker_tests!(@mod redis_cluster, redis_cluster, "redis"; $($name),*);
        tracker_tests!(@mod redis_sentinel, redis_sentinel, "redis"; $($name),*);
        tracker_tests!(@mod postgres, postgres, "postgres"; $($name),*);
    };
    (@mod $module:ident, $backend:ident, $feature:literal; $($name:ident),*) => {
        #[cfg(feature = $feature)]
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::support::Backend::$backend().await).await
                }
            )*
        }
    };
}

tracker_tests!(
    start_get_update_remove,
    finish_and_resume,
    lock_excludes_and_fences,
    lost_lease_is_fenced,
    oversized_values_write_nothing,
    locked_updates_from_32_tasks_count_to_32,
    optimistic_updates_from_32_tasks_lose_nothing,
    active_expiry_follows_active_settings,
    finished_expiry_follows_finished_settings,
    two_instances_race_to_finish_and_resume,
    names_keep_keys_apart,
    restarted_keys_do_not_take_old_versions,
    dropped_lock_is_released,
);

async fn start_get_update_remove(backend: Backend) {
    let t = tracker(&backend);
    assert!(matches!(t.get("k").await, Err(TrackerError::NotFound)));
    let started = t.start("k", &conv("hi")).await.expect("start");
    assert_eq!(started.state, KeyedState::Active);
    assert_eq!(started.value, conv("hi"));
    assert!(started.expires_at > started.started_at);
    assert!(matches!(
        t.start("k", &conv("again")).await,
        Err(TrackerError::AlreadyStarted)
    ));

    let got = t.get("k").await.expect("get");
    assert_eq!(
        (got.value.clone(), got.version),
        (conv("hi"), started.version)
    );
    let mut next = got.value.clone();
    next.count = 1;
    let v2 = t.update("k", &next, got.version).await.expect("update");
    assert!(v2 > got.version, "the version grows");

    // A stale version is refused and writes nothing.
    let mut stale = got.value.clone();
    stale.count = 99;
    match t.update("k", &stale, got.version).await {
        Err(TrackerError::Conflict { current }) => assert_eq!(current, v2),
        other => panic!("{}: stale update answered {other:?}", backend.name()),
    }
    next.count = 2;
    let after = t
        .update_and_get("k", &next, v2)
        .await
        .expect("update_and_get");
    assert_eq!((after.value.count, after.version), (2, v2 + 1));
    assert_eq!(t.get("k").await.expect("get").value.count, 2);
    let expires = t.refresh("k").await.expect("refresh");
    assert!(expires >= after.expires_at);

    assert!(matches!(
        t.update("nope", &next, 1).await,
        Err(TrackerError::NotFound)
    ));
    assert!(matches!(
        t.refresh("nope").await,
        Err(TrackerError::NotFound)
    ));
    assert!(t.remove("k").await.expect("remove"));
    assert!(!t.remove("k").await.expect("second remove"));
    assert!(matches!(t.get("k").await, Err(TrackerError::NotFound)));
    // Removed, the key can start again.
    t.start("k", &conv("fresh"))
        .await
        .expect("start after remove");
}

async fn finish_and_resume(backend: Backend) {
    let t = tracker(&backend);
    t.start("k", &conv("hi")).await.expect("start");
    assert!(matches!(
        t.get_finished("k").await,
        Err(TrackerError::NotFinished)
    ));
    assert!(matches!(
        t.resume("k").await,
        Err(TrackerError::NotFinished)
    ));

    let finished = t.finish_and_get("k").await.expect("finish");
    assert_eq!(finished.state, KeyedState::Finished);
    assert_eq!(finished.value, conv("hi"));
    // Finished: every active operation says so, and nothing changes.
    assert!(matches!(t.get("k").await, Err(TrackerError::Finished)));
    assert!(matches!(t.finish("k").await, Err(TrackerError::Finished)));
    assert!(matches!(
        t.start("k", &conv("x")).await,
        Err(TrackerError::Finished)
    ));
    assert!(matches!(
        t.update("k", &conv("x"), finished.version).await,
        Err(TrackerError::Finished)
    ));
    assert!(matches!(t.lock("k").await, Err(TrackerError::Finished)));
    assert!(matches!(t.refresh("k").await, Err(TrackerError::Finished)));
    let read = t.get_finished("k").await.expect("get_finished");
    assert_eq!((read.value, read.state), (conv("hi"), KeyedState::Finished));

    let resumed = t.resume_and_get("k").await.expect("resume");
    assert_eq!(resumed.state, KeyedState::Active);
    assert!(resumed.version > finished.version);
    assert!(matches!(
        t.resume("k").await,
        Err(TrackerError::NotFinished)
    ));
    t.update("k", &conv("back"), resumed.version)
        .await
        .expect("update after resume");
    t.finish("k").await.expect("finish again");
    assert!(matches!(
        t.resume("missing").await,
        Err(TrackerError::NotFound)
    ));
    assert!(matches!(
        t.finish("missing").await,
        Err(TrackerError::NotFound)
    ));
    assert!(matches!(
        t.get_finished("missing").await,
        Err(TrackerError::NotFound)
    ));
    assert!(t.remove("k").await.expect("remove a finished one"));
    assert!(matches!(
        t.get_finished("k").await,
        Err(TrackerError::NotFound)
    ));
}

fn quick_locks(t: Tracker<Conversation>, lease: Duration, wait: Duration) -> Tracker<Conversation> {
    let s = TrackerSettings {
        lock_lease: lease,
        lock_wait: wait,
        ..*t.settings()
    };
    t.with_settings(s)
}

async fn lock_excludes_and_fences(backend: Backend) {
    let t = quick_locks(
        tracker(&backend),
        Duration::from_secs(30),
        Duration::from_millis(300),
    );
    assert!(matches!(t.lock("k").await, Err(TrackerError::NotFound)));
    let started = t.start("k", &conv("hi")).await.expect("start");
    let (read, mut lock) = t.get_locked("k").await.expect("get_locked");
    assert_eq!(read.value, conv("hi"));
    assert_eq!(read.version, started.version);

    assert!(matches!(
        t.lock("k").await,
        Err(TrackerError::LockTimeout(_))
    ));
    // An update without the lock does not slip under the holder.
    assert!(matches!(
        t.update("k", &conv("sneak"), read.version).await,
        Err(TrackerError::Locked { .. })
    ));
    lock.renew().await.expect("renew");
    let written = lock.update(&conv("locked")).await.expect("locked update");
    assert_eq!(written.value, conv("locked"));
    let first_fence = lock.fence();
    assert!(lock.release().await.expect("release"));

    let lock2 = t.lock("k").await.expect("lock after release");
    let second_fence = lock2.fence();
    assert!(second_fence > first_fence, "fences grow");
    let finished = lock2.finish().await.expect("finish under the lock");
    assert_eq!(finished.value, conv("locked"));
    // Finishing ended the lock: resumed, the session locks at once.
    t.resume("k").await.expect("resume");
    let lock3 = t.lock("k").await.expect("lock after finish and resume");
    assert!(lock3.fence() > second_fence);
    lock3.release().await.expect("release");
}

async fn lost_lease_is_fenced(backend: Backend) {
    let t = quick_locks(
        tracker(&backend),
        Duration::from_millis(300),
        Duration::from_secs(5),
    );
    t.start("k", &conv("hi")).await.expect("start");
    let mut stale = t.lock("k").await.expect("lock");
    backend.advance(Duration::from_millis(500)).await;
    assert!(matches!(stale.renew().await, Err(TrackerError::LockLost)));
    let (_, mut fresh) = t.get_locked("k").await.expect("the lapsed lock is taken");
    fresh
        .update(&conv("fresh"))
        .await
        .expect("fresh holder writes");
    assert!(matches!(
        stale.update(&conv("stale")).await,
        Err(TrackerError::LockLost)
    ));
    assert_eq!(t.get("k").await.expect("get").value, conv("fresh"));
    // The stale holder cannot release or finish the fresh holder's lock.
    assert!(!stale.release().await.expect("release a lost lock"));
    fresh.release().await.expect("release");
}

async fn oversized_values_write_nothing(backend: Backend) {
    let limit = TrackerSettings {
        max_value_bytes: 1024,
        ..TrackerSettings::default()
    };
    let t = tracker(&backend).with_settings(limit);
    let big = Conversation {
        turns: vec!["x".repeat(2000)],
        count: 0,
    };
    assert!(matches!(
        t.start("k", &big).await,
        Err(TrackerError::TooLarge { max: 1024, .. })
    ));
    assert!(matches!(t.get("k").await, Err(TrackerError::NotFound)));
    let v = t.start("k", &conv("small")).await.expect("start").version;
    assert!(matches!(
        t.update("k", &big, v).await,
        Err(TrackerError::TooLarge { .. })
    ));
    let mut lock = t.lock("k").await.expect("lock");
    assert!(matches!(
        lock.update(&big).await,
        Err(TrackerError::TooLarge { .. })
    ));
    lock.release().await.expect("release");
    let now = t.get("k").await.expect("get");
    assert_eq!((now.value, now.version), (conv("small"), v));
}

async fn locked_updates_from_32_tasks_count_to_32(backend: Backend) {
    let first = quick_locks(
        tracker(&backend),
        Duration::from_secs(10),
        Duration::from_secs(60),
    );
    let second = Tracker::from_arc(backend.second_keyed_store().await, "chat")
        .with_settings(*first.settings());
    first.start("k", &conv("count")).await.expect("start");
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let t = if i % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            tokio::spawn(async move {
                let (mut read, mut lock) = t.get_locked("k").await.expect("get_locked");
                read.value.count += 1;
                lock.update(&read.value).await.expect("locked update");
                lock.release().await.expect("release");
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    assert_eq!(first.get("k").await.expect("get").value.count, 32);
}

async fn optimistic_updates_from_32_tasks_lose_nothing(backend: Backend) {
    let first = tracker(&backend);
    let second: Tracker<Conversation> =
        Tracker::from_arc(backend.second_keyed_store().await, "chat");
    first.start("k", &conv("count")).await.expect("start");
    let conflicts = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let t = if i % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            let conflicts = Arc::clone(&conflicts);
            tokio::spawn(async move {
                loop {
                    let mut read = t.get("k").await.expect("get");
                    read.value.count += 1;
                    match t.update("k", &read.value, read.version).await {
                        Ok(_) => return,
                        Err(TrackerError::Conflict { current }) => {
                            assert!(current > read.version);
                            conflicts.fetch_add(1, Ordering::SeqCst);
                            tokio::task::yield_now().await;
                        }
                        Err(e) => panic!("optimistic update: {e}"),
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    let end = first.get("k").await.expect("get");
    // Every success counted once, every stale write refused: 32 exactly.
    assert_eq!(end.value.count, 32);
    let started = conflicts.load(Ordering::SeqCst);
    println!(
        "{}: 32 optimistic updates, {started} conflicts",
        backend.name()
    );
}

fn expiring(active: Expiry, finished: Expiry) -> TrackerSettings {
    TrackerSettings {
        active,
        finished,
        ..TrackerSettings::default()
    }
}

const MS: fn(u64) -> Option<Duration> = |ms| Some(Duration::from_millis(ms));
const LONG: Expiry = Expiry {
    absolute: Some(Duration::from_secs(3600)),
    sliding: None,
};

async fn active_expiry_follows_active_settings(backend: Backend) {
    let active = Expiry {
        absolute: MS(1500),
        sliding: MS(600),
    };
    let t = tracker(&backend).with_settings(expiring(active, LONG));
    t.start("touched", &conv("a")).await.expect("start");
    t.start("idle", &conv("b")).await.expect("start");
    for _ in 0..3 {
        backend.advance(Duration::from_millis(400)).await;
        t.get("touched").await.expect("each read slides the expiry");
    }
    // 1.2 s in: "idle" was not used for longer than its 600 ms.
    assert!(matches!(t.get("idle").await, Err(TrackerError::NotFound)));
    backend.advance(Duration::from_millis(400)).await;
    // 1.6 s in: read every 400 ms, but past the 1.5 s absolute limit.
    assert!(matches!(
        t.get("touched").await,
        Err(TrackerError::NotFound)
    ));
    // Expired keys start again.
    t.start("touched", &conv("c"))
        .await
        .expect("start after expiry");
}

async fn finished_expiry_follows_finished_settings(backend: Backend) {
    // Active sessions expire fast; finished ones by their own settings.
    let active = Expiry {
        absolute: MS(300),
        sliding: None,
    };
    let finished = Expiry {
        absolute: MS(1500),
        sliding: MS(700),
    };
    let t = tracker(&backend).with_settings(expiring(active, finished));
    t.start("read", &conv("a")).await.expect("start");
    t.start("unread", &conv("b")).await.expect("start");
    t.finish("read").await.expect("finish");
    t.finish("unread").await.expect("finish");
    for _ in 0..3 {
        backend.advance(Duration::from_millis(400)).await;
        t.get_finished("read")
            .await
            .expect("finished outlives the active limit, read slides it");
    }
    assert!(matches!(
        t.get_finished("unread").await,
        Err(TrackerError::NotFound)
    ));
    backend.advance(Duration::from_millis(400)).await;
    assert!(matches!(
        t.get_finished("read").await,
        Err(TrackerError::NotFound)
    ));

    // Resumed, the active limit counts again, from the resume.
    t.start("again", &conv("c")).await.expect("start");
    t.finish("again").await.expect("finish");
    backend.advance(Duration::from_millis(400)).await;
    t.resume("again").await.expect("resume");
    backend.advance(Duration::from_millis(100)).await;
    t.get("again").await.expect("active from the resume");
    backend.advance(Duration::from_millis(400)).await;
    assert!(matches!(t.get("again").await, Err(TrackerError::NotFound)));
}

async fn two_instances_race_to_finish_and_resume(backend: Backend) {
    let a = tracker(&backend);
    let b: Tracker<Conversation> = Tracker::from_arc(backend.second_keyed_store().await, "chat");
    for round in 0..20 {
        let key = format!("race-{round}");
        a.start(&key, &conv("x")).await.expect("start");
        let (ra, rb) = tokio::join!(a.finish(&key), b.finish(&key));
        let wins = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "finish round {round}: {ra:?} {rb:?}");
        assert!(
            [&ra, &rb]
                .iter()
                .any(|r| matches!(r, Err(TrackerError::Finished))),
            "the loser is told it is finished: {ra:?} {rb:?}"
        );
        let (ra, rb) = tokio::join!(a.resume(&key), b.resume(&key));
        let wins = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "resume round {round}: {ra:?} {rb:?}");
        assert!([&ra, &rb]
            .iter()
            .any(|r| matches!(r, Err(TrackerError::NotFinished))));
        assert_eq!(a.get(&key).await.expect("active").state, KeyedState::Active);
    }
}

async fn names_keep_keys_apart(backend: Backend) {
    let chats = tracker(&backend);
    let jobs: Tracker<u32> = Tracker::from_arc(backend.keyed_store(), "jobs");
    chats.start("k", &conv("chat")).await.expect("start chat");
    assert!(matches!(jobs.get("k").await, Err(TrackerError::NotFound)));
    jobs.start("k", &7)
        .await
        .expect("start job under the same key");
    chats.finish("k").await.expect("finish chat");
    assert_eq!(jobs.get("k").await.expect("job untouched").value, 7);
    // Same name, other value type: a typed error, not a panic.
    let wrong: Tracker<u32> = Tracker::from_arc(backend.keyed_store(), "chat");
    assert!(matches!(
        wrong.get_finished("k").await,
        Err(TrackerError::Deserialize(_))
    ));
}

async fn restarted_keys_do_not_take_old_versions(backend: Backend) {
    let t = tracker(&backend);
    let old = t.start("k", &conv("old")).await.expect("start").version;
    t.remove("k").await.expect("remove");
    let new = t
        .start("k", &conv("new"))
        .await
        .expect("start again")
        .version;
    assert_ne!(old, new, "a restarted key starts from other versions");
    if old != new {
        assert!(matches!(
            t.update("k", &conv("stale"), old).await,
            Err(TrackerError::Conflict { .. })
        ));
    }
    assert_eq!(t.get("k").await.expect("get").value, conv("new"));
}

async fn dropped_lock_is_released(backend: Backend) {
    let t = quick_locks(
        tracker(&backend),
        Duration::from_secs(30),
        Duration::from_secs(5),
    );
    t.start("k", &conv("hi")).await.expect("start");
    let lock = t.lock("k").await.expect("lock");
    drop(lock);
    let started = tokio::time::Instant::now();
    let again = t.lock("k").await.expect("a dropped lock is released");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "released in the background, not lapsed with its 30 s lease"
    );
    again.release().await.expect("release");
}

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

//! Locks, fencing, and many tasks or two instances on one key.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{conv, quick_locks, race, tracker, Conversation, KeyedHarness};
use crate::tracker::{KeyedState, Tracker, TrackerError};

pub(crate) async fn lock_excludes_and_fences(h: &dyn KeyedHarness) {
    let t = quick_locks(
        tracker(h),
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

pub(crate) async fn lost_lease_is_fenced(h: &dyn KeyedHarness) {
    let t = quick_locks(
        tracker(h),
        Duration::from_millis(300),
        Duration::from_secs(5),
    );
    t.start("k", &conv("hi")).await.expect("start");
    let mut stale = t.lock("k").await.expect("lock");
    h.advance(Duration::from_millis(500)).await;
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

/// Runs `task` in 32 tasks, alternately on `first` and `second`, and waits
/// for all of them.
async fn on_32_tasks<F, Fut>(first: &Tracker<Conversation>, second: &Tracker<Conversation>, task: F)
where
    F: Fn(Tracker<Conversation>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let t = if i % 2 == 0 { first } else { second };
            tokio::spawn(task(t.clone()))
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
}

pub(crate) async fn locked_updates_from_32_tasks_count_to_32(h: &dyn KeyedHarness) {
    let first = quick_locks(tracker(h), Duration::from_secs(10), Duration::from_secs(60));
    let second = Tracker::from_arc(h.second_store().await, "chat").with_settings(*first.settings());
    first.start("k", &conv("count")).await.expect("start");
    on_32_tasks(&first, &second, |t| async move {
        let (mut read, mut lock) = t.get_locked("k").await.expect("get_locked");
        read.value.count += 1;
        lock.update(&read.value).await.expect("locked update");
        lock.release().await.expect("release");
    })
    .await;
    assert_eq!(first.get("k").await.expect("get").value.count, 32);
}

pub(crate) async fn optimistic_updates_from_32_tasks_lose_nothing(h: &dyn KeyedHarness) {
    let first = tracker(h);
    let second: Tracker<Conversation> = Tracker::from_arc(h.second_store().await, "chat");
    first.start("k", &conv("count")).await.expect("start");
    let conflicts = Arc::new(AtomicUsize::new(0));
    on_32_tasks(&first, &second, |t| {
        let conflicts = Arc::clone(&conflicts);
        async move {
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
        }
    })
    .await;
    let end = first.get("k").await.expect("get");
    // Every success counted once, every stale write refused: 32 exactly.
    assert_eq!(end.value.count, 32);
    let started = conflicts.load(Ordering::SeqCst);
    println!("32 optimistic updates, {started} conflicts");
}

pub(crate) async fn two_instances_race_to_finish_and_resume(h: &dyn KeyedHarness) {
    let a = tracker(h);
    let b: Tracker<Conversation> = Tracker::from_arc(h.second_store().await, "chat");
    for round in 0..20 {
        let key = format!("race-{round}");
        a.start(&key, &conv("x")).await.expect("start");
        let (ra, rb) = race(&a, &b, &key, |t, k| async move { t.finish(&k).await }).await;
        let wins = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "finish round {round}: {ra:?} {rb:?}");
        assert!(
            [&ra, &rb]
                .iter()
                .any(|r| matches!(r, Err(TrackerError::Finished))),
            "the loser is told it is finished: {ra:?} {rb:?}"
        );
        let (ra, rb) = race(&a, &b, &key, |t, k| async move { t.resume(&k).await }).await;
        let wins = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "resume round {round}: {ra:?} {rb:?}");
        assert!([&ra, &rb]
            .iter()
            .any(|r| matches!(r, Err(TrackerError::NotFinished))));
        assert_eq!(a.get(&key).await.expect("active").state, KeyedState::Active);
    }
}

pub(crate) async fn dropped_lock_is_released(h: &dyn KeyedHarness) {
    let t = quick_locks(tracker(h), Duration::from_secs(30), Duration::from_secs(5));
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

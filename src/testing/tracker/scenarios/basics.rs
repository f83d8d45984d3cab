//! Each operation's success and error cases, names and versions.

use super::{conv, tracker, Conversation, KeyedHarness};
use crate::tracker::{KeyedState, Tracker, TrackerError, TrackerSettings};

pub(crate) async fn start_get_update_remove(h: &dyn KeyedHarness) {
    let t = tracker(h);
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
        other => panic!("a stale update answered {other:?}"),
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

pub(crate) async fn finish_and_resume(h: &dyn KeyedHarness) {
    let t = tracker(h);
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

pub(crate) async fn oversized_values_write_nothing(h: &dyn KeyedHarness) {
    let limit = TrackerSettings {
        max_value_bytes: 1024,
        ..TrackerSettings::default()
    };
    let t = tracker(h).with_settings(limit);
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

pub(crate) async fn names_keep_keys_apart(h: &dyn KeyedHarness) {
    let chats = tracker(h);
    let jobs: Tracker<u32> = Tracker::from_arc(h.store(), "jobs");
    chats.start("k", &conv("chat")).await.expect("start chat");
    assert!(matches!(jobs.get("k").await, Err(TrackerError::NotFound)));
    jobs.start("k", &7)
        .await
        .expect("start job under the same key");
    chats.finish("k").await.expect("finish chat");
    assert_eq!(jobs.get("k").await.expect("job untouched").value, 7);
    // Same name, other value type: a typed error, not a panic.
    let wrong: Tracker<u32> = Tracker::from_arc(h.store(), "chat");
    assert!(matches!(
        wrong.get_finished("k").await,
        Err(TrackerError::Deserialize(_))
    ));
}

pub(crate) async fn restarted_keys_do_not_take_old_versions(h: &dyn KeyedHarness) {
    let t = tracker(h);
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

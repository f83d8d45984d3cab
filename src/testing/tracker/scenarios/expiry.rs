//! Active and finished expiry, each by its own settings.

use std::time::Duration;

use super::{conv, expiring, tracker, KeyedHarness, LONG, MS};
use crate::tracker::{Expiry, TrackerError};

pub(crate) async fn active_expiry_follows_active_settings(h: &dyn KeyedHarness) {
    let active = Expiry {
        absolute: MS(1500),
        sliding: MS(600),
    };
    let t = tracker(h).with_settings(expiring(active, LONG));
    t.start("touched", &conv("a")).await.expect("start");
    t.start("idle", &conv("b")).await.expect("start");
    for _ in 0..3 {
        h.advance(Duration::from_millis(400)).await;
        t.get("touched").await.expect("each read slides the expiry");
    }
    // 1.2 s in: "idle" was not used for longer than its 600 ms.
    assert!(matches!(t.get("idle").await, Err(TrackerError::NotFound)));
    h.advance(Duration::from_millis(400)).await;
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

pub(crate) async fn finished_expiry_follows_finished_settings(h: &dyn KeyedHarness) {
    // Active sessions expire fast; finished ones by their own settings.
    let active = Expiry {
        absolute: MS(300),
        sliding: None,
    };
    let finished = Expiry {
        absolute: MS(1500),
        sliding: MS(700),
    };
    let t = tracker(h).with_settings(expiring(active, finished));
    t.start("read", &conv("a")).await.expect("start");
    t.start("unread", &conv("b")).await.expect("start");
    t.finish("read").await.expect("finish");
    t.finish("unread").await.expect("finish");
    for _ in 0..3 {
        h.advance(Duration::from_millis(400)).await;
        t.get_finished("read")
            .await
            .expect("finished outlives the active limit, read slides it");
    }
    assert!(matches!(
        t.get_finished("unread").await,
        Err(TrackerError::NotFound)
    ));
    h.advance(Duration::from_millis(400)).await;
    assert!(matches!(
        t.get_finished("read").await,
        Err(TrackerError::NotFound)
    ));

    // Resumed, the active limit counts again, from the resume.
    t.start("again", &conv("c")).await.expect("start");
    t.finish("again").await.expect("finish");
    h.advance(Duration::from_millis(400)).await;
    t.resume("again").await.expect("resume");
    h.advance(Duration::from_millis(100)).await;
    t.get("again").await.expect("active from the resume");
    h.advance(Duration::from_millis(400)).await;
    assert!(matches!(t.get("again").await, Err(TrackerError::NotFound)));
}

//! Keyed-session events (`Tracker::with_events`, `EventKind::Keyed`) on
//! every store, with two instances.

mod support;

use sessionkit::events::EventKind;
use sessionkit::SessionConfig;

use support::events::{assert_quiet, next};
use support::Backend;

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

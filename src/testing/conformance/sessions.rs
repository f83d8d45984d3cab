//! Sessions: create, load, save, expiry, and the data kept.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::{create, live, timeouts};
use crate::store::{Data, Delta, LoadOutcome, SaveOutcome};
use crate::testing::records::{anon_id, data, set, LoadOutcomeExt, Must};
use crate::testing::StoreHarness;

pub(in crate::testing) async fn create_then_load(h: &dyn StoreHarness) {
    let store = h.store();
    let id = create(&*store, &data(&[("n", json!(1)), ("name", json!("ada"))])).await;
    let l = store.load(&id, &timeouts()).await.must("load").live();
    assert_eq!(l.id, id);
    assert_eq!(l.data.get("n"), Some(&json!(1)));
    assert_eq!(l.data.get("name"), Some(&json!("ada")));
    assert_eq!(l.meta.user_id, None);
    assert_eq!(l.meta.user_agent.as_deref(), Some("conformance/1.0"));
    assert_eq!(l.meta.client_ip.as_deref(), Some("192.0.2.7"));
    assert_eq!(
        l.meta.absolute_deadline_ms - l.meta.created_ms,
        5_000,
        "absolute deadline is created + absolute timeout"
    );
    assert!(l.expires_at_ms > l.now_ms && l.expires_at_ms <= l.now_ms + 2_000);
    assert_eq!(
        store.load(&anon_id(), &timeouts()).await.must("load"),
        LoadOutcome::Missing
    );
}

pub(in crate::testing) async fn save_applies_delta_and_never_creates(h: &dyn StoreHarness) {
    let store = h.store();
    let id = create(&*store, &data(&[("a", json!(1)), ("b", json!(2))])).await;
    let v0 = store
        .load(&id, &timeouts())
        .await
        .must("load")
        .live()
        .meta
        .version;
    let delta = Delta {
        clear: false,
        remove: vec!["a".into()],
        set: vec![("c".into(), json!({"x": [1, "y"]}))],
        fence: None,
    };
    let out = store.save(&id, &delta, &timeouts()).await.must("save");
    assert!(matches!(out, SaveOutcome::Saved(_)), "{out:?}");
    let l = store.load(&id, &timeouts()).await.must("load").live();
    assert_eq!(
        l.data,
        data(&[("b", json!(2)), ("c", json!({"x": [1, "y"]}))])
    );
    assert!(l.meta.version > v0, "a write bumps the version");

    let clear = Delta {
        clear: true,
        set: vec![("d".into(), json!(4))],
        ..Delta::default()
    };
    store.save(&id, &clear, &timeouts()).await.must("save");
    let l = store.load(&id, &timeouts()).await.must("load").live();
    assert_eq!(l.data, data(&[("d", json!(4))]), "clear runs before set");

    let unknown = anon_id();
    let out = store
        .save(&unknown, &set("x", json!(1)), &timeouts())
        .await
        .must("save");
    assert_eq!(out, SaveOutcome::Gone);
    assert!(!live(&*store, &unknown).await, "save never creates");
}

pub(in crate::testing) async fn concurrent_saves_of_different_keys_merge(h: &dyn StoreHarness) {
    let store = h.store();
    let id = create(&*store, &data(&[("seed", json!(0))])).await;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = Arc::clone(&store);
            let id = id.clone();
            tokio::spawn(async move {
                store
                    .save(&id, &set(&format!("k{i}"), json!(i)), &timeouts())
                    .await
                    .must("save")
            })
        })
        .collect();
    for t in tasks {
        assert!(matches!(
            t.await.expect("a spawned task of the scenario panicked"),
            SaveOutcome::Saved(_)
        ));
    }
    let l = store.load(&id, &timeouts()).await.must("load").live();
    for i in 0..16 {
        assert_eq!(l.data.get(&format!("k{i}")), Some(&json!(i)), "k{i} kept");
    }
    assert_eq!(l.data.len(), 17);
}

pub(in crate::testing) async fn idle_expiry_and_rate_limited_touch(h: &dyn StoreHarness) {
    let store = h.store();
    let id = create(&*store, &data(&[("a", json!(1))])).await;
    let first = store.load(&id, &timeouts()).await.must("load").live();
    assert!(
        !first.touched,
        "a read within the touch interval writes nothing"
    );

    h.advance(Duration::from_millis(1200)).await;
    let second = store.load(&id, &timeouts()).await.must("load").live();
    assert!(second.touched, "a read after the touch interval refreshes");
    assert!(second.expires_at_ms > first.expires_at_ms);
    assert!(second.meta.last_seen_ms > first.meta.last_seen_ms);

    // 1.2 s + 1.2 s since creation: past the first idle deadline, but the
    // touch moved it.
    h.advance(Duration::from_millis(1200)).await;
    assert!(
        live(&*store, &id).await,
        "the touch extended the idle deadline"
    );

    h.advance(Duration::from_millis(2300)).await;
    assert!(!live(&*store, &id).await, "idle timeout ends the session");
    let out = store
        .save(&id, &set("b", json!(2)), &timeouts())
        .await
        .must("save");
    assert_eq!(out, SaveOutcome::Gone, "an expired session is not written");
}

pub(in crate::testing) async fn absolute_deadline_is_never_extended(h: &dyn StoreHarness) {
    let store = h.store();
    let id = create(&*store, &Data::new()).await;
    let created = store.load(&id, &timeouts()).await.must("load").live();
    for i in 0..3 {
        h.advance(Duration::from_millis(1500)).await;
        let out = store
            .save(&id, &set("i", json!(i)), &timeouts())
            .await
            .must("save");
        let SaveOutcome::Saved(w) = out else {
            panic!("live at step {i}: {out:?}")
        };
        assert!(w.expires_at_ms <= created.meta.absolute_deadline_ms);
    }
    let l = store.load(&id, &timeouts()).await.must("load").live();
    assert_eq!(
        l.meta.absolute_deadline_ms, created.meta.absolute_deadline_ms,
        "activity never moves the absolute deadline"
    );
    h.advance(Duration::from_millis(1000)).await;
    assert!(
        !live(&*store, &id).await,
        "gone after the absolute timeout however active"
    );
}

pub(in crate::testing) async fn data_round_trips_every_json_shape(h: &dyn StoreHarness) {
    let store = h.store();
    let shapes: HashMap<String, Value> = [
        ("null", json!(null)),
        ("bool", json!(false)),
        ("int", json!(-42)),
        ("big", json!(u64::MAX)),
        ("float", json!(1.5)),
        ("text", json!("héllo \"quoted\" \u{1F600}")),
        ("list", json!([1, [2, [3]]])),
        ("map", json!({"a": {"b": null}})),
        ("empty", json!("")),
        ("key with spaces and : { }", json!(1)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let id = create(&*store, &shapes).await;
    let l = store.load(&id, &timeouts()).await.must("load").live();
    assert_eq!(l.data, shapes);
}

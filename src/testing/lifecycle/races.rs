//! Races: saves racing a login or a rotation of their session.

use std::sync::Arc;

use serde_json::json;

use super::{create, load, logged_in_data, login, rotate, successor_of, timeouts, GRACE};
use crate::store::{Retire, RotateOutcome, SaveOutcome};
use crate::testing::records::{data, set, LoadOutcomeExt, Must};
use crate::testing::StoreHarness;
use crate::UserLimit;

/// Saves of distinct keys racing a login from the same session: each save
/// either lands before the login (and is carried into the new session) or
/// after it (and is superseded). None is answered "saved" and lost.
pub(in crate::testing) async fn saves_racing_a_login_are_carried_or_superseded(
    h: &dyn StoreHarness,
) {
    let store = h.store();
    let old = create(&*store, &data(&[("seed", json!(0))])).await;
    let saves: Vec<_> = (0..16)
        .map(|i| {
            let store = Arc::clone(&store);
            let old = old.clone();
            tokio::spawn(async move {
                let out = store
                    .save(&old, &set(&format!("k{i}"), json!(i)), &timeouts())
                    .await
                    .must("save");
                (i, out)
            })
        })
        .collect();
    let (new, outcome) = login(
        &*store,
        Some(&old),
        "ada",
        &set("mine", json!(true)),
        UserLimit::Unlimited,
    )
    .await;
    let carried = logged_in_data(outcome);
    let stored = load(&*store, &new).await.live().data;
    assert_eq!(carried, stored);
    assert_eq!(stored.get("seed"), Some(&json!(0)));
    assert_eq!(stored.get("mine"), Some(&json!(true)));
    for t in saves {
        let (i, out) = t.await.expect("a spawned task of the scenario panicked");
        let key = format!("k{i}");
        match out {
            SaveOutcome::Saved(_) => {
                assert_eq!(stored.get(&key), Some(&json!(i)), "{key} answered saved")
            }
            SaveOutcome::Superseded => assert_eq!(stored.get(&key), None, "{key}"),
            other => panic!("{key}: {other:?}"),
        }
    }
}

/// Saves racing a periodic rotation of their session: every one is kept,
/// in the old session before the rotation moves it or in the successor
/// through the alias.
pub(in crate::testing) async fn saves_racing_a_rotation_are_all_kept(h: &dyn StoreHarness) {
    let store = h.store();
    let old = create(&*store, &data(&[("seed", json!(0))])).await;
    let new = successor_of(&old);
    let saves: Vec<_> = (0..16)
        .map(|i| {
            let store = Arc::clone(&store);
            let old = old.clone();
            tokio::spawn(async move {
                store
                    .save(&old, &set(&format!("k{i}"), json!(i)), &timeouts())
                    .await
                    .must("save")
            })
        })
        .collect();
    let out = rotate(&*store, &old, &new, Retire::Alias(GRACE)).await;
    assert!(matches!(out, RotateOutcome::Rotated(_)), "{out:?}");
    for t in saves {
        let out = t.await.expect("a spawned task of the scenario panicked");
        assert!(
            matches!(
                out,
                SaveOutcome::Saved(_) | SaveOutcome::SavedToSuccessor(_)
            ),
            "{out:?}"
        );
    }
    let l = load(&*store, &new).await.live();
    for i in 0..16 {
        assert_eq!(l.data.get(&format!("k{i}")), Some(&json!(i)), "k{i} kept");
    }
}

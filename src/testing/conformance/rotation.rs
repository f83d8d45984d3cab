//! Rotation: periodic (an alias for a grace) and explicit (a moved marker).

use std::time::Duration;

use serde_json::json;

use super::{live, login, timeouts, SEC};
use crate::store::{LoadOutcome, Retire, RotateOutcome, SaveOutcome, Tag, Token};
use crate::testing::records::{anon_id, set, LoadOutcomeExt, Must};
use crate::testing::StoreHarness;
use crate::UserLimit;

pub(in crate::testing) async fn rotation_alias_keeps_old_token_working_for_the_grace(
    h: &dyn StoreHarness,
) {
    let store = h.store();
    let (old, _) = login(&*store, None, "ada", UserLimit::Unlimited).await;
    let new = Token::generate(&Tag::for_user("ada")).id();
    let out = store
        .rotate(
            &old,
            &new,
            Retire::Alias(Duration::from_millis(1500)),
            &timeouts(),
        )
        .await
        .must("rotate");
    assert!(matches!(out, RotateOutcome::Rotated(_)), "{out:?}");

    let via_old = store.load(&old, &timeouts()).await.must("load").live();
    assert_eq!(via_old.id, new, "the old id leads to the new session");
    assert_eq!(via_old.meta.user_id.as_deref(), Some("ada"));
    let out = store
        .save(&old, &set("via", json!("old")), &timeouts())
        .await
        .must("save");
    assert!(matches!(out, SaveOutcome::SavedToSuccessor(_)), "{out:?}");
    let l = store.load(&new, &timeouts()).await.must("load").live();
    assert_eq!(
        l.data.get("via"),
        Some(&json!("old")),
        "written to the new session"
    );
    assert_eq!(l.data.get("cart"), Some(&json!([1, 2])));

    let list = store
        .sessions_of("ada", &timeouts())
        .await
        .must("sessions_of");
    assert_eq!(list.iter().map(|s| &s.id).collect::<Vec<_>>(), vec![&new]);

    // A use of the new session within the grace moves its idle deadline
    // (2 s after the rotation otherwise, only 300 ms after the check below:
    // too tight on a real clock on a loaded machine) but not the alias's.
    h.advance(Duration::from_millis(1000)).await;
    assert!(
        live(&*store, &new).await,
        "the new session within the grace"
    );
    h.advance(Duration::from_millis(700)).await;
    assert_eq!(
        store.load(&old, &timeouts()).await.must("load"),
        LoadOutcome::Missing,
        "the alias ends with the grace"
    );
    let out = store.load(&new, &timeouts()).await.must("load");
    assert!(out.is_live(), "the new session outlives the alias: {out:?}");
}

pub(in crate::testing) async fn explicit_rotation_stops_the_old_token_at_once(
    h: &dyn StoreHarness,
) {
    let store = h.store();
    let (old, _) = login(&*store, None, "ada", UserLimit::Unlimited).await;
    let before = store.load(&old, &timeouts()).await.must("load").live();
    let new = Token::generate(&Tag::for_user("ada")).id();
    store
        .rotate(&old, &new, Retire::Moved(10 * SEC), &timeouts())
        .await
        .must("rotate");
    assert_eq!(
        store.load(&old, &timeouts()).await.must("load"),
        LoadOutcome::Superseded
    );
    assert_eq!(
        store
            .save(&old, &set("x", json!(1)), &timeouts())
            .await
            .must("save"),
        SaveOutcome::Superseded
    );
    let after = store.load(&new, &timeouts()).await.must("load").live();
    assert_eq!(after.meta.created_ms, before.meta.created_ms);
    assert_eq!(
        after.meta.absolute_deadline_ms, before.meta.absolute_deadline_ms,
        "rotation keeps the lifetime"
    );
    assert!(after.meta.token_issued_ms >= before.meta.token_issued_ms);

    let gone = anon_id();
    let out = store
        .rotate(&gone, &anon_id(), Retire::Moved(SEC), &timeouts())
        .await
        .must("rotate");
    assert_eq!(out, RotateOutcome::Gone);
}

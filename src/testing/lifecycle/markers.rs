//! Moved markers and alias chains: what an id that was replaced reads and writes.

use serde_json::json;

use super::{
    alias_chain, assert_superseded, create, load, lock_outcome, logged_in_data, login, rotate,
    save, successor_of, GRACE,
};
use crate::store::{Delta, LoadOutcome, Retire, RotateOutcome, SaveOutcome, MAX_ALIAS_HOPS};
use crate::testing::records::{data, set, LoadOutcomeExt, Must};
use crate::testing::StoreHarness;
use crate::UserLimit;

pub(in crate::testing) async fn a_moved_id_is_superseded_not_gone(h: &dyn StoreHarness) {
    let store = h.store();
    // Left by a login...
    let anon = create(&*store, &data(&[("a", json!(1))])).await;
    let (user, _) = login(
        &*store,
        Some(&anon),
        "ada",
        &Delta::default(),
        UserLimit::Unlimited,
    )
    .await;
    assert_superseded(&*store, &anon, "after a login from it").await;

    // ...and by an explicit rotation.
    let rotated = successor_of(&user);
    let out = rotate(&*store, &user, &rotated, Retire::Moved(GRACE)).await;
    assert!(matches!(out, RotateOutcome::Rotated(_)), "{out:?}");
    assert_superseded(&*store, &user, "after an explicit rotation").await;

    // The successor is untouched by the attempts above.
    let l = load(&*store, &rotated).await.live();
    assert_eq!(l.data, data(&[("a", json!(1))]));
    assert_eq!(l.meta.user_id.as_deref(), Some("ada"));

    // Anything else that is not live is missing, and rotating it is gone.
    let unknown = successor_of(&anon);
    assert_eq!(load(&*store, &unknown).await, LoadOutcome::Missing);
    let out = rotate(
        &*store,
        &unknown,
        &successor_of(&unknown),
        Retire::Alias(GRACE),
    )
    .await;
    assert_eq!(out, RotateOutcome::Gone);
    assert!(store.revoke(&rotated).await.must("revoke"));
    assert_eq!(load(&*store, &rotated).await, LoadOutcome::Missing);
    assert_eq!(
        save(&*store, &rotated, &set("x", json!(1))).await,
        SaveOutcome::Gone
    );
}

pub(in crate::testing) async fn an_alias_chain_leads_to_the_latest_session(h: &dyn StoreHarness) {
    let store = h.store();
    let first = create(&*store, &data(&[("a", json!(1))])).await;
    let chain = alias_chain(&*store, &first, 2).await;
    let latest = &chain[2];

    for (i, id) in chain.iter().enumerate() {
        let l = load(&*store, id).await.live();
        assert_eq!(
            &l.id, latest,
            "id {i} of the chain reads the latest session"
        );
        assert_eq!(l.data.get("a"), Some(&json!(1)));
    }

    // Writes through either alias reach the latest session, and say so.
    let out = save(&*store, &first, &set("via_first", json!(true))).await;
    assert!(matches!(out, SaveOutcome::SavedToSuccessor(_)), "{out:?}");
    let out = save(&*store, &chain[1], &set("via_second", json!(true))).await;
    assert!(matches!(out, SaveOutcome::SavedToSuccessor(_)), "{out:?}");
    let out = save(&*store, latest, &set("direct", json!(true))).await;
    assert!(matches!(out, SaveOutcome::Saved(_)), "{out:?}");
    let l = load(&*store, latest).await.live();
    assert_eq!(
        l.data,
        data(&[
            ("a", json!(1)),
            ("via_first", json!(true)),
            ("via_second", json!(true)),
            ("direct", json!(true)),
        ])
    );

    // An alias cannot be rotated again: only the request holding the
    // latest token rotates, so two racing rotations make one successor.
    for id in &chain[..2] {
        let stray = successor_of(id);
        let out = rotate(&*store, id, &stray, Retire::Alias(GRACE)).await;
        assert_eq!(out, RotateOutcome::Superseded);
        assert_eq!(
            load(&*store, &stray).await,
            LoadOutcome::Missing,
            "nothing made"
        );
        let out = rotate(&*store, id, &stray, Retire::Moved(GRACE)).await;
        assert_eq!(out, RotateOutcome::Superseded);
    }
    assert_eq!(&load(&*store, &first).await.live().id, latest);

    // Locks follow the chain too.
    assert_eq!(lock_outcome(&*store, &first).await, "acquired");
    assert_eq!(lock_outcome(&*store, latest).await, "held");
}

pub(in crate::testing) async fn an_alias_chain_is_followed_up_to_the_hop_limit(
    h: &dyn StoreHarness,
) {
    let store = h.store();
    let first = create(&*store, &data(&[("a", json!(1))])).await;
    let chain = alias_chain(&*store, &first, MAX_ALIAS_HOPS).await;
    assert_eq!(
        &load(&*store, &first).await.live().id,
        chain.last().expect("the chain is never empty"),
        "{MAX_ALIAS_HOPS} hops are followed"
    );
    let chain = alias_chain(&*store, chain.last().expect("the chain is never empty"), 1).await;
    assert_eq!(
        load(&*store, &first).await,
        LoadOutcome::Superseded,
        "past the limit the id is replaced, not ended"
    );
    assert_eq!(
        save(&*store, &first, &set("x", json!(1))).await,
        SaveOutcome::Superseded
    );
    let latest = load(&*store, chain.last().expect("the chain is never empty"))
        .await
        .live();
    assert_eq!(latest.data, data(&[("a", json!(1))]), "nothing written");
}

pub(in crate::testing) async fn an_alias_that_leads_to_a_moved_marker_is_superseded(
    h: &dyn StoreHarness,
) {
    let store = h.store();
    // Periodic rotation, then a login from the successor.
    let first = create(&*store, &data(&[("a", json!(1))])).await;
    let chain = alias_chain(&*store, &first, 1).await;
    let (user, outcome) = login(
        &*store,
        Some(&chain[1]),
        "ada",
        &Delta::default(),
        UserLimit::Unlimited,
    )
    .await;
    assert_eq!(logged_in_data(outcome), data(&[("a", json!(1))]));
    assert_superseded(&*store, &first, "an alias to a login's old session").await;
    assert_superseded(&*store, &chain[1], "the login's old session").await;

    // Periodic rotation, then an explicit one of the successor.
    let chain = alias_chain(&*store, &user, 1).await;
    let moved_to = successor_of(&user);
    let out = rotate(&*store, &chain[1], &moved_to, Retire::Moved(GRACE)).await;
    assert!(matches!(out, RotateOutcome::Rotated(_)), "{out:?}");
    assert_superseded(&*store, &user, "an alias to an explicitly rotated id").await;
    let l = load(&*store, &moved_to).await.live();
    assert_eq!(l.data, data(&[("a", json!(1))]), "no write got through");
}

//! What a login carries: the old session's latest data plus the login's own changes.

use std::time::Duration;

use serde_json::json;

use super::{
    alias_chain, assert_superseded, create, load, lock_outcome, logged_in_data, login, save,
    successor_of, timeouts,
};
use crate::store::{Delta, LoadOutcome, LoginOutcome, SaveOutcome};
use crate::testing::records::{data, set, LoadOutcomeExt, Must};
use crate::testing::StoreHarness;
use crate::{MaxSessionsPolicy, UserLimit};

pub(in crate::testing) async fn login_carries_what_other_requests_saved_meanwhile(
    h: &dyn StoreHarness,
) {
    let store = h.store();
    let old = create(
        &*store,
        &data(&[("a", json!(1)), ("gone", json!(1)), ("same", json!("old"))]),
    )
    .await;
    // The login request loads the session...
    let seen = load(&*store, &old).await.live();
    assert_eq!(seen.data.get("b"), None);
    // ...another request saves meanwhile...
    let other = Delta {
        remove: vec!["gone".into()],
        set: vec![
            ("b".into(), json!(2)),
            ("same".into(), json!("other")),
            ("kept_by_login".into(), json!("other")),
        ],
        ..Delta::default()
    };
    assert!(matches!(
        save(&*store, &old, &other).await,
        SaveOutcome::Saved(_)
    ));
    // ...then the login applies this request's own changes on top of the
    // latest data, not on what it loaded.
    let mine = Delta {
        remove: vec!["kept_by_login".into()],
        set: vec![("c".into(), json!(3)), ("same".into(), json!("login"))],
        ..Delta::default()
    };
    let (new, outcome) = login(&*store, Some(&old), "ada", &mine, UserLimit::Unlimited).await;
    let expected = data(&[
        ("a", json!(1)),
        ("b", json!(2)),
        ("c", json!(3)),
        ("same", json!("login")),
    ]);
    assert_eq!(logged_in_data(outcome), expected, "the outcome's data");
    let l = load(&*store, &new).await.live();
    assert_eq!(l.data, expected, "the stored data");
    assert_eq!(l.meta.user_id.as_deref(), Some("ada"));

    // A login that clears starts from nothing, whatever was saved.
    let old = create(&*store, &data(&[("a", json!(1))])).await;
    let clear = Delta {
        clear: true,
        set: vec![("fresh".into(), json!(true))],
        ..Delta::default()
    };
    let (new, outcome) = login(&*store, Some(&old), "ada", &clear, UserLimit::Unlimited).await;
    let expected = data(&[("fresh", json!(true))]);
    assert_eq!(logged_in_data(outcome), expected);
    assert_eq!(load(&*store, &new).await.live().data, expected);
}

pub(in crate::testing) async fn login_from_a_session_that_is_not_live_carries_only_its_delta(
    h: &dyn StoreHarness,
) {
    let store = h.store();
    let mine = set("mine", json!(1));
    let only_mine = data(&[("mine", json!(1))]);

    // Revoked after the login request loaded it.
    let revoked = create(&*store, &data(&[("secret", json!("x"))])).await;
    load(&*store, &revoked).await.live();
    assert!(store.revoke(&revoked).await.must("revoke"));
    let (new, outcome) = login(&*store, Some(&revoked), "ada", &mine, UserLimit::Unlimited).await;
    assert_eq!(logged_in_data(outcome), only_mine, "revoked");
    assert_eq!(load(&*store, &new).await.live().data, only_mine, "revoked");
    assert_eq!(
        load(&*store, &revoked).await,
        LoadOutcome::Missing,
        "the login does not bring the revoked id back"
    );

    // Already logged in from by another request (a moved marker).
    let moved = create(&*store, &data(&[("secret", json!("x"))])).await;
    let (first, _) = login(
        &*store,
        Some(&moved),
        "ada",
        &Delta::default(),
        UserLimit::Unlimited,
    )
    .await;
    let (second, outcome) = login(&*store, Some(&moved), "ada", &mine, UserLimit::Unlimited).await;
    assert_eq!(logged_in_data(outcome), only_mine, "moved");
    assert_eq!(load(&*store, &second).await.live().data, only_mine);
    assert_eq!(
        load(&*store, &first).await.live().data,
        data(&[("secret", json!("x"))]),
        "the first login's session is left alone"
    );
    assert_eq!(load(&*store, &moved).await, LoadOutcome::Superseded);

    // Never stored, and expired.
    let unknown = successor_of(&moved);
    let (_, outcome) = login(&*store, Some(&unknown), "ada", &mine, UserLimit::Unlimited).await;
    assert_eq!(logged_in_data(outcome), only_mine, "unknown");
    let expiring = create(&*store, &data(&[("secret", json!("x"))])).await;
    h.advance(timeouts().idle + Duration::from_millis(500))
        .await;
    let (_, outcome) = login(&*store, Some(&expiring), "ada", &mine, UserLimit::Unlimited).await;
    assert_eq!(logged_in_data(outcome), only_mine, "expired");
}

pub(in crate::testing) async fn login_through_an_alias_retires_the_successor(h: &dyn StoreHarness) {
    let store = h.store();
    let (start, _) = login(
        &*store,
        None,
        "ada",
        &set("a", json!(1)),
        UserLimit::Unlimited,
    )
    .await;
    let chain = alias_chain(&*store, &start, 2).await;
    let latest = &chain[2];
    assert!(matches!(
        save(&*store, latest, &set("b", json!(2))).await,
        SaveOutcome::Saved(_)
    ));
    assert_eq!(lock_outcome(&*store, latest).await, "acquired");

    // Logging in (as another user) with the oldest token of the chain.
    let (new, outcome) = login(
        &*store,
        Some(&start),
        "bob",
        &set("c", json!(3)),
        UserLimit::Max {
            max: 1,
            policy: MaxSessionsPolicy::EvictOldest,
        },
    )
    .await;
    let expected = data(&[("a", json!(1)), ("b", json!(2)), ("c", json!(3))]);
    assert_eq!(logged_in_data(outcome), expected, "the latest data");
    assert_eq!(load(&*store, &new).await.live().data, expected);

    // The successor is retired with its lock, and every id of the chain
    // is superseded.
    for (i, id) in chain.iter().enumerate() {
        assert_superseded(&*store, id, &format!("id {i} of the chain")).await;
    }
    assert!(
        store
            .sessions_of("ada", &timeouts())
            .await
            .must("sessions_of")
            .is_empty(),
        "the successor left its user's index"
    );
    let bobs = store
        .sessions_of("bob", &timeouts())
        .await
        .must("sessions_of");
    assert_eq!(bobs.iter().map(|s| &s.id).collect::<Vec<_>>(), vec![&new]);

    // A login through an alias of the user's own session does not count
    // that session against the limit.
    let chain = alias_chain(&*store, &new, 1).await;
    let (newer, outcome) = login(
        &*store,
        Some(&chain[0]),
        "bob",
        &Delta::default(),
        UserLimit::Max {
            max: 1,
            policy: MaxSessionsPolicy::RejectNew,
        },
    )
    .await;
    assert!(
        matches!(&outcome, LoginOutcome::LoggedIn { evicted, .. } if evicted.is_empty()),
        "{outcome:?}"
    );
    assert_eq!(load(&*store, &newer).await.live().data, expected);
    assert_superseded(&*store, &chain[1], "the re-login's old session").await;
}

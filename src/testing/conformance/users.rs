//! Users: login, the per-user index and limits, listing, revocation.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{create, live, login, timeouts};
use crate::store::{LoadOutcome, LoginOutcome, SaveOutcome, Tag};
use crate::testing::records::{data, set, LoadOutcomeExt, Must};
use crate::testing::StoreHarness;
use crate::{MaxSessionsPolicy, SessionStore, UserLimit};

/// Logs `user` in `n` times at once under `limit`; returns how many of the
/// new sessions are live once every login has finished.
async fn live_after_concurrent_logins(
    store: &Arc<dyn SessionStore>,
    n: usize,
    limit: UserLimit,
) -> usize {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let store = Arc::clone(store);
            tokio::spawn(async move { login(&*store, None, "ada", limit).await.0 })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.expect("a spawned task of the scenario panicked"));
    }
    let mut alive = 0;
    for id in &ids {
        alive += usize::from(live(&**store, id).await);
    }
    alive
}

pub(in crate::testing) async fn login_moves_data_indexes_user_and_retires_old(
    h: &dyn StoreHarness,
) {
    let store = h.store();
    let old = create(&*store, &data(&[("theme", json!("dark"))])).await;
    let (new, outcome) = login(&*store, Some(&old), "ada", UserLimit::Unlimited).await;
    assert!(
        matches!(&outcome, LoginOutcome::LoggedIn { evicted, .. } if evicted.is_empty()),
        "{outcome:?}"
    );
    assert_eq!(new.tag(), Tag::for_user("ada").as_str());
    let l = store.load(&new, &timeouts()).await.must("load").live();
    assert_eq!(l.meta.user_id.as_deref(), Some("ada"));
    assert_eq!(l.data.get("cart"), Some(&json!([1, 2])));

    assert_eq!(
        store.load(&old, &timeouts()).await.must("load"),
        LoadOutcome::Superseded,
        "the old token stops working, and is known as replaced"
    );
    let out = store
        .save(&old, &set("late", json!(1)), &timeouts())
        .await
        .must("save");
    assert_eq!(
        out,
        SaveOutcome::Superseded,
        "an in-flight write with the old token is dropped, not turned into a cookie removal"
    );
    assert!(!live(&*store, &old).await, "and does not resurrect it");

    let list = store
        .sessions_of("ada", &timeouts())
        .await
        .must("sessions_of");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, new);
    assert_eq!(list[0].user_id, "ada");
    assert_eq!(list[0].user_agent.as_deref(), Some("conformance/1.0"));
    assert_eq!(list[0].client_ip.as_deref(), Some("192.0.2.7"));
    assert!(list[0].expires > list[0].last_seen);
    assert!(store
        .sessions_of("grace", &timeouts())
        .await
        .must("sessions_of")
        .is_empty());
}

pub(in crate::testing) async fn login_switching_user_leaves_the_old_users_index(
    h: &dyn StoreHarness,
) {
    let store = h.store();
    let (as_ada, _) = login(&*store, None, "ada", UserLimit::Unlimited).await;
    let (as_bob, _) = login(&*store, Some(&as_ada), "bob", UserLimit::Unlimited).await;
    assert!(store
        .sessions_of("ada", &timeouts())
        .await
        .must("sessions_of")
        .is_empty());
    let bobs = store
        .sessions_of("bob", &timeouts())
        .await
        .must("sessions_of");
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0].id, as_bob);
}

pub(in crate::testing) async fn single_login_evicts_every_other_session(h: &dyn StoreHarness) {
    let store = h.store();
    let (a, _) = login(&*store, None, "ada", UserLimit::Unlimited).await;
    let (bb, _) = login(&*store, None, "ada", UserLimit::Unlimited).await;
    let (bob, _) = login(&*store, None, "bob", UserLimit::Unlimited).await;
    let single = UserLimit::Max {
        max: 1,
        policy: MaxSessionsPolicy::EvictOldest,
    };
    let (c, outcome) = login(&*store, None, "ada", single).await;
    let LoginOutcome::LoggedIn { mut evicted, .. } = outcome else {
        panic!("{outcome:?}")
    };
    evicted.sort();
    let mut expected = vec![a.clone(), bb.clone()];
    expected.sort();
    assert_eq!(evicted, expected);
    assert!(!live(&*store, &a).await && !live(&*store, &bb).await);
    assert!(live(&*store, &c).await);
    assert!(live(&*store, &bob).await, "other users are untouched");
    assert_eq!(
        store
            .save(&a, &set("x", json!(1)), &timeouts())
            .await
            .must("save"),
        SaveOutcome::Gone,
        "an evicted session cannot be written back"
    );

    // Logging in again from the surviving session does not count it.
    let (d, outcome) = login(&*store, Some(&c), "ada", single).await;
    assert!(
        matches!(&outcome, LoginOutcome::LoggedIn { evicted, .. } if evicted.is_empty()),
        "{outcome:?}"
    );
    let list = store
        .sessions_of("ada", &timeouts())
        .await
        .must("sessions_of");
    assert_eq!(list.iter().map(|s| &s.id).collect::<Vec<_>>(), vec![&d]);
}

pub(in crate::testing) async fn max_sessions_evicts_least_recently_used(h: &dyn StoreHarness) {
    let store = h.store();
    let limit = UserLimit::Max {
        max: 2,
        policy: MaxSessionsPolicy::EvictOldest,
    };
    let (first, _) = login(&*store, None, "ada", limit).await;
    h.advance(Duration::from_millis(600)).await;
    let (second, _) = login(&*store, None, "ada", limit).await;
    h.advance(Duration::from_millis(600)).await;
    // Using the first session makes the second the least recently used.
    assert!(
        store
            .load(&first, &timeouts())
            .await
            .must("load")
            .live()
            .touched
    );
    h.advance(Duration::from_millis(100)).await;
    let (third, outcome) = login(&*store, None, "ada", limit).await;
    assert!(
        matches!(&outcome, LoginOutcome::LoggedIn { evicted, .. } if evicted == &vec![second.clone()]),
        "{outcome:?}"
    );
    assert!(live(&*store, &first).await && live(&*store, &third).await);
    assert!(!live(&*store, &second).await);
}

pub(in crate::testing) async fn reject_new_changes_nothing(h: &dyn StoreHarness) {
    let store = h.store();
    let limit = UserLimit::Max {
        max: 2,
        policy: MaxSessionsPolicy::RejectNew,
    };
    let (a, _) = login(&*store, None, "ada", limit).await;
    let (bb, _) = login(&*store, None, "ada", limit).await;
    let anon = create(&*store, &data(&[("keep", json!(true))])).await;
    let (c, outcome) = login(&*store, Some(&anon), "ada", limit).await;
    assert_eq!(outcome, LoginOutcome::Rejected { max: 2 });
    assert!(!live(&*store, &c).await, "no new session");
    assert!(live(&*store, &a).await && live(&*store, &bb).await);
    let l = store.load(&anon, &timeouts()).await.must("load").live();
    assert_eq!(
        l.data.get("keep"),
        Some(&json!(true)),
        "the anonymous session is intact"
    );
    assert_eq!(
        store
            .sessions_of("ada", &timeouts())
            .await
            .must("sessions_of")
            .len(),
        2
    );

    store.revoke(&a).await.must("revoke");
    let (_, outcome) = login(&*store, Some(&anon), "ada", limit).await;
    assert!(
        matches!(outcome, LoginOutcome::LoggedIn { .. }),
        "room again"
    );
}

pub(in crate::testing) async fn concurrent_single_logins_leave_exactly_one(h: &dyn StoreHarness) {
    let store = h.store();
    let single = UserLimit::Max {
        max: 1,
        policy: MaxSessionsPolicy::EvictOldest,
    };
    assert_eq!(
        live_after_concurrent_logins(&store, 50, single).await,
        1,
        "exactly one live token"
    );
    assert_eq!(
        store
            .sessions_of("ada", &timeouts())
            .await
            .must("sessions_of")
            .len(),
        1
    );
}

pub(in crate::testing) async fn concurrent_logins_respect_max_sessions(h: &dyn StoreHarness) {
    let store = h.store();
    let limit = UserLimit::Max {
        max: 5,
        policy: MaxSessionsPolicy::EvictOldest,
    };
    assert_eq!(live_after_concurrent_logins(&store, 50, limit).await, 5);
    assert_eq!(
        store
            .sessions_of("ada", &timeouts())
            .await
            .must("sessions_of")
            .len(),
        5
    );
}

pub(in crate::testing) async fn revocation_is_final(h: &dyn StoreHarness) {
    let store = h.store();
    let (a, _) = login(&*store, None, "ada", UserLimit::Unlimited).await;
    let (bb, _) = login(&*store, None, "ada", UserLimit::Unlimited).await;
    let (c, _) = login(&*store, None, "ada", UserLimit::Unlimited).await;
    let (bob, _) = login(&*store, None, "bob", UserLimit::Unlimited).await;

    assert!(store.revoke(&a).await.must("revoke"));
    assert!(
        !store.revoke(&a).await.must("revoke"),
        "second revoke finds nothing"
    );
    assert_eq!(
        store
            .save(&a, &set("x", json!(1)), &timeouts())
            .await
            .must("save"),
        SaveOutcome::Gone
    );
    assert!(!live(&*store, &a).await);

    assert_eq!(
        store.revoke_user("ada", Some(&c)).await.must("revoke_user"),
        1
    );
    assert!(!live(&*store, &bb).await && live(&*store, &c).await);
    assert_eq!(store.revoke_user("ada", None).await.must("revoke_user"), 1);
    assert!(!live(&*store, &c).await);
    assert!(store
        .sessions_of("ada", &timeouts())
        .await
        .must("sessions_of")
        .is_empty());
    assert!(live(&*store, &bob).await, "other users are untouched");
    assert_eq!(
        store.revoke_user("nobody", None).await.must("revoke_user"),
        0
    );
}

pub(in crate::testing) async fn listing_drops_expired_and_orders_by_use(h: &dyn StoreHarness) {
    let store = h.store();
    let (a, _) = login(&*store, None, "ada", UserLimit::Unlimited).await;
    h.advance(Duration::from_millis(600)).await;
    let (bb, _) = login(&*store, None, "ada", UserLimit::Unlimited).await;
    let list = store
        .sessions_of("ada", &timeouts())
        .await
        .must("sessions_of");
    assert_eq!(
        list.iter().map(|s| &s.id).collect::<Vec<_>>(),
        vec![&bb, &a],
        "most recently used first"
    );
    h.advance(Duration::from_millis(1500)).await;
    // `a` is now 2.1 s idle, `bb` 1.5 s.
    let list = store
        .sessions_of("ada", &timeouts())
        .await
        .must("sessions_of");
    assert_eq!(list.iter().map(|s| &s.id).collect::<Vec<_>>(), vec![&bb]);
}

//! Session locks: exclusivity, leases, fences, and what ends a lock.

use std::time::Duration;

use serde_json::{json, Value};

use super::{create, live, login, timeouts, SEC};
use crate::store::{Data, Delta, Loaded, LockOutcome, Retire, RotateOutcome, SaveOutcome};
use crate::testing::records::{anon_id, data, set, user_id_for, LoadOutcomeExt, Must};
use crate::testing::StoreHarness;
use crate::{MaxSessionsPolicy, SessionId, SessionStore, UserLimit};

/// A lease long enough never to run out within a test.
const LONG: Duration = Duration::from_secs(10);

fn fenced(k: &str, v: Value, fence: u64) -> Delta {
    Delta {
        fence: Some(fence),
        ..set(k, v)
    }
}

/// Takes the lock, asserting it was free.
async fn acquire(store: &dyn SessionStore, id: &SessionId, lease: Duration) -> (u64, Loaded) {
    match store.lock(id, lease, &timeouts()).await.must("lock") {
        LockOutcome::Acquired { fence, loaded } => (fence, loaded),
        other => panic!("expected to take the lock of {id}, got {other:?}"),
    }
}

async fn lock_outcome(store: &dyn SessionStore, id: &SessionId) -> &'static str {
    match store.lock(id, LONG, &timeouts()).await.must("lock") {
        LockOutcome::Acquired { .. } => "acquired",
        LockOutcome::Held { .. } => "held",
        LockOutcome::Gone => "gone",
    }
}

pub(in crate::testing) async fn lock_is_exclusive_and_starts_from_the_latest_data(
    h: &dyn StoreHarness,
) {
    let store = h.store();
    let id = create(&*store, &data(&[("n", json!(1))])).await;
    store
        .save(&id, &set("n", json!(2)), &timeouts())
        .await
        .must("save");
    let (f1, loaded) = acquire(&*store, &id, LONG).await;
    assert_eq!(loaded.id, id);
    assert_eq!(loaded.data, data(&[("n", json!(2))]), "the latest data");
    assert_eq!(loaded.meta.user_agent.as_deref(), Some("conformance/1.0"));
    assert_eq!(lock_outcome(&*store, &id).await, "held");

    // Only the holder's fence renews or releases it.
    store.unlock(&id, f1 + 1).await.must("unlock");
    store.unlock(&id, f1 + 1000).await.must("unlock");
    assert_eq!(
        lock_outcome(&*store, &id).await,
        "held",
        "unlock by a non-holder is a no-op"
    );
    assert!(!store.renew_lock(&id, f1 + 1, LONG).await.must("renew_lock"));
    assert!(store.renew_lock(&id, f1, LONG).await.must("renew_lock"));

    // The holder writes with its fence, then releases.
    let out = store
        .save(&id, &fenced("n", json!(3), f1), &timeouts())
        .await
        .must("save");
    assert!(matches!(out, SaveOutcome::Saved(_)), "{out:?}");
    store.unlock(&id, f1).await.must("unlock");
    assert!(
        !store.renew_lock(&id, f1, LONG).await.must("renew_lock"),
        "released"
    );
    let (f2, loaded) = acquire(&*store, &id, LONG).await;
    assert!(
        f2 > f1,
        "every acquisition gets a greater fence: {f1} then {f2}"
    );
    assert_eq!(loaded.data, data(&[("n", json!(3))]));
    // A second release, and a release of an older fence, change nothing.
    store.unlock(&id, f1).await.must("unlock");
    assert_eq!(lock_outcome(&*store, &id).await, "held");
    store.unlock(&id, f2).await.must("unlock");
    store.unlock(&id, f2).await.must("unlock");
    assert_eq!(lock_outcome(&*store, &id).await, "acquired");

    // Nothing to lock under an unknown id.
    let unknown = anon_id();
    assert_eq!(lock_outcome(&*store, &unknown).await, "gone");
    assert!(!store.renew_lock(&unknown, 1, LONG).await.must("renew_lock"));
    store.unlock(&unknown, 1).await.must("unlock");
    assert!(
        !live(&*store, &unknown).await,
        "locking never creates a session"
    );
}

pub(in crate::testing) async fn lock_lease_runs_out_unless_renewed(h: &dyn StoreHarness) {
    let store = h.store();
    let lease = Duration::from_millis(800);
    let id = create(&*store, &data(&[("n", json!(1))])).await;
    let (f1, _) = acquire(&*store, &id, lease).await;
    h.advance(Duration::from_millis(400)).await;
    assert!(store.renew_lock(&id, f1, lease).await.must("renew_lock"));
    h.advance(Duration::from_millis(500)).await;
    assert_eq!(
        lock_outcome(&*store, &id).await,
        "held",
        "900 ms after acquisition, 500 ms after the renewal"
    );
    h.advance(Duration::from_millis(800)).await;
    assert!(
        !store.renew_lock(&id, f1, lease).await.must("renew_lock"),
        "a lease that ran out is not renewed"
    );
    let (f2, loaded) = acquire(&*store, &id, lease).await;
    assert!(f2 > f1);
    assert_eq!(loaded.data, data(&[("n", json!(1))]));
    assert!(!store.renew_lock(&id, f1, lease).await.must("renew_lock"));
    assert!(store.renew_lock(&id, f2, lease).await.must("renew_lock"));
}

pub(in crate::testing) async fn stale_fence_is_fenced_and_writes_nothing(h: &dyn StoreHarness) {
    let store = h.store();
    let id = create(&*store, &data(&[("n", json!(0)), ("keep", json!(1))])).await;
    // The first holder stalls past its lease; a second one takes over.
    let (old, _) = acquire(&*store, &id, Duration::from_millis(300)).await;
    h.advance(Duration::from_millis(400)).await;
    let (new, loaded) = acquire(&*store, &id, LONG).await;
    assert!(new > old);
    assert_eq!(loaded.data.get("n"), Some(&json!(0)));
    let out = store
        .save(&id, &fenced("n", json!(1), new), &timeouts())
        .await
        .must("save");
    assert!(matches!(out, SaveOutcome::Saved(_)), "{out:?}");
    let before = store.load(&id, &timeouts()).await.must("load").live();

    // The stalled holder wakes up and tries to write: nothing is written.
    let stale = Delta {
        clear: true,
        remove: vec!["keep".into()],
        set: vec![("n".into(), json!(99)), ("x".into(), json!("y"))],
        fence: Some(old),
    };
    let out = store.save(&id, &stale, &timeouts()).await.must("save");
    assert_eq!(out, SaveOutcome::Fenced);
    let after = store.load(&id, &timeouts()).await.must("load").live();
    assert_eq!(after.data, before.data, "a fenced save writes nothing");
    assert_eq!(after.data, data(&[("n", json!(1)), ("keep", json!(1))]));
    assert_eq!(after.meta.version, before.meta.version);

    // Still stale once the newer holder released the lock.
    store.unlock(&id, new).await.must("unlock");
    let out = store.save(&id, &stale, &timeouts()).await.must("save");
    assert_eq!(out, SaveOutcome::Fenced);

    // A fence never issued for a session is stale too.
    let other = create(&*store, &Data::new()).await;
    let out = store
        .save(&other, &fenced("n", json!(1), new), &timeouts())
        .await
        .must("save");
    assert_eq!(out, SaveOutcome::Fenced);

    // Advisory: a save without a fence is applied while the lock is held,
    // and does not spoil the holder's fence.
    let (f3, _) = acquire(&*store, &id, LONG).await;
    let out = store
        .save(&id, &set("free", json!(true)), &timeouts())
        .await
        .must("save");
    assert!(matches!(out, SaveOutcome::Saved(_)), "{out:?}");
    let out = store
        .save(&id, &fenced("n", json!(2), f3), &timeouts())
        .await
        .must("save");
    assert!(matches!(out, SaveOutcome::Saved(_)), "{out:?}");
    let l = store.load(&id, &timeouts()).await.must("load").live();
    assert_eq!(l.data.get("free"), Some(&json!(true)));
    assert_eq!(l.data.get("n"), Some(&json!(2)));
}

pub(in crate::testing) async fn ending_a_session_removes_its_lock(h: &dyn StoreHarness) {
    let store = h.store();
    // revoke
    let id = create(&*store, &data(&[("n", json!(1))])).await;
    let (f, _) = acquire(&*store, &id, LONG).await;
    assert!(store.revoke(&id).await.must("revoke"));
    assert_eq!(lock_outcome(&*store, &id).await, "gone");
    assert!(!store.renew_lock(&id, f, LONG).await.must("renew_lock"));
    store.unlock(&id, f).await.must("unlock");
    let out = store
        .save(&id, &fenced("n", json!(2), f), &timeouts())
        .await
        .must("save");
    assert_eq!(out, SaveOutcome::Gone);

    // revoke_user
    let (u1, _) = login(&*store, None, "locky", UserLimit::Unlimited).await;
    let (fu, _) = acquire(&*store, &u1, LONG).await;
    assert_eq!(
        store.revoke_user("locky", None).await.must("revoke_user"),
        1
    );
    assert_eq!(lock_outcome(&*store, &u1).await, "gone");
    assert!(!store.renew_lock(&u1, fu, LONG).await.must("renew_lock"));

    // login from a locked session retires it with its lock; the new
    // session starts unlocked
    let anon = create(&*store, &Data::new()).await;
    let (fa, _) = acquire(&*store, &anon, LONG).await;
    let (u2, _) = login(&*store, Some(&anon), "locky", UserLimit::Unlimited).await;
    assert_eq!(lock_outcome(&*store, &anon).await, "gone");
    assert!(!store.renew_lock(&anon, fa, LONG).await.must("renew_lock"));
    let (fu2, _) = acquire(&*store, &u2, LONG).await;

    // single-login eviction
    let single = UserLimit::Max {
        max: 1,
        policy: MaxSessionsPolicy::EvictOldest,
    };
    let (u3, _) = login(&*store, None, "locky", single).await;
    assert_eq!(lock_outcome(&*store, &u2).await, "gone", "evicted");
    assert!(!store.renew_lock(&u2, fu2, LONG).await.must("renew_lock"));
    assert_eq!(lock_outcome(&*store, &u3).await, "acquired");
}

pub(in crate::testing) async fn lock_moves_with_rotation(h: &dyn StoreHarness) {
    let store = h.store();
    let (id, _) = login(&*store, None, "rory", UserLimit::Unlimited).await;
    let (f, _) = acquire(&*store, &id, LONG).await;

    // Periodic rotation: the lock and its fence move to the new id, and the
    // old id (an alias) leads to them.
    let new = user_id_for("rory");
    let out = store
        .rotate(&id, &new, Retire::Alias(10 * SEC), &timeouts())
        .await
        .must("rotate");
    assert!(matches!(out, RotateOutcome::Rotated(_)), "{out:?}");
    assert_eq!(lock_outcome(&*store, &new).await, "held");
    assert_eq!(
        lock_outcome(&*store, &id).await,
        "held",
        "through the alias"
    );
    assert!(store.renew_lock(&id, f, LONG).await.must("renew_lock"));
    assert!(store.renew_lock(&new, f, LONG).await.must("renew_lock"));
    let out = store
        .save(&id, &fenced("n", json!(1), f), &timeouts())
        .await
        .must("save");
    assert!(matches!(out, SaveOutcome::SavedToSuccessor(_)), "{out:?}");
    store.unlock(&id, f).await.must("unlock");
    let (f2, loaded) = acquire(&*store, &id, LONG).await;
    assert_eq!(loaded.id, new, "locked through the alias");
    assert!(f2 > f, "the fence counter moved with the session");
    assert_eq!(loaded.data.get("n"), Some(&json!(1)));

    // Explicit rotation: the old id leads nowhere, and the lock is dropped
    // with it (its holder can no longer write through the old id); the
    // fence counter moves on.
    let newer = user_id_for("rory");
    let out = store
        .rotate(&new, &newer, Retire::Moved(10 * SEC), &timeouts())
        .await
        .must("rotate");
    assert!(matches!(out, RotateOutcome::Rotated(_)), "{out:?}");
    assert_eq!(lock_outcome(&*store, &new).await, "gone");
    assert!(!store.renew_lock(&new, f2, LONG).await.must("renew_lock"));
    assert!(
        !store.renew_lock(&newer, f2, LONG).await.must("renew_lock"),
        "dropped"
    );
    let out = store
        .save(&new, &fenced("n", json!(2), f2), &timeouts())
        .await
        .must("save");
    assert_eq!(out, SaveOutcome::Superseded);
    let out = store
        .save(&newer, &fenced("n", json!(2), f2), &timeouts())
        .await
        .must("save");
    assert!(
        matches!(out, SaveOutcome::Saved(_)),
        "the fence is still the latest: {out:?}"
    );
    let (f3, loaded) = acquire(&*store, &newer, LONG).await;
    assert!(f3 > f2, "the fence counter moved with the session");
    assert_eq!(loaded.data.get("n"), Some(&json!(2)));
    assert_eq!(lock_outcome(&*store, &newer).await, "held");
}

pub(in crate::testing) async fn concurrent_lockers_get_one_lock(h: &dyn StoreHarness) {
    let store = h.store();
    let id = create(&*store, &Data::new()).await;
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            let id = id.clone();
            tokio::spawn(async move { store.lock(&id, LONG, &timeouts()).await.must("lock") })
        })
        .collect();
    let mut acquired = 0;
    for t in tasks {
        match t.await.expect("a spawned task of the scenario panicked") {
            LockOutcome::Acquired { .. } => acquired += 1,
            LockOutcome::Held { .. } => {}
            LockOutcome::Gone => panic!("the session is live"),
        }
    }
    assert_eq!(acquired, 1, "exactly one of 16 concurrent lockers");
}

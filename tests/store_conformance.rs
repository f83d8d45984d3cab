//! The conformance suite: the rules every `SessionStore` keeps, checked
//! through the trait alone, on every backend (see `support::Backend`).
//!
//! Time moves only through `backend.advance`, which sleeps for stores on a
//! real clock, so the durations here are seconds, not minutes.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sessionkit::store::{
    Data, Delta, LoadOutcome, Loaded, LockOutcome, Login, LoginOutcome, NewSession, Retire,
    RotateOutcome, SaveOutcome, Tag, Timeouts, Token,
};
use sessionkit::{MaxSessionsPolicy, SessionId, SessionStore, UserLimit};
use support::outcomes::LoadOutcomeExt;
use support::records::{anon_id, client, data, set, user_id_for};
use support::Backend;

const SEC: Duration = Duration::from_secs(1);

fn timeouts() -> Timeouts {
    Timeouts {
        idle: 2 * SEC,
        absolute: 5 * SEC,
        touch_interval: Duration::from_millis(500),
    }
}

async fn create(store: &dyn SessionStore, d: &Data) -> SessionId {
    let id = anon_id();
    let c = client();
    store
        .create(
            &id,
            NewSession {
                data: d,
                client: &c,
            },
            &timeouts(),
        )
        .await
        .unwrap();
    id
}

async fn login(
    store: &dyn SessionStore,
    old: Option<&SessionId>,
    user: &str,
    limit: UserLimit,
) -> (SessionId, LoginOutcome) {
    let new = user_id_for(user);
    let c = client();
    let d = set("cart", json!([1, 2]));
    let outcome = store
        .login(
            Login {
                old,
                new: &new,
                user_id: user,
                delta: &d,
                client: &c,
                limit,
                moved_grace: 10 * SEC,
            },
            &timeouts(),
        )
        .await
        .unwrap();
    (new, outcome)
}

async fn live(store: &dyn SessionStore, id: &SessionId) -> bool {
    store.load(id, &timeouts()).await.unwrap().is_live()
}

async fn create_then_load(b: Backend) {
    let store = b.store();
    let id = create(&*store, &data(&[("n", json!(1)), ("name", json!("ada"))])).await;
    let l = store.load(&id, &timeouts()).await.unwrap().live();
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
        store.load(&anon_id(), &timeouts()).await.unwrap(),
        LoadOutcome::Missing
    );
}

async fn save_applies_delta_and_never_creates(b: Backend) {
    let store = b.store();
    let id = create(&*store, &data(&[("a", json!(1)), ("b", json!(2))])).await;
    let v0 = store
        .load(&id, &timeouts())
        .await
        .unwrap()
        .live()
        .meta
        .version;
    let delta = Delta {
        clear: false,
        remove: vec!["a".into()],
        set: vec![("c".into(), json!({"x": [1, "y"]}))],
        fence: None,
    };
    let out = store.save(&id, &delta, &timeouts()).await.unwrap();
    assert!(matches!(out, SaveOutcome::Saved(_)), "{out:?}");
    let l = store.load(&id, &timeouts()).await.unwrap().live();
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
    store.save(&id, &clear, &timeouts()).await.unwrap();
    let l = store.load(&id, &timeouts()).await.unwrap().live();
    assert_eq!(l.data, data(&[("d", json!(4))]), "clear runs before set");

    let unknown = anon_id();
    let out = store
        .save(&unknown, &set("x", json!(1)), &timeouts())
        .await
        .unwrap();
    assert_eq!(out, SaveOutcome::Gone);
    assert!(!live(&*store, &unknown).await, "save never creates");
}

async fn concurrent_saves_of_different_keys_merge(b: Backend) {
    let store = b.store();
    let id = create(&*store, &data(&[("seed", json!(0))])).await;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = Arc::clone(&store);
            let id = id.clone();
            tokio::spawn(async move {
                store
                    .save(&id, &set(&format!("k{i}"), json!(i)), &timeouts())
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        assert!(matches!(t.await.unwrap(), SaveOutcome::Saved(_)));
    }
    let l = store.load(&id, &timeouts()).await.unwrap().live();
    for i in 0..16 {
        assert_eq!(l.data.get(&format!("k{i}")), Some(&json!(i)), "k{i} kept");
    }
    assert_eq!(l.data.len(), 17);
}

async fn idle_expiry_and_rate_limited_touch(b: Backend) {
    let store = b.store();
    let id = create(&*store, &data(&[("a", json!(1))])).await;
    let first = store.load(&id, &timeouts()).await.unwrap().live();
    assert!(
        !first.touched,
        "a read within the touch interval writes nothing"
    );

    b.advance(Duration::from_millis(1200)).await;
    let second = store.load(&id, &timeouts()).await.unwrap().live();
    assert!(second.touched, "a read after the touch interval refreshes");
    assert!(second.expires_at_ms > first.expires_at_ms);
    assert!(second.meta.last_seen_ms > first.meta.last_seen_ms);

    // 1.2 s + 1.2 s since creation: past the first idle deadline, but the
    // touch moved it.
    b.advance(Duration::from_millis(1200)).await;
    assert!(
        live(&*store, &id).await,
        "the touch extended the idle deadline"
    );

    b.advance(Duration::from_millis(2300)).await;
    assert!(!live(&*store, &id).await, "idle timeout ends the session");
    let out = store
        .save(&id, &set("b", json!(2)), &timeouts())
        .await
        .unwrap();
    assert_eq!(out, SaveOutcome::Gone, "an expired session is not written");
}

async fn absolute_deadline_is_never_extended(b: Backend) {
    let store = b.store();
    let id = create(&*store, &Data::new()).await;
    let created = store.load(&id, &timeouts()).await.unwrap().live();
    for i in 0..3 {
        b.advance(Duration::from_millis(1500)).await;
        let out = store
            .save(&id, &set("i", json!(i)), &timeouts())
            .await
            .unwrap();
        let SaveOutcome::Saved(w) = out else {
            panic!("live at step {i}: {out:?}")
        };
        assert!(w.expires_at_ms <= created.meta.absolute_deadline_ms);
    }
    let l = store.load(&id, &timeouts()).await.unwrap().live();
    assert_eq!(
        l.meta.absolute_deadline_ms, created.meta.absolute_deadline_ms,
        "activity never moves the absolute deadline"
    );
    b.advance(Duration::from_millis(1000)).await;
    assert!(
        !live(&*store, &id).await,
        "gone after the absolute timeout however active"
    );
}

async fn login_moves_data_indexes_user_and_retires_old(b: Backend) {
    let store = b.store();
    let old = create(&*store, &data(&[("theme", json!("dark"))])).await;
    let (new, outcome) = login(&*store, Some(&old), "ada", UserLimit::Unlimited).await;
    assert!(
        matches!(&outcome, LoginOutcome::LoggedIn { evicted, .. } if evicted.is_empty()),
        "{outcome:?}"
    );
    assert_eq!(new.tag(), Tag::for_user("ada").as_str());
    let l = store.load(&new, &timeouts()).await.unwrap().live();
    assert_eq!(l.meta.user_id.as_deref(), Some("ada"));
    assert_eq!(l.data.get("cart"), Some(&json!([1, 2])));

    assert_eq!(
        store.load(&old, &timeouts()).await.unwrap(),
        LoadOutcome::Superseded,
        "the old token stops working, and is known as replaced"
    );
    let out = store
        .save(&old, &set("late", json!(1)), &timeouts())
        .await
        .unwrap();
    assert_eq!(
        out,
        SaveOutcome::Superseded,
        "an in-flight write with the old token is dropped, not turned into a cookie removal"
    );
    assert!(!live(&*store, &old).await, "and does not resurrect it");

    let list = store.sessions_of("ada", &timeouts()).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, new);
    assert_eq!(list[0].user_id, "ada");
    assert_eq!(list[0].user_agent.as_deref(), Some("conformance/1.0"));
    assert_eq!(list[0].client_ip.as_deref(), Some("192.0.2.7"));
    assert!(list[0].expires > list[0].last_seen);
    assert!(store
        .sessions_of("grace", &timeouts())
        .await
        .unwrap()
        .is_empty());
}

async fn login_switching_user_leaves_the_old_users_index(b: Backend) {
    let store = b.store();
    let (as_ada, _) = login(&*store, None, "ada", UserLimit::Unlimited).await;
    let (as_bob, _) = login(&*store, Some(&as_ada), "bob", UserLimit::Unlimited).await;
    assert!(store
        .sessions_of("ada", &timeouts())
        .await
        .unwrap()
        .is_empty());
    let bobs = store.sessions_of("bob", &timeouts()).await.unwrap();
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0].id, as_bob);
}

async fn single_login_evicts_every_other_session(b: Backend) {
    let store = b.store();
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
            .unwrap(),
        SaveOutcome::Gone,
        "an evicted session cannot be written back"
    );

    // Logging in again from the surviving session does not count it.
    let (d, outcome) = login(&*store, Some(&c), "ada", single).await;
    assert!(
        matches!(&outcome, LoginOutcome::LoggedIn { evicted, .. } if evicted.is_empty()),
        "{outcome:?}"
    );
    let list = store.sessions_of("ada", &timeouts()).await.unwrap();
    assert_eq!(list.iter().map(|s| &s.id).collect::<Vec<_>>(), vec![&d]);
}

async fn max_sessions_evicts_least_recently_used(b: Backend) {
    let store = b.store();
    let limit = UserLimit::Max {
        max: 2,
        policy: MaxSessionsPolicy::EvictOldest,
    };
    let (first, _) = login(&*store, None, "ada", limit).await;
    b.advance(Duration::from_millis(600)).await;
    let (second, _) = login(&*store, None, "ada", limit).await;
    b.advance(Duration::from_millis(600)).await;
    // Using the first session makes the second the least recently used.
    assert!(
        store
            .load(&first, &timeouts())
            .await
            .unwrap()
            .live()
            .touched
    );
    b.advance(Duration::from_millis(100)).await;
    let (third, outcome) = login(&*store, None, "ada", limit).await;
    assert!(
        matches!(&outcome, LoginOutcome::LoggedIn { evicted, .. } if evicted == &vec![second.clone()]),
        "{outcome:?}"
    );
    assert!(live(&*store, &first).await && live(&*store, &third).await);
    assert!(!live(&*store, &second).await);
}

async fn reject_new_changes_nothing(b: Backend) {
    let store = b.store();
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
    let l = store.load(&anon, &timeouts()).await.unwrap().live();
    assert_eq!(
        l.data.get("keep"),
        Some(&json!(true)),
        "the anonymous session is intact"
    );
    assert_eq!(
        store.sessions_of("ada", &timeouts()).await.unwrap().len(),
        2
    );

    store.revoke(&a).await.unwrap();
    let (_, outcome) = login(&*store, Some(&anon), "ada", limit).await;
    assert!(
        matches!(outcome, LoginOutcome::LoggedIn { .. }),
        "room again"
    );
}

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
        ids.push(t.await.unwrap());
    }
    let mut alive = 0;
    for id in &ids {
        alive += usize::from(live(&**store, id).await);
    }
    alive
}

async fn concurrent_single_logins_leave_exactly_one(b: Backend) {
    let store = b.store();
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
        store.sessions_of("ada", &timeouts()).await.unwrap().len(),
        1
    );
}

async fn concurrent_logins_respect_max_sessions(b: Backend) {
    let store = b.store();
    let limit = UserLimit::Max {
        max: 5,
        policy: MaxSessionsPolicy::EvictOldest,
    };
    assert_eq!(live_after_concurrent_logins(&store, 50, limit).await, 5);
    assert_eq!(
        store.sessions_of("ada", &timeouts()).await.unwrap().len(),
        5
    );
}

async fn rotation_alias_keeps_old_token_working_for_the_grace(b: Backend) {
    let store = b.store();
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
        .unwrap();
    assert!(matches!(out, RotateOutcome::Rotated(_)), "{out:?}");

    let via_old = store.load(&old, &timeouts()).await.unwrap().live();
    assert_eq!(via_old.id, new, "the old id leads to the new session");
    assert_eq!(via_old.meta.user_id.as_deref(), Some("ada"));
    let out = store
        .save(&old, &set("via", json!("old")), &timeouts())
        .await
        .unwrap();
    assert!(matches!(out, SaveOutcome::SavedToSuccessor(_)), "{out:?}");
    let l = store.load(&new, &timeouts()).await.unwrap().live();
    assert_eq!(
        l.data.get("via"),
        Some(&json!("old")),
        "written to the new session"
    );
    assert_eq!(l.data.get("cart"), Some(&json!([1, 2])));

    let list = store.sessions_of("ada", &timeouts()).await.unwrap();
    assert_eq!(list.iter().map(|s| &s.id).collect::<Vec<_>>(), vec![&new]);

    // A use of the new session within the grace moves its idle deadline
    // (2 s after the rotation otherwise, only 300 ms after the check below:
    // too tight on a real clock on a loaded machine) but not the alias's.
    b.advance(Duration::from_millis(1000)).await;
    assert!(
        live(&*store, &new).await,
        "the new session within the grace"
    );
    b.advance(Duration::from_millis(700)).await;
    assert_eq!(
        store.load(&old, &timeouts()).await.unwrap(),
        LoadOutcome::Missing,
        "the alias ends with the grace"
    );
    let out = store.load(&new, &timeouts()).await.unwrap();
    assert!(out.is_live(), "the new session outlives the alias: {out:?}");
}

async fn explicit_rotation_stops_the_old_token_at_once(b: Backend) {
    let store = b.store();
    let (old, _) = login(&*store, None, "ada", UserLimit::Unlimited).await;
    let before = store.load(&old, &timeouts()).await.unwrap().live();
    let new = Token::generate(&Tag::for_user("ada")).id();
    store
        .rotate(&old, &new, Retire::Moved(10 * SEC), &timeouts())
        .await
        .unwrap();
    assert_eq!(
        store.load(&old, &timeouts()).await.unwrap(),
        LoadOutcome::Superseded
    );
    assert_eq!(
        store
            .save(&old, &set("x", json!(1)), &timeouts())
            .await
            .unwrap(),
        SaveOutcome::Superseded
    );
    let after = store.load(&new, &timeouts()).await.unwrap().live();
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
        .unwrap();
    assert_eq!(out, RotateOutcome::Gone);
}

async fn revocation_is_final(b: Backend) {
    let store = b.store();
    let (a, _) = login(&*store, None, "ada", UserLimit::Unlimited).await;
    let (bb, _) = login(&*store, None, "ada", UserLimit::Unlimited).await;
    let (c, _) = login(&*store, None, "ada", UserLimit::Unlimited).await;
    let (bob, _) = login(&*store, None, "bob", UserLimit::Unlimited).await;

    assert!(store.revoke(&a).await.unwrap());
    assert!(
        !store.revoke(&a).await.unwrap(),
        "second revoke finds nothing"
    );
    assert_eq!(
        store
            .save(&a, &set("x", json!(1)), &timeouts())
            .await
            .unwrap(),
        SaveOutcome::Gone
    );
    assert!(!live(&*store, &a).await);

    assert_eq!(store.revoke_user("ada", Some(&c)).await.unwrap(), 1);
    assert!(!live(&*store, &bb).await && live(&*store, &c).await);
    assert_eq!(store.revoke_user("ada", None).await.unwrap(), 1);
    assert!(!live(&*store, &c).await);
    assert!(store
        .sessions_of("ada", &timeouts())
        .await
        .unwrap()
        .is_empty());
    assert!(live(&*store, &bob).await, "other users are untouched");
    assert_eq!(store.revoke_user("nobody", None).await.unwrap(), 0);
}

async fn listing_drops_expired_and_orders_by_use(b: Backend) {
    let store = b.store();
    let (a, _) = login(&*store, None, "ada", UserLimit::Unlimited).await;
    b.advance(Duration::from_millis(600)).await;
    let (bb, _) = login(&*store, None, "ada", UserLimit::Unlimited).await;
    let list = store.sessions_of("ada", &timeouts()).await.unwrap();
    assert_eq!(
        list.iter().map(|s| &s.id).collect::<Vec<_>>(),
        vec![&bb, &a],
        "most recently used first"
    );
    b.advance(Duration::from_millis(1500)).await;
    // `a` is now 2.1 s idle, `bb` 1.5 s.
    let list = store.sessions_of("ada", &timeouts()).await.unwrap();
    assert_eq!(list.iter().map(|s| &s.id).collect::<Vec<_>>(), vec![&bb]);
}

async fn data_round_trips_every_json_shape(b: Backend) {
    let store = b.store();
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
    let l = store.load(&id, &timeouts()).await.unwrap().live();
    assert_eq!(l.data, shapes);
}

// ---------------------------------------------------------------- session locks

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
    match store.lock(id, lease, &timeouts()).await.unwrap() {
        LockOutcome::Acquired { fence, loaded } => (fence, loaded),
        other => panic!("expected to take the lock of {id}, got {other:?}"),
    }
}

async fn lock_outcome(store: &dyn SessionStore, id: &SessionId) -> &'static str {
    match store.lock(id, LONG, &timeouts()).await.unwrap() {
        LockOutcome::Acquired { .. } => "acquired",
        LockOutcome::Held { .. } => "held",
        LockOutcome::Gone => "gone",
    }
}

async fn lock_is_exclusive_and_starts_from_the_latest_data(b: Backend) {
    let store = b.store();
    let id = create(&*store, &data(&[("n", json!(1))])).await;
    store
        .save(&id, &set("n", json!(2)), &timeouts())
        .await
        .unwrap();
    let (f1, loaded) = acquire(&*store, &id, LONG).await;
    assert_eq!(loaded.id, id);
    assert_eq!(loaded.data, data(&[("n", json!(2))]), "the latest data");
    assert_eq!(loaded.meta.user_agent.as_deref(), Some("conformance/1.0"));
    assert_eq!(lock_outcome(&*store, &id).await, "held");

    // Only the holder's fence renews or releases it.
    store.unlock(&id, f1 + 1).await.unwrap();
    store.unlock(&id, f1 + 1000).await.unwrap();
    assert_eq!(
        lock_outcome(&*store, &id).await,
        "held",
        "unlock by a non-holder is a no-op"
    );
    assert!(!store.renew_lock(&id, f1 + 1, LONG).await.unwrap());
    assert!(store.renew_lock(&id, f1, LONG).await.unwrap());

    // The holder writes with its fence, then releases.
    let out = store
        .save(&id, &fenced("n", json!(3), f1), &timeouts())
        .await
        .unwrap();
    assert!(matches!(out, SaveOutcome::Saved(_)), "{out:?}");
    store.unlock(&id, f1).await.unwrap();
    assert!(!store.renew_lock(&id, f1, LONG).await.unwrap(), "released");
    let (f2, loaded) = acquire(&*store, &id, LONG).await;
    assert!(
        f2 > f1,
        "every acquisition gets a greater fence: {f1} then {f2}"
    );
    assert_eq!(loaded.data, data(&[("n", json!(3))]));
    // A second release, and a release of an older fence, change nothing.
    store.unlock(&id, f1).await.unwrap();
    assert_eq!(lock_outcome(&*store, &id).await, "held");
    store.unlock(&id, f2).await.unwrap();
    store.unlock(&id, f2).await.unwrap();
    assert_eq!(lock_outcome(&*store, &id).await, "acquired");

    // Nothing to lock under an unknown id.
    let unknown = anon_id();
    assert_eq!(lock_outcome(&*store, &unknown).await, "gone");
    assert!(!store.renew_lock(&unknown, 1, LONG).await.unwrap());
    store.unlock(&unknown, 1).await.unwrap();
    assert!(
        !live(&*store, &unknown).await,
        "locking never creates a session"
    );
}

async fn lock_lease_runs_out_unless_renewed(b: Backend) {
    let store = b.store();
    let lease = Duration::from_millis(800);
    let id = create(&*store, &data(&[("n", json!(1))])).await;
    let (f1, _) = acquire(&*store, &id, lease).await;
    b.advance(Duration::from_millis(400)).await;
    assert!(store.renew_lock(&id, f1, lease).await.unwrap());
    b.advance(Duration::from_millis(500)).await;
    assert_eq!(
        lock_outcome(&*store, &id).await,
        "held",
        "900 ms after acquisition, 500 ms after the renewal"
    );
    b.advance(Duration::from_millis(800)).await;
    assert!(
        !store.renew_lock(&id, f1, lease).await.unwrap(),
        "a lease that ran out is not renewed"
    );
    let (f2, loaded) = acquire(&*store, &id, lease).await;
    assert!(f2 > f1);
    assert_eq!(loaded.data, data(&[("n", json!(1))]));
    assert!(!store.renew_lock(&id, f1, lease).await.unwrap());
    assert!(store.renew_lock(&id, f2, lease).await.unwrap());
}

async fn stale_fence_is_fenced_and_writes_nothing(b: Backend) {
    let store = b.store();
    let id = create(&*store, &data(&[("n", json!(0)), ("keep", json!(1))])).await;
    // The first holder stalls past its lease; a second one takes over.
    let (old, _) = acquire(&*store, &id, Duration::from_millis(300)).await;
    b.advance(Duration::from_millis(400)).await;
    let (new, loaded) = acquire(&*store, &id, LONG).await;
    assert!(new > old);
    assert_eq!(loaded.data.get("n"), Some(&json!(0)));
    let out = store
        .save(&id, &fenced("n", json!(1), new), &timeouts())
        .await
        .unwrap();
    assert!(matches!(out, SaveOutcome::Saved(_)), "{out:?}");
    let before = store.load(&id, &timeouts()).await.unwrap().live();

    // The stalled holder wakes up and tries to write: nothing is written.
    let stale = Delta {
        clear: true,
        remove: vec!["keep".into()],
        set: vec![("n".into(), json!(99)), ("x".into(), json!("y"))],
        fence: Some(old),
    };
    let out = store.save(&id, &stale, &timeouts()).await.unwrap();
    assert_eq!(out, SaveOutcome::Fenced);
    let after = store.load(&id, &timeouts()).await.unwrap().live();
    assert_eq!(after.data, before.data, "a fenced save writes nothing");
    assert_eq!(after.data, data(&[("n", json!(1)), ("keep", json!(1))]));
    assert_eq!(after.meta.version, before.meta.version);

    // Still stale once the newer holder released the lock.
    store.unlock(&id, new).await.unwrap();
    let out = store.save(&id, &stale, &timeouts()).await.unwrap();
    assert_eq!(out, SaveOutcome::Fenced);

    // A fence never issued for a session is stale too.
    let other = create(&*store, &Data::new()).await;
    let out = store
        .save(&other, &fenced("n", json!(1), new), &timeouts())
        .await
        .unwrap();
    assert_eq!(out, SaveOutcome::Fenced);

    // Advisory: a save without a fence is applied while the lock is held,
    // and does not spoil the holder's fence.
    let (f3, _) = acquire(&*store, &id, LONG).await;
    let out = store
        .save(&id, &set("free", json!(true)), &timeouts())
        .await
        .unwrap();
    assert!(matches!(out, SaveOutcome::Saved(_)), "{out:?}");
    let out = store
        .save(&id, &fenced("n", json!(2), f3), &timeouts())
        .await
        .unwrap();
    assert!(matches!(out, SaveOutcome::Saved(_)), "{out:?}");
    let l = store.load(&id, &timeouts()).await.unwrap().live();
    assert_eq!(l.data.get("free"), Some(&json!(true)));
    assert_eq!(l.data.get("n"), Some(&json!(2)));
}

async fn ending_a_session_removes_its_lock(b: Backend) {
    let store = b.store();
    // revoke
    let id = create(&*store, &data(&[("n", json!(1))])).await;
    let (f, _) = acquire(&*store, &id, LONG).await;
    assert!(store.revoke(&id).await.unwrap());
    assert_eq!(lock_outcome(&*store, &id).await, "gone");
    assert!(!store.renew_lock(&id, f, LONG).await.unwrap());
    store.unlock(&id, f).await.unwrap();
    let out = store
        .save(&id, &fenced("n", json!(2), f), &timeouts())
        .await
        .unwrap();
    assert_eq!(out, SaveOutcome::Gone);

    // revoke_user
    let (u1, _) = login(&*store, None, "locky", UserLimit::Unlimited).await;
    let (fu, _) = acquire(&*store, &u1, LONG).await;
    assert_eq!(store.revoke_user("locky", None).await.unwrap(), 1);
    assert_eq!(lock_outcome(&*store, &u1).await, "gone");
    assert!(!store.renew_lock(&u1, fu, LONG).await.unwrap());

    // login from a locked session retires it with its lock; the new
    // session starts unlocked
    let anon = create(&*store, &Data::new()).await;
    let (fa, _) = acquire(&*store, &anon, LONG).await;
    let (u2, _) = login(&*store, Some(&anon), "locky", UserLimit::Unlimited).await;
    assert_eq!(lock_outcome(&*store, &anon).await, "gone");
    assert!(!store.renew_lock(&anon, fa, LONG).await.unwrap());
    let (fu2, _) = acquire(&*store, &u2, LONG).await;

    // single-login eviction
    let single = UserLimit::Max {
        max: 1,
        policy: MaxSessionsPolicy::EvictOldest,
    };
    let (u3, _) = login(&*store, None, "locky", single).await;
    assert_eq!(lock_outcome(&*store, &u2).await, "gone", "evicted");
    assert!(!store.renew_lock(&u2, fu2, LONG).await.unwrap());
    assert_eq!(lock_outcome(&*store, &u3).await, "acquired");
}

async fn lock_moves_with_rotation(b: Backend) {
    let store = b.store();
    let (id, _) = login(&*store, None, "rory", UserLimit::Unlimited).await;
    let (f, _) = acquire(&*store, &id, LONG).await;

    // Periodic rotation: the lock and its fence move to the new id, and the
    // old id (an alias) leads to them.
    let new = user_id_for("rory");
    let out = store
        .rotate(&id, &new, Retire::Alias(10 * SEC), &timeouts())
        .await
        .unwrap();
    assert!(matches!(out, RotateOutcome::Rotated(_)), "{out:?}");
    assert_eq!(lock_outcome(&*store, &new).await, "held");
    assert_eq!(
        lock_outcome(&*store, &id).await,
        "held",
        "through the alias"
    );
    assert!(store.renew_lock(&id, f, LONG).await.unwrap());
    assert!(store.renew_lock(&new, f, LONG).await.unwrap());
    let out = store
        .save(&id, &fenced("n", json!(1), f), &timeouts())
        .await
        .unwrap();
    assert!(matches!(out, SaveOutcome::SavedToSuccessor(_)), "{out:?}");
    store.unlock(&id, f).await.unwrap();
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
        .unwrap();
    assert!(matches!(out, RotateOutcome::Rotated(_)), "{out:?}");
    assert_eq!(lock_outcome(&*store, &new).await, "gone");
    assert!(!store.renew_lock(&new, f2, LONG).await.unwrap());
    assert!(
        !store.renew_lock(&newer, f2, LONG).await.unwrap(),
        "dropped"
    );
    let out = store
        .save(&new, &fenced("n", json!(2), f2), &timeouts())
        .await
        .unwrap();
    assert_eq!(out, SaveOutcome::Superseded);
    let out = store
        .save(&newer, &fenced("n", json!(2), f2), &timeouts())
        .await
        .unwrap();
    assert!(
        matches!(out, SaveOutcome::Saved(_)),
        "the fence is still the latest: {out:?}"
    );
    let (f3, loaded) = acquire(&*store, &newer, LONG).await;
    assert!(f3 > f2, "the fence counter moved with the session");
    assert_eq!(loaded.data.get("n"), Some(&json!(2)));
    assert_eq!(lock_outcome(&*store, &newer).await, "held");
}

async fn concurrent_lockers_get_one_lock(b: Backend) {
    let store = b.store();
    let id = create(&*store, &Data::new()).await;
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            let id = id.clone();
            tokio::spawn(async move { store.lock(&id, LONG, &timeouts()).await.unwrap() })
        })
        .collect();
    let mut acquired = 0;
    for t in tasks {
        match t.await.unwrap() {
            LockOutcome::Acquired { .. } => acquired += 1,
            LockOutcome::Held { .. } => {}
            LockOutcome::Gone => panic!("the session is live"),
        }
    }
    assert_eq!(acquired, 1, "exactly one of 16 concurrent lockers");
}

backend_tests!(@topologies
    lock_is_exclusive_and_starts_from_the_latest_data,
    lock_lease_runs_out_unless_renewed,
    stale_fence_is_fenced_and_writes_nothing,
    ending_a_session_removes_its_lock,
    lock_moves_with_rotation,
    concurrent_lockers_get_one_lock,
    create_then_load,
    save_applies_delta_and_never_creates,
    concurrent_saves_of_different_keys_merge,
    idle_expiry_and_rate_limited_touch,
    absolute_deadline_is_never_extended,
    login_moves_data_indexes_user_and_retires_old,
    login_switching_user_leaves_the_old_users_index,
    single_login_evicts_every_other_session,
    max_sessions_evicts_least_recently_used,
    reject_new_changes_nothing,
    concurrent_single_logins_leave_exactly_one,
    concurrent_logins_respect_max_sessions,
    rotation_alias_keeps_old_token_working_for_the_grace,
    explicit_rotation_stops_the_old_token_at_once,
    revocation_is_final,
    listing_drops_expired_and_orders_by_use,
    data_round_trips_every_json_shape,
);

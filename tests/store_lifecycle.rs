//! The conformance suite, continued: how a store treats ids that were
//! replaced (rotation aliases, moved markers) and what a login carries.
//! Checked through the trait alone, on every backend (see
//! `support::Backend`); the rest of the suite is in `store_conformance.rs`.
//!
//! The rule behind these (crate docs, "Parallel requests"): a token replaced
//! by periodic rotation keeps reading and writing its successor; one
//! replaced by a login or an explicit rotation is *superseded* (writes
//! dropped, the client's cookie left alone), never *gone*; and a login
//! builds the new session from the old session's latest data plus the login
//! request's own changes, in the same store step that retires the old one.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sessionkit::store::{
    Data, Delta, LoadOutcome, LockOutcome, Login, LoginOutcome, NewSession, Retire, RotateOutcome,
    SaveOutcome, Tag, Timeouts, Token, MAX_ALIAS_HOPS,
};
use sessionkit::{MaxSessionsPolicy, SessionId, SessionStore, UserLimit};
use support::outcomes::LoadOutcomeExt;
use support::records::{client, data, set, user_id_for};
use support::Backend;

const SEC: Duration = Duration::from_secs(1);

/// Long enough for no marker to run out within a test.
const GRACE: Duration = Duration::from_secs(30);

fn timeouts() -> Timeouts {
    Timeouts {
        idle: 4 * SEC,
        absolute: 20 * SEC,
        touch_interval: Duration::from_millis(500),
    }
}

/// A fresh id with the slot tag of `like`, as rotation needs. (The crate
/// offers no `Tag` from a `SessionId`; a token of that tag gives one.)
fn successor_of(like: &SessionId) -> SessionId {
    let tag = Token::parse(&format!("{}.{}", like.tag(), "A".repeat(43)))
        .expect("a token of that tag")
        .tag();
    Token::generate(&tag).id()
}

async fn create(store: &dyn SessionStore, d: &Data) -> SessionId {
    let id = Token::generate(&Tag::random()).id();
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

/// Logs `user` in from `old` with `delta`; answers the new id, the new
/// session's data and the evicted ids.
async fn login(
    store: &dyn SessionStore,
    old: Option<&SessionId>,
    user: &str,
    delta: &Delta,
    limit: UserLimit,
) -> (SessionId, LoginOutcome) {
    let new = user_id_for(user);
    let c = client();
    let outcome = store
        .login(
            Login {
                old,
                new: &new,
                user_id: user,
                delta,
                client: &c,
                limit,
                moved_grace: GRACE,
            },
            &timeouts(),
        )
        .await
        .unwrap();
    (new, outcome)
}

/// The new session's data, asserting the login went through.
fn logged_in_data(outcome: LoginOutcome) -> Data {
    match outcome {
        LoginOutcome::LoggedIn { data, .. } => data,
        other => panic!("expected a login, got {other:?}"),
    }
}

async fn load(store: &dyn SessionStore, id: &SessionId) -> LoadOutcome {
    store.load(id, &timeouts()).await.unwrap()
}

async fn save(store: &dyn SessionStore, id: &SessionId, delta: &Delta) -> SaveOutcome {
    store.save(id, delta, &timeouts()).await.unwrap()
}

async fn rotate(
    store: &dyn SessionStore,
    old: &SessionId,
    new: &SessionId,
    retire: Retire,
) -> RotateOutcome {
    store.rotate(old, new, retire, &timeouts()).await.unwrap()
}

/// Rotates `id` `n` times with an alias; answers every id, oldest first.
async fn alias_chain(store: &dyn SessionStore, id: &SessionId, n: usize) -> Vec<SessionId> {
    let mut chain = vec![id.clone()];
    for _ in 0..n {
        let old = chain.last().unwrap().clone();
        let new = successor_of(&old);
        let out = rotate(store, &old, &new, Retire::Alias(GRACE)).await;
        assert!(matches!(out, RotateOutcome::Rotated(_)), "{out:?}");
        chain.push(new);
    }
    chain
}

async fn lock_outcome(store: &dyn SessionStore, id: &SessionId) -> &'static str {
    match store.lock(id, GRACE, &timeouts()).await.unwrap() {
        LockOutcome::Acquired { .. } => "acquired",
        LockOutcome::Held { .. } => "held",
        LockOutcome::Gone => "gone",
    }
}

/// Asserts that nothing reads or writes through `id` and that the outcome
/// says "replaced", not "ended": the client's cookie must be left alone.
async fn assert_superseded(store: &dyn SessionStore, id: &SessionId, what: &str) {
    assert_eq!(
        load(store, id).await,
        LoadOutcome::Superseded,
        "load {what}"
    );
    assert_eq!(
        save(store, id, &set("late", json!(true))).await,
        SaveOutcome::Superseded,
        "save {what}"
    );
    let out = rotate(store, id, &successor_of(id), Retire::Alias(GRACE)).await;
    assert_eq!(out, RotateOutcome::Superseded, "rotate {what}");
    assert_eq!(lock_outcome(store, id).await, "gone", "lock {what}");
    assert_eq!(
        load(store, id).await,
        LoadOutcome::Superseded,
        "{what}: none of it wrote anything"
    );
}

// ---------------------------------------------------------------- moved markers

async fn a_moved_id_is_superseded_not_gone(b: Backend) {
    let store = b.store();
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
    assert!(store.revoke(&rotated).await.unwrap());
    assert_eq!(load(&*store, &rotated).await, LoadOutcome::Missing);
    assert_eq!(
        save(&*store, &rotated, &set("x", json!(1))).await,
        SaveOutcome::Gone
    );
}

// ---------------------------------------------------------------- alias chains

async fn an_alias_chain_leads_to_the_latest_session(b: Backend) {
    let store = b.store();
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

async fn an_alias_chain_is_followed_up_to_the_hop_limit(b: Backend) {
    let store = b.store();
    let first = create(&*store, &data(&[("a", json!(1))])).await;
    let chain = alias_chain(&*store, &first, MAX_ALIAS_HOPS).await;
    assert_eq!(
        &load(&*store, &first).await.live().id,
        chain.last().unwrap(),
        "{MAX_ALIAS_HOPS} hops are followed"
    );
    let chain = alias_chain(&*store, chain.last().unwrap(), 1).await;
    assert_eq!(
        load(&*store, &first).await,
        LoadOutcome::Superseded,
        "past the limit the id is replaced, not ended"
    );
    assert_eq!(
        save(&*store, &first, &set("x", json!(1))).await,
        SaveOutcome::Superseded
    );
    let latest = load(&*store, chain.last().unwrap()).await.live();
    assert_eq!(latest.data, data(&[("a", json!(1))]), "nothing written");
}

async fn an_alias_that_leads_to_a_moved_marker_is_superseded(b: Backend) {
    let store = b.store();
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

// ---------------------------------------------------------------- what a login carries

async fn login_carries_what_other_requests_saved_meanwhile(b: Backend) {
    let store = b.store();
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

async fn login_from_a_session_that_is_not_live_carries_only_its_delta(b: Backend) {
    let store = b.store();
    let mine = set("mine", json!(1));
    let only_mine = data(&[("mine", json!(1))]);

    // Revoked after the login request loaded it.
    let revoked = create(&*store, &data(&[("secret", json!("x"))])).await;
    load(&*store, &revoked).await.live();
    assert!(store.revoke(&revoked).await.unwrap());
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
    b.advance(timeouts().idle + Duration::from_millis(500))
        .await;
    let (_, outcome) = login(&*store, Some(&expiring), "ada", &mine, UserLimit::Unlimited).await;
    assert_eq!(logged_in_data(outcome), only_mine, "expired");
}

async fn login_through_an_alias_retires_the_successor(b: Backend) {
    let store = b.store();
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
            .unwrap()
            .is_empty(),
        "the successor left its user's index"
    );
    let bobs = store.sessions_of("bob", &timeouts()).await.unwrap();
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

// ---------------------------------------------------------------- races

/// Saves of distinct keys racing a login from the same session: each save
/// either lands before the login (and is carried into the new session) or
/// after it (and is superseded). None is answered "saved" and lost.
async fn saves_racing_a_login_are_carried_or_superseded(b: Backend) {
    let store = b.store();
    let old = create(&*store, &data(&[("seed", json!(0))])).await;
    let saves: Vec<_> = (0..16)
        .map(|i| {
            let store = Arc::clone(&store);
            let old = old.clone();
            tokio::spawn(async move {
                let out = store
                    .save(&old, &set(&format!("k{i}"), json!(i)), &timeouts())
                    .await
                    .unwrap();
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
        let (i, out) = t.await.unwrap();
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
async fn saves_racing_a_rotation_are_all_kept(b: Backend) {
    let store = b.store();
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
                    .unwrap()
            })
        })
        .collect();
    let out = rotate(&*store, &old, &new, Retire::Alias(GRACE)).await;
    assert!(matches!(out, RotateOutcome::Rotated(_)), "{out:?}");
    for t in saves {
        let out = t.await.unwrap();
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

backend_tests!(@topologies
    a_moved_id_is_superseded_not_gone,
    an_alias_chain_leads_to_the_latest_session,
    an_alias_chain_is_followed_up_to_the_hop_limit,
    an_alias_that_leads_to_a_moved_marker_is_superseded,
    login_carries_what_other_requests_saved_meanwhile,
    login_from_a_session_that_is_not_live_carries_only_its_delta,
    login_through_an_alias_retires_the_successor,
    saves_racing_a_login_are_carried_or_superseded,
    saves_racing_a_rotation_are_all_kept,
);

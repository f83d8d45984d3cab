//! `SessionStore::logout`: ending the session a client's token names,
//! without a load first (what `LazySession::logout` sends), on every
//! backend: it follows rotation aliases as `load` does, and leaves a token
//! that a login or explicit rotation replaced alone.

mod support;

use std::time::Duration;

use serde_json::json;
use sessionkit::store::LoadOutcome;
use sessionkit::store::{
    Login, LoginOutcome, LogoutOutcome, NewSession, Retire, RotateOutcome, Tag, Timeouts, Token,
};
use sessionkit::{SessionId, SessionStore, UserLimit};
use support::outcomes::LoadOutcomeExt;
use support::records::{anon_id, client, data, set, user_id_for};
use support::Backend;

fn timeouts() -> Timeouts {
    Timeouts {
        idle: Duration::from_secs(20),
        absolute: Duration::from_secs(60),
        touch_interval: Duration::from_secs(5),
    }
}

async fn anonymous(store: &dyn SessionStore) -> SessionId {
    let id = anon_id();
    let d = data(&[("seed", json!(1))]);
    let c = client();
    store
        .create(
            &id,
            NewSession {
                data: &d,
                client: &c,
            },
            &timeouts(),
        )
        .await
        .unwrap();
    id
}

async fn login(store: &dyn SessionStore, old: Option<&SessionId>, user: &str) -> SessionId {
    let new = user_id_for(user);
    let c = client();
    let d = set("cart", json!([1]));
    let out = store
        .login(
            Login {
                old,
                new: &new,
                user_id: user,
                delta: &d,
                client: &c,
                limit: UserLimit::Unlimited,
                moved_grace: Duration::from_secs(10),
            },
            &timeouts(),
        )
        .await
        .unwrap();
    assert!(matches!(out, LoginOutcome::LoggedIn { .. }), "{out:?}");
    new
}

/// Rotates `old` (a session of ada's) to a new id, retired as `retire`.
async fn rotate(store: &dyn SessionStore, old: &SessionId, retire: Retire) -> SessionId {
    let new = Token::generate(&Tag::for_user("ada")).id();
    let out = store.rotate(old, &new, retire, &timeouts()).await.unwrap();
    assert!(matches!(out, RotateOutcome::Rotated(_)), "{out:?}");
    new
}

async fn logout(store: &dyn SessionStore, id: &SessionId) -> LogoutOutcome {
    store.logout(id, &timeouts()).await.unwrap()
}

async fn logout_ends_a_live_session_once(b: Backend) {
    let store = b.store();
    let id = login(&*store, None, "ada").await;
    let other = login(&*store, None, "ada").await;
    assert_eq!(logout(&*store, &id).await, LogoutOutcome::Ended);
    assert!(!store.load(&id, &timeouts()).await.unwrap().is_live());
    assert_eq!(
        logout(&*store, &id).await,
        LogoutOutcome::Missing,
        "a second logout finds nothing"
    );
    let left: Vec<_> = store
        .sessions_of("ada", &timeouts())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(left, vec![other], "the user's other session stays");
    assert_eq!(logout(&*store, &anon_id()).await, LogoutOutcome::Missing);
}

async fn logout_follows_a_rotation_alias(b: Backend) {
    let store = b.store();
    let old = login(&*store, None, "ada").await;
    let new = rotate(&*store, &old, Retire::Alias(Duration::from_secs(10))).await;
    assert_eq!(
        logout(&*store, &old).await,
        LogoutOutcome::Ended,
        "the old token of a periodic rotation ends its successor"
    );
    assert!(!store.load(&new, &timeouts()).await.unwrap().is_live());
    assert!(!store.load(&old, &timeouts()).await.unwrap().is_live());
    assert!(store
        .sessions_of("ada", &timeouts())
        .await
        .unwrap()
        .is_empty());
}

async fn logout_leaves_a_token_replaced_by_login_alone(b: Backend) {
    let store = b.store();
    let anon = anonymous(&*store).await;
    let new = login(&*store, Some(&anon), "ada").await;
    assert_eq!(logout(&*store, &anon).await, LogoutOutcome::Superseded);
    assert!(
        store.load(&anon, &timeouts()).await.unwrap() == LoadOutcome::Superseded,
        "the moved marker stays for requests still in flight"
    );
    let l = store.load(&new, &timeouts()).await.unwrap().live();
    assert_eq!(
        l.data.get("seed"),
        Some(&json!(1)),
        "the login's session lives on"
    );
}

async fn logout_leaves_a_token_replaced_by_explicit_rotation_alone(b: Backend) {
    let store = b.store();
    let old = login(&*store, None, "ada").await;
    let new = rotate(&*store, &old, Retire::Moved(Duration::from_secs(10))).await;
    assert_eq!(logout(&*store, &old).await, LogoutOutcome::Superseded);
    assert!(store.load(&new, &timeouts()).await.unwrap().is_live());
}

backend_tests!(@topologies
    logout_ends_a_live_session_once,
    logout_follows_a_rotation_alias,
    logout_leaves_a_token_replaced_by_login_alone,
    logout_leaves_a_token_replaced_by_explicit_rotation_alone,
);

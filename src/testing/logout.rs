//! `SessionStore::logout`: ending the session a client's token names,
//! without a load first (what `LazySession::logout` sends). It follows
//! rotation aliases as `load` does, and leaves a token that a login or
//! explicit rotation replaced alone (formerly `tests/store_logout.rs`).

use std::time::Duration;

use serde_json::json;

use super::records::{anon_id, client, data, set, user_id_for, LoadOutcomeExt, Must};
use super::StoreHarness;
use crate::store::{
    LoadOutcome, Login, LoginOutcome, LogoutOutcome, NewSession, Retire, RotateOutcome, Tag,
    Timeouts, Token,
};
use crate::{SessionId, SessionStore, UserLimit};

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
        .must("create");
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
        .must("login");
    assert!(matches!(out, LoginOutcome::LoggedIn { .. }), "{out:?}");
    new
}

/// Rotates `old` (a session of ada's) to a new id, retired as `retire`.
async fn rotate(store: &dyn SessionStore, old: &SessionId, retire: Retire) -> SessionId {
    let new = Token::generate(&Tag::for_user("ada")).id();
    let out = store
        .rotate(old, &new, retire, &timeouts())
        .await
        .must("rotate");
    assert!(matches!(out, RotateOutcome::Rotated(_)), "{out:?}");
    new
}

async fn logout(store: &dyn SessionStore, id: &SessionId) -> LogoutOutcome {
    store.logout(id, &timeouts()).await.must("logout")
}

pub(in crate::testing) async fn logout_ends_a_live_session_once(h: &dyn StoreHarness) {
    let store = h.store();
    let id = login(&*store, None, "ada").await;
    let other = login(&*store, None, "ada").await;
    assert_eq!(logout(&*store, &id).await, LogoutOutcome::Ended);
    assert!(!store.load(&id, &timeouts()).await.must("load").is_live());
    assert_eq!(
        logout(&*store, &id).await,
        LogoutOutcome::Missing,
        "a second logout finds nothing"
    );
    let left: Vec<_> = store
        .sessions_of("ada", &timeouts())
        .await
        .must("sessions_of")
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(left, vec![other], "the user's other session stays");
    assert_eq!(logout(&*store, &anon_id()).await, LogoutOutcome::Missing);
}

pub(in crate::testing) async fn logout_follows_a_rotation_alias(h: &dyn StoreHarness) {
    let store = h.store();
    let old = login(&*store, None, "ada").await;
    let new = rotate(&*store, &old, Retire::Alias(Duration::from_secs(10))).await;
    assert_eq!(
        logout(&*store, &old).await,
        LogoutOutcome::Ended,
        "the old token of a periodic rotation ends its successor"
    );
    assert!(!store.load(&new, &timeouts()).await.must("load").is_live());
    assert!(!store.load(&old, &timeouts()).await.must("load").is_live());
    assert!(store
        .sessions_of("ada", &timeouts())
        .await
        .must("sessions_of")
        .is_empty());
}

pub(in crate::testing) async fn logout_leaves_a_token_replaced_by_login_alone(
    h: &dyn StoreHarness,
) {
    let store = h.store();
    let anon = anonymous(&*store).await;
    let new = login(&*store, Some(&anon), "ada").await;
    assert_eq!(logout(&*store, &anon).await, LogoutOutcome::Superseded);
    assert!(
        store.load(&anon, &timeouts()).await.must("load") == LoadOutcome::Superseded,
        "the moved marker stays for requests still in flight"
    );
    let l = store.load(&new, &timeouts()).await.must("load").live();
    assert_eq!(
        l.data.get("seed"),
        Some(&json!(1)),
        "the login's session lives on"
    );
}

pub(in crate::testing) async fn logout_leaves_a_token_replaced_by_explicit_rotation_alone(
    h: &dyn StoreHarness,
) {
    let store = h.store();
    let old = login(&*store, None, "ada").await;
    let new = rotate(&*store, &old, Retire::Moved(Duration::from_secs(10))).await;
    assert_eq!(logout(&*store, &old).await, LogoutOutcome::Superseded);
    assert!(store.load(&new, &timeouts()).await.must("load").is_live());
}

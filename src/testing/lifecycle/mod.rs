//! The suite, continued: how a store treats ids that were replaced
//! (rotation aliases, moved markers) and what a login carries (formerly
//! `tests/store_lifecycle.rs`).
//!
//! The rule behind these (crate docs, "Parallel requests"): a token
//! replaced by periodic rotation keeps reading and writing its successor;
//! one replaced by a login or an explicit rotation is *superseded* (writes
//! dropped, the client's cookie left alone), never *gone*; and a login
//! builds the new session from the old session's latest data plus the
//! login request's own changes, in the same store step that retires the
//! old one.

use std::time::Duration;

use serde_json::json;

use super::records::{create_with, login_with, set, LoginCall, Must};
use crate::store::{
    Data, Delta, LoadOutcome, LockOutcome, LoginOutcome, Retire, RotateOutcome, SaveOutcome,
    Timeouts, Token,
};
use crate::{SessionId, SessionStore, UserLimit};

mod logins;
mod markers;
mod races;

pub(super) use self::logins::*;
pub(super) use self::markers::*;
pub(super) use self::races::*;

pub(super) const SEC: Duration = Duration::from_secs(1);

/// Long enough for no marker to run out within a test.
pub(super) const GRACE: Duration = Duration::from_secs(30);

pub(super) fn timeouts() -> Timeouts {
    Timeouts {
        idle: 4 * SEC,
        absolute: 20 * SEC,
        touch_interval: Duration::from_millis(500),
    }
}

/// A fresh id with the slot tag of `like`, as rotation needs. (The crate
/// offers no `Tag` from a `SessionId`; a token of that tag gives one.)
pub(super) fn successor_of(like: &SessionId) -> SessionId {
    let tag = Token::parse(&format!("{}.{}", like.tag(), "A".repeat(43)))
        .expect("a token of that tag")
        .tag();
    Token::generate(&tag).id()
}

pub(super) async fn create(store: &dyn SessionStore, d: &Data) -> SessionId {
    create_with(store, d, &timeouts()).await
}

/// Logs `user` in from `old` with `delta`; answers the new id and the
/// outcome.
pub(super) async fn login(
    store: &dyn SessionStore,
    old: Option<&SessionId>,
    user: &str,
    delta: &Delta,
    limit: UserLimit,
) -> (SessionId, LoginOutcome) {
    let call = LoginCall {
        old,
        user,
        delta,
        limit,
        moved_grace: GRACE,
    };
    login_with(store, call, &timeouts()).await
}

/// The new session's data, asserting the login went through.
pub(super) fn logged_in_data(outcome: LoginOutcome) -> Data {
    match outcome {
        LoginOutcome::LoggedIn { data, .. } => data,
        other => panic!("expected a login, got {other:?}"),
    }
}

pub(super) async fn load(store: &dyn SessionStore, id: &SessionId) -> LoadOutcome {
    store.load(id, &timeouts()).await.must("load")
}

pub(super) async fn save(store: &dyn SessionStore, id: &SessionId, delta: &Delta) -> SaveOutcome {
    store.save(id, delta, &timeouts()).await.must("save")
}

pub(super) async fn rotate(
    store: &dyn SessionStore,
    old: &SessionId,
    new: &SessionId,
    retire: Retire,
) -> RotateOutcome {
    store
        .rotate(old, new, retire, &timeouts())
        .await
        .must("rotate")
}

/// Rotates `id` `n` times with an alias; answers every id, oldest first.
pub(super) async fn alias_chain(
    store: &dyn SessionStore,
    id: &SessionId,
    n: usize,
) -> Vec<SessionId> {
    let mut chain = vec![id.clone()];
    for _ in 0..n {
        let old = chain.last().expect("the chain is never empty").clone();
        let new = successor_of(&old);
        let out = rotate(store, &old, &new, Retire::Alias(GRACE)).await;
        assert!(matches!(out, RotateOutcome::Rotated(_)), "{out:?}");
        chain.push(new);
    }
    chain
}

pub(super) async fn lock_outcome(store: &dyn SessionStore, id: &SessionId) -> &'static str {
    match store.lock(id, GRACE, &timeouts()).await.must("lock") {
        LockOutcome::Acquired { .. } => "acquired",
        LockOutcome::Held { .. } => "held",
        LockOutcome::Gone => "gone",
    }
}

/// Asserts that nothing reads or writes through `id` and that the outcome
/// says "replaced", not "ended": the client's cookie must be left alone.
pub(super) async fn assert_superseded(store: &dyn SessionStore, id: &SessionId, what: &str) {
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

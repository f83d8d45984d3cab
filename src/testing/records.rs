//! Records the scenarios build their store calls from, and short forms for
//! the outcomes they expect.

use serde_json::Value;

use crate::store::{ClientInfo, Data, Delta, LoadOutcome, Loaded, Tag, Token};
use crate::SessionId;

/// The client every scenario records.
pub(super) fn client() -> ClientInfo {
    ClientInfo {
        user_agent: Some("conformance/1.0".into()),
        ip: Some(std::net::IpAddr::from([192, 0, 2, 7])),
    }
}

/// Session data from `(key, value)` pairs.
pub(super) fn data(pairs: &[(&str, Value)]) -> Data {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// A delta that sets one key.
pub(super) fn set(k: &str, v: Value) -> Delta {
    Delta {
        set: vec![(k.to_owned(), v)],
        ..Delta::default()
    }
}

/// A fresh anonymous session id.
pub(super) fn anon_id() -> SessionId {
    Token::generate(&Tag::random()).id()
}

/// A fresh session id in `user`'s slot tag.
pub(super) fn user_id_for(user: &str) -> SessionId {
    Token::generate(&Tag::for_user(user)).id()
}

/// Assertions on a [`LoadOutcome`].
pub(super) trait LoadOutcomeExt {
    /// The live session; panics with the outcome otherwise.
    fn live(self) -> Loaded;
    /// Whether the outcome is a live session.
    fn is_live(&self) -> bool;
}

impl LoadOutcomeExt for LoadOutcome {
    #[track_caller]
    fn live(self) -> Loaded {
        match self {
            LoadOutcome::Live(loaded) => loaded,
            other => panic!("expected a live session, got {other:?}"),
        }
    }

    fn is_live(&self) -> bool {
        matches!(self, LoadOutcome::Live(_))
    }
}

/// Unwraps a store call's result, naming the call that failed: a store
/// error is a failed scenario too.
pub(super) trait Must<T> {
    /// The value; panics with `what` and the store's error otherwise.
    fn must(self, what: &str) -> T;
}

impl<T> Must<T> for crate::Result<T> {
    #[track_caller]
    fn must(self, what: &str) -> T {
        match self {
            Ok(v) => v,
            Err(e) => panic!("the store's `{what}` call failed: {e}"),
        }
    }
}

/// Creates an anonymous session holding `d`, under `timeouts`.
pub(super) async fn create_with(
    store: &dyn crate::SessionStore,
    d: &Data,
    timeouts: &crate::store::Timeouts,
) -> SessionId {
    let id = anon_id();
    let c = client();
    let new = crate::store::NewSession {
        data: d,
        client: &c,
    };
    store.create(&id, new, timeouts).await.must("create");
    id
}

/// The parts of a login the suites vary.
pub(super) struct LoginCall<'a> {
    pub(super) old: Option<&'a SessionId>,
    pub(super) user: &'a str,
    pub(super) delta: &'a Delta,
    pub(super) limit: crate::UserLimit,
    pub(super) moved_grace: std::time::Duration,
}

/// Logs `call.user` in to a fresh id in the user's slot tag; answers the
/// new id and the outcome.
pub(super) async fn login_with(
    store: &dyn crate::SessionStore,
    call: LoginCall<'_>,
    timeouts: &crate::store::Timeouts,
) -> (SessionId, crate::store::LoginOutcome) {
    let new = user_id_for(call.user);
    let c = client();
    let login = crate::store::Login {
        old: call.old,
        new: &new,
        user_id: call.user,
        delta: call.delta,
        client: &c,
        limit: call.limit,
        moved_grace: call.moved_grace,
    };
    let outcome = store.login(login, timeouts).await.must("login");
    (new, outcome)
}

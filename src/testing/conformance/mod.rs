//! The core of the suite: the rules every [`SessionStore`] keeps for
//! sessions, users, rotation, revocation and locks (formerly the crate's
//! `tests/store_conformance.rs`).
//!
//! Time moves only through [`StoreHarness::advance`], which sleeps for
//! stores on a real clock, so the durations here are seconds, not minutes.

use std::time::Duration;

use serde_json::json;

use super::records::{create_with, login_with, set, LoadOutcomeExt, LoginCall, Must};
use crate::store::{Data, LoginOutcome, Timeouts};
use crate::{SessionId, SessionStore, UserLimit};

mod locks;
mod rotation;
mod sessions;
mod users;

pub(super) use self::locks::*;
pub(super) use self::rotation::*;
pub(super) use self::sessions::*;
pub(super) use self::users::*;

pub(super) const SEC: Duration = Duration::from_secs(1);

pub(super) fn timeouts() -> Timeouts {
    Timeouts {
        idle: 2 * SEC,
        absolute: 5 * SEC,
        touch_interval: Duration::from_millis(500),
    }
}

pub(super) async fn create(store: &dyn SessionStore, d: &Data) -> SessionId {
    create_with(store, d, &timeouts()).await
}

pub(super) async fn login(
    store: &dyn SessionStore,
    old: Option<&SessionId>,
    user: &str,
    limit: UserLimit,
) -> (SessionId, LoginOutcome) {
    let delta = set("cart", json!([1, 2]));
    let call = LoginCall {
        old,
        user,
        delta: &delta,
        limit,
        moved_grace: 10 * SEC,
    };
    login_with(store, call, &timeouts()).await
}

pub(super) async fn live(store: &dyn SessionStore, id: &SessionId) -> bool {
    store.load(id, &timeouts()).await.must("load").is_live()
}

//! The [`SessionManager`] type and the context it shares: store, config,
//! timed store calls. Its methods live in `manager.rs` (what apps call) and
//! the session modules (what requests do); this file is at the bottom so
//! that both can use it without importing each other.

use std::future::Future;
use std::sync::Arc;

use crate::config::Timeouts;
use crate::events::{EventBus, NewEvent};
use crate::store::persist::PersistQueue;
use crate::store::SessionStore;
use crate::{Error, Result, SessionConfig};

/// Loads and commits sessions and runs per-user operations. Built once from
/// a store and a [`SessionConfig`]; `Clone` (cheap), `Send + Sync`, and free
/// of any web framework, so an admin page or a background job can use it too.
///
/// What apps call, in order of use:
/// - [`new`](Self::new): build it from a store and a config, then hand it to
///   `SessionLayer::new` (axum) or `SessionMiddleware::new` (actix-web);
/// - [`sessions_of`](Self::sessions_of): a user's live sessions (the "your
///   devices" page);
/// - [`revoke_of_user`](Self::revoke_of_user), [`revoke`](Self::revoke):
///   end one session;
/// - [`revoke_user`](Self::revoke_user),
///   [`revoke_user_except`](Self::revoke_user_except): log a user out
///   everywhere, or on other devices.
///
/// Login, logout and rotation are methods of the request's
/// [`Session`](crate::Session). [`load_request`](Self::load_request) and
/// [`commit`](Self::commit) are for framework adapters.
///
/// ```
/// use sessionkit::{MemoryStore, SessionConfig, SessionManager};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> sessionkit::Result<()> {
/// let manager = SessionManager::new(MemoryStore::new(), SessionConfig::default());
/// // "Log out everywhere" for a user, from any code:
/// let ended = manager.revoke_user("alice").await?;
/// assert_eq!(ended, 0);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct SessionManager {
    pub(crate) inner: Arc<Shared>,
}

/// What every clone of a manager, and every session it loads, shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn SessionStore>,
    pub(crate) config: SessionConfig,
    pub(crate) timeouts: Timeouts,
    /// Where lifecycle events go; `None`: events are off.
    pub(crate) events: Option<Arc<dyn EventBus>>,
    /// Where persistence jobs go; `None`: the persistence hook is off.
    pub(crate) persist: Option<Persistence>,
}

/// The persistence hook's side of a manager (`persist/sources.rs`).
#[derive(Debug, Clone)]
pub(crate) struct Persistence {
    pub(crate) queue: Arc<dyn PersistQueue>,
    /// How long after a change a live session's data is persisted.
    pub(crate) interval: std::time::Duration,
}

impl SessionManager {
    /// A manager over a shared store.
    pub fn from_arc(store: Arc<dyn SessionStore>, config: SessionConfig) -> Self {
        let timeouts = config.timeouts();
        SessionManager {
            inner: Arc::new(Shared {
                store,
                config,
                timeouts,
                events: None,
                persist: None,
            }),
        }
    }

    /// This manager with `change` applied to a copy of what it shares.
    pub(crate) fn rebuilt(self, change: impl FnOnce(&mut Shared)) -> Self {
        let shared = &self.inner;
        let mut copy = Shared {
            store: shared.store.clone(),
            config: shared.config.clone(),
            timeouts: shared.timeouts,
            events: shared.events.clone(),
            persist: shared.persist.clone(),
        };
        change(&mut copy);
        SessionManager {
            inner: Arc::new(copy),
        }
    }

    /// This manager with lifecycle events on, published to `bus` (the
    /// store's: [`MemoryStore::events`](crate::MemoryStore::events),
    /// `RedisStore::events`) and read with [`events`](Self::events). See
    /// the [`events`](crate::events) module for what is sent and when.
    #[must_use]
    pub fn with_events(self, bus: impl EventBus) -> Self {
        self.rebuilt(|s| s.events = Some(Arc::new(bus)))
    }

    /// The event bus, if events are on.
    pub(crate) fn bus(&self) -> Option<&Arc<dyn EventBus>> {
        self.inner.events.as_ref()
    }

    /// Publishes `event` if events are on. After the operation it
    /// describes succeeded: a failure to publish is logged, not returned,
    /// since the operation stands.
    pub(crate) async fn emit(&self, event: impl FnOnce() -> NewEvent) {
        let Some(bus) = self.bus() else { return };
        if let Err(e) = self.call(bus.publish(event())).await {
            tracing::warn!(error = %e, "a session event could not be published and is lost");
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &SessionConfig {
        &self.inner.config
    }

    /// The store in use.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.inner.store
    }

    /// The store's view of the configured timeouts.
    pub(crate) fn timeouts(&self) -> &Timeouts {
        &self.inner.timeouts
    }

    /// Runs one store call under the configured timeout.
    pub(crate) async fn call<T>(&self, fut: impl Future<Output = Result<T>>) -> Result<T> {
        let limit = self.inner.config.store_timeout;
        tokio::time::timeout(limit, fut)
            .await
            .map_err(|_| Error::StoreTimeout(limit))?
    }
}

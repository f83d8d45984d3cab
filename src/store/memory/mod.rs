//! [`MemoryStore`]: sessions in this process, with every rule a production
//! store keeps.

mod ops;
mod state;
mod wake;

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use self::state::State;
use crate::clock::{Clock, SystemClock};
use crate::SessionId;

/// An in-process session store: the default for tests, demos and
/// single-process apps. Sessions do not survive a restart and are not shared
/// between processes; use the Redis store for that.
///
/// Expiry is enforced on every read, and a background task (started when the
/// store is built inside a Tokio runtime) purges expired sessions, so memory
/// does not grow with abandoned sessions. Clones share one store.
///
/// ```
/// use sessionkit::{MemoryStore, SessionConfig, SessionManager};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let manager = SessionManager::new(MemoryStore::new(), SessionConfig::default());
/// # let _ = manager; }
/// ```
#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
    /// Lock waiters to wake on `unlock` (see `wake.rs`).
    waiters: crate::store::waiters::Waiters<SessionId>,
}

/// Builds a [`MemoryStore`] with a custom clock or purge interval.
#[derive(Debug)]
pub struct MemoryStoreBuilder {
    clock: Arc<dyn Clock>,
    purge_interval: Option<Duration>,
}

impl MemoryStoreBuilder {
    /// The clock expiry is judged by. Default [`SystemClock`].
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How often the background task purges expired sessions; `None` turns
    /// it off (call [`MemoryStore::purge_expired`] yourself). Default 60 s.
    pub fn purge_interval(mut self, every: Option<Duration>) -> Self {
        self.purge_interval = every;
        self
    }

    /// Builds the store, starting the purge task if a Tokio runtime is
    /// running. The task holds only a weak reference and ends with the store.
    pub fn build(self) -> MemoryStore {
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            clock: self.clock,
            waiters: Default::default(),
        });
        if let (Some(every), Ok(rt)) = (self.purge_interval, tokio::runtime::Handle::try_current())
        {
            rt.spawn(purge_task(Arc::downgrade(&inner), every));
        }
        MemoryStore { inner }
    }
}

async fn purge_task(store: Weak<Inner>, every: Duration) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(1)));
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(inner) = store.upgrade() else { return };
        let purged = inner.purge();
        if purged > 0 {
            tracing::debug!(purged, "purged expired sessions");
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store on the system clock with a 60 s purge interval.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder for a custom clock or purge interval.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            clock: Arc::new(SystemClock),
            purge_interval: Some(Duration::from_secs(60)),
        }
    }

    /// Removes every expired session and marker now. Returns how many
    /// entries were removed.
    pub fn purge_expired(&self) -> usize {
        self.inner.purge()
    }

    /// How many entries (sessions and short-lived markers) the store holds,
    /// expired ones included until purged.
    pub fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }

    /// Whether the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated
        // in a way later calls misread (every update is a plain insert or
        // remove), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn purge(&self) -> usize {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        let dead: Vec<SessionId> = st
            .entries
            .iter()
            .filter(|(_, e)| !e.alive(now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &dead {
            st.remove(id);
        }
        dead.len()
    }
}

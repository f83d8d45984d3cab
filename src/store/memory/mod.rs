//! [`MemoryStore`]: sessions in this process, with every rule a production
//! store keeps.
//!
//! The sessions live in a sharded map (`shards`): a power of two of shards,
//! each a map behind its own lock, chosen by the session id's slot tag, so
//! requests for different sessions rarely wait for each other and no rehash
//! or purge holds up the whole store. Each shard keeps an expiry queue; the
//! purge pops the due entries shard by shard in bounded batches (`purge`).

mod events;
mod keyed;
mod ops;
mod persist;
mod purge;
mod shards;
mod state;
#[cfg(test)]
mod tests;
mod wake;

use std::sync::Arc;
use std::time::Duration;

pub use self::events::MemoryEvents;
pub use self::persist::MemoryQueue;
use self::shards::Shards;
use crate::clock::{Clock, SystemClock};
use crate::SessionId;

/// An in-process session store: the default for tests, demos and
/// single-process apps. Sessions do not survive a restart and are not shared
/// between processes; use the Redis store for that.
///
/// Expiry is enforced on every read, and a background task (started when the
/// store is built inside a Tokio runtime) purges expired sessions, so memory
/// does not grow with abandoned sessions. The purge works in short batches,
/// one shard at a time, so it never stalls requests. Clones share one
/// store.
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
    shards: Shards,
    clock: Arc<dyn Clock>,
    /// Lock waiters to wake on `unlock` (see `wake.rs`).
    waiters: crate::store::waiters::Waiters<SessionId>,
    /// Keyed sessions (`keyed.rs`), apart from cookie sessions.
    keyed: keyed::Keyed,
    /// The lifecycle events of managers on this store (`events.rs`).
    events: MemoryEvents,
    /// The persistence hook's jobs (`persist.rs`).
    persist: MemoryQueue,
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
            shards: Shards::new(),
            events: MemoryEvents::new(self.clock.clone()),
            persist: MemoryQueue::new(self.clock.clone()),
            clock: self.clock,
            waiters: Default::default(),
            keyed: Default::default(),
        });
        if let (Some(every), Ok(rt)) = (self.purge_interval, tokio::runtime::Handle::try_current())
        {
            rt.spawn(purge::task(Arc::downgrade(&inner), every));
        }
        MemoryStore { inner }
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

    /// The store's event bus, for
    /// [`SessionManager::with_events`](crate::SessionManager::with_events):
    /// managers on clones of this store share it. While a feed is
    /// subscribed, the purge publishes an
    /// [`Expired`](crate::events::EventKind::Expired) event for each
    /// session it removes.
    pub fn events(&self) -> MemoryEvents {
        self.inner.events.clone()
    }

    /// The store's persistence queue, for
    /// [`SessionManager::with_persistence`](crate::SessionManager::with_persistence):
    /// clones of this store share it. From this call on, the purge
    /// enqueues a job for each expired session it removes, with its data.
    pub fn persist_queue(&self) -> MemoryQueue {
        self.inner.persist.request()
    }

    /// Removes every expired session, marker and keyed session now.
    /// Returns how many entries were removed.
    pub fn purge_expired(&self) -> usize {
        self.inner.purge() + self.inner.keyed.purge(self.inner.clock.now_ms())
    }

    /// How many keyed sessions ([`Tracker`](crate::tracker::Tracker)) the
    /// store holds, expired ones included until purged.
    pub fn keyed_len(&self) -> usize {
        self.inner.keyed.len()
    }

    /// How many entries (sessions and short-lived markers) the store holds,
    /// expired ones included until purged. The shards are counted one after
    /// the other, so under concurrent writes the sum is approximate.
    pub fn len(&self) -> usize {
        (0..self.inner.shards.count())
            .map(|i| self.inner.shards.lock(i).entries.len())
            .sum()
    }

    /// Whether the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

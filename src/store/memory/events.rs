//! The memory store's event bus: a broadcast channel shared by the clones
//! of one store, stamped by the store's clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::clock::Clock;
use crate::events::{EventBus, EventFeed, NewEvent, SessionEvent};
use crate::Result;

/// How many events a subscriber may fall behind before it is told it
/// missed some.
const RETAINED: usize = 4096;

/// The [`EventBus`] of a [`MemoryStore`](super::MemoryStore), from
/// [`MemoryStore::events`](super::MemoryStore::events): every manager on a
/// clone of that store sees every event. Ids are a counter; a subscriber
/// that falls more than 4096 events behind is told how many it missed.
#[derive(Debug, Clone)]
pub struct MemoryEvents {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tx: broadcast::Sender<SessionEvent>,
    seq: AtomicU64,
    clock: Arc<dyn Clock>,
}

impl MemoryEvents {
    pub(super) fn new(clock: Arc<dyn Clock>) -> Self {
        let (tx, _) = broadcast::channel(RETAINED);
        MemoryEvents {
            inner: Arc::new(Inner {
                tx,
                seq: AtomicU64::new(0),
                clock,
            }),
        }
    }
}

impl MemoryEvents {
    /// Whether a feed is subscribed: the purge collects expired sessions
    /// for their events only then.
    pub(super) fn listened(&self) -> bool {
        self.inner.tx.receiver_count() > 0
    }

    /// Records `event` (publishing never waits on this bus).
    pub(super) fn publish_now(&self, event: NewEvent) -> SessionEvent {
        let seq = self.inner.seq.fetch_add(1, Ordering::SeqCst) + 1;
        // Zero-padded, so ids compare as strings in recording order too.
        let recorded =
            SessionEvent::recorded(event, format!("{seq:020}"), self.inner.clock.now_ms());
        // No subscriber is not an error: nobody was listening.
        let _ = self.inner.tx.send(recorded.clone());
        recorded
    }
}

#[async_trait]
impl EventBus for MemoryEvents {
    async fn publish(&self, event: NewEvent) -> Result<SessionEvent> {
        Ok(self.publish_now(event))
    }

    async fn subscribe(&self) -> Result<EventFeed> {
        let mut rx = self.inner.tx.subscribe();
        Ok(EventFeed::spawn(|tx| async move {
            loop {
                let delivered = match rx.recv().await {
                    Ok(event) => tx.send(event).await,
                    Err(broadcast::error::RecvError::Lagged(n)) => tx.lagged(n).await,
                    Err(broadcast::error::RecvError::Closed) => false,
                };
                if !delivered {
                    return;
                }
            }
        }))
    }
}

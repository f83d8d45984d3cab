//! Purging expired entries: shard by shard, in batches of at most
//! [`BATCH`] queue pops per lock hold, so a purge never holds a shard long
//! and never holds two shards at once.

use std::sync::Weak;
use std::time::Duration;

use super::state::Live;
use super::Inner;
use crate::events::{EventKind, ExpiryReason, NewEvent};
use crate::store::persist::PersistJob;
use crate::SessionId;

/// The most expiry-queue entries one lock hold pops.
const BATCH: usize = 128;

impl Inner {
    /// One batch on one shard: how many entries it removed, and whether the
    /// shard has more due. While a feed listens, each expired session's
    /// event is published, and once the persistence queue was handed out,
    /// its job is enqueued, after the shard's lock is released.
    fn purge_batch(&self, shard: usize, now: i64) -> (usize, bool) {
        let (events, persist) = (self.events.listened(), self.persist.requested());
        if !events && !persist {
            return self.shards.lock(shard).purge_due(now, BATCH, None);
        }
        let mut expired = Vec::new();
        let done = self
            .shards
            .lock(shard)
            .purge_due(now, BATCH, Some(&mut expired));
        for (id, live) in expired {
            let event = expired_event(id, *live);
            if persist {
                if let Some(job) = PersistJob::of_expiry(&event) {
                    self.persist.enqueue_now(&job);
                }
            }
            if events {
                self.events.publish_now(event);
            }
        }
        done
    }

    /// Purges every shard now, batch after batch. Answers how many entries
    /// were removed.
    pub(super) fn purge(&self) -> usize {
        let now = self.clock.now_ms();
        let mut purged = 0;
        for shard in 0..self.shards.count() {
            loop {
                let (removed, more) = self.purge_batch(shard, now);
                purged += removed;
                if !more {
                    break;
                }
            }
        }
        purged
    }
}

/// The event of a session the purge removed.
fn expired_event(id: SessionId, live: Live) -> NewEvent {
    NewEvent {
        kind: EventKind::Expired {
            reason: ExpiryReason::of(live.expires_at_ms, live.meta.absolute_deadline_ms),
            data: live.data.into_iter().collect(),
        },
        session: Some(id),
        user: live.meta.user_id,
    }
}

/// The background purge: every `every`, purges each shard, yielding to the
/// runtime between batches so other tasks on its worker keep running. Holds
/// only a weak reference, and ends with the store.
pub(super) async fn task(store: Weak<Inner>, every: Duration) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(1)));
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(inner) = store.upgrade() else { return };
        let now = inner.clock.now_ms();
        let mut purged = 0;
        for shard in 0..inner.shards.count() {
            loop {
                let (removed, more) = inner.purge_batch(shard, now);
                purged += removed;
                tokio::task::yield_now().await;
                if !more {
                    break;
                }
            }
        }
        purged += inner.keyed.purge(now);
        drop(inner);
        if purged > 0 {
            tracing::debug!(purged, "purged expired sessions");
        }
    }
}

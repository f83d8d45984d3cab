//! The Redis store's event bus: one Stream, `<prefix>:events`.
//!
//! `publish` is one `XADD` (with `MAXLEN ~`), so the entry id is the Redis
//! server's clock and the events' order is the stream's. A feed polls
//! `XREAD` (without `BLOCK`: a blocking read would hold up every other
//! command multiplexed on the store's connection) from the last id it
//! delivered; after a failure it waits and reads on from that id, so a
//! reconnect, a Sentinel failover or a restarted server with its data
//! (AOF or RDB) loses nothing the stream still holds. One key, so one slot
//! on a Cluster: every instance reads the same stream.

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};

use super::connection::within;
use super::RedisStore;
use crate::events::{EventBus, EventFeed, NewEvent, SessionEvent};
use crate::{Error, Result};

/// How many entries the stream keeps (about: `MAXLEN ~` trims whole
/// nodes). At a few hundred bytes an entry, some tens of MB at most.
pub const DEFAULT_RETAINED: u64 = 100_000;

/// How often an idle feed reads the stream.
pub const DEFAULT_POLL: Duration = Duration::from_millis(100);

/// Entries read per `XREAD`.
const BATCH: usize = 256;

/// The [`EventBus`] of a [`RedisStore`], from [`RedisStore::events`].
///
/// Retention: the stream keeps about [`retained`](Self::retained) entries
/// (default 100 000); a feed that falls further behind than that (or a
/// server restarted without persistence) skips what was trimmed.
#[derive(Debug, Clone)]
pub struct RedisEvents {
    store: RedisStore,
    key: String,
    retained: u64,
    poll: Duration,
}

impl RedisStore {
    /// The store's event bus (the stream `<prefix>:events`), for
    /// [`SessionManager::with_events`](crate::SessionManager::with_events).
    /// Expiries are reported on it only by a store built with
    /// [`expiry_events`](super::RedisStoreBuilder::expiry_events).
    pub fn events(&self) -> RedisEvents {
        RedisEvents {
            key: format!("{}:events", self.key_prefix()),
            store: self.clone(),
            retained: self.inner.events_retained.load(Ordering::Relaxed),
            poll: DEFAULT_POLL,
        }
    }
}

impl RedisEvents {
    /// About how many entries the stream keeps (default 100 000).
    #[must_use]
    pub fn retained(mut self, entries: u64) -> Self {
        self.retained = entries.max(1);
        // The expiry watcher publishes through `RedisStore::events` too.
        self.store
            .inner
            .events_retained
            .store(self.retained, Ordering::Relaxed);
        self
    }

    /// How often an idle feed reads the stream (default 100 ms): the
    /// delivery delay at most, and the cost of a feed, one `XREAD` each.
    #[must_use]
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll = every.max(Duration::from_millis(1));
        self
    }

    /// The stream's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    fn limit(&self) -> Duration {
        self.store.inner.command_timeout
    }

    /// The id of the newest entry ("0-0" for an empty stream).
    async fn last_id(&self) -> Result<String> {
        let mut conn = self.store.connection().await?;
        let mut cmd = redis::cmd("XREVRANGE");
        cmd.arg(&self.key).arg("+").arg("-").arg("COUNT").arg(1);
        let reply: StreamRangeReply = within(self.limit(), cmd.query_async(&mut conn)).await?;
        Ok(reply
            .ids
            .into_iter()
            .next()
            .map_or_else(|| "0-0".to_owned(), |e| e.id))
    }

    /// The entries after `after`, oldest first.
    async fn read_after(&self, after: &str) -> Result<Vec<StreamId>> {
        let mut conn = self.store.connection().await?;
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(BATCH)
            .arg("STREAMS")
            .arg(&self.key)
            .arg(after);
        let reply: Option<StreamReadReply> =
            within(self.limit(), cmd.query_async(&mut conn)).await?;
        Ok(reply
            .and_then(|r| r.keys.into_iter().next())
            .map(|k| k.ids)
            .unwrap_or_default())
    }
}

/// The event of a stream entry: its JSON in field `e`, its time the id's
/// milliseconds.
fn decode(entry: &StreamId) -> Option<SessionEvent> {
    let json: String = entry.get("e")?;
    let event: NewEvent = serde_json::from_str(&json).ok()?;
    let at_ms = entry.id.split_once('-')?.0.parse().ok()?;
    Some(SessionEvent::recorded(event, entry.id.clone(), at_ms))
}

#[async_trait]
impl EventBus for RedisEvents {
    async fn publish(&self, event: NewEvent) -> Result<SessionEvent> {
        let json = serde_json::to_string(&event).map_err(Error::store)?;
        let mut conn = self.store.connection().await?;
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&self.key)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.retained)
            .arg("*")
            .arg("e")
            .arg(&json);
        let id: String = within(self.limit(), cmd.query_async(&mut conn)).await?;
        let at_ms = id
            .split_once('-')
            .and_then(|(ms, _)| ms.parse().ok())
            .ok_or_else(|| Error::store(format!("RedisStore: XADD answered the id {id:?}")))?;
        Ok(SessionEvent::recorded(event, id, at_ms))
    }

    async fn subscribe(&self) -> Result<EventFeed> {
        let last = self.last_id().await?;
        let bus = self.clone();
        Ok(EventFeed::polling(last, self.poll, move |after: String| {
            let bus = bus.clone();
            async move {
                let entries = bus.read_after(&after).await?;
                Ok(entries
                    .into_iter()
                    .map(|entry| {
                        let event = decode(&entry);
                        if event.is_none() {
                            tracing::warn!(stream = %bus.key, entry = %entry.id, "unreadable event entry skipped");
                        }
                        (entry.id, event)
                    })
                    .collect())
            }
        }))
    }
}

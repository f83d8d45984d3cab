//! The PostgreSQL store's event bus: the table `<prefix>events`, written by
//! one function (`publish_event`, see `sql/events_v3.sql`) and read by
//! polling feeds.
//!
//! A feed reads the rows after the last id it delivered every poll
//! interval ([`EventFeed::polling`]); after a failure it waits and reads on from that id, so a lost
//! connection or a restarted server loses nothing the table still holds.

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;

use super::{pg_error, PostgresStore};
use crate::events::{EventBus, EventFeed, NewEvent, SessionEvent};
use crate::{Error, Result};

/// How many events the table keeps.
pub const DEFAULT_RETAINED: i64 = 100_000;

/// How often an idle feed reads the table.
pub const DEFAULT_POLL: Duration = Duration::from_millis(100);

/// Rows read per poll.
const BATCH: i64 = 256;

/// The [`EventBus`] of a [`PostgresStore`], from [`PostgresStore::events`].
///
/// Retention: the table keeps the newest [`retained`](Self::retained)
/// events (default 100 000); a feed that falls further behind skips what
/// was deleted.
#[derive(Debug, Clone)]
pub struct PostgresEvents {
    store: PostgresStore,
    publish: String,
    read: String,
    last: String,
    retained: i64,
    poll: Duration,
}

impl PostgresStore {
    /// The store's event bus (the table `<prefix>events`), for
    /// [`SessionManager::with_events`](crate::SessionManager::with_events).
    ///
    /// From this call on, the store's purge records an
    /// [`Expired`](crate::events::EventKind::Expired) event for each
    /// session it deletes: expiry events come at the purge interval (see
    /// [`purge_interval`](super::PostgresStoreBuilder::purge_interval)).
    pub fn events(&self) -> PostgresEvents {
        self.inner
            .expiry_retain
            .store(DEFAULT_RETAINED, Ordering::Relaxed);
        let names = &self.inner.names;
        PostgresEvents {
            publish: names.render("SELECT * FROM {schema}.{prefix}publish_event($1, $2)"),
            read: names.render(
                "SELECT id, at_ms, body FROM {schema}.{prefix}events \
                 WHERE id > $1 ORDER BY id LIMIT $2",
            ),
            last: names.render("SELECT coalesce(max(id), 0) FROM {schema}.{prefix}events"),
            store: self.clone(),
            retained: DEFAULT_RETAINED,
            poll: DEFAULT_POLL,
        }
    }
}

impl PostgresEvents {
    /// How many events the table keeps (default 100 000).
    #[must_use]
    pub fn retained(mut self, events: i64) -> Self {
        self.retained = events.max(1);
        self.store
            .inner
            .expiry_retain
            .store(self.retained, Ordering::Relaxed);
        self
    }

    /// How often an idle feed reads the table (default 100 ms): the
    /// delivery delay at most, and the cost of a feed, one query each.
    #[must_use]
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll = every.max(Duration::from_millis(1));
        self
    }

    /// The events after `after`, oldest first.
    async fn read_after(&self, after: i64) -> Result<Vec<(i64, i64, String)>> {
        sqlx::query_as(&self.read)
            .bind(after)
            .bind(BATCH)
            .fetch_all(&self.store.inner.pool)
            .await
            .map_err(pg_error)
    }
}

#[async_trait]
impl EventBus for PostgresEvents {
    async fn publish(&self, event: NewEvent) -> Result<SessionEvent> {
        let body = serde_json::to_string(&event).map_err(Error::store)?;
        let (id, at_ms): (i64, i64) = sqlx::query_as(&self.publish)
            .bind(&body)
            .bind(self.retained)
            .fetch_one(&self.store.inner.pool)
            .await
            .map_err(pg_error)?;
        // Zero-padded, so ids compare as strings in recording order too.
        Ok(SessionEvent::recorded(event, format!("{id:020}"), at_ms))
    }

    async fn subscribe(&self) -> Result<EventFeed> {
        let last: i64 = sqlx::query_scalar(&self.last)
            .fetch_one(&self.store.inner.pool)
            .await
            .map_err(pg_error)?;
        let bus = self.clone();
        Ok(EventFeed::polling(last, self.poll, move |after: i64| {
            let bus = bus.clone();
            async move {
                let rows = bus.read_after(after).await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, at_ms, body)| {
                        let event = match serde_json::from_str::<NewEvent>(&body) {
                            Ok(event) => Some(SessionEvent::recorded(event, format!("{id:020}"), at_ms)),
                            Err(e) => {
                                tracing::warn!(error = %e, event = id, "unreadable event row skipped");
                                None
                            }
                        };
                        (id, event)
                    })
                    .collect())
            }
        }))
    }
}

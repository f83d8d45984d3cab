//! Batched idle-expiry touches of cache hits: a hit that finds the touch
//! due reports the refreshed expiry at once and queues the session; this
//! task writes the queue every [`FLUSH_EVERY`], or as soon as [`BATCH`]
//! wait, as one statement (`<prefix>touch`). A touch of a session that
//! ended meanwhile does nothing. This is gopgsession's batched last-access
//! update.

use std::sync::Arc;
use std::time::Duration;

use crate::store::postgres::Inner;

/// How often queued touches are written.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Queued touches that trigger an early flush, and the most one statement
/// carries.
pub(crate) const BATCH: usize = 128;

/// How often the task looks at the queue between flushes.
const LOOK_EVERY: Duration = Duration::from_millis(50);

/// Starts the flush task; it ends when the store is dropped (queued
/// touches are then lost: the sessions only expire a little earlier).
pub(crate) fn spawn_flusher(inner: &Arc<Inner>) {
    let weak = Arc::downgrade(inner);
    tokio::spawn(async move {
        let mut since_flush = Duration::ZERO;
        loop {
            tokio::time::sleep(LOOK_EVERY).await;
            since_flush += LOOK_EVERY;
            let Some(inner) = weak.upgrade() else {
                return;
            };
            let Some(cache) = &inner.cache else {
                return;
            };
            if cache.touches_waiting() < BATCH && since_flush < FLUSH_EVERY {
                continue;
            }
            since_flush = Duration::ZERO;
            loop {
                let batch = cache.take_touches(BATCH);
                if batch.is_empty() {
                    break;
                }
                let (ids, idles): (Vec<String>, Vec<i64>) = batch
                    .into_iter()
                    .map(|(id, idle)| (id.as_str().to_owned(), idle))
                    .unzip();
                let n = ids.len() as u64;
                match sqlx::query(&inner.sql.touch)
                    .bind(ids)
                    .bind(idles)
                    .execute(&inner.pool)
                    .await
                {
                    Ok(_) => cache.flushed(n),
                    Err(e) => {
                        tracing::debug!(error = %e, "PostgresStore: touch flush failed");
                        break;
                    }
                }
            }
        }
    });
}

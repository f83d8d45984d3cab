//! The background purge: expired sessions, run-out markers and expired
//! keyed sessions deleted in bounded batches, by every instance (batches
//! skip rows another holds).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{pg_error, Inner};
use crate::Result;

/// Deletes expired rows in batches of `batch`, sessions and keyed
/// sessions each until one of their batches comes back short.
pub(super) async fn purge_all(inner: &Inner, batch: u32) -> Result<u64> {
    let batch = i32::try_from(batch.max(1)).unwrap_or(i32::MAX);
    let mut total = 0u64;
    let full = u64::try_from(batch).unwrap_or(u64::MAX);
    let mut sessions_left = true;
    let mut keyed_left = true;
    loop {
        if sessions_left {
            let retain = inner.expiry_retain.load(Ordering::Relaxed);
            let persist = inner.persist_on.load(Ordering::Relaxed);
            let n = if retain > 0 || persist {
                recorded(inner, batch, retain, persist).await?
            } else {
                deleted(inner, &inner.sql.purge, batch).await?
            };
            total += n;
            // A batch deletes up to `batch` sessions and as many markers.
            sessions_left = n >= full;
        }
        if keyed_left {
            let n = deleted(inner, &inner.sql.keyed_purge, batch).await?;
            total += n;
            keyed_left = n >= full;
        }
        if !sessions_left && !keyed_left {
            return Ok(total);
        }
        // Let other statements in between batches.
        tokio::task::yield_now().await;
    }
}

/// One purge statement: how many rows it deleted.
async fn deleted(inner: &Inner, sql: &str, batch: i32) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(sql)
        .bind(batch)
        .fetch_one(&inner.pool)
        .await
        .map_err(pg_error)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// One purge statement that records an expiry event (`retain` > 0) and
/// enqueues a persistence job (`persist`) per session it deletes
/// (`sql/persist_v5.sql`): how many rows it deleted.
async fn recorded(inner: &Inner, batch: i32, retain: i64, persist: bool) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(&inner.sql.purge_recorded)
        .bind(batch)
        .bind(retain)
        .bind(persist)
        .fetch_one(&inner.pool)
        .await
        .map_err(pg_error)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Starts the purge task; it ends when the store is dropped.
pub(super) fn spawn(inner: &Arc<Inner>, every: Duration, batch: u32) {
    let weak: Weak<Inner> = Arc::downgrade(inner);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(inner) = weak.upgrade() else {
                return;
            };
            match purge_all(&inner, batch).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(rows = n, "PostgresStore: purged expired rows"),
                Err(e) => {
                    tracing::warn!(error = %e, "PostgresStore: purge failed; retrying next interval")
                }
            }
        }
    });
}

//! The PostgreSQL store's persistence queue: the table
//! `<prefix>persist_jobs`, changed only by the `persist_*` functions of
//! `sql/persist_v5.sql`, one call per operation.

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;

use super::{pg_error, PostgresStore};
use crate::clock::duration_ms;
use crate::store::persist::{Claimed, PersistQueue, Settle};
use crate::Result;

/// The [`PersistQueue`] of a [`PostgresStore`], from
/// [`PostgresStore::persist_queue`].
#[derive(Debug, Clone)]
pub struct PostgresQueue {
    store: PostgresStore,
}

impl PostgresStore {
    /// The store's persistence queue, for
    /// [`SessionManager::with_persistence`](crate::SessionManager::with_persistence).
    /// From this call on, the store's purge enqueues a job for each
    /// expired session it deletes, with its data, in the transaction of
    /// the delete (so expiry jobs come at the
    /// [`purge_interval`](super::PostgresStoreBuilder::purge_interval)).
    pub fn persist_queue(&self) -> PostgresQueue {
        self.inner.persist_on.store(true, Ordering::Relaxed);
        PostgresQueue {
            store: self.clone(),
        }
    }
}

#[async_trait]
impl PersistQueue for PostgresQueue {
    async fn enqueue(&self, key: &str, payload: &str, delay: Duration) -> Result<()> {
        let inner = &self.store.inner;
        sqlx::query(&inner.sql.persist_enqueue)
            .bind(key)
            .bind(payload)
            .bind(duration_ms(delay))
            .execute(&inner.pool)
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn claim(&self, limit: usize, lease: Duration) -> Result<Vec<Claimed>> {
        let inner = &self.store.inner;
        let rows: Vec<(String, String, i64, i32)> = sqlx::query_as(&inner.sql.persist_claim)
            .bind(i32::try_from(limit).unwrap_or(i32::MAX))
            .bind(duration_ms(lease))
            .fetch_all(&inner.pool)
            .await
            .map_err(pg_error)?;
        Ok(rows
            .into_iter()
            .map(|(key, payload, generation, tries)| Claimed {
                key,
                payload,
                generation: u64::try_from(generation).unwrap_or(0),
                tries: u32::try_from(tries).unwrap_or(0),
            })
            .collect())
    }

    async fn settle(&self, job: &Claimed, verdict: Settle) -> Result<()> {
        let inner = &self.store.inner;
        let retry = match verdict {
            Settle::Done => -1,
            Settle::RetryAfter(pause) => duration_ms(pause),
        };
        sqlx::query(&inner.sql.persist_settle)
            .bind(&job.key)
            .bind(i64::try_from(job.generation).unwrap_or(i64::MAX))
            .bind(i32::try_from(job.tries).unwrap_or(i32::MAX))
            .bind(retry)
            .execute(&inner.pool)
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn make_due(&self) -> Result<u64> {
        let inner = &self.store.inner;
        let n: i64 = sqlx::query_scalar(&inner.sql.persist_all)
            .fetch_one(&inner.pool)
            .await
            .map_err(pg_error)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

//! The Redis store's persistence queue: three keys in one Cluster slot,
//! `<prefix>:{persist}:due` (a sorted set of job keys by due time, ms on
//! the server's clock), `:jobs` (a hash of payloads) and `:meta` (a hash of
//! `generation,tries,leased`), changed only by the `persist_*.lua`
//! scripts, one call per operation.

use std::sync::atomic::Ordering;
use std::time::Duration;

use ::redis::{Script, Value};
use async_trait::async_trait;

use super::conn::invocation;
use super::reply::bad;
use super::{ms, RedisStore};
use crate::store::persist::{Claimed, PersistJob, PersistQueue, Settle};
use crate::{Error, Result};

/// The queue's scripts.
#[derive(Debug, Clone)]
pub(super) struct PersistScripts {
    enqueue: Script,
    claim: Script,
    settle: Script,
    all: Script,
}

impl PersistScripts {
    pub(super) fn new() -> Self {
        // `#!lua` for Cluster's one-slot check, as the other scripts.
        let script = |body: &str| Script::new(&format!("#!lua\n{body}"));
        PersistScripts {
            enqueue: script(include_str!("scripts/persist_enqueue.lua")),
            claim: script(include_str!("scripts/persist_claim.lua")),
            settle: script(include_str!("scripts/persist_settle.lua")),
            all: script(include_str!("scripts/persist_all.lua")),
        }
    }

    /// All four, to preload with `SCRIPT LOAD`.
    pub(super) fn all(&self) -> [&Script; 4] {
        [&self.enqueue, &self.claim, &self.settle, &self.all]
    }
}

/// The [`PersistQueue`] of a [`RedisStore`], from
/// [`RedisStore::persist_queue`]. Jobs survive a Redis restart as far as
/// the server's persistence (AOF, RDB) keeps them.
#[derive(Debug, Clone)]
pub struct RedisQueue {
    store: RedisStore,
    keys: [String; 3],
}

impl RedisStore {
    /// The store's persistence queue, for
    /// [`SessionManager::with_persistence`](crate::SessionManager::with_persistence).
    /// From this call on, this store's expiry watcher enqueues a job for
    /// each expired session it claims, with its data: build every
    /// instance's store the same way, as the instance that claims an
    /// expiry is the one that enqueues it.
    ///
    /// # Errors
    /// A store built without
    /// [`expiry_events(true)`](super::RedisStoreBuilder::expiry_events):
    /// expired sessions could not be persisted.
    pub fn persist_queue(&self) -> Result<RedisQueue> {
        if self.inner.expiry.get().is_none() {
            return Err(Error::store(
                "RedisStore::persist_queue: expired sessions are persisted from expiry \
                 notifications; build the store with `.expiry_events(true)`",
            ));
        }
        self.inner.persist_on.store(true, Ordering::SeqCst);
        let base = format!("{}:{{persist}}", self.key_prefix());
        Ok(RedisQueue {
            store: self.clone(),
            keys: [
                format!("{base}:due"),
                format!("{base}:jobs"),
                format!("{base}:meta"),
            ],
        })
    }

    /// Enqueues the persistence job of an expiry this instance claimed.
    pub(super) async fn enqueue_expiry(&self, event: &crate::events::NewEvent) {
        let Some(job) = PersistJob::of_expiry(event) else {
            return;
        };
        let queue = match self.persist_queue() {
            Ok(queue) => queue,
            Err(_) => return,
        };
        if let Err(e) = job.enqueue_on(&queue, Duration::ZERO).await {
            // Claimed, so gone: nothing brings this job back.
            tracing::error!(error = %e, job = %job.key(), "an expired session's persistence job is lost");
        }
    }

    /// Whether [`persist_queue`](Self::persist_queue) was called.
    pub(super) fn persist_on(&self) -> bool {
        self.inner.persist_on.load(Ordering::SeqCst)
    }
}

impl RedisQueue {
    async fn run(
        &self,
        script: &Script,
        args: impl FnOnce(&mut ::redis::ScriptInvocation<'_>),
    ) -> Result<Value> {
        let mut inv = invocation(script, &self.keys);
        args(&mut inv);
        self.store.run(&self.keys[0], &inv).await
    }

    fn scripts(&self) -> &PersistScripts {
        &self.store.inner.persist_scripts
    }
}

#[async_trait]
impl PersistQueue for RedisQueue {
    async fn enqueue(&self, key: &str, payload: &str, delay: Duration) -> Result<()> {
        self.run(&self.scripts().enqueue, |inv| {
            inv.arg(key).arg(payload).arg(ms(delay));
        })
        .await?;
        Ok(())
    }

    async fn claim(&self, limit: usize, lease: Duration) -> Result<Vec<Claimed>> {
        let reply = self
            .run(&self.scripts().claim, |inv| {
                inv.arg(limit).arg(ms(lease));
            })
            .await?;
        let rows: Vec<(String, String, u64, u32)> =
            ::redis::from_redis_value(reply).map_err(|e| {
                bad(
                    "persist_claim",
                    format_args!("a reply of another shape: {e}"),
                )
            })?;
        Ok(rows
            .into_iter()
            .map(|(key, payload, generation, tries)| Claimed {
                key,
                payload,
                generation,
                tries,
            })
            .collect())
    }

    async fn settle(&self, job: &Claimed, verdict: Settle) -> Result<()> {
        let retry = match verdict {
            Settle::Done => -1,
            Settle::RetryAfter(pause) => ms(pause),
        };
        self.run(&self.scripts().settle, |inv| {
            inv.arg(&job.key)
                .arg(job.generation)
                .arg(job.tries)
                .arg(retry);
        })
        .await?;
        Ok(())
    }

    async fn make_due(&self) -> Result<u64> {
        let reply = self.run(&self.scripts().all, |_| {}).await?;
        ::redis::from_redis_value(reply)
            .map_err(|e| bad("persist_all", format_args!("a reply of another shape: {e}")))
    }
}

//! Batched idle-expiry touches of the Lua-free read path (`read.rs`).
//!
//! A read that finds the touch due queues the session (once: a key queued
//! twice is touched once) and reports it as touched. A background task
//! sends the queue every [`FLUSH_EVERY`], or as soon as [`BATCH`] touches
//! wait, as `touch` script calls issued together (the connection pipelines
//! them; on a Cluster each goes to its key's primary). A touch that finds
//! the session gone, expired or replaced is a no-op. The client cache
//! batches its touches the same way, per tracked link (`cache/touches.rs`).
//!
//! Queued touches are lost if the process stops before a flush: those
//! sessions then expire up to one touch interval early, never late.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio::sync::Notify;

use super::cache::{BATCH, FLUSH_EVERY};
use super::conn::invocation;
use super::{Inner, RedisStore, MAX_MS};

/// The queue of touches waiting to be sent: session key → (hash part, idle
/// timeout ms).
#[derive(Debug, Default)]
pub(crate) struct Touches {
    queue: Mutex<HashMap<String, (String, i64)>>,
    full: Arc<Notify>,
}

impl Touches {
    /// Queues a touch of `key`.
    pub(crate) fn push(&self, key: &str, hash: &str, idle_ms: i64) {
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if q.contains_key(key) {
            return;
        }
        q.insert(key.to_owned(), (hash.to_owned(), idle_ms));
        if q.len() >= BATCH {
            self.full.notify_one();
        }
    }

    /// Takes up to `n` queued touches.
    fn take(&self, n: usize) -> Vec<(String, String, i64)> {
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let keys: Vec<String> = q.keys().take(n).cloned().collect();
        keys.into_iter()
            .filter_map(|k| q.remove(&k).map(|(hash, idle)| (k, hash, idle)))
            .collect()
    }
}

/// Starts the flush task of a store that reads without Lua. It ends when
/// the store is dropped.
pub(crate) fn spawn_touch_flusher(inner: Weak<Inner>) {
    tokio::spawn(async move {
        loop {
            let Some(full) = inner.upgrade().map(|inner| inner.touches.full.clone()) else {
                return;
            };
            // The store is not kept alive while the task waits.
            let _ = tokio::time::timeout(FLUSH_EVERY, full.notified()).await;
            let Some(inner) = inner.upgrade() else {
                return;
            };
            RedisStore { inner }.flush_plain_touches().await;
        }
    });
}

impl RedisStore {
    /// Sends every queued touch.
    pub(crate) async fn flush_plain_touches(&self) {
        loop {
            let batch = self.inner.touches.take(BATCH);
            if batch.is_empty() {
                return;
            }
            let mut calls = tokio::task::JoinSet::new();
            for (key, hash, idle_ms) in batch {
                let store = self.clone();
                calls.spawn(async move {
                    let keys = [key];
                    let mut inv = invocation(&store.inner.scripts.touch, &keys);
                    inv.arg(idle_ms.min(MAX_MS)).arg(hash);
                    store.run(&keys[0], &inv).await
                });
            }
            let mut failed = 0usize;
            while let Some(done) = calls.join_next().await {
                if !matches!(done, Ok(Ok(_))) {
                    failed += 1;
                }
            }
            if failed > 0 {
                tracing::warn!(
                    failed,
                    "idle-expiry touches failed; those sessions may expire up to one touch interval early"
                );
            }
        }
    }
}

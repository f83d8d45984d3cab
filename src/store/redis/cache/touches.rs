//! Batched idle-expiry touches of a client-side cache.
//!
//! A cache hit that finds the touch due (see [`Timeouts::touch_due`]) does
//! not write inline: it queues the session (once; later hits see it as
//! touched) and reports the refreshed `last_seen` and expiry, as the load
//! script would. A background task sends the queue every
//! [`FLUSH_EVERY`], or as soon as [`BATCH`] touches wait, as one pipeline of
//! `touch` script calls on the tracked link of the server that holds them
//! (on a Cluster, one pipeline per primary), one call per key (each in its
//! own slot: Cluster-safe). A touch that finds the session gone, expired,
//! replaced or moved to another node (`MOVED`) is a no-op. This is the
//! last-access batching of gopgsession, on Redis.
//!
//! [`Timeouts::touch_due`]: crate::store::Timeouts::touch_due

use std::sync::{Arc, Weak};
use std::time::Duration;

use ::redis::{RedisResult, Value};

use super::PendingTouch;
use crate::store::redis::connection::link::Link;
use crate::store::redis::connection::timed;
use crate::store::redis::{replies, Inner, RedisStore, MAX_MS};

/// How often queued touches are sent.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Queued touches that trigger a flush before the interval ends, and the
/// most touches one pipeline carries.
pub(crate) const BATCH: usize = 128;

/// Starts the flush task of a store with a client-side cache. It ends when
/// the store is dropped (queued touches are then lost).
pub(crate) fn spawn_flusher(inner: Weak<Inner>) {
    tokio::spawn(async move {
        loop {
            let Some(store) = inner.upgrade().map(|inner| RedisStore { inner }) else {
                return;
            };
            let Some(batch_full) = store.inner.cache.as_ref().and_then(|n| n.batch_full()) else {
                return;
            };
            drop(store);
            // Woken by a full batch of any server's cache, or at the end of
            // the interval.
            let _ = tokio::time::timeout(FLUSH_EVERY, batch_full.notified()).await;
            let Some(inner) = inner.upgrade() else {
                return;
            };
            RedisStore { inner }.flush_touches().await;
        }
    });
}

fn is_noscript(r: &RedisResult<Value>) -> bool {
    matches!(r, Err(e) if e.kind() == ::redis::ErrorKind::Server(::redis::ServerErrorKind::NoScript))
}

impl RedisStore {
    /// Sends every queued touch, server by server.
    pub(crate) async fn flush_touches(&self) {
        let Some(nodes) = &self.inner.cache else {
            return;
        };
        for link in nodes.all() {
            let Some(cache) = link.cache() else {
                continue;
            };
            loop {
                let batch = cache.take_touches(BATCH);
                if batch.is_empty() {
                    break;
                }
                self.flush_batch(&link, batch).await;
            }
        }
    }

    async fn flush_batch(&self, link: &Arc<Link>, batch: Vec<PendingTouch>) {
        let Some(cache) = link.cache() else {
            return;
        };
        let (mut conn, epoch) = match link.get().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, touches = batch.len(), "client-side cache: could not send idle-expiry touches; the sessions will be read from Redis again");
                for t in &batch {
                    cache.forget(&t.key);
                }
                return;
            }
        };
        let tickets: Vec<_> = batch
            .iter()
            .map(|t| cache.begin(t.key.clone(), epoch))
            .collect();
        let script = &self.inner.scripts.touch;
        let mut pipe = ::redis::pipe();
        pipe.ignore_errors();
        for t in &batch {
            pipe.cmd("EVALSHA")
                .arg(script.get_hash())
                .arg(1)
                .arg(&t.key)
                .arg(t.idle_ms.min(MAX_MS))
                .arg(&t.hash)
                .arg("1");
        }
        let limit = self.inner.command_timeout;
        let mut sent = batch.len();
        let sent_at = link.stamp();
        let mut results = timed(
            limit,
            pipe.query_async::<Vec<RedisResult<Value>>>(&mut conn),
        )
        .await;
        if matches!(&results, Ok(Ok(rs)) if rs.iter().any(is_noscript)) {
            // The server lost its scripts (restart, SCRIPT FLUSH): load and
            // send again; a touch applied twice is harmless.
            if let Ok(Ok(_)) = timed(limit, script.load_async(&mut conn)).await {
                sent += batch.len();
                results = timed(
                    limit,
                    pipe.query_async::<Vec<RedisResult<Value>>>(&mut conn),
                )
                .await;
            }
        }
        cache.count_flushed(sent);
        let results = match results {
            Ok(Ok(results)) => {
                link.answered(sent_at);
                results
            }
            Ok(Err(e)) => {
                link.failed(epoch, &e);
                tracing::warn!(error = %e, touches = batch.len(), "client-side cache: idle-expiry touches failed; the sessions will be read from Redis again");
                return; // Dropped tickets: the keys leave the cache.
            }
            Err(e) => {
                tracing::warn!(error = %e, touches = batch.len(), "client-side cache: idle-expiry touches timed out; the sessions will be read from Redis again");
                return;
            }
        };
        for (ticket, result) in tickets.into_iter().zip(results) {
            match result
                .map_err(crate::Error::store)
                .and_then(replies::touched)
            {
                Ok(Some(t)) => ticket.touched(t.now_ms, t.expires_at_ms, t.seen_ms, t.version),
                Ok(None) => ticket.gone(),
                Err(e) => {
                    tracing::warn!(error = %e, "client-side cache: an idle-expiry touch failed");
                    drop(ticket);
                }
            }
        }
    }
}

//! Batched idle-expiry touches and the heartbeat of a client-side cache.
//!
//! A cache hit that finds the touch due (see [`Timeouts::touch_due`]) does
//! not write inline: it queues the session (once; later hits see it as
//! touched) and reports the refreshed `last_seen` and expiry, as the load
//! script would. A background task sends the queue every
//! [`FLUSH_EVERY`], or as soon as [`BATCH`] touches wait, as one pipeline of
//! `touch` script calls on the tracked connection, one call per key (each in
//! its own slot: Cluster-safe). A touch that finds the session gone,
//! expired or replaced is a no-op. This is the last-access batching of
//! gopgsession, on Redis.
//!
//! The same task pings the tracked connection when the cache holds
//! sessions and nothing came back on it for a flush interval, so a silently
//! dead connection (no RST: invalidations would stop without a disconnection
//! push) empties the cache within about one interval plus one command
//! timeout.
//!
//! [`Timeouts::touch_due`]: crate::store::Timeouts::touch_due

use std::sync::Weak;
use std::time::Duration;

use ::redis::{RedisResult, Value};

use super::cache::PendingTouch;
use super::conn::timed;
use super::{reply, Cached, Inner, RedisStore, MAX_MS};

/// How often queued touches are sent.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Queued touches that trigger a flush before the interval ends, and the
/// most touches one pipeline carries.
pub(crate) const BATCH: usize = 128;

/// Starts the flush task of a store with a client-side cache. It ends when
/// the store is dropped (queued touches are then lost).
pub(super) fn spawn_flusher(inner: Weak<Inner>) {
    tokio::spawn(async move {
        loop {
            let cache = match inner.upgrade() {
                Some(inner) => match &inner.cache {
                    Some(c) => c.cache.clone(),
                    None => return,
                },
                None => return,
            };
            // Woken by a full batch, or at the end of the interval.
            let _ = tokio::time::timeout(FLUSH_EVERY, cache.batch_full.notified()).await;
            drop(cache);
            let Some(inner) = inner.upgrade() else {
                return;
            };
            let store = RedisStore { inner };
            store.flush_touches().await;
            store.heartbeat().await;
        }
    });
}

fn is_noscript(r: &RedisResult<Value>) -> bool {
    matches!(r, Err(e) if e.kind() == ::redis::ErrorKind::Server(::redis::ServerErrorKind::NoScript))
}

/// `{'ok', now, exp, seen, version}` as `Some`, `{'gone'}` as `None`.
fn touch_reply(v: Value) -> crate::Result<Option<(i64, i64, i64, u64)>> {
    const S: &str = "touch";
    let items = reply::array(S, v)?;
    match reply::status(S, &items)?.as_str() {
        "ok" => Ok(Some((
            reply::int(S, reply::at(S, &items, 1)?)?,
            reply::int(S, reply::at(S, &items, 2)?)?,
            reply::int(S, reply::at(S, &items, 3)?)?,
            u64::try_from(reply::int(S, reply::at(S, &items, 4)?)?).unwrap_or(0),
        ))),
        "gone" => Ok(None),
        other => Err(reply::bad(S, format_args!("unknown status {other:?}"))),
    }
}

impl RedisStore {
    /// Sends every queued touch.
    pub(super) async fn flush_touches(&self) {
        let Some(c) = &self.inner.cache else {
            return;
        };
        loop {
            let batch = c.cache.take_touches(BATCH);
            if batch.is_empty() {
                return;
            }
            self.flush_batch(c, batch).await;
        }
    }

    async fn flush_batch(&self, c: &Cached, batch: Vec<PendingTouch>) {
        let (mut conn, epoch) = match c.link.get().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, touches = batch.len(), "client-side cache: could not send idle-expiry touches; the sessions will be read from Redis again");
                for t in &batch {
                    c.cache.forget(&t.key);
                }
                return;
            }
        };
        let tickets: Vec<_> = batch
            .iter()
            .map(|t| c.cache.begin(t.key.clone(), epoch))
            .collect();
        let script = &self.inner.scripts.touch;
        let mut pipe = ::redis::pipe();
        pipe.ignore_errors();
        for t in &batch {
            pipe.cmd("EVALSHA")
                .arg(script.get_hash())
                .arg(2)
                .arg(&t.key)
                .arg(&t.index)
                .arg(t.idle_ms.min(MAX_MS))
                .arg(&t.hash);
        }
        let limit = self.inner.command_timeout;
        let mut sent = batch.len();
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
        c.cache.count_flushed(sent);
        let results = match results {
            Ok(Ok(results)) => {
                c.link.replied();
                results
            }
            Ok(Err(e)) => {
                c.link.failed(epoch, &e);
                tracing::warn!(error = %e, touches = batch.len(), "client-side cache: idle-expiry touches failed; the sessions will be read from Redis again");
                return; // Dropped tickets: the keys leave the cache.
            }
            Err(e) => {
                tracing::warn!(error = %e, touches = batch.len(), "client-side cache: idle-expiry touches timed out; the sessions will be read from Redis again");
                return;
            }
        };
        for (ticket, result) in tickets.into_iter().zip(results) {
            match result.map_err(crate::Error::store).and_then(touch_reply) {
                Ok(Some((now, exp, seen, version))) => ticket.touched(now, exp, seen, version),
                Ok(None) => ticket.gone(),
                Err(e) => {
                    tracing::warn!(error = %e, "client-side cache: an idle-expiry touch failed");
                    drop(ticket);
                }
            }
        }
    }

    /// Pings the tracked connection if the cache holds sessions and the
    /// connection has been quiet for a flush interval; a failed ping counts
    /// as a lost connection.
    pub(super) async fn heartbeat(&self) {
        let Some(c) = &self.inner.cache else {
            return;
        };
        if c.cache.len() == 0 || !c.link.is_up() || c.link.quiet_for() < FLUSH_EVERY {
            return;
        }
        let Ok((mut conn, epoch)) = c.link.get().await else {
            return;
        };
        let limit = self.inner.command_timeout;
        match timed(limit, ::redis::cmd("PING").query_async::<Value>(&mut conn)).await {
            Ok(Ok(_)) => c.link.replied(),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "client-side cache: the tracked connection failed a ping; cache emptied");
                c.link.lost(epoch);
            }
            Err(_) => {
                tracing::warn!("client-side cache: the tracked connection did not answer a ping in time; cache emptied");
                c.link.lost(epoch);
            }
        }
    }
}

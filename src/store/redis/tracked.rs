//! The connection of a client-side cache: one RESP3 multiplexed connection
//! with `CLIENT TRACKING ON NOLOOP`, whose invalidation pushes feed the
//! [`ClientCache`].
//!
//! It is not a `ConnectionManager`, on purpose: a connection manager swaps
//! its socket behind the caller's back on reconnection and does not re-run
//! `CLIENT TRACKING` on the new one, so a reply could come from a socket
//! that tracks nothing, with no way to tell. Here every connection has an
//! epoch, tracking is switched on before the connection is handed out, and
//! a call's reply is cached only if its connection is still the live one
//! (see `cache.rs`). A lost connection (a `Disconnection` push from redis-rs,
//! or a call failing with a connection error) empties the cache; the next
//! call connects again, once, whoever asks first.
//!
//! Pushes are handled by a callback that redis-rs runs on the connection's
//! reader, in socket order, before the replies that follow them are handed
//! to their callers: an invalidation that precedes a reply is always applied
//! before that reply's caller can cache it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Client, PushInfo, PushKind, RedisError};

use super::cache::ClientCache;
use super::conn::{redis_error, timed};
use crate::{Error, Result};

/// The tracked connection of one store.
pub(crate) struct TrackedLink {
    /// A RESP3 client for the store's server.
    client: Client,
    connection_timeout: Duration,
    command_timeout: Duration,
    cache: Arc<ClientCache>,
    current: Mutex<Option<(MultiplexedConnection, u64)>>,
    epochs: AtomicU64,
    /// One connection attempt at a time.
    connecting: tokio::sync::Mutex<()>,
    /// When a reply last came in (ms since `born`), for the heartbeat.
    last_reply_ms: AtomicU64,
    born: Instant,
}

impl std::fmt::Debug for TrackedLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackedLink").finish_non_exhaustive()
    }
}

impl TrackedLink {
    /// A link for `client` (switched to RESP3 here); connects on first use.
    pub(crate) fn new(
        client: &Client,
        connection_timeout: Duration,
        command_timeout: Duration,
        cache: Arc<ClientCache>,
    ) -> Result<Arc<Self>> {
        let info = client.get_connection_info().clone();
        let redis = info
            .redis_settings()
            .clone()
            .set_protocol(::redis::ProtocolVersion::RESP3);
        let client = Client::open(info.set_redis_settings(redis)).map_err(Error::store)?;
        Ok(Arc::new(TrackedLink {
            client,
            connection_timeout,
            command_timeout,
            cache,
            current: Mutex::new(None),
            epochs: AtomicU64::new(0),
            connecting: tokio::sync::Mutex::new(()),
            last_reply_ms: AtomicU64::new(0),
            born: Instant::now(),
        }))
    }

    fn current(&self) -> Option<(MultiplexedConnection, u64)> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The live connection and its epoch, connecting (and switching
    /// tracking on) first if there is none.
    pub(crate) async fn get(self: &Arc<Self>) -> Result<(MultiplexedConnection, u64)> {
        if let Some(c) = self.current() {
            return Ok(c);
        }
        // One attempt at a time, shared: callers that arrive while one runs
        // take its outcome instead of queueing attempts of their own (each
        // could take the whole connection timeout when Redis is away).
        let _one_at_a_time = match self.connecting.try_lock() {
            Ok(guard) => guard,
            Err(_) => {
                drop(self.connecting.lock().await);
                return self.current().ok_or_else(|| {
                    Error::store(
                        "Redis is unreachable: the client-side cache's connection attempt failed",
                    )
                });
            }
        };
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let epoch = self.epochs.fetch_add(1, Ordering::Relaxed) + 1;
        let weak: Weak<TrackedLink> = Arc::downgrade(self);
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connection_timeout))
            .set_response_timeout(Some(self.command_timeout))
            .set_push_sender(move |push: PushInfo| {
                if let Some(link) = weak.upgrade() {
                    link.on_push(epoch, push);
                }
                Ok::<(), std::convert::Infallible>(())
            });
        let limit = self.connection_timeout.max(self.command_timeout);
        let mut conn = timed(
            limit,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await?
        .map_err(|e| redis_error(e, limit))?;
        let limit = self.command_timeout;
        timed(
            limit,
            ::redis::cmd("CLIENT")
                .arg("TRACKING")
                .arg("ON")
                .arg("NOLOOP")
                .query_async::<()>(&mut conn),
        )
        .await?
        .map_err(|e| redis_error(e, limit))?;
        // Publish first, then declare it live: a disconnection in between
        // finds it published and takes it back, and `connection_ready`
        // refuses an epoch already lost.
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some((conn.clone(), epoch));
        if !self.cache.connection_ready(epoch) {
            self.lost(epoch);
            return Err(Error::store(
                "the Redis connection of the client-side cache closed while it was set up",
            ));
        }
        self.replied();
        Ok((conn, epoch))
    }

    fn on_push(&self, epoch: u64, push: PushInfo) {
        match push.kind {
            PushKind::Invalidate => self.cache.on_invalidate(&push.data),
            PushKind::Disconnection => self.lost(epoch),
            // Nothing else is expected on this connection (no Pub/Sub).
            _ => {}
        }
    }

    /// The connection of `epoch` is gone: forget it and empty the cache.
    pub(crate) fn lost(&self, epoch: u64) {
        {
            let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
            if matches!(&*current, Some((_, e)) if *e == epoch) {
                *current = None;
            }
        }
        self.cache.connection_lost(epoch);
    }

    /// After a call on the connection of `epoch` failed: a connection error
    /// means the socket is gone (the disconnection push may come later, or
    /// not at all if nothing reads the socket any more).
    pub(crate) fn failed(&self, epoch: u64, e: &RedisError) {
        if !e.is_timeout() && (e.is_unrecoverable_error() || e.is_connection_dropped()) {
            self.lost(epoch);
        }
    }

    /// A reply came in.
    pub(crate) fn replied(&self) {
        self.last_reply_ms.store(
            u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// How long since the last reply.
    pub(crate) fn quiet_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_reply_ms.load(Ordering::Relaxed));
        self.born.elapsed().saturating_sub(last)
    }

    /// Whether a connection is up (for the heartbeat).
    pub(crate) fn is_up(&self) -> bool {
        self.current().is_some()
    }
}

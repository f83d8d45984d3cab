//! A [`Link`]: one multiplexed connection to one server, with epochs.
//!
//! Links serve the client-side cache (one per server: a connection with
//! `CLIENT TRACKING ON NOLOOP`, whose invalidation pushes feed that
//! server's [`ClientCache`]) and Sentinel deployments (where the server is
//! whichever master the sentinels name when the link connects). Every link
//! speaks RESP3, so that a `Disconnection` push says at once that the
//! server closed the connection.
//!
//! A link is not a `ConnectionManager`, on purpose: a connection manager
//! swaps its socket behind the caller's back on reconnection and does not
//! re-run `CLIENT TRACKING` on the new one, so a reply could come from a
//! socket that tracks nothing, with no way to tell; nor would it ask the
//! sentinels again. Here every connection has an epoch, tracking is switched
//! on before the connection is handed out, and a call's reply is cached
//! only if its connection is still the live one (see `cache/ticket.rs`). A
//! lost connection (a `Disconnection` push from redis-rs, a call failing
//! with a connection error or `READONLY`, a heartbeat finding the server
//! silent or demoted to replica) empties the cache; the next call connects
//! again — for Sentinel, to the master the sentinels name then — once,
//! whoever asks first.
//!
//! Pushes are handled by a callback that redis-rs runs on the connection's
//! reader, in socket order, before the replies that follow them are handed
//! to their callers: an invalidation that precedes a reply is always applied
//! before that reply's caller can cache it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, PushInfo, PushKind, RedisError, ServerErrorKind};

use super::target::Target;
use super::{redis_error, timed, within};
use crate::store::redis::cache::ClientCache;
use crate::{Error, Result};

/// One connection to one server: see the [module docs](self).
pub(crate) struct Link {
    target: Target,
    connection_timeout: Duration,
    command_timeout: Duration,
    /// The cache this link's tracking feeds, if it tracks.
    cache: Option<Arc<ClientCache>>,
    /// The store's runtime, where connections are opened (see `connect`).
    runtime: tokio::runtime::Handle,
    current: Mutex<Option<(MultiplexedConnection, u64)>>,
    epochs: AtomicU64,
    /// One connection attempt at a time.
    connecting: tokio::sync::Mutex<()>,
    /// When the server last proved alive and current: the send time of a
    /// command it answered (a call, a heartbeat answered as primary, the
    /// connection set-up), in ms since `born`.
    confirmed_ms: AtomicU64,
    /// Connection attempts finished.
    attempts: AtomicU64,
    /// The address of the last connection.
    addr: Mutex<Option<String>>,
    born: Instant,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("target", &self.target)
            .field("tracking", &self.cache.is_some())
            .finish_non_exhaustive()
    }
}

impl Link {
    /// A link to `target`, feeding `cache` (and then in RESP3, tracking on)
    /// when there is one; connects on first use.
    pub(crate) fn new(
        target: Target,
        connection_timeout: Duration,
        command_timeout: Duration,
        cache: Option<Arc<ClientCache>>,
        runtime: tokio::runtime::Handle,
    ) -> Arc<Self> {
        Arc::new(Link {
            runtime,
            target,
            connection_timeout,
            command_timeout,
            cache,
            current: Mutex::new(None),
            epochs: AtomicU64::new(0),
            connecting: tokio::sync::Mutex::new(()),
            confirmed_ms: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
            addr: Mutex::new(None),
            born: Instant::now(),
        })
    }

    /// The cache this link feeds, if it tracks.
    pub(crate) fn cache(&self) -> Option<&Arc<ClientCache>> {
        self.cache.as_ref()
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
        // could take the whole connection timeout when Redis is away). A
        // caller that waited and saw no attempt finish meanwhile makes the
        // next one: otherwise waiters could hand the lock to each other,
        // each failing fast, with nobody ever connecting again.
        let seen = self.attempts.load(Ordering::Acquire);
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(c) = self.current() {
            return Ok(c);
        }
        if self.attempts.load(Ordering::Acquire) != seen {
            return Err(Error::store(
                "Redis is unreachable: the connection attempt failed",
            ));
        }
        let attempt = self.connect().await;
        self.attempts.fetch_add(1, Ordering::Release);
        attempt
    }

    /// One connection attempt (the caller holds `connecting`).
    async fn connect(self: &Arc<Self>) -> Result<(MultiplexedConnection, u64)> {
        let sent = self.stamp();
        let epoch = self.epochs.fetch_add(1, Ordering::Relaxed) + 1;
        let weak: Weak<Link> = Arc::downgrade(self);
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connection_timeout))
            .set_response_timeout(Some(self.command_timeout));
        // Every link speaks RESP3 for the pushes: invalidations for a
        // tracking link, and for all a `Disconnection` as soon as the server
        // closes the connection (Sentinel kills the clients of a master it
        // demotes), so the next call reconnects instead of failing on it.
        let config = config.set_push_sender(move |push: PushInfo| {
            if let Some(link) = weak.upgrade() {
                link.on_push(epoch, push);
            }
            Ok::<(), std::convert::Infallible>(())
        });
        let limit = self.connection_timeout.max(self.command_timeout);
        let client = timed(limit, self.target.client()).await??;
        *self.addr.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(client.get_connection_info().addr().to_string());
        // The connection's driver task runs on the runtime that opens it: on
        // the store's, so that a connection opened while serving a request
        // does not die with a short-lived runtime (an actix-web worker's, a
        // test server's) and leave a dead socket that nothing reports.
        let opening = self.runtime.spawn(async move {
            client
                .get_multiplexed_async_connection_with_config(&config)
                .await
        });
        let mut conn = match tokio::time::timeout(limit, opening).await {
            Ok(Ok(opened)) => opened.map_err(|e| redis_error(e, limit))?,
            Ok(Err(join)) => return Err(Error::store(join)),
            Err(_) => return Err(Error::StoreTimeout(limit)),
        };
        let Some(cache) = &self.cache else {
            *self.current.lock().unwrap_or_else(PoisonError::into_inner) =
                Some((conn.clone(), epoch));
            self.answered(sent);
            return Ok((conn, epoch));
        };
        let limit = self.command_timeout;
        within(
            limit,
            ::redis::cmd("CLIENT")
                .arg("TRACKING")
                .arg("ON")
                .arg("NOLOOP")
                .query_async::<()>(&mut conn),
        )
        .await?;
        // Publish first, then declare it live: a disconnection in between
        // finds it published and takes it back, and `connection_ready`
        // refuses an epoch already lost.
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some((conn.clone(), epoch));
        if !cache.connection_ready(epoch) {
            self.lost(epoch);
            return Err(Error::store(
                "the Redis connection of the client-side cache closed while it was set up",
            ));
        }
        self.answered(sent);
        Ok((conn, epoch))
    }

    fn on_push(&self, epoch: u64, push: PushInfo) {
        match push.kind {
            PushKind::Invalidate => {
                if let Some(cache) = &self.cache {
                    cache.on_invalidate(&push.data);
                }
            }
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
        if let Some(cache) = &self.cache {
            cache.connection_lost(epoch);
        }
    }

    /// The live connection, whatever its epoch, is to be dropped (the
    /// server left the Cluster's primaries, the store is shutting down).
    pub(crate) fn drop_connection(&self) {
        if let Some((_, epoch)) = self.current() {
            self.lost(epoch);
        }
    }

    /// After a call on the connection of `epoch` failed: a connection error
    /// means the socket is gone (the disconnection push may come later, or
    /// not at all if nothing reads the socket any more); `READONLY` means
    /// the server was demoted to replica (a failover): the next call must
    /// find the new primary, and a cache fed by this server may have missed
    /// changes made on the new one.
    pub(crate) fn failed(&self, epoch: u64, e: &RedisError) {
        let demoted = e.kind() == ::redis::ErrorKind::Server(ServerErrorKind::ReadOnly);
        if demoted || (!e.is_timeout() && (e.is_unrecoverable_error() || e.is_connection_dropped()))
        {
            self.lost(epoch);
        }
    }

    /// The instant to pass to [`answered`](Self::answered): take it just
    /// before sending.
    pub(crate) fn stamp(&self) -> u64 {
        self.elapsed_ms()
    }

    /// The server answered a command sent at `sent` (from
    /// [`stamp`](Self::stamp)): it was alive then, and every invalidation it
    /// sent before the answer has been applied (pushes and replies share the
    /// socket, in order). The send time, not the time the reply is read,
    /// counts: on a busy runtime a reply that arrived before a partition can
    /// be read long after it, and must not vouch for the server since.
    pub(crate) fn answered(&self, sent: u64) {
        self.confirmed_ms.fetch_max(sent, Ordering::Relaxed);
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The address this link last connected to (`host:port`), for the
    /// Sentinel check.
    pub(crate) fn addr(&self) -> Option<String> {
        self.addr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Where the link connects.
    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    /// Whether the server proved alive within `window`: a cache hit is only
    /// served then, which bounds how long a partitioned instance serves
    /// copies (revoked sessions included) to `window`, whatever the load.
    pub(crate) fn confirmed_within(&self, window: Duration) -> bool {
        let last = self.confirmed_ms.load(Ordering::Relaxed);
        Duration::from_millis(self.elapsed_ms().saturating_sub(last)) < window
    }

    /// The live connection and its epoch, if one is up (the heartbeat does
    /// not connect).
    pub(crate) fn live(&self) -> Option<(MultiplexedConnection, u64)> {
        self.current()
    }
}

//! How one store call reaches Redis: which connection it goes over (the
//! plain one of the topology, or the tracked link of the client cache that
//! serves its key), running a script call under the command timeout, and
//! the cache bookkeeping each call needs (tickets, forgetting ended
//! sessions).

use std::sync::Arc;

use ::redis::aio::{ConnectionManager, MultiplexedConnection};
use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use ::redis::{Script, ScriptInvocation, Value};

use super::cache::{ClientCache, Ticket};
use super::connection::link::Link;
use super::connection::{is_redirect, redis_error, timed, within, Backend};
use super::keys::key_slot;
use super::RedisStore;
use crate::{Error, Result, SessionId};

/// A script invocation with these KEYS.
pub(super) fn invocation<'a>(script: &'a Script, keys: &[String]) -> ScriptInvocation<'a> {
    let mut inv = script.prepare_invoke();
    for key in keys {
        inv.key(key);
    }
    inv
}

/// The connection one call goes over.
pub(super) enum Conn {
    /// A standalone server's auto-reconnecting connection.
    Manager(ConnectionManager),
    /// A Cluster connection (redis-rs routes by key).
    Cluster(ClusterConnection),
    /// A link (the Sentinel master, or a tracked link of the cache), the
    /// epoch of its connection, and the key the call was routed by.
    Link {
        link: Arc<Link>,
        conn: MultiplexedConnection,
        epoch: u64,
        route: String,
    },
}

impl RedisStore {
    /// The connection for a call whose first key is `key`.
    pub(super) async fn conn(&self, key: &str) -> Result<Conn> {
        if let Some(nodes) = &self.inner.cache {
            let link = match nodes.link(key).await {
                Ok(link) => link,
                Err(e) => {
                    nodes.mark_stale();
                    return Err(e);
                }
            };
            let (conn, epoch) = link.get().await?;
            return Ok(Conn::Link {
                link,
                conn,
                epoch,
                route: key.to_owned(),
            });
        }
        Self::plain(&self.inner.backend, key).await
    }

    /// A connection of `backend` (no cache) for a call routed by `key`.
    pub(super) async fn plain(backend: &Backend, key: &str) -> Result<Conn> {
        Ok(match backend {
            Backend::Standalone(c) => Conn::Manager(c.clone()),
            Backend::Cluster(c) => Conn::Cluster(c.clone()),
            Backend::Sentinel(link) => {
                let (conn, epoch) = link.get().await?;
                Conn::Link {
                    link: link.clone(),
                    conn,
                    epoch,
                    route: key.to_owned(),
                }
            }
        })
    }

    /// Runs one script call on `conn` under the command timeout. On a link,
    /// a reply that proves the call did not run — `READONLY` (the server
    /// was demoted: a failover) or `MOVED` (the slot moved to another
    /// primary) — is retried once, on the new master or primary, within
    /// what is left of the command timeout, and `conn` becomes the
    /// connection that answered.
    pub(super) async fn exec(&self, conn: &mut Conn, inv: &ScriptInvocation<'_>) -> Result<Value> {
        let limit = self.inner.command_timeout;
        let started = std::time::Instant::now();
        let first = match &mut *conn {
            Conn::Manager(c) => return within(limit, inv.invoke_async::<Value>(c)).await,
            Conn::Cluster(c) => return within(limit, inv.invoke_async::<Value>(c)).await,
            Conn::Link {
                link,
                conn: c,
                epoch,
                ..
            } => self.on_link(link, c, *epoch, inv).await?,
        };
        let (Err(e), Conn::Link { link, route, .. }) = (&first, &*conn) else {
            return first.map_err(|e| redis_error(e, limit));
        };
        match e.kind() {
            ::redis::ErrorKind::Server(::redis::ServerErrorKind::ReadOnly) => {}
            ::redis::ErrorKind::Server(::redis::ServerErrorKind::Moved) => {
                // The link is still up, and calls in flight on it may carry
                // tickets for keys of the moved slot: none may cache.
                if let Some(cache) = link.cache() {
                    cache.reset();
                }
            }
            _ => return first.map_err(|e| redis_error(e, limit)),
        }
        // Finding the new master or primary and the second try share what
        // is left of the command timeout: the whole call stays within it.
        let left = limit.saturating_sub(started.elapsed());
        if left.is_zero() {
            return first.map_err(|e| redis_error(e, limit));
        }
        let route = route.clone();
        let retry = async {
            let mut again = match (&self.inner.cache, link.cache()) {
                (Some(nodes), Some(_)) => {
                    nodes.refresh().await?;
                    self.conn(&route).await?
                }
                // A plain Sentinel link: the store's, or the revocations' own.
                _ => {
                    let backend = match &self.inner.durable_backend {
                        Some(b @ Backend::Sentinel(own)) if Arc::ptr_eq(own, link) => b,
                        _ => &self.inner.backend,
                    };
                    Self::plain(backend, &route).await?
                }
            };
            let retried = match &mut again {
                Conn::Link {
                    link,
                    conn: c,
                    epoch,
                    ..
                } => Some(self.on_link(link, c, *epoch, inv).await?),
                _ => None,
            };
            Ok::<_, crate::Error>((again, retried))
        };
        let (again, retried) = match tokio::time::timeout(left, retry).await {
            Ok(done) => done?,
            Err(_) => return Err(crate::Error::StoreTimeout(limit)),
        };
        let Some(retried) = retried else {
            return first.map_err(|e| redis_error(e, limit));
        };
        // The call's tickets belong to the first connection, whose epoch
        // (READONLY: lost) or cache (MOVED: reset) no longer lets them
        // cache; the retry's reply is not cached.
        *conn = again;
        retried.map_err(|e| redis_error(e, limit))
    }

    /// One invocation on a link's connection, with the link told.
    async fn on_link(
        &self,
        link: &Arc<Link>,
        conn: &mut MultiplexedConnection,
        epoch: u64,
        inv: &ScriptInvocation<'_>,
    ) -> Result<::redis::RedisResult<Value>> {
        let sent = link.stamp();
        let result = timed(self.inner.command_timeout, inv.invoke_async::<Value>(conn)).await?;
        match &result {
            Ok(_) => link.answered(sent),
            Err(e) => {
                link.failed(epoch, e);
                if is_redirect(e) || e.is_connection_dropped() || e.is_io_error() {
                    if let Some(nodes) = &self.inner.cache {
                        nodes.mark_stale();
                    }
                }
            }
        }
        Ok(result)
    }

    /// Runs one script call whose first key is `key` under the command
    /// timeout.
    pub(super) async fn run(&self, key: &str, inv: &ScriptInvocation<'_>) -> Result<Value> {
        let mut conn = self.conn(key).await?;
        self.exec(&mut conn, inv).await
    }

    /// Starts a call on session key `key` for the cache, if `conn` feeds one.
    pub(super) fn ticket(&self, conn: &Conn, key: &str) -> Option<Ticket> {
        match conn {
            Conn::Link { link, epoch, .. } => link.cache().map(|c| c.begin(key.to_owned(), *epoch)),
            _ => None,
        }
    }

    /// The cache that may serve `key` now: its link exists and its server
    /// proved alive within two heartbeat intervals (so a partitioned
    /// instance stops serving copies within that bound, whatever the load).
    pub(super) fn cache_for(&self, key: &str) -> Option<Arc<ClientCache>> {
        let link = self.inner.cache.as_ref()?.cached_link(key)?;
        if !link.confirmed_within(2 * self.inner.heartbeat) {
            return None;
        }
        link.cache().cloned()
    }

    /// Every cache (one per server).
    pub(super) fn caches(&self) -> Vec<Arc<ClientCache>> {
        self.inner.cache.as_ref().map_or_else(Vec::new, |nodes| {
            nodes
                .all()
                .iter()
                .filter_map(|l| l.cache().cloned())
                .collect()
        })
    }

    /// Drops a session this store ended from its cache.
    pub(super) fn forget(&self, id: &SessionId) {
        let key = self.inner.keys.session(id);
        for cache in self.caches() {
            cache.forget(&key);
        }
    }

    /// A write failed after it may have run, and which sessions it ended is
    /// unknown (login evictions, `revoke_user`): empty the cache.
    pub(super) fn forget_all(&self) {
        for cache in self.caches() {
            cache.reset();
        }
    }

    /// `ARGV` flag of the load and save scripts: whether this store keeps a
    /// client-side cache.
    pub(super) fn cache_flag(&self) -> &'static str {
        if self.inner.cache.is_some() {
            "1"
        } else {
            "0"
        }
    }

    /// With [`durable_revocations`](super::RedisStoreBuilder::durable_revocations):
    /// waits until enough replicas acknowledged every write sent on `conn`
    /// so far (`WAIT`), the revocation just made on key `key` included.
    pub(super) async fn wait_durable(&self, conn: &mut Conn, key: &str) -> Result<()> {
        let Some((wanted, timeout)) = self.inner.durable else {
            return Ok(());
        };
        let mut wait = ::redis::cmd("WAIT");
        wait.arg(wanted).arg(
            u64::try_from(timeout.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
        );
        let limit = timeout + self.inner.command_timeout;
        let acked: Result<u64> = match conn {
            Conn::Manager(c) => within(limit, wait.query_async::<u64>(c)).await,
            Conn::Link { conn, .. } => within(limit, wait.query_async::<u64>(conn)).await,
            Conn::Cluster(c) => {
                // WAIT has no key: send it to the primary that took the write.
                let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                    Route::new(key_slot(key), SlotAddr::Master),
                ));
                timed(limit, c.route_command(wait, route))
                    .await?
                    .and_then(|v| ::redis::from_redis_value::<u64>(v).map_err(Into::into))
                    .map_err(|e| redis_error(e, limit))
            }
        };
        let acked = acked?;
        if acked < wanted {
            return Err(Error::NotDurable { acked, wanted });
        }
        Ok(())
    }

    /// The connection revocations go over: with durable revocations, a
    /// connection of their own (`WAIT` blocks the connection it runs on,
    /// which must not stall every other request), else the usual one.
    pub(super) async fn revocation_conn(&self, key: &str) -> Result<Conn> {
        match &self.inner.durable_backend {
            Some(backend) => Self::plain(backend, key).await,
            None => self.conn(key).await,
        }
    }
}

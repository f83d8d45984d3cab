//! One connection type over the three Redis topologies.
//!
//! - **Standalone**: a `ConnectionManager` (auto-reconnecting, multiplexed).
//! - **Cluster**: redis-rs's `ClusterConnection` (`cluster-async`): it
//!   routes each call by its first key's slot, to primaries only, follows
//!   `MOVED`/`ASK`, and refreshes its slot map after a failover or a
//!   resharding. Every script call of the store stays in one slot.
//! - **Sentinel**: a [`Link`] whose target is "the master the sentinels
//!   name now", asked again whenever the link reconnects; a connection
//!   error or a `READONLY` reply (the master was demoted) drops the
//!   connection, so the next call finds the new master.
//!
//! With the client-side cache on, script calls go over tracked links
//! instead (see [`nodes`]); the plain connection stays for
//! [`RedisStore::connection`](super::RedisStore::connection), script
//! loading and slot-map queries.

pub(crate) mod link;
pub(crate) mod nodes;
mod slots;
pub(crate) mod target;

use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};

use self::link::Link;
use crate::{Error, Result};

/// Runs a future under a time limit.
pub(crate) async fn timed<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = T>,
) -> Result<T> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| Error::StoreTimeout(limit))
}

/// Runs a Redis call under a time limit, its error as a sessionkit error.
pub(crate) async fn within<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = ::redis::RedisResult<T>>,
) -> Result<T> {
    timed(limit, fut).await?.map_err(|e| redis_error(e, limit))
}

/// A Redis error as a sessionkit error: a timeout as
/// [`Error::StoreTimeout`], `OOM` (maxmemory reached under `noeviction`)
/// as [`Error::StoreFull`].
pub(crate) fn redis_error(e: RedisError, limit: Duration) -> Error {
    if e.is_timeout() {
        Error::StoreTimeout(limit)
    } else if e.code() == Some("OOM") {
        Error::StoreFull
    } else {
        Error::store(e)
    }
}

/// Whether a reply says the Cluster's slot map changed under us.
pub(crate) fn is_redirect(e: &RedisError) -> bool {
    use ::redis::ServerErrorKind as K;
    matches!(
        e.kind(),
        ::redis::ErrorKind::Server(
            K::Moved | K::Ask | K::TryAgain | K::ClusterDown | K::ReadOnly | K::MasterDown
        )
    )
}

/// The store's plain connection, by topology.
pub(crate) enum Backend {
    /// One server.
    Standalone(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
    /// The master of a Sentinel-monitored set.
    Sentinel(Arc<Link>),
}

impl Backend {
    /// A connection for one call.
    pub(crate) async fn connection(&self) -> Result<RedisConnection> {
        Ok(match self {
            Backend::Standalone(c) => RedisConnection(Kind::Standalone(c.clone())),
            Backend::Cluster(c) => RedisConnection(Kind::Cluster(c.clone())),
            Backend::Sentinel(link) => RedisConnection(Kind::Sentinel(link.get().await?.0)),
        })
    }

    /// The name of the topology, for `Debug`.
    pub(crate) fn topology(&self) -> &'static str {
        match self {
            Backend::Standalone(_) => "standalone",
            Backend::Cluster(_) => "cluster",
            Backend::Sentinel(_) => "sentinel",
        }
    }
}

/// A connection to the store's Redis for your own commands, from
/// [`RedisStore::connection`](super::RedisStore::connection): it implements
/// redis-rs's [`ConnectionLike`], so `query_async(&mut conn)` works on it
/// whatever the topology (on a Cluster, commands are routed by key).
#[derive(Clone)]
pub struct RedisConnection(Kind);

#[derive(Clone)]
enum Kind {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(MultiplexedConnection),
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.0 {
            Kind::Standalone(_) => "standalone",
            Kind::Cluster(_) => "cluster",
            Kind::Sentinel(_) => "sentinel master",
        };
        f.debug_tuple("RedisConnection").field(&kind).finish()
    }
}

impl RedisConnection {
    /// The cluster connection, on a Cluster (for `route_command`).
    pub fn as_cluster(&mut self) -> Option<&mut ClusterConnection> {
        match &mut self.0 {
            Kind::Cluster(c) => Some(c),
            _ => None,
        }
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
            Kind::Standalone(c) => c.req_packed_command(cmd),
            Kind::Cluster(c) => c.req_packed_command(cmd),
            Kind::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.0 {
            Kind::Standalone(c) => c.req_packed_commands(pipeline, offset, count),
            Kind::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Kind::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Kind::Standalone(c) => c.get_db(),
            Kind::Cluster(c) => c.get_db(),
            Kind::Sentinel(c) => c.get_db(),
        }
    }
}

//! Opening a store's connections for its topology: the plain connection
//! ([`Backend`]) and the tracked links of the client-side cache.

use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClientBuilder;
use ::redis::sentinel::SentinelNodeConnectionInfo;
use ::redis::{Client, IntoConnectionInfo, TlsMode};

use super::builder::{RedisStoreBuilder, Source};
use super::cache::{BATCH, FLUSH_EVERY};
use super::connection::link::Link;
use super::connection::nodes::{CacheNodes, CacheSettings, ClusterLinks};
use super::connection::target::Target;
use super::connection::{within, Backend};
use crate::{Error, Result};

impl RedisStoreBuilder {
    /// The plain connection of the configured topology.
    pub(super) async fn open_backend(&self) -> Result<Backend> {
        let limit = self.connect_limit();
        match &self.source {
            Source::None => Err(Error::store(
                "RedisStore::builder() needs a URL, a client, a connection manager, .cluster(nodes) or .sentinel(master, sentinels)",
            )),
            Source::Manager(conn) => Ok(Backend::Standalone(conn.clone())),
            Source::Url(url) => {
                let client = Client::open(url.as_str()).map_err(Error::store)?;
                let conn = connect(client, self.manager_config(), self.lazy, limit).await?;
                Ok(Backend::Standalone(conn))
            }
            Source::Client(client) => {
                let conn = connect(client.clone(), self.manager_config(), self.lazy, limit).await?;
                Ok(Backend::Standalone(conn))
            }
            Source::Cluster(nodes) => {
                if nodes.is_empty() {
                    return Err(Error::store("RedisStoreBuilder::cluster needs at least one node URL"));
                }
                let client = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                    .connection_timeout(self.connection_timeout)
                    .response_timeout(self.command_timeout)
                    .retries(u32::try_from(self.retries).unwrap_or(u32::MAX))
                    .min_retry_wait(duration_u64(self.retry_min_delay))
                    .max_retry_wait(duration_u64(self.retry_max_delay))
                    .build()
                    .map_err(|e| Error::store(format!("invalid Redis Cluster configuration: {e}")))?;
                if self.lazy {
                    // Connects to the nodes in the background; calls fail
                    // (503) until it can.
                    let conn = client
                        .get_pending_async_connection_with_config(::redis::cluster::ClusterConfig::new());
                    return Ok(Backend::Cluster(conn));
                }
                let conn = within(limit, client.get_async_connection()).await?;
                Ok(Backend::Cluster(conn))
            }
            Source::Sentinel { .. } => {
                let link = Link::new(
                    self.sentinel_target()?,
                    self.connection_timeout,
                    self.command_timeout,
                    None,
                    store_runtime()?,
                );
                if !self.lazy {
                    link.get().await?;
                }
                Ok(Backend::Sentinel(link))
            }
        }
    }

    /// The tracked links of the client-side cache, if it is on.
    pub(super) async fn open_cache(&self, backend: &Backend) -> Result<Option<CacheNodes>> {
        let Some(capacity) = self.client_cache else {
            return Ok(None);
        };
        let margin = FLUSH_EVERY.saturating_add(self.command_timeout);
        let settings = CacheSettings {
            capacity,
            batch_margin_ms: i64::try_from(margin.as_millis()).unwrap_or(i64::MAX),
            batch_size: BATCH,
            connection_timeout: self.connection_timeout,
            command_timeout: self.command_timeout,
            batch_full: Arc::new(tokio::sync::Notify::new()),
            runtime: store_runtime()?,
        };
        let nodes = match (&self.source, backend) {
            (Source::Url(url), _) => {
                let client = Client::open(url.as_str()).map_err(Error::store)?;
                CacheNodes::One(settings.link(Target::Fixed(Box::new(client))))
            }
            (Source::Client(client), _) => {
                CacheNodes::One(settings.link(Target::Fixed(Box::new(client.clone()))))
            }
            (Source::Sentinel { .. }, _) => CacheNodes::One(settings.link(self.sentinel_target()?)),
            (Source::Cluster(nodes), Backend::Cluster(conn)) => {
                let first = nodes.first().map(String::as_str).unwrap_or_default();
                let template = first.into_connection_info().map_err(Error::store)?;
                CacheNodes::Cluster(Box::new(ClusterLinks::new(
                    conn.clone(),
                    template,
                    settings,
                )))
            }
            _ => {
                return Err(Error::store(
                    "RedisStoreBuilder::client_cache needs a URL, a client, a Cluster or Sentinel",
                ))
            }
        };
        if !self.lazy {
            match &nodes {
                CacheNodes::One(link) => {
                    link.get().await?;
                }
                CacheNodes::Cluster(_) => nodes.refresh().await?,
            }
        }
        Ok(Some(nodes))
    }

    /// A target for the configured Sentinel master.
    pub(super) fn sentinel_target(&self) -> Result<Target> {
        let Source::Sentinel { master, sentinels } = &self.source else {
            return Err(Error::store("not a Sentinel configuration"));
        };
        if sentinels.is_empty() {
            return Err(Error::store(
                "RedisStoreBuilder::sentinel needs at least one sentinel URL",
            ));
        }
        let mut node = SentinelNodeConnectionInfo::default();
        if sentinels.iter().any(|s| s.starts_with("rediss://")) {
            node = node.set_tls_mode(TlsMode::Secure);
        }
        if let Some(password) = &self.sentinel_master_password {
            let info = ::redis::RedisConnectionInfo::default().set_password(password);
            node = node.set_redis_connection_info(info);
        }
        Target::sentinel(master, sentinels, node)
    }
}

/// The runtime the store is built on: its connections and background
/// tasks live there.
fn store_runtime() -> Result<tokio::runtime::Handle> {
    tokio::runtime::Handle::try_current().map_err(|_| {
        Error::store("RedisStore must be built inside a Tokio runtime (its connections and background tasks run there)")
    })
}

fn duration_u64(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Opens an auto-reconnecting connection: now, or on first use when lazy.
pub(super) async fn connect(
    client: Client,
    config: ConnectionManagerConfig,
    lazy: bool,
    limit: Duration,
) -> Result<ConnectionManager> {
    if lazy {
        return ConnectionManager::new_lazy_with_config(client, config).map_err(Error::store);
    }
    within(limit, ConnectionManager::new_with_config(client, config)).await
}

/// Whether the server runs in Cluster mode (`INFO cluster`): a Cluster
/// node given as a plain URL. Only then must each script call stay in one
/// slot; a standalone server lets a login retire an anonymous session in
/// the same call.
pub(super) async fn cluster_enabled(backend: &Backend, limit: Duration) -> Result<bool> {
    let mut conn = backend.connection().await?;
    let info: String = within(
        limit,
        ::redis::cmd("INFO").arg("cluster").query_async(&mut conn),
    )
    .await?;
    Ok(info.lines().any(|l| l.trim() == "cluster_enabled:1"))
}

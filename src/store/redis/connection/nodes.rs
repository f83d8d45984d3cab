//! The links of a client-side cache: one for a standalone server or a
//! Sentinel master, one per primary on a Redis Cluster.
//!
//! Tracking is per connection and per server: a key read on primary A is
//! tracked by A only, and A's invalidations reach only A's connection. So on
//! a Cluster the cache keeps a tracked [`Link`] (and a [`ClientCache`]) per
//! primary and routes each call by its key's slot, from its own
//! [`SlotMap`]. Per-primary caches are emptied independently: a primary that
//! disconnects, stops answering, is demoted (`READONLY`, or a heartbeat
//! `ROLE` saying replica) or leaves the slot map takes only its own copies
//! with it. A `MOVED`, `ASK`, `CLUSTERDOWN` or `TRYAGAIN` reply marks the
//! slot map stale; the next call fetches it again (`CLUSTER SLOTS` over
//! the store's `ClusterConnection`) before routing, and the heartbeat
//! refreshes it every few seconds anyway.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::Notify;

use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use ::redis::{Client, ConnectionAddr, ConnectionInfo, Value};

use super::link::Link;
use super::slots::SlotMap;
use super::target::Target;
use super::within;
use crate::store::redis::cache::ClientCache;
use crate::store::redis::keys::key_slot;
use crate::{Error, Result};

/// How a new cache and its link are made.
#[derive(Debug, Clone)]
pub(crate) struct CacheSettings {
    pub(crate) capacity: NonZeroUsize,
    pub(crate) batch_margin_ms: i64,
    pub(crate) batch_size: usize,
    pub(crate) connection_timeout: Duration,
    pub(crate) command_timeout: Duration,
    /// Shared by every cache made here: the flush task waits on it.
    pub(crate) batch_full: Arc<Notify>,
    /// The store's runtime: links made later, while serving a request,
    /// still open their connections there.
    pub(crate) runtime: tokio::runtime::Handle,
}

impl CacheSettings {
    pub(crate) fn link(&self, target: Target) -> Arc<Link> {
        let cache = Arc::new(ClientCache::new(
            self.capacity,
            self.batch_margin_ms,
            self.batch_size,
            self.batch_full.clone(),
        ));
        Link::new(
            target,
            self.connection_timeout,
            self.command_timeout,
            Some(cache),
            self.runtime.clone(),
        )
    }
}

/// The tracked links of a client-side cache.
pub(crate) enum CacheNodes {
    /// One server: standalone, or the Sentinel master.
    One(Arc<Link>),
    /// One link per Cluster primary.
    Cluster(Box<ClusterLinks>),
}

/// The per-primary links of a Cluster, routed by slot.
pub(crate) struct ClusterLinks {
    /// Asked for `CLUSTER SLOTS`.
    seed: ClusterConnection,
    /// Credentials, database and TLS settings for every node.
    template: ConnectionInfo,
    settings: CacheSettings,
    map: RwLock<Arc<SlotMap>>,
    links: Mutex<HashMap<String, Arc<Link>>>,
    stale: AtomicBool,
    refreshing: tokio::sync::Mutex<()>,
}

impl CacheNodes {
    /// The link whose cache may hold `key`, if that link exists (no I/O:
    /// for cache lookups).
    pub(crate) fn cached_link(&self, key: &str) -> Option<Arc<Link>> {
        match self {
            CacheNodes::One(link) => Some(link.clone()),
            CacheNodes::Cluster(c) => c.existing(key),
        }
    }

    /// The link a call on `key` goes over, fetching the slot map first if
    /// it is stale.
    pub(crate) async fn link(&self, key: &str) -> Result<Arc<Link>> {
        match self {
            CacheNodes::One(link) => Ok(link.clone()),
            CacheNodes::Cluster(c) => c.route(key).await,
        }
    }

    /// Every link (for the heartbeat, the touch flush, resets).
    pub(crate) fn all(&self) -> Vec<Arc<Link>> {
        match self {
            CacheNodes::One(link) => vec![link.clone()],
            CacheNodes::Cluster(c) => c.lock().values().cloned().collect(),
        }
    }

    /// Woken when any of the caches has a full batch of touches.
    pub(crate) fn batch_full(&self) -> Option<Arc<Notify>> {
        match self {
            CacheNodes::One(link) => link.cache().map(|c| c.batch_full.clone()),
            CacheNodes::Cluster(c) => Some(c.settings.batch_full.clone()),
        }
    }

    /// A reply said the slot map is out of date.
    pub(crate) fn mark_stale(&self) {
        if let CacheNodes::Cluster(c) = self {
            c.stale.store(true, Ordering::Relaxed);
        }
    }

    /// Fetches the slot map again (Cluster only; a no-op otherwise).
    pub(crate) async fn refresh(&self) -> Result<()> {
        match self {
            CacheNodes::One(_) => Ok(()),
            CacheNodes::Cluster(c) => c.refresh().await,
        }
    }
}

impl ClusterLinks {
    pub(crate) fn new(
        seed: ClusterConnection,
        template: ConnectionInfo,
        settings: CacheSettings,
    ) -> Self {
        ClusterLinks {
            seed,
            template,
            settings,
            map: RwLock::new(Arc::new(SlotMap::default())),
            links: Mutex::new(HashMap::new()),
            stale: AtomicBool::new(true),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Link>>> {
        self.links.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn map(&self) -> Arc<SlotMap> {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn existing(&self, key: &str) -> Option<Arc<Link>> {
        let map = self.map();
        let addr = map.primary(key_slot(key))?;
        self.lock().get(addr).cloned()
    }

    async fn route(&self, key: &str) -> Result<Arc<Link>> {
        if self.stale.load(Ordering::Relaxed) || self.map().is_empty() {
            self.refresh().await?;
        }
        let slot = key_slot(key);
        let map = self.map();
        let Some(addr) = map.primary(slot) else {
            return Err(Error::store(format!(
                "Redis Cluster: no primary serves slot {slot} now"
            )));
        };
        if let Some(link) = self.lock().get(addr) {
            return Ok(link.clone());
        }
        let client = Client::open(self.node_info(addr)?).map_err(Error::store)?;
        let link = self.settings.link(Target::Fixed(Box::new(client)));
        Ok(self.lock().entry(addr.to_owned()).or_insert(link).clone())
    }

    /// The connection info of node `addr` (`host:port`): the template's
    /// credentials and TLS settings, that node's address.
    fn node_info(&self, addr: &str) -> Result<ConnectionInfo> {
        let bad = || Error::store(format!("Redis Cluster: bad node address {addr:?}"));
        let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host = host.to_owned();
        let addr = match self.template.addr() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host,
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => ConnectionAddr::Tcp(host, port),
        };
        Ok(self.template.clone().set_addr(addr))
    }

    async fn refresh(&self) -> Result<()> {
        let Ok(_one_at_a_time) = self.refreshing.try_lock() else {
            // Someone is fetching it: wait for that fetch instead.
            drop(self.refreshing.lock().await);
            return Ok(());
        };
        let limit = self.settings.command_timeout;
        let mut seed = self.seed.clone();
        let reply: Value = within(
            limit,
            seed.route_command(
                ::redis::cmd("CLUSTER").arg("SLOTS").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary),
            ),
        )
        .await?;
        let map = SlotMap::from_reply(reply)
            .map_err(|e| Error::store(format!("Redis Cluster: odd CLUSTER SLOTS reply: {e}")))?;
        let primaries = map.primaries();
        *self.map.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(map);
        self.stale.store(false, Ordering::Relaxed);
        // A node that no longer serves slots takes its copies with it: its
        // keys may be written on their new primary, which it does not hear.
        let gone: Vec<Arc<Link>> = {
            let mut links = self.lock();
            let gone: Vec<String> = links
                .keys()
                .filter(|a| !primaries.contains(*a))
                .cloned()
                .collect();
            gone.iter().filter_map(|a| links.remove(a)).collect()
        };
        for link in gone {
            link.drop_connection();
        }
        Ok(())
    }
}

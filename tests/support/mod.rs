//! Test harness shared by every integration suite: one set of scenarios runs
//! against every store backend.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use sessionkit::clock::ManualClock;
use sessionkit::events::EventBus;
use sessionkit::{MemoryStore, SessionConfig, SessionManager, SessionStore};

#[cfg(feature = "axum")]
pub mod axum_app;
pub mod browser;
pub mod events;
pub mod failing_store;
#[cfg(feature = "testing")]
pub mod harness;
pub mod keyed;
pub mod load;
pub mod logs;
pub mod outcomes;
pub mod persist;
#[cfg(feature = "postgres")]
pub mod postgres_server;
pub mod race;
pub mod records;
#[cfg(feature = "redis")]
pub mod redis_cluster;
#[cfg(feature = "redis")]
pub mod redis_sentinel;
#[cfg(feature = "redis")]
pub mod redis_server;
#[cfg(feature = "redis")]
pub mod shared;
#[cfg(feature = "redis")]
pub mod store_k;
#[cfg(any(feature = "redis", feature = "postgres"))]
pub mod watchdog;
#[cfg(feature = "postgres")]
pub use postgres_server::PostgresServer;
#[cfg(feature = "redis")]
use redis_cluster::RedisCluster;
#[cfg(feature = "redis")]
use redis_sentinel::RedisSentinel;
#[cfg(feature = "redis")]
pub use redis_server::RedisServer;
#[cfg(feature = "postgres")]
use sessionkit::postgres::PostgresStore;
#[cfg(feature = "redis")]
use sessionkit::redis::RedisStore;

/// A backend's store as its own type (one per store kind).
pub enum Concrete {
    Memory(MemoryStore),
    #[cfg(feature = "redis")]
    Redis(RedisStore),
    #[cfg(feature = "postgres")]
    Postgres(PostgresStore),
}

impl Concrete {
    /// The store as the manager sees it.
    pub fn store(&self) -> Arc<dyn SessionStore> {
        match self {
            Concrete::Memory(s) => Arc::new(s.clone()),
            #[cfg(feature = "redis")]
            Concrete::Redis(s) => Arc::new(s.clone()),
            #[cfg(feature = "postgres")]
            Concrete::Postgres(s) => Arc::new(s.clone()),
        }
    }

    /// The store's event bus.
    pub fn events(&self) -> Arc<dyn EventBus> {
        match self {
            Concrete::Memory(s) => Arc::new(s.events()),
            #[cfg(feature = "redis")]
            Concrete::Redis(s) => Arc::new(s.events()),
            #[cfg(feature = "postgres")]
            Concrete::Postgres(s) => Arc::new(s.events()),
        }
    }

    /// A manager on this store with events on.
    pub fn manager_with_events(&self, config: SessionConfig) -> SessionManager {
        SessionManager::from_arc(self.store(), config).with_events(self.events())
    }
}

/// A store under test, with a way to move its clock.
pub enum Backend {
    /// In-memory store on a manual clock: time moves instantly.
    Memory {
        store: MemoryStore,
        clock: ManualClock,
    },
    /// In-memory store on Tokio's clock ([`TokioClock`](sessionkit::clock::TokioClock)):
    /// under a paused runtime, time moves with `tokio::time::sleep`.
    MemoryPaused { store: MemoryStore },
    /// Redis store on a `redis-server` of this test's own: its clock is
    /// real, so time moves by sleeping.
    #[cfg(feature = "redis")]
    Redis {
        server: RedisServer,
        store: RedisStore,
    },
    /// Redis store with its client-side cache on
    /// ([`RedisStoreBuilder::client_cache`](sessionkit::redis::RedisStoreBuilder::client_cache)),
    /// on a `redis-server` of this test's own.
    #[cfg(feature = "redis")]
    RedisCached {
        server: RedisServer,
        store: RedisStore,
    },
    /// Redis store on the test binary's shared 6-node Redis Cluster
    /// ([`shared::cluster`]), under a key prefix of this test's own.
    #[cfg(feature = "redis")]
    RedisCluster {
        cluster: &'static RedisCluster,
        prefix: String,
        store: RedisStore,
    },
    /// [`Backend::RedisCluster`] with the client-side cache on (one per
    /// primary).
    #[cfg(feature = "redis")]
    RedisClusterCached {
        cluster: &'static RedisCluster,
        prefix: String,
        store: RedisStore,
    },
    /// Redis store on the test binary's shared Sentinel setup
    /// ([`shared::sentinel`]: master, replica, 3 sentinels), under a key
    /// prefix of this test's own.
    #[cfg(feature = "redis")]
    RedisSentinel {
        sentinel: &'static RedisSentinel,
        prefix: String,
        store: RedisStore,
    },
    /// [`Backend::RedisSentinel`] with the client-side cache on.
    #[cfg(feature = "redis")]
    RedisSentinelCached {
        sentinel: &'static RedisSentinel,
        prefix: String,
        store: RedisStore,
    },
    /// PostgreSQL store on the test binary's shared server
    /// ([`postgres_server::shared`]), in a schema of this test's own.
    #[cfg(feature = "postgres")]
    Postgres {
        server: &'static PostgresServer,
        schema: String,
        store: PostgresStore,
    },
    /// [`Backend::Postgres`] with the local cache on (1000 sessions).
    #[cfg(feature = "postgres")]
    PostgresCached {
        server: &'static PostgresServer,
        schema: String,
        store: PostgresStore,
    },
}

impl Backend {
    /// A fresh in-memory backend (no background purge: tests purge explicitly).
    pub async fn memory() -> Self {
        let clock = ManualClock::starting_now();
        let store = MemoryStore::builder()
            .clock(clock.clone())
            .purge_interval(None)
            .build();
        Backend::Memory { store, clock }
    }

    /// A fresh in-memory backend on Tokio's clock, for paused-time tests.
    pub async fn memory_paused() -> Self {
        let store = MemoryStore::builder()
            .clock(sessionkit::clock::TokioClock::new())
            .purge_interval(None)
            .build();
        Backend::MemoryPaused { store }
    }

    /// A fresh Redis backend: starts a `redis-server` on a free port (fails
    /// with install instructions if there is none).
    #[cfg(feature = "redis")]
    pub async fn redis() -> Self {
        let server = tokio::task::spawn_blocking(RedisServer::start)
            .await
            .expect("start redis-server");
        let store = RedisStore::connect(&server.url())
            .await
            .expect("connect to the test's redis-server");
        Backend::Redis { server, store }
    }

    /// A fresh Redis backend with the client-side cache on (1000 sessions).
    #[cfg(feature = "redis")]
    pub async fn redis_cached() -> Self {
        let server = tokio::task::spawn_blocking(RedisServer::start)
            .await
            .expect("start redis-server");
        let store = RedisStore::builder()
            .url(server.url())
            .client_cache(1000)
            .build()
            .await
            .expect("connect to the test's redis-server");
        Backend::RedisCached { server, store }
    }

    /// A Redis store on the binary's shared Redis Cluster, under a fresh
    /// key prefix (the cluster starts on first use: see [`shared`]).
    #[cfg(feature = "redis")]
    pub async fn redis_cluster() -> Self {
        let (cluster, prefix, store) = Self::on_cluster(None).await;
        Backend::RedisCluster {
            cluster,
            prefix,
            store,
        }
    }

    /// [`redis_cluster`](Self::redis_cluster) with the client-side cache on
    /// (1000 sessions per primary).
    #[cfg(feature = "redis")]
    pub async fn redis_cluster_cached() -> Self {
        let (cluster, prefix, store) = Self::on_cluster(Some(1000)).await;
        Backend::RedisClusterCached {
            cluster,
            prefix,
            store,
        }
    }

    /// A Redis store on the binary's shared Sentinel setup, under a fresh
    /// key prefix (the setup starts on first use: see [`shared`]).
    #[cfg(feature = "redis")]
    pub async fn redis_sentinel() -> Self {
        let (sentinel, prefix, store) = Self::on_sentinel(None).await;
        Backend::RedisSentinel {
            sentinel,
            prefix,
            store,
        }
    }

    /// [`redis_sentinel`](Self::redis_sentinel) with the client-side cache
    /// on (1000 sessions).
    #[cfg(feature = "redis")]
    pub async fn redis_sentinel_cached() -> Self {
        let (sentinel, prefix, store) = Self::on_sentinel(Some(1000)).await;
        Backend::RedisSentinelCached {
            sentinel,
            prefix,
            store,
        }
    }

    /// A PostgreSQL store on the binary's shared server, in a fresh schema.
    #[cfg(feature = "postgres")]
    pub async fn postgres() -> Self {
        let (server, schema, store) = Self::on_postgres(None).await;
        Backend::Postgres {
            server,
            schema,
            store,
        }
    }

    /// [`postgres`](Self::postgres) with the local cache on (1000 sessions).
    #[cfg(feature = "postgres")]
    pub async fn postgres_cached() -> Self {
        let (server, schema, store) = Self::on_postgres(Some(1000)).await;
        Backend::PostgresCached {
            server,
            schema,
            store,
        }
    }

    #[cfg(feature = "postgres")]
    async fn on_postgres(cache: Option<usize>) -> (&'static PostgresServer, String, PostgresStore) {
        let server = postgres_server::shared().await;
        let schema = postgres_server::unique_schema();
        let store = Self::postgres_store(server, &schema, cache).await;
        (server, schema, store)
    }

    /// A store on `server`'s schema `schema` (another instance, when the
    /// schema is a backend's).
    #[cfg(feature = "postgres")]
    pub async fn postgres_store(
        server: &PostgresServer,
        schema: &str,
        cache: Option<usize>,
    ) -> PostgresStore {
        let mut builder = PostgresStore::builder().url(server.url()).schema(schema);
        if let Some(max) = cache {
            builder = builder.cache(max);
        }
        builder
            .build()
            .await
            .expect("connect to the shared PostgreSQL server")
    }

    #[cfg(feature = "redis")]
    async fn on_cluster(cache: Option<usize>) -> (&'static RedisCluster, String, RedisStore) {
        let cluster = shared::cluster().await;
        let prefix = shared::unique_prefix();
        let store = Self::cluster_store(cluster, &prefix, cache).await;
        (cluster, prefix, store)
    }

    /// A store on `cluster` under `prefix` (another instance, when the
    /// prefix is a backend's).
    #[cfg(feature = "redis")]
    pub async fn cluster_store(
        cluster: &RedisCluster,
        prefix: &str,
        cache: Option<usize>,
    ) -> RedisStore {
        let mut builder = RedisStore::builder()
            .cluster(cluster.nodes())
            .key_prefix(prefix);
        if let Some(max) = cache {
            builder = builder.client_cache(max);
        }
        builder
            .build()
            .await
            .expect("connect to the shared Redis Cluster")
    }

    #[cfg(feature = "redis")]
    async fn on_sentinel(cache: Option<usize>) -> (&'static RedisSentinel, String, RedisStore) {
        let sentinel = shared::sentinel().await;
        let prefix = shared::unique_prefix();
        let store = Self::sentinel_store(sentinel, &prefix, cache).await;
        (sentinel, prefix, store)
    }

    /// A store on `sentinel`'s master under `prefix` (another instance,
    /// when the prefix is a backend's).
    #[cfg(feature = "redis")]
    pub async fn sentinel_store(
        sentinel: &RedisSentinel,
        prefix: &str,
        cache: Option<usize>,
    ) -> RedisStore {
        let mut builder = RedisStore::builder()
            .sentinel(sentinel.master_name(), sentinel.sentinel_urls())
            .key_prefix(prefix);
        if let Some(max) = cache {
            builder = builder.client_cache(max);
        }
        builder
            .build()
            .await
            .expect("connect to the shared Sentinel master")
    }

    /// The backend's store, as its own type.
    pub fn concrete(&self) -> Concrete {
        match self {
            Backend::Memory { store, .. } | Backend::MemoryPaused { store } => {
                Concrete::Memory(store.clone())
            }
            #[cfg(feature = "redis")]
            Backend::Redis { store, .. }
            | Backend::RedisCached { store, .. }
            | Backend::RedisCluster { store, .. }
            | Backend::RedisClusterCached { store, .. }
            | Backend::RedisSentinel { store, .. }
            | Backend::RedisSentinelCached { store, .. } => Concrete::Redis(store.clone()),
            #[cfg(feature = "postgres")]
            Backend::Postgres { store, .. } | Backend::PostgresCached { store, .. } => {
                Concrete::Postgres(store.clone())
            }
        }
    }

    /// A second store on the same data, with connections of its own (in
    /// memory, the one store: a process has only one), without a client
    /// cache: another instance of the app.
    pub async fn second_concrete(&self) -> Concrete {
        match self {
            Backend::Memory { store, .. } | Backend::MemoryPaused { store } => {
                Concrete::Memory(store.clone())
            }
            #[cfg(feature = "redis")]
            Backend::Redis { server, .. } | Backend::RedisCached { server, .. } => Concrete::Redis(
                RedisStore::connect(&server.url())
                    .await
                    .expect("second connection to the test's redis-server"),
            ),
            #[cfg(feature = "redis")]
            Backend::RedisCluster {
                cluster, prefix, ..
            }
            | Backend::RedisClusterCached {
                cluster, prefix, ..
            } => Concrete::Redis(Backend::cluster_store(cluster, prefix, None).await),
            #[cfg(feature = "redis")]
            Backend::RedisSentinel {
                sentinel, prefix, ..
            }
            | Backend::RedisSentinelCached {
                sentinel, prefix, ..
            } => Concrete::Redis(Backend::sentinel_store(sentinel, prefix, None).await),
            #[cfg(feature = "postgres")]
            Backend::Postgres { server, schema, .. }
            | Backend::PostgresCached { server, schema, .. } => {
                Concrete::Postgres(Backend::postgres_store(server, schema, None).await)
            }
        }
    }

    /// The store as the manager sees it.
    pub fn store(&self) -> Arc<dyn SessionStore> {
        self.concrete().store()
    }

    /// A manager over this backend's store.
    pub fn manager(&self, config: SessionConfig) -> SessionManager {
        SessionManager::from_arc(self.store(), config)
    }

    /// Moves the store's clock forward: instantly in memory, by sleeping
    /// where the store's clock is real (Redis `TIME`).
    pub async fn advance(&self, by: Duration) {
        match self {
            Backend::Memory { clock, .. } => clock.advance(by),
            Backend::MemoryPaused { .. } => tokio::time::sleep(by).await,
            #[cfg(feature = "redis")]
            Backend::Redis { .. }
            | Backend::RedisCached { .. }
            | Backend::RedisCluster { .. }
            | Backend::RedisClusterCached { .. }
            | Backend::RedisSentinel { .. }
            | Backend::RedisSentinelCached { .. } => tokio::time::sleep(by).await,
            #[cfg(feature = "postgres")]
            Backend::Postgres { .. } | Backend::PostgresCached { .. } => {
                tokio::time::sleep(by).await
            }
        }
    }

    /// Short name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Memory { .. } => "memory",
            Backend::MemoryPaused { .. } => "memory-paused",
            #[cfg(feature = "redis")]
            Backend::Redis { .. } => "redis",
            #[cfg(feature = "redis")]
            Backend::RedisCached { .. } => "redis-cached",
            #[cfg(feature = "redis")]
            Backend::RedisCluster { .. } => "redis-cluster",
            #[cfg(feature = "redis")]
            Backend::RedisClusterCached { .. } => "redis-cluster-cached",
            #[cfg(feature = "redis")]
            Backend::RedisSentinel { .. } => "redis-sentinel",
            #[cfg(feature = "redis")]
            Backend::RedisSentinelCached { .. } => "redis-sentinel-cached",
            #[cfg(feature = "postgres")]
            Backend::Postgres { .. } => "postgres",
            #[cfg(feature = "postgres")]
            Backend::PostgresCached { .. } => "postgres-cached",
        }
    }
}

/// Generates one `#[tokio::test]` per backend for each scenario function
/// `async fn name(backend: Backend)` defined in the calling file: modules
/// `memory`, `redis`, `redis_cached`, `postgres` and `postgres_cached`.
///
/// `backend_tests!(@topologies a, b)` adds the Redis Cluster and Sentinel
/// backends (modules `redis_cluster`, `redis_cluster_cached`,
/// `redis_sentinel`, `redis_sentinel_cached`, on the binary's shared
/// topologies: see [`shared`]). Only the store conformance suites use it, so
/// that the other suites do not grow.
#[macro_export]
macro_rules! backend_tests {
    (@topologies $($name:ident),* $(,)?) => {
        $crate::backend_tests!($($name),*);
        $crate::backend_tests!(@mod redis_cluster, redis_cluster, [feature = "redis"]; $($name),*);
        $crate::backend_tests!(@mod redis_cluster_cached, redis_cluster_cached, [feature = "redis"]; $($name),*);
        $crate::backend_tests!(@mod redis_sentinel, redis_sentinel, [feature = "redis"]; $($name),*);
        $crate::backend_tests!(@mod redis_sentinel_cached, redis_sentinel_cached, [feature = "redis"]; $($name),*);
    };
    (@mod $module:ident, $backend:ident, [$($cfg:meta)?]; $($name:ident),*) => {
        $(#[cfg($cfg)])?
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::support::Backend::$backend().await).await
                }
            )*
        }
    };
    ($($name:ident),* $(,)?) => {
        $crate::backend_tests!(@mod memory, memory, []; $($name),*);
        $crate::backend_tests!(@mod redis, redis, [feature = "redis"]; $($name),*);
        $crate::backend_tests!(@mod redis_cached, redis_cached, [feature = "redis"]; $($name),*);
        $crate::backend_tests!(@mod postgres, postgres, [feature = "postgres"]; $($name),*);
        $crate::backend_tests!(@mod postgres_cached, postgres_cached, [feature = "postgres"]; $($name),*);
    };
}

//! Keyed-session stores of a [`Backend`]: the backend's own, and a second
//! instance on the same data (its own connections), as another replica of
//! the app would have.

use std::sync::Arc;

use sessionkit::tracker::KeyedStore;

use super::{Backend, Concrete};
#[cfg(feature = "redis")]
use sessionkit::redis::RedisStore;

impl Backend {
    /// The backend's store as a tracker sees it.
    pub fn keyed_store(&self) -> Arc<dyn KeyedStore> {
        match self.concrete() {
            Concrete::Memory(s) => Arc::new(s),
            #[cfg(feature = "redis")]
            Concrete::Redis(s) => Arc::new(s),
            #[cfg(feature = "postgres")]
            Concrete::Postgres(s) => Arc::new(s),
        }
    }

    /// A second store on the same data, with connections of its own (in
    /// memory, the one store: a process has only one).
    pub async fn second_keyed_store(&self) -> Arc<dyn KeyedStore> {
        match self {
            Backend::Memory { store, .. } | Backend::MemoryPaused { store } => {
                Arc::new(store.clone())
            }
            #[cfg(feature = "redis")]
            Backend::Redis { server, .. } | Backend::RedisCached { server, .. } => Arc::new(
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
            } => Arc::new(Backend::cluster_store(cluster, prefix, None).await),
            #[cfg(feature = "redis")]
            Backend::RedisSentinel {
                sentinel, prefix, ..
            }
            | Backend::RedisSentinelCached {
                sentinel, prefix, ..
            } => Arc::new(Backend::sentinel_store(sentinel, prefix, None).await),
            #[cfg(feature = "postgres")]
            Backend::Postgres { server, schema, .. }
            | Backend::PostgresCached { server, schema, .. } => {
                Arc::new(Backend::postgres_store(server, schema, None).await)
            }
        }
    }
}

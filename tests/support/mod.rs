//! Test harness shared by every integration suite: one set of scenarios runs
//! against every store backend.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use sessionkit::clock::ManualClock;
use sessionkit::{MemoryStore, SessionConfig, SessionManager, SessionStore};

#[cfg(feature = "axum")]
pub mod axum_app;
pub mod browser;
pub mod failing_store;
pub mod load;
pub mod outcomes;
pub mod race;
pub mod records;
#[cfg(feature = "redis")]
pub mod redis_cluster;
#[cfg(feature = "redis")]
pub mod redis_sentinel;
#[cfg(feature = "redis")]
pub mod redis_server;
#[cfg(feature = "redis")]
pub use redis_server::RedisServer;
#[cfg(feature = "redis")]
use sessionkit::redis::RedisStore;

/// A store under test, with a way to move its clock.
pub enum Backend {
    /// In-memory store on a manual clock: time moves instantly.
    Memory {
        store: MemoryStore,
        clock: ManualClock,
    },
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

    /// The store as the manager sees it.
    pub fn store(&self) -> Arc<dyn SessionStore> {
        match self {
            Backend::Memory { store, .. } => Arc::new(store.clone()),
            #[cfg(feature = "redis")]
            Backend::Redis { store, .. } | Backend::RedisCached { store, .. } => {
                Arc::new(store.clone())
            }
        }
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
            #[cfg(feature = "redis")]
            Backend::Redis { .. } | Backend::RedisCached { .. } => tokio::time::sleep(by).await,
        }
    }

    /// Short name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Memory { .. } => "memory",
            #[cfg(feature = "redis")]
            Backend::Redis { .. } => "redis",
            #[cfg(feature = "redis")]
            Backend::RedisCached { .. } => "redis-cached",
        }
    }
}

/// Generates one `#[tokio::test]` per backend for each scenario function
/// `async fn name(backend: Backend)` defined in the calling file.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::support::Backend::memory().await).await
                }
            )*
        }
        #[cfg(feature = "redis")]
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::support::Backend::redis().await).await
                }
            )*
        }
        #[cfg(feature = "redis")]
        mod redis_cached {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::support::Backend::redis_cached().await).await
                }
            )*
        }
    };
}

//! The whole store conformance suite (`sessionkit::testing`: sessions,
//! users, rotation, revocation, locks, logout, lifecycle) on a Redis store
//! with expiry events on (`RedisStoreBuilder::expiry_events`): session
//! hashes then outlive their expiry by the grace and requests leave expired
//! ones for the expiry watcher, and no rule of the store may change for it.
//! Each test on a `redis-server` of its own.
#![cfg(all(feature = "redis", feature = "testing"))]

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sessionkit::redis::RedisStore;
use sessionkit::testing::StoreHarness;
use sessionkit::SessionStore;
use support::RedisServer;

struct Watched {
    _server: RedisServer,
    store: RedisStore,
}

#[async_trait]
impl StoreHarness for Watched {
    fn store(&self) -> Arc<dyn SessionStore> {
        Arc::new(self.store.clone())
    }

    async fn advance(&self, by: Duration) {
        tokio::time::sleep(by).await;
    }
}

async fn watched() -> Watched {
    let server = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .expect("start redis-server");
    let store = RedisStore::builder()
        .url(server.url())
        .expiry_events(true)
        .build()
        .await
        .expect("a Redis store with expiry events");
    Watched {
        _server: server,
        store,
    }
}

sessionkit::store_conformance_tests!(watched);

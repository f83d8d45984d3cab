//! Helpers of the event suites (`tests/events.rs`, `tests/expiry_events.rs`,
//! `tests/keyed_events.rs`, `tests/redis_events.rs`): waiting for the next
//! event or for none, checking one, and two instances of a backend's store
//! with expiry events on.

use std::time::Duration;

use sessionkit::events::{EventFeed, EventKind, SessionEvent};
use sessionkit::SessionId;

use super::browser::{Browser, Origin};
use super::{Backend, Concrete};

/// How long an expected event may take to arrive (feeds poll every 100 ms).
pub const WAIT: Duration = Duration::from_secs(10);

/// How long a feed must stay silent to show that no further event came.
pub const QUIET: Duration = Duration::from_millis(600);

/// The next event, or a panic naming what was expected.
pub async fn next(feed: &mut EventFeed, expecting: &str) -> SessionEvent {
    match tokio::time::timeout(WAIT, feed.recv()).await {
        Ok(Ok(event)) => event,
        Ok(Err(e)) => panic!("expecting {expecting}: the feed said {e}"),
        Err(_) => panic!("expecting {expecting}: no event within {WAIT:?}"),
    }
}

/// Panics if an event comes within [`QUIET`].
pub async fn assert_quiet(feed: &mut EventFeed, after: &str) {
    if let Ok(got) = tokio::time::timeout(QUIET, feed.recv()).await {
        panic!("no event expected after {after}, got {got:?}");
    }
}

/// The id the server gives the browser's current session.
pub async fn id_of(b: &Browser, srv: &impl Origin) -> SessionId {
    let body = b.body(srv, "/id").await;
    body.parse()
        .unwrap_or_else(|e| panic!("/id answered {body:?}: {e}"))
}

/// Checks one event against what was expected, naming the step.
pub fn check(
    step: &str,
    got: &SessionEvent,
    kind: &EventKind,
    session: Option<&SessionId>,
    user: Option<&str>,
) {
    assert_eq!(&got.kind, kind, "{step}: kind of {got:?}");
    assert_eq!(got.session.as_ref(), session, "{step}: session of {got:?}");
    assert_eq!(got.user.as_deref(), user, "{step}: user of {got:?}");
}

/// Skips events until one of `kind`'s shape for `user` (a login's
/// `Created`, say).
pub async fn until(
    feed: &mut EventFeed,
    what: &str,
    user: &str,
    f: fn(&EventKind) -> bool,
) -> SessionEvent {
    loop {
        let e = next(feed, what).await;
        if f(&e.kind) && e.user.as_deref() == Some(user) {
            return e;
        }
    }
}

/// Two instances of the backend's store with expiry events on: on Redis
/// with `expiry_events(true)`, on PostgreSQL with a 200 ms purge (memory:
/// the one store, purged by the test).
pub async fn expiry_instances(backend: &Backend) -> (Concrete, Concrete) {
    #[cfg(feature = "redis")]
    use sessionkit::redis::RedisStore;
    match backend {
        Backend::Memory { store, .. } | Backend::MemoryPaused { store } => (
            Concrete::Memory(store.clone()),
            Concrete::Memory(store.clone()),
        ),
        #[cfg(feature = "redis")]
        _ if backend.name().starts_with("redis") => {
            let cache = backend.name().ends_with("cached");
            let mut pair = Vec::new();
            for first in [true, false] {
                let builder = match backend {
                    Backend::Redis { server, .. } | Backend::RedisCached { server, .. } => {
                        RedisStore::builder().url(server.url())
                    }
                    Backend::RedisCluster {
                        cluster, prefix, ..
                    }
                    | Backend::RedisClusterCached {
                        cluster, prefix, ..
                    } => RedisStore::builder()
                        .cluster(cluster.nodes())
                        .key_prefix(prefix.as_str()),
                    Backend::RedisSentinel {
                        sentinel, prefix, ..
                    }
                    | Backend::RedisSentinelCached {
                        sentinel, prefix, ..
                    } => RedisStore::builder()
                        .sentinel(sentinel.master_name(), sentinel.sentinel_urls())
                        .key_prefix(prefix.as_str()),
                    _ => unreachable!("a Redis backend"),
                };
                let builder = if first && cache {
                    builder.client_cache(1000)
                } else {
                    builder
                };
                let store = builder
                    .expiry_events(true)
                    .build()
                    .await
                    .expect("a Redis store with expiry events");
                pair.push(Concrete::Redis(store));
            }
            let b = pair.pop().expect("two stores");
            (pair.pop().expect("two stores"), b)
        }
        #[cfg(feature = "postgres")]
        Backend::Postgres { server, schema, .. }
        | Backend::PostgresCached { server, schema, .. } => {
            let cache = matches!(backend, Backend::PostgresCached { .. });
            let build = |cache: bool| async move {
                let builder = sessionkit::postgres::PostgresStore::builder()
                    .url(server.url())
                    .schema(schema.as_str())
                    .purge_interval(Some(Duration::from_millis(200)));
                let builder = if cache { builder.cache(1000) } else { builder };
                Concrete::Postgres(builder.build().await.expect("a PostgreSQL store"))
            };
            (build(cache).await, build(false).await)
        }
        #[allow(unreachable_patterns)]
        _ => unreachable!("every backend is listed"),
    }
}

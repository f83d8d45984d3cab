//! [`RedisStoreBuilder`]: connection, key prefix, timeouts, reconnection,
//! client-side cache.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::Client;

use super::cache::ClientCache;
use super::conn::{redis_error, timed};
use super::keys::Keys;
use super::scripts::Scripts;
use super::touches::{self, BATCH, FLUSH_EVERY};
use super::tracked::TrackedLink;
use super::{Cached, Inner, RedisStore, DEFAULT_PREFIX};
use crate::{Error, Result};

/// Where a [`RedisStoreBuilder`] gets its connection.
enum Source {
    None,
    Url(String),
    Client(Client),
    Manager(ConnectionManager),
}

/// Builds a [`RedisStore`]: connection, key prefix, timeouts, reconnection.
/// Start with [`RedisStore::builder`].
pub struct RedisStoreBuilder {
    source: Source,
    prefix: String,
    command_timeout: Duration,
    connection_timeout: Duration,
    retries: usize,
    retry_min_delay: Duration,
    retry_max_delay: Duration,
    lazy: bool,
    client_cache: Option<NonZeroUsize>,
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password: only say which source is set.
        let source = match &self.source {
            Source::None => "none",
            Source::Url(_) => "url",
            Source::Client(_) => "client",
            Source::Manager(_) => "connection manager",
        };
        f.debug_struct("RedisStoreBuilder")
            .field("source", &source)
            .field("key_prefix", &self.prefix)
            .field("command_timeout", &self.command_timeout)
            .field("connection_timeout", &self.connection_timeout)
            .field("retries", &self.retries)
            .field("retry_min_delay", &self.retry_min_delay)
            .field("retry_max_delay", &self.retry_max_delay)
            .field("lazy", &self.lazy)
            .field("client_cache", &self.client_cache)
            .finish()
    }
}

impl RedisStoreBuilder {
    /// The defaults: prefix `sessionkit`, command and connection timeouts
    /// 2 s, 6 reconnection retries 100 ms to 2 s apart, eager connection.
    pub(super) fn new() -> Self {
        RedisStoreBuilder {
            source: Source::None,
            prefix: DEFAULT_PREFIX.to_owned(),
            command_timeout: Duration::from_secs(2),
            connection_timeout: Duration::from_secs(2),
            retries: 6,
            retry_min_delay: Duration::from_millis(100),
            retry_max_delay: Duration::from_secs(2),
            lazy: false,
            client_cache: None,
        }
    }

    /// Connect to this URL (`redis://[user:password@]host[:port][/db]`,
    /// `rediss://` with the `redis` crate's TLS features).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.source = Source::Url(url.into());
        self
    }

    /// Connect with an existing client; the store opens its own
    /// auto-reconnecting connection with the settings of this builder.
    pub fn client(mut self, client: Client) -> Self {
        self.source = Source::Client(client);
        self
    }

    /// Use an existing connection manager as is (its own reconnection and
    /// response-timeout settings apply; this builder's connection settings
    /// are ignored, its command timeout is not).
    pub fn connection_manager(mut self, conn: ConnectionManager) -> Self {
        self.source = Source::Manager(conn);
        self
    }

    /// The prefix of every key. Default `sessionkit`. It must not contain
    /// `{` or `}`, which would change the keys' hash slot.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The longest one Redis command may take before the call fails with
    /// [`Error::StoreTimeout`]. Default 2 s. Keep it at or below the
    /// manager's [`store_timeout`](crate::SessionConfig::store_timeout).
    pub fn command_timeout(mut self, d: Duration) -> Self {
        self.command_timeout = d;
        self
    }

    /// The longest one connection attempt may take. Default 2 s.
    pub fn connection_timeout(mut self, d: Duration) -> Self {
        self.connection_timeout = d;
        self
    }

    /// How many times a lost connection is retried, with exponential
    /// backoff, before pending commands fail; the next command starts over.
    /// Default 6.
    pub fn connection_retries(mut self, retries: usize) -> Self {
        self.retries = retries;
        self
    }

    /// The bounds of the exponential backoff between reconnection attempts.
    /// Default 100 ms to 2 s.
    pub fn retry_delay(mut self, min: Duration, max: Duration) -> Self {
        self.retry_min_delay = min;
        self.retry_max_delay = max.max(min);
        self
    }

    /// Connect on first use instead of in [`build`](Self::build), so an app
    /// can start while Redis is down (its requests get 503 until Redis is
    /// back). Default off: `build` fails fast on a wrong URL or a dead server.
    pub fn lazy_connect(mut self, lazy: bool) -> Self {
        self.lazy = lazy;
        self
    }

    /// Keeps up to `max_sessions` recently read sessions in this process,
    /// so that reading one again costs no Redis round trip, while any change
    /// made by any client (another instance, `redis-cli`, expiry, `FLUSHALL`)
    /// invalidates the copy at once. `0` turns it off (the default).
    ///
    /// ```no_run
    /// # use sessionkit::redis::RedisStore;
    /// # #[tokio::main] async fn main() -> sessionkit::Result<()> {
    /// let store = RedisStore::builder()
    ///     .url("redis://127.0.0.1:6379")
    ///     .client_cache(10_000)
    ///     .build()
    ///     .await?;
    /// # let _ = store; Ok(()) }
    /// ```
    ///
    /// How: Redis server-assisted client-side caching. The store opens a
    /// second connection, in RESP3, with `CLIENT TRACKING ON NOLOOP` (the
    /// default tracking mode: Redis remembers which keys *this* connection
    /// read, keys read inside the Lua scripts included, and pushes an
    /// invalidation when another client changes one), and sends every
    /// script call over it. The first [`RedisStore::connection`] stays for
    /// your own commands. Needs Redis 6 or later (7.0 for the scripts) and,
    /// with ACLs, the right to run `CLIENT TRACKING`; it cannot be combined
    /// with [`connection_manager`](Self::connection_manager) (give a URL or
    /// a client).
    ///
    /// What is cached: live sessions (data, metadata and the key's expiry as
    /// Redis reported it), keyed by session key, filled by load misses and
    /// by this store's own saves. Not cached: unknown ids, expired, revoked
    /// or moved sessions, rotation aliases (a read through an alias goes to
    /// Redis), user indexes and listings. A write (save, login, rotate,
    /// revoke, "log out everywhere") still costs its one round trip and
    /// updates or drops the local copy before it returns.
    ///
    /// Staleness: a copy is never served after an invalidation for it has
    /// arrived, nor at or past the expiry Redis reported for the key (timed
    /// with the Redis clock seen in replies plus this process's monotonic
    /// clock: app servers' wall clocks do not matter). So a change made
    /// elsewhere — a revoke in particular — is refused here one push
    /// delivery later (well under a millisecond on a LAN). On a lost
    /// connection the whole cache is emptied, and nothing is cached again
    /// until tracking is on again on a new connection. A connection that
    /// dies silently (no TCP reset, so no push can say so) is caught by a
    /// ping when it has been quiet for a second: copies may be served for up
    /// to about a second plus the command timeout after the network broke.
    ///
    /// Idle expiry: a cached read that finds the touch due does not write
    /// inline; the touch is queued and sent in the background every second,
    /// or as soon as 128 wait, as one pipeline of one script call per
    /// session (Cluster-safe). The read reports the touch (the cookie is
    /// refreshed) as if it had happened. A crash, or dropping the store,
    /// loses at most one second of queued touches: those sessions may expire
    /// up to that much earlier than their last use implies, and the order
    /// of "least recently used" for max-sessions eviction lags by as much. A
    /// due touch within about three seconds (one flush interval plus the
    /// command timeout) of the key's Redis expiry is not queued: that read
    /// goes to Redis, which touches inline.
    ///
    /// Memory: at most `max_sessions` sessions (least recently used evicted
    /// first), each its data and metadata as loaded, so at most
    /// `max_sessions` × [`Limits::max_session_bytes`](crate::Limits) plus
    /// about 300 bytes of bookkeeping per entry. In Redis, tracking costs an entry per (key, instance)
    /// in its tracking table (`tracking-table-max-keys`; Redis invalidates
    /// keys to stay under it, which only costs misses) and one push per
    /// change of a key an instance holds.
    ///
    /// See [`RedisStore::client_cache_stats`] and [`RedisStore::cached_len`]
    /// to watch it.
    pub fn client_cache(mut self, max_sessions: usize) -> Self {
        self.client_cache = NonZeroUsize::new(max_sessions);
        self
    }

    /// Connects (unless lazy) and loads the scripts.
    ///
    /// # Errors
    /// No URL, client or connection given; an invalid URL or key prefix;
    /// Redis unreachable within the connection timeout (unless lazy); a
    /// client-side cache with a connection manager as the source, or a
    /// server that refuses `CLIENT TRACKING` (unless lazy).
    pub async fn build(self) -> Result<RedisStore> {
        if self.prefix.contains(['{', '}']) {
            return Err(Error::store(format!(
                "the Redis key prefix {:?} must not contain '{{' or '}}': they would change the keys' hash slot",
                self.prefix
            )));
        }
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(self.command_timeout))
            .set_connection_timeout(Some(self.connection_timeout))
            .set_number_of_retries(self.retries)
            .set_min_delay(self.retry_min_delay)
            .set_max_delay(self.retry_max_delay);
        let connect_limit = self.connection_timeout.max(self.command_timeout);
        let mut cache_client = None;
        let conn = match self.source {
            Source::None => {
                return Err(Error::store(
                    "RedisStore::builder() needs a URL, a client or a connection manager",
                ))
            }
            Source::Manager(_) if self.client_cache.is_some() => {
                return Err(Error::store(
                    "RedisStoreBuilder::client_cache needs a URL or a client (it opens a connection of its own), not a connection manager",
                ))
            }
            Source::Manager(conn) => conn,
            Source::Url(url) => {
                let client = Client::open(url.as_str()).map_err(Error::store)?;
                cache_client = Some(client.clone());
                connect(client, config, self.lazy, connect_limit).await?
            }
            Source::Client(client) => {
                cache_client = Some(client.clone());
                connect(client, config, self.lazy, connect_limit).await?
            }
        };
        let cache = match (self.client_cache, cache_client) {
            (Some(max), Some(client)) => {
                let margin = FLUSH_EVERY.saturating_add(self.command_timeout);
                let cache = Arc::new(ClientCache::new(
                    max,
                    i64::try_from(margin.as_millis()).unwrap_or(i64::MAX),
                    BATCH,
                ));
                let link = TrackedLink::new(
                    &client,
                    self.connection_timeout,
                    self.command_timeout,
                    cache.clone(),
                )?;
                if !self.lazy {
                    link.get().await?;
                }
                Some(Cached { cache, link })
            }
            _ => None,
        };
        let one_slot_per_call = if self.lazy {
            true
        } else {
            cluster_enabled(&conn, self.command_timeout).await?
        };
        let store = RedisStore {
            inner: Arc::new(Inner {
                conn,
                keys: Keys::new(&self.prefix),
                scripts: Scripts::new(),
                command_timeout: self.command_timeout,
                one_slot_per_call,
                cache,
            }),
        };
        if store.inner.cache.is_some() {
            touches::spawn_flusher(Arc::downgrade(&store.inner));
        }
        if !self.lazy {
            store.preload_scripts().await?;
        }
        Ok(store)
    }
}

/// Opens an auto-reconnecting connection: now, or on first use when lazy.
async fn connect(
    client: Client,
    config: ConnectionManagerConfig,
    lazy: bool,
    limit: Duration,
) -> Result<ConnectionManager> {
    if lazy {
        return ConnectionManager::new_lazy_with_config(client, config).map_err(Error::store);
    }
    timed(limit, ConnectionManager::new_with_config(client, config))
        .await?
        .map_err(|e| redis_error(e, limit))
}

/// Whether the server runs in Cluster mode (`INFO cluster`). Only then must
/// each script call stay in one slot; a standalone server lets a login
/// retire an anonymous session in the same call.
async fn cluster_enabled(conn: &ConnectionManager, limit: Duration) -> Result<bool> {
    let mut conn = conn.clone();
    let info: String = timed(
        limit,
        ::redis::cmd("INFO").arg("cluster").query_async(&mut conn),
    )
    .await?
    .map_err(|e| redis_error(e, limit))?;
    Ok(info.lines().any(|l| l.trim() == "cluster_enabled:1"))
}

//! [`RedisStoreBuilder`]: topology (standalone, Cluster, Sentinel), key
//! prefix, timeouts, reconnection, client-side cache, durable revocations.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::Client;

use super::cache::{spawn_flusher, spawn_heartbeat};
use super::connection::Backend;
use super::keys::Keys;
use super::open::cluster_enabled;
use super::scripts::Scripts;
use super::{Inner, RedisStore, DEFAULT_PREFIX};
use crate::{Error, Result};

/// Where a [`RedisStoreBuilder`] gets its connection.
pub(super) enum Source {
    None,
    Url(String),
    Client(Client),
    Manager(ConnectionManager),
    /// Seed nodes of a Redis Cluster (URLs).
    Cluster(Vec<String>),
    /// A master name and the URLs of its sentinels.
    Sentinel {
        master: String,
        sentinels: Vec<String>,
    },
}

/// Builds a [`RedisStore`]: connection, key prefix, timeouts, reconnection.
/// Start with [`RedisStore::builder`].
pub struct RedisStoreBuilder {
    pub(super) source: Source,
    prefix: String,
    pub(super) command_timeout: Duration,
    pub(super) connection_timeout: Duration,
    pub(super) retries: usize,
    pub(super) retry_min_delay: Duration,
    pub(super) retry_max_delay: Duration,
    pub(super) lazy: bool,
    pub(super) client_cache: Option<NonZeroUsize>,
    pub(super) heartbeat: Duration,
    pub(super) durable: Option<(u64, Duration)>,
    pub(super) sentinel_master_password: Option<String>,
    pub(super) expiry_events: bool,
    pub(super) configure_notifications: bool,
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password: only say which source is set.
        let source = match &self.source {
            Source::None => "none",
            Source::Url(_) => "url",
            Source::Client(_) => "client",
            Source::Manager(_) => "connection manager",
            Source::Cluster(_) => "cluster",
            Source::Sentinel { .. } => "sentinel",
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
            .field("heartbeat_interval", &self.heartbeat)
            .field("durable_revocations", &self.durable)
            .field("expiry_events", &self.expiry_events)
            .field("configure_notifications", &self.configure_notifications)
            .finish_non_exhaustive()
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
            heartbeat: Duration::from_secs(1),
            durable: None,
            sentinel_master_password: None,
            expiry_events: false,
            configure_notifications: true,
        }
    }

    /// Report sessions that expire with no request
    /// ([`EventKind::Expired`](crate::events::EventKind::Expired), with
    /// their user and data) on the store's [event bus](RedisStore::events).
    /// Default off.
    ///
    /// Each session then has a shadow key whose expiry Redis reports
    /// (keyspace notifications: the build sets `notify-keyspace-events` to
    /// include `Ex`, and fails with what to configure where `CONFIG` is
    /// refused), and its hash outlives its expiry by
    /// [`EXPIRY_GRACE`](super::EXPIRY_GRACE) (5 minutes) so that its data
    /// can still be read: one more key per session, and one more command
    /// when its expiry moves (once per touch interval). Turn it on on every
    /// instance that shares the prefix. Delivery is at most once: see
    /// "Expiry" in [`sessionkit::events`](crate::events).
    pub fn expiry_events(mut self, on: bool) -> Self {
        self.expiry_events = on;
        self
    }

    /// Whether a store with [`expiry_events`](Self::expiry_events) checks
    /// and sets the server's `notify-keyspace-events` with `CONFIG`
    /// (default true). Turn it off where `CONFIG` is refused (managed
    /// services) after setting `notify-keyspace-events Ex` in the server's
    /// own configuration: the store then trusts it (as Spring Session's
    /// `ConfigureRedisAction.NO_OP`), and expiries go unreported if it is
    /// not so.
    pub fn configure_notifications(mut self, on: bool) -> Self {
        self.configure_notifications = on;
        self
    }

    /// Connect to this URL (`redis://[user:password@]host[:port][/db]`,
    /// `rediss://` with the `redis` crate's TLS features).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.source = Source::Url(url.into());
        self
    }

    /// Connect to a Redis Cluster through these seed nodes (URLs such as
    /// `redis://10.0.0.1:7000`, `rediss://` with the `redis-tls` feature;
    /// one reachable node is enough, the rest is discovered). Calls are
    /// routed by slot to primaries (never replicas: a replica may lag), and
    /// follow `MOVED`/`ASK` and failovers by themselves.
    ///
    /// ```no_run
    /// # use sessionkit::redis::RedisStore;
    /// # #[tokio::main] async fn main() -> sessionkit::Result<()> {
    /// let store = RedisStore::builder()
    ///     .cluster(["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"])
    ///     .build()
    ///     .await?;
    /// # let _ = store; Ok(()) }
    /// ```
    pub fn cluster<I, S>(mut self, nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.source = Source::Cluster(nodes.into_iter().map(Into::into).collect());
        self
    }

    /// Connect to the master `master_name` of a Sentinel deployment, asking
    /// these sentinels (URLs such as `redis://10.0.0.1:26379`) where it is.
    /// The store asks again whenever its connection breaks, a write is
    /// refused with `READONLY`, or the heartbeat finds the server demoted:
    /// after a failover, requests reach the new master without an app
    /// restart (they get 503 until the sentinels promote one). Use
    /// [`sentinel_master_password`](Self::sentinel_master_password) when
    /// the data nodes need a password; TLS to the master follows the
    /// sentinels' scheme (`rediss://`).
    ///
    /// ```no_run
    /// # use sessionkit::redis::RedisStore;
    /// # #[tokio::main] async fn main() -> sessionkit::Result<()> {
    /// let store = RedisStore::builder()
    ///     .sentinel("mymaster", ["redis://10.0.0.1:26379", "redis://10.0.0.2:26379"])
    ///     .build()
    ///     .await?;
    /// # let _ = store; Ok(()) }
    /// ```
    pub fn sentinel<I, S>(mut self, master_name: impl Into<String>, sentinels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.source = Source::Sentinel {
            master: master_name.into(),
            sentinels: sentinels.into_iter().map(Into::into).collect(),
        };
        self
    }

    /// The password of the data nodes of a [`sentinel`](Self::sentinel)
    /// deployment (the sentinels' own password goes in their URLs).
    pub fn sentinel_master_password(mut self, password: impl Into<String>) -> Self {
        self.sentinel_master_password = Some(password.into());
        self
    }

    /// The topology from the environment, as the demos read it:
    /// `REDIS_CLUSTER_NODES` (comma-separated URLs) for a Cluster, else
    /// `REDIS_SENTINELS` (comma-separated URLs) with `REDIS_SENTINEL_MASTER`
    /// (default `mymaster`) for Sentinel, else `REDIS_URL` for one server.
    /// `None` when none is set.
    pub fn from_env(self) -> Option<Self> {
        let list = |name: &str| -> Option<Vec<String>> {
            let v = std::env::var(name).ok()?;
            let items: Vec<String> = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            (!items.is_empty()).then_some(items)
        };
        if let Some(nodes) = list("REDIS_CLUSTER_NODES") {
            return Some(self.cluster(nodes));
        }
        if let Some(sentinels) = list("REDIS_SENTINELS") {
            let master =
                std::env::var("REDIS_SENTINEL_MASTER").unwrap_or_else(|_| "mymaster".to_owned());
            return Some(self.sentinel(master, sentinels));
        }
        let url = std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty())?;
        Some(self.url(url))
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

    /// How often the store checks its tracked connections (client-side
    /// cache) and its Sentinel master with a `ROLE`. Default 1 s. A cached
    /// session is served only while its server answered within two
    /// intervals: that is how long a partitioned instance may serve copies,
    /// revoked sessions included. A server found demoted to replica loses
    /// its connection and its copies at once.
    pub fn heartbeat_interval(mut self, every: Duration) -> Self {
        self.heartbeat = every.max(Duration::from_millis(10));
        self
    }

    /// Makes logout, [`revoke`](crate::SessionManager::revoke) and "log out
    /// everywhere" wait until `replicas` replicas acknowledged the
    /// revocation (`WAIT replicas timeout`), so that a failover cannot bring
    /// the session back (see the README's "What a failover can lose").
    /// If fewer acknowledge within `timeout`, the call fails with
    /// [`Error::NotDurable`] (503; the revocation did happen on the primary,
    /// and retrying is harmless). Off by default.
    ///
    /// `WAIT` blocks the connection it runs on, so revocations then go over
    /// a connection of their own: other requests never wait for replicas,
    /// but revocations of one process queue behind each other while a
    /// replica is slow.
    pub fn durable_revocations(mut self, replicas: u64, timeout: Duration) -> Self {
        self.durable = Some((replicas, timeout));
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
    /// dies silently (no TCP reset, so no push can say so) stops serving
    /// copies within two [heartbeat intervals](Self::heartbeat_interval)
    /// (2 s by default) of the server's last answer, at any load. On a
    /// Cluster there is one cache of `max_sessions` per primary, each
    /// emptied on its own when its primary is lost or demoted.
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
    /// No URL, client, connection, Cluster or Sentinel given; an invalid URL
    /// or key prefix; Redis unreachable within the connection timeout
    /// (unless lazy); a client-side cache with a connection manager as the
    /// source, or a server that refuses `CLIENT TRACKING` (unless lazy).
    pub async fn build(self) -> Result<RedisStore> {
        if self.prefix.contains(['{', '}']) {
            return Err(Error::store(format!(
                "the Redis key prefix {:?} must not contain '{{' or '}}': they would change the keys' hash slot",
                self.prefix
            )));
        }
        if matches!(self.source, Source::Manager(_)) && self.client_cache.is_some() {
            return Err(Error::store(
                "RedisStoreBuilder::client_cache needs a URL, a client, a Cluster or Sentinel (it opens connections of its own), not a connection manager",
            ));
        }
        #[cfg(feature = "redis-tls")]
        {
            // rustls needs a process-wide crypto provider; another part of
            // the app may have installed one already, which is as good.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let backend = self.open_backend().await?;
        let cache = self.open_cache(&backend).await?;
        let durable_backend = match self.durable {
            Some(_) => Some(self.open_backend().await?),
            None => None,
        };
        let one_slot_per_call = match &backend {
            Backend::Cluster(_) => true,
            _ if self.lazy => true,
            _ => cluster_enabled(&backend, self.command_timeout).await?,
        };
        let watch_sentinel = matches!(backend, Backend::Sentinel(_));
        let releases = self.releases(&self.prefix)?;
        let store = RedisStore {
            inner: Arc::new(Inner {
                backend,
                keys: Keys::new(&self.prefix),
                scripts: Scripts::new(if self.expiry_events {
                    super::duration_ms(super::EXPIRY_GRACE)
                } else {
                    0
                }),
                command_timeout: self.command_timeout,
                one_slot_per_call,
                cache,
                heartbeat: self.heartbeat,
                durable: self.durable,
                durable_backend,
                releases,
                expiry: std::sync::OnceLock::new(),
                events_retained: std::sync::atomic::AtomicU64::new(super::events::DEFAULT_RETAINED),
                persist_on: std::sync::atomic::AtomicBool::new(false),
                persist_scripts: super::persist::PersistScripts::new(),
            }),
        };
        if self.expiry_events {
            let watch = self.watch_expiry(&store).await?;
            // Just built: nothing else set it.
            let _ = store.inner.expiry.set(watch);
        }
        if store.inner.cache.is_some() {
            spawn_flusher(Arc::downgrade(&store.inner));
        }
        if store.inner.cache.is_some() || watch_sentinel {
            spawn_heartbeat(Arc::downgrade(&store.inner), self.heartbeat);
        }
        if !self.lazy {
            store.preload_scripts().await?;
        }
        Ok(store)
    }

    /// The settings of a connection manager.
    pub(super) fn manager_config(&self) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_response_timeout(Some(self.command_timeout))
            .set_connection_timeout(Some(self.connection_timeout))
            .set_number_of_retries(self.retries)
            .set_min_delay(self.retry_min_delay)
            .set_max_delay(self.retry_max_delay)
    }

    /// The longest a connection attempt may take, all in all.
    pub(super) fn connect_limit(&self) -> Duration {
        self.connection_timeout.max(self.command_timeout)
    }
}

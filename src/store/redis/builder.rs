//! [`RedisStoreBuilder`]: connection, key prefix, timeouts, reconnection.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::Client;

use super::keys::Keys;
use super::scripts::Scripts;
use super::{redis_error, timed, Inner, RedisStore, DEFAULT_PREFIX};
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

    /// Connects (unless lazy) and loads the scripts.
    ///
    /// # Errors
    /// No URL, client or connection given; an invalid URL or key prefix;
    /// Redis unreachable within the connection timeout (unless lazy).
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
        let conn = match self.source {
            Source::None => {
                return Err(Error::store(
                    "RedisStore::builder() needs a URL, a client or a connection manager",
                ))
            }
            Source::Manager(conn) => conn,
            Source::Url(url) => {
                let client = Client::open(url.as_str()).map_err(Error::store)?;
                connect(client, config, self.lazy, connect_limit).await?
            }
            Source::Client(client) => connect(client, config, self.lazy, connect_limit).await?,
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
            }),
        };
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

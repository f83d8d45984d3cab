//! [`PostgresStoreBuilder`]: where the database is, the names of the
//! store's schema and tables, the pool, timeouts, purge and cache.

use std::str::FromStr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use super::schema::{self, Names, Sql};
use super::{cache, pg_error, purge, Inner, PostgresStore};
use crate::store::waiters::Waiters;
use crate::{Error, Result};

/// Builds a [`PostgresStore`]; from [`PostgresStore::builder`].
#[derive(Clone)]
pub struct PostgresStoreBuilder {
    url: Option<String>,
    pool: Option<PgPool>,
    schema: String,
    prefix: String,
    create_schema: bool,
    max_connections: u32,
    acquire_timeout: Duration,
    statement_timeout: Duration,
    purge_interval: Option<Duration>,
    purge_batch: u32,
    cache: Option<usize>,
    notify_writes: bool,
    heartbeat: Duration,
}

impl std::fmt::Debug for PostgresStoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStoreBuilder")
            .field("url", &self.url.as_deref().map(without_password))
            .field("pool", &self.pool.is_some())
            .field("schema", &self.schema)
            .field("table_prefix", &self.prefix)
            .field("create_schema", &self.create_schema)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

/// `url` with its password (`user:secret@`, `?password=`) replaced by
/// `***`, for `Debug`: builders end up in logs.
fn without_password(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(start) = out.find("://").map(|i| i + 3) {
        let end = out[start..]
            .find(['/', '?'])
            .map_or(out.len(), |i| start + i);
        if let Some(at) = out[start..end].rfind('@').map(|i| start + i) {
            if let Some(colon) = out[start..at].find(':').map(|i| start + i) {
                out.replace_range(colon + 1..at, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let query: Vec<String> = out[q + 1..]
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_owned(),
            })
            .collect();
        out = format!("{}?{}", &out[..q], query.join("&"));
    }
    out
}

impl PostgresStoreBuilder {
    pub(super) fn new() -> Self {
        PostgresStoreBuilder {
            url: None,
            pool: None,
            schema: "public".to_owned(),
            prefix: "sessionkit_".to_owned(),
            create_schema: true,
            max_connections: 10,
            acquire_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(2),
            purge_interval: Some(Duration::from_secs(60)),
            purge_batch: 1000,
            cache: None,
            notify_writes: true,
            heartbeat: Duration::from_millis(250),
        }
    }

    /// The database, as a `postgres://` URL (see [`PgConnectOptions`] for
    /// the parameters it takes). Connections show as `application_name`
    /// `sessionkit` in `pg_stat_activity` unless the URL names another
    /// (`?application_name=checkout`).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// `DATABASE_URL` from the environment, if it is set.
    pub fn from_env(self) -> Option<Self> {
        std::env::var("DATABASE_URL").ok().map(|url| self.url(url))
    }

    /// A pool of your own instead of a URL. The store then leaves its
    /// connection settings alone: set a `statement_timeout` on it yourself
    /// (the builder's [`statement_timeout`](Self::statement_timeout) and
    /// [`max_connections`](Self::max_connections) apply only to pools it
    /// makes).
    pub fn pool(mut self, pool: PgPool) -> Self {
        self.pool = Some(pool);
        self
    }

    /// The schema of the store's tables (default `public`): at most 30
    /// characters of `a-z`, `0-9` and `_`, not starting with a digit.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Whether to create the schema if it is missing (default `true`). With
    /// `false`, a missing schema is an error at build time.
    pub fn create_schema(mut self, create: bool) -> Self {
        self.create_schema = create;
        self
    }

    /// The prefix of the store's tables, types and functions (default
    /// `sessionkit_`; may be empty): at most 20 characters of `a-z`, `0-9`
    /// and `_`.
    pub fn table_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The most connections the store's pool opens (default 10).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// How long a call waits for a pooled connection before it fails
    /// (default 2 s).
    pub fn acquire_timeout(mut self, d: Duration) -> Self {
        self.acquire_timeout = d;
        self
    }

    /// The `statement_timeout` of the store's connections (default 2 s): a
    /// statement that runs longer (a lock wait included) is cancelled by
    /// the server.
    pub fn statement_timeout(mut self, d: Duration) -> Self {
        self.statement_timeout = d;
        self
    }

    /// How often the background purge deletes expired rows (default 60 s;
    /// `None`: never, call [`PostgresStore::purge_expired`] yourself). Every
    /// instance purges; batches skip rows another instance holds.
    pub fn purge_interval(mut self, every: Option<Duration>) -> Self {
        self.purge_interval = every;
        self
    }

    /// The most rows one purge statement deletes (default 1000), so that a
    /// purge never holds many row locks for long.
    pub fn purge_batch(mut self, rows: u32) -> Self {
        self.purge_batch = rows.max(1);
        self
    }

    /// A local cache of up to `max_sessions` sessions (least recently used
    /// evicted), kept right across instances by `LISTEN/NOTIFY`:
    ///
    /// - every write (save, login, rotation, logout, revocation) sends the
    ///   ids it changed on the channel `<schema>.<prefix>changes`, ids
    ///   only, in payloads under PostgreSQL's 8000-byte limit (a revocation
    ///   of many sessions sends several); each instance's listener drops
    ///   those ids from its cache;
    /// - every instance also sends an empty heartbeat on that channel every
    ///   [`heartbeat_interval`](Self::heartbeat_interval) (default 250 ms).
    ///   PostgreSQL delivers notifications in commit order, so hearing a
    ///   heartbeat means every write committed before it has been applied;
    ///   the cache answers only while its listener heard one within two
    ///   intervals;
    /// - when the listener's connection drops, the cache is emptied
    ///   (notifications sent meanwhile are lost) and fills again only after
    ///   the listener is back and has heard a heartbeat.
    ///
    /// **Staleness bound**: a copy is served at most the notification's
    /// delivery time after another instance's write commits (milliseconds
    /// on a healthy network; the tests check under 100 ms), and never more
    /// than two heartbeat intervals (500 ms by default) even when
    /// notifications stop arriving. Copies are never served past the
    /// session's expiry (the database clock, estimated from the call that
    /// fetched them). Idle-expiry touches of cache hits are batched
    /// (every second, or 128 at once) into one statement.
    pub fn cache(mut self, max_sessions: usize) -> Self {
        self.cache = Some(max_sessions.max(1));
        self
    }

    /// Whether this instance's writes send cache invalidations (default
    /// `true`). Turn it off only when no instance sharing the database
    /// caches: `NOTIFY` serializes the commits that send one.
    pub fn notify_writes(mut self, on: bool) -> Self {
        self.notify_writes = on;
        self
    }

    /// How often a caching instance sends its heartbeat (default 250 ms);
    /// see [`cache`](Self::cache).
    pub fn heartbeat_interval(mut self, every: Duration) -> Self {
        self.heartbeat = every.max(Duration::from_millis(10));
        self
    }

    /// Connects, migrates the schema and starts the background tasks (the
    /// purge; with a cache, the listener, the heartbeat and the touch
    /// flush). Must be called within a Tokio runtime.
    ///
    /// # Errors
    /// No URL or pool, an invalid URL or name, the database unreachable
    /// within the acquire timeout, or a failed migration.
    pub async fn build(self) -> Result<PostgresStore> {
        let names = Names::new(&self.schema, &self.prefix)?;
        let pool = match (self.pool.clone(), &self.url) {
            (Some(pool), _) => pool,
            (None, Some(url)) => self.open(url).await?,
            (None, None) => {
                return Err(Error::Store(
                    "PostgresStore: no database: give .url(..), .pool(..) or DATABASE_URL".into(),
                ))
            }
        };
        schema::migrate(&pool, &names, self.create_schema).await?;
        let sql = Sql::new(&names);
        let store = PostgresStore {
            inner: Arc::new(Inner {
                listener_pool: cache::listener_pool(&pool),
                pool,
                names,
                sql,
                notify: self.notify_writes,
                cache: self.cache.map(|max| {
                    let margin = cache::FLUSH_EVERY.saturating_add(self.statement_timeout);
                    cache::Cache::new(max, self.heartbeat, margin)
                }),
                waiters: Waiters::default(),
                keyed_waiters: Waiters::default(),
                origin: format!("{:016x}", rand::random::<u64>()),
                listening: AtomicBool::new(false),
                expiry_retain: std::sync::atomic::AtomicI64::new(0),
                persist_on: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        cache::spawn_listener(&store.inner);
        if store.inner.cache.is_some() {
            cache::spawn_heartbeat(&store.inner, self.heartbeat);
            cache::spawn_flusher(&store.inner);
        }
        if let Some(every) = self.purge_interval {
            purge::spawn(&store.inner, every, self.purge_batch);
        }
        Ok(store)
    }

    async fn open(&self, url: &str) -> Result<PgPool> {
        let statement_ms = self.statement_timeout.as_millis().to_string();
        let mut options = PgConnectOptions::from_str(url)
            .map_err(|e| Error::Store(format!("PostgresStore: invalid URL: {e}").into()))?
            .options([("statement_timeout", statement_ms.as_str())]);
        // Named in `pg_stat_activity`, unless the URL names it
        // (`?application_name=`).
        if options.get_application_name().is_none() {
            options = options.application_name("sessionkit");
        }
        PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(pg_error)
    }
}

#[cfg(test)]
mod tests {
    use super::{without_password, PostgresStoreBuilder};

    #[test]
    fn debug_hides_the_password() {
        for url in [
            "postgres://app:s3cret@db:5432/app",
            "postgres://app@db/app?password=s3cret&sslmode=require",
        ] {
            let shown = format!("{:?}", PostgresStoreBuilder::new().url(url));
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("***"), "{shown}");
        }
        assert_eq!(
            without_password("postgres://app@db/app"),
            "postgres://app@db/app"
        );
    }
}

//! [`PostgresStore`]: sessions in PostgreSQL (feature `postgres`), for
//! teams that run PostgreSQL and no Redis.
//!
//! ```no_run
//! # async fn run() -> sessionkit::Result<()> {
//! use sessionkit::postgres::PostgresStore;
//! use sessionkit::{SessionConfig, SessionManager};
//!
//! let store = PostgresStore::builder()
//!     .url("postgres://app@db.internal/app")
//!     .schema("sessions")      // created if missing
//!     .cache(10_000)           // optional: a local cache, kept right by LISTEN/NOTIFY
//!     .build()
//!     .await?;
//! let manager = SessionManager::new(store, SessionConfig::default());
//! # let _ = manager; Ok(()) }
//! ```
//!
//! # How it keeps the store contract
//!
//! - **One transaction per operation.** Each [`SessionStore`](crate::SessionStore) method is one
//!   call of a PL/pgSQL function the store installs (`src/store/postgres/sql`),
//!   so one round trip and one transaction.
//! - **The database's clock.** Every time comes from `clock_timestamp()` on
//!   the server, and expiry is checked on every read, so app servers with
//!   skewed clocks agree, and an expired session is never served while it
//!   waits for the purge.
//! - **Per-key deltas.** A session is a row of `<prefix>sessions` plus one
//!   row per data key in `<prefix>data` (the value as JSON text): a save
//!   deletes and upserts only the keys it changed. Rotation and login move
//!   the token id of the session row and leave the data rows alone.
//!   Measured against one `jsonb` column updated with `data - removed ||
//!   set` (pgbench, 8 clients, each side one PL/pgSQL call): with 20 keys
//!   of 50 bytes, `jsonb` saved 1.35× and loaded 2× faster; with 20 keys
//!   of 2 KB, rows per key saved 2.1× faster (`jsonb` rewrites the whole
//!   TOASTed value) and loaded 1.35× slower. Rows per key win where
//!   sessions grow, keep a save's cost proportional to what it changed,
//!   and round-trip every JSON value exactly (`jsonb` refuses `"\u0000"`
//!   and renormalizes numbers).
//! - **Per-user operations** go through an index on the user column. A
//!   login takes a per-user advisory lock (`pg_advisory_xact_lock`) before
//!   it counts the user's sessions, so N concurrent logins under single
//!   login leave exactly one, and `RejectNew` / eviction are decided with
//!   the login, not after it.
//! - **Markers** (`<prefix>markers`): aliases left by periodic rotation and
//!   moved markers left by login and explicit rotation, each with its own
//!   expiry, as in the other stores. Revocation deletes the row: an id
//!   never comes back.
//! - **Locks with fencing** are columns of the session row; `unlock` sends
//!   a `NOTIFY`, so waiters on every instance wake at once.
//!
//! - **Lifecycle events** (schema version 3, [`PostgresStore::events`]):
//!   rows of `<prefix>events`, numbered in commit order by
//!   `<prefix>publish_event` under an advisory lock, read by polling feeds.
//! - **Persistence jobs** (schema version 5, [`PostgresStore::persist_queue`]):
//!   rows of `<prefix>persist_jobs`, one per job key, claimed with
//!   `FOR UPDATE SKIP LOCKED`; once the queue was asked for, the purge
//!   enqueues each expired session's job in the transaction of its delete.
//!
//! # Keyed sessions
//!
//! The [`Tracker`](crate::tracker::Tracker)'s records (schema version 2)
//! are rows of `<prefix>keyed`, one per [`KeyedId`](crate::tracker::KeyedId),
//! the value as JSON text. Each [`KeyedOp`](crate::store::keyed::KeyedOp) is
//! one call of the PL/pgSQL function `<prefix>keyed`, which locks the row
//! (`FOR UPDATE`; a start inserts with `ON CONFLICT DO NOTHING`, so two
//! starts of one id make one record) and applies the operation as the
//! memory store does, on the database's clock. Releasing a keyed lock (an
//! unlock, or a finish or removal of a locked record) sends a `NOTIFY` on
//! the same channel as session locks, so waiters on every instance wake.
//! Keyed records bypass the local cache; the background purge deletes the
//! expired ones.
//!
//! # Schema and migrations
//!
//! [`build`](PostgresStoreBuilder::build) creates the schema (unless
//! [`create_schema(false)`](PostgresStoreBuilder::create_schema)) and its
//! tables and functions, versioned in `<prefix>schema_version`, under an
//! advisory lock so that instances starting together migrate once. A
//! database at a newer version than this build is refused. Expired rows are
//! deleted by a background purge in bounded batches
//! ([`purge_interval`](PostgresStoreBuilder::purge_interval)).
//!
//! # The local cache
//!
//! With [`cache(max_sessions)`](PostgresStoreBuilder::cache), loads are
//! answered from memory when they can be; see the [`cache`
//! docs](PostgresStoreBuilder::cache) for what keeps a copy right and the
//! staleness bound.
//!
//! # Outages
//!
//! Connections are taken from a bounded pool within
//! [`acquire_timeout`](PostgresStoreBuilder::acquire_timeout), and every
//! statement runs under a `statement_timeout`; the manager's
//! [`store_timeout`](crate::SessionConfig::store_timeout) bounds each call,
//! so a database outage answers 503 within it, and the pool reconnects by
//! itself when the database is back.

mod builder;
mod cache;
mod events;
mod keyed;
mod ops;
mod persist;
mod purge;
mod reply;
mod schema;

use std::sync::Arc;

use sqlx::PgPool;

pub use self::builder::PostgresStoreBuilder;
pub use self::cache::PostgresCacheStats;
pub use self::events::PostgresEvents;
pub use self::persist::PostgresQueue;
use crate::store::waiters::Waiters;
use crate::{Error, Result, SessionId};

/// Sessions in PostgreSQL. Cheap to clone: clones share one pool (and one
/// cache). See the [module docs](self).
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    /// The listener's own one-connection pool, closed when the store is
    /// dropped, which ends the listener task.
    listener_pool: PgPool,
    names: schema::Names,
    sql: schema::Sql,
    /// Whether writes send cache invalidations (`NOTIFY`).
    notify: bool,
    cache: Option<cache::Cache>,
    /// Lock waiters of this instance, woken by `unlock` notifications.
    waiters: Waiters<SessionId>,
    /// Keyed-lock waiters of this instance, by keyed id (as text: the
    /// listener reads it from a notification payload).
    keyed_waiters: Waiters<String>,
    /// This instance's tag in keyed release notices: its listener skips
    /// its own, whose waiters the releasing call already woke.
    origin: String,
    /// Whether the listener is subscribed (release notices are sent only
    /// then: a waiter registered while it is down polls instead).
    listening: std::sync::atomic::AtomicBool,
    /// How many events the table keeps, once [`PostgresStore::events`] was
    /// called (0 before): the purge then records each expiry.
    expiry_retain: std::sync::atomic::AtomicI64,
    /// Whether [`PostgresStore::persist_queue`] was called: the purge then
    /// enqueues a job per expired session.
    persist_on: std::sync::atomic::AtomicBool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing takes effect when called; the future only waits for the
        // connection to go, which nobody needs to.
        drop(self.listener_pool.close());
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.inner.names.schema)
            .field("table_prefix", &self.inner.names.prefix)
            .field("cache", &self.inner.cache.as_ref().map(|c| c.capacity()))
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to `url` with the default settings (see
    /// [`PostgresStoreBuilder`]) and migrates the schema.
    ///
    /// # Errors
    /// An invalid URL, the database unreachable within the acquire timeout,
    /// or a failed migration.
    pub async fn connect(url: &str) -> Result<PostgresStore> {
        Self::builder().url(url).build().await
    }

    /// A builder with the defaults: schema `public` (created if missing),
    /// table prefix `sessionkit_`, up to 10 connections, acquire and
    /// statement timeouts 2 s, purge every 60 s in batches of 1000, no
    /// cache.
    pub fn builder() -> PostgresStoreBuilder {
        PostgresStoreBuilder::new()
    }

    /// The connection pool, for your own queries.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The schema the store's tables live in.
    pub fn schema(&self) -> &str {
        &self.inner.names.schema
    }

    /// The prefix of the store's tables and functions.
    pub fn table_prefix(&self) -> &str {
        &self.inner.names.prefix
    }

    /// Deletes expired sessions, run-out markers and expired keyed
    /// sessions now, in batches of
    /// `batch` rows until none is left; returns how many rows went. The
    /// background purge does this on its interval.
    ///
    /// # Errors
    /// The database unreachable.
    pub async fn purge_expired(&self, batch: u32) -> Result<u64> {
        purge::purge_all(&self.inner, batch).await
    }

    /// The counters of the local cache, or `None` without one.
    pub fn cache_stats(&self) -> Option<PostgresCacheStats> {
        self.inner.cache.as_ref().map(cache::Cache::stats)
    }
}

/// A database error as the store reports it: "store unavailable" (503).
pub(crate) fn pg_error(e: sqlx::Error) -> Error {
    Error::Store(Box::new(e))
}

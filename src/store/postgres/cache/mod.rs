//! The local cache of a [`PostgresStore`](super::PostgresStore) built with
//! [`cache`](super::PostgresStoreBuilder::cache): the bookkeeping
//! (`entries.rs`, free of I/O), the listener and heartbeat that keep it
//! right across instances (`listener.rs`), and the batched touches
//! (`touches.rs`). What makes a copy trustworthy, and the staleness bound,
//! are on [`cache`](super::PostgresStoreBuilder::cache).

mod entries;
mod listener;
mod stats;
mod touches;

pub(crate) use self::entries::Cache;
pub(crate) use self::listener::{listener_pool, spawn_heartbeat, spawn_listener};
pub use self::stats::PostgresCacheStats;
pub(crate) use self::touches::{spawn_flusher, FLUSH_EVERY};

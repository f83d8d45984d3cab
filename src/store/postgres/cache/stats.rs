//! The counters of a [`PostgresStore`](super::super::PostgresStore)'s local
//! cache, as reported to users.

/// Counters of the local cache, from
/// [`PostgresStore::cache_stats`](super::super::PostgresStore::cache_stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PostgresCacheStats {
    /// Sessions cached now.
    pub entries: usize,
    /// The most sessions the cache holds.
    pub capacity: usize,
    /// Loads answered from the cache.
    pub hits: u64,
    /// Loads that went to the database.
    pub misses: u64,
    /// Session ids dropped because a notification or a write of this
    /// instance named them.
    pub invalidations: u64,
    /// Times the whole cache was emptied (the listener's connection lost).
    pub resets: u64,
    /// Heartbeats heard by the listener.
    pub heartbeats: u64,
    /// Idle-expiry touches queued by cache hits.
    pub touches_queued: u64,
    /// Touches written by the batched flush.
    pub touches_flushed: u64,
}

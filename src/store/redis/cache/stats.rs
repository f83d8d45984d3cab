//! The counters of a client-side cache, as reported to users.

/// Counters of a client-side cache, from
/// [`RedisStore::client_cache_stats`](super::super::RedisStore::client_cache_stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientCacheStats {
    /// Sessions cached now.
    pub entries: usize,
    /// The most sessions the cache holds (`max_sessions`).
    pub capacity: usize,
    /// Loads answered from the cache, without a round trip.
    pub hits: u64,
    /// Loads that went to Redis.
    pub misses: u64,
    /// Keys named by invalidation pushes from Redis.
    pub invalidations: u64,
    /// Times the whole cache was emptied (disconnection, reconnection,
    /// `FLUSHALL`, an odd push, a write whose effect is unknown).
    pub resets: u64,
    /// Idle-expiry touches queued by cache hits.
    pub touches_queued: u64,
    /// Touch calls sent to Redis by the background flush.
    pub touches_flushed: u64,
}

impl ClientCacheStats {
    /// The sum of two caches' counters (one per Cluster primary). The
    /// capacity is per cache: the largest is kept.
    pub(crate) fn plus(&self, o: &ClientCacheStats) -> ClientCacheStats {
        ClientCacheStats {
            entries: self.entries + o.entries,
            capacity: self.capacity.max(o.capacity),
            hits: self.hits + o.hits,
            misses: self.misses + o.misses,
            invalidations: self.invalidations + o.invalidations,
            resets: self.resets + o.resets,
            touches_queued: self.touches_queued + o.touches_queued,
            touches_flushed: self.touches_flushed + o.touches_flushed,
        }
    }
}

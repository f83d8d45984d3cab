//! The cache itself: its entries, the LRU, lookups (served only while the
//! Redis clock says the key is live), the touch queue, invalidations and
//! connection changes.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use ::redis::Value;
use lru::LruCache;
use tokio::sync::Notify;

use super::stats::ClientCacheStats;
use super::ticket::Flight;
use crate::clock::duration_ms;
use crate::store::{Data, Loaded, Meta, Timeouts};
use crate::SessionId;

/// What a cached session is.
pub(super) struct Snapshot {
    pub(super) id: SessionId,
    pub(super) meta: Meta,
    pub(super) data: Data,
}

/// One cached session.
pub(super) struct Entry {
    pub(super) snapshot: Arc<Snapshot>,
    /// The key's expiry as Redis last reported it: never served at or past.
    pub(super) redis_exp: i64,
    /// `@seen` as Redis has it.
    pub(super) redis_seen: i64,
    /// `last_seen` counting a touch queued but not yet flushed.
    pub(super) local_seen: i64,
    /// The expiry counting a touch queued but not yet flushed (what a load
    /// reports, for the cookie's `Max-Age`).
    pub(super) local_exp: i64,
}

/// A touch a cache hit found due, waiting for the next flush.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingTouch {
    /// The session key.
    pub(crate) key: String,
    /// Its hash part (the index member).
    pub(crate) hash: String,
    /// The idle timeout, ms.
    pub(crate) idle_ms: i64,
}

pub(super) struct State {
    pub(super) lru: LruCache<String, Entry>,
    pub(super) flights: HashMap<String, Flight>,
    /// Logical time: bumped by every event below.
    clock: u64,
    /// Logical time of the last full reset.
    pub(super) reset_at: u64,
    /// The epoch of the connection whose replies may be cached, if any.
    pub(super) live: Option<u64>,
    /// The newest epoch known to be disconnected.
    last_lost: u64,
    /// The last Redis time seen, and the instant its call was sent.
    pub(super) anchor: Option<(i64, Instant)>,
    touches: HashMap<String, PendingTouch>,
}

impl State {
    pub(super) fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Redis time now, erring late.
    fn now(&self) -> Option<i64> {
        self.anchor
            .map(|(ms, at)| ms.saturating_add(duration_ms(at.elapsed())))
    }

    fn drop_key(&mut self, key: &str) {
        self.lru.pop(key);
        let now = self.tick();
        if let Some(f) = self.flights.get_mut(key) {
            f.dirty_at = now;
        }
    }

    fn reset(&mut self) {
        self.lru.clear();
        self.reset_at = self.tick();
    }
}

/// The cache of one store. See the [module docs](super).
pub(crate) struct ClientCache {
    state: Mutex<State>,
    capacity: NonZeroUsize,
    /// A due touch is queued only if the key's Redis expiry is at least this
    /// far away (one flush interval and one command timeout); otherwise the
    /// load goes to Redis, whose script touches inline.
    batch_margin_ms: i64,
    /// Flush early once this many touches wait.
    batch_size: usize,
    /// Woken when the touch queue reaches `batch_size` (shared by the
    /// caches of one store: one flush task serves them all).
    pub(crate) batch_full: Arc<Notify>,
    hits: AtomicU64,
    misses: AtomicU64,
    invalidations: AtomicU64,
    resets: AtomicU64,
    touches_queued: AtomicU64,
    touches_flushed: AtomicU64,
}

impl std::fmt::Debug for ClientCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCache")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl ClientCache {
    pub(crate) fn new(
        capacity: NonZeroUsize,
        batch_margin_ms: i64,
        batch_size: usize,
        batch_full: Arc<Notify>,
    ) -> Self {
        ClientCache {
            state: Mutex::new(State {
                lru: LruCache::new(capacity),
                flights: HashMap::new(),
                clock: 0,
                reset_at: 0,
                live: None,
                last_lost: 0,
                anchor: None,
                touches: HashMap::new(),
            }),
            capacity,
            batch_margin_ms,
            batch_size: batch_size.max(1),
            batch_full,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            touches_queued: AtomicU64::new(0),
            touches_flushed: AtomicU64::new(0),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing under this lock panics; if something ever did, the state
        // is still consistent enough to keep removing entries.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sessions cached now.
    pub(crate) fn len(&self) -> usize {
        self.lock().lru.len()
    }

    pub(crate) fn stats(&self) -> ClientCacheStats {
        let entries = self.len();
        ClientCacheStats {
            entries,
            capacity: self.capacity.get(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Relaxed),
            resets: self.resets.load(Ordering::Relaxed),
            touches_queued: self.touches_queued.load(Ordering::Relaxed),
            touches_flushed: self.touches_flushed.load(Ordering::Relaxed),
        }
    }

    /// A cached load of `key`: `None` on a miss (not cached, expired by the
    /// Redis clock, or due for a touch too close to its Redis expiry to be
    /// batched). A hit whose touch is due queues the touch (`hash` names
    /// the index member) and reports the refreshed `last_seen` and
    /// expiry, as the load script would.
    pub(crate) fn lookup(
        &self,
        key: &str,
        timeouts: &Timeouts,
        idle_ms: i64,
        touch_target: impl FnOnce() -> String,
    ) -> Option<Loaded> {
        let (snapshot, now, seen, expires_at_ms, touched) = {
            let mut guard = self.lock();
            let st = &mut *guard;
            let Some(now) = st.now() else {
                self.misses.fetch_add(1, Ordering::Relaxed);
                return None;
            };
            let Some(e) = st.lru.get_mut(key) else {
                self.misses.fetch_add(1, Ordering::Relaxed);
                return None;
            };
            let absolute = e.snapshot.meta.absolute_deadline_ms;
            let deadline = e
                .redis_exp
                .min(e.redis_seen.saturating_add(idle_ms))
                .min(absolute);
            if now >= deadline {
                st.lru.pop(key);
                self.misses.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            let touched = timeouts.touch_due(e.local_seen, now);
            if touched {
                if deadline.saturating_sub(now) < self.batch_margin_ms {
                    self.misses.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                e.local_seen = now;
                e.local_exp = now.saturating_add(idle_ms).min(absolute);
            }
            let expires = e
                .local_exp
                .min(e.local_seen.saturating_add(idle_ms))
                .min(absolute);
            let out = (e.snapshot.clone(), now, e.local_seen, expires, touched);
            if touched {
                let hash = touch_target();
                st.touches.insert(
                    key.to_owned(),
                    PendingTouch {
                        key: key.to_owned(),
                        hash,
                        idle_ms,
                    },
                );
                self.touches_queued.fetch_add(1, Ordering::Relaxed);
                if st.touches.len() >= self.batch_size {
                    self.batch_full.notify_one();
                }
            }
            out
        };
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(Loaded {
            id: snapshot.id.clone(),
            meta: Meta {
                last_seen_ms: seen,
                ..snapshot.meta.clone()
            },
            data: snapshot.data.clone(),
            now_ms: now,
            expires_at_ms,
            touched,
        })
    }

    /// Takes up to `max` queued touches.
    pub(crate) fn take_touches(&self, max: usize) -> Vec<PendingTouch> {
        let mut st = self.lock();
        if st.touches.len() <= max {
            return st.touches.drain().map(|(_, t)| t).collect();
        }
        let keys: Vec<String> = st.touches.keys().take(max).cloned().collect();
        keys.iter().filter_map(|k| st.touches.remove(k)).collect()
    }

    pub(crate) fn count_flushed(&self, n: usize) {
        self.touches_flushed
            .fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Drops a key this instance changed (or learned was changed): a call on
    /// it that started before now will not cache its reply.
    pub(crate) fn forget(&self, key: &str) {
        self.lock().drop_key(key);
    }

    /// Empties the cache: no call started before now caches its reply.
    pub(crate) fn reset(&self) {
        self.lock().reset();
        self.resets.fetch_add(1, Ordering::Relaxed);
    }

    /// An `invalidate` push: `[keys]`, or `[nil]` after `FLUSHALL` /
    /// `FLUSHDB`. Anything else empties the cache.
    pub(crate) fn on_invalidate(&self, data: &[Value]) {
        let keys = match data.first() {
            Some(Value::Array(keys) | Value::Set(keys)) => keys,
            _ => return self.reset(),
        };
        let mut st = self.lock();
        for key in keys {
            let key = match key {
                Value::BulkString(b) => std::str::from_utf8(b).ok(),
                Value::SimpleString(s) => Some(s.as_str()),
                _ => {
                    drop(st);
                    return self.reset();
                }
            };
            // A key that is not UTF-8 is none of ours.
            if let Some(key) = key {
                st.drop_key(key);
                self.invalidations.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Tracking is on for the connection of `epoch`: its replies may be
    /// cached from now on. `false` if it was already reported lost.
    pub(crate) fn connection_ready(&self, epoch: u64) -> bool {
        let mut st = self.lock();
        if epoch <= st.last_lost {
            return false;
        }
        st.reset();
        st.live = Some(epoch);
        true
    }

    /// The connection of `epoch` is gone (a disconnection push, or a call
    /// failed with a connection error): pushes may have been missed.
    pub(crate) fn connection_lost(&self, epoch: u64) {
        {
            let mut st = self.lock();
            st.last_lost = st.last_lost.max(epoch);
            if st.live == Some(epoch) {
                st.live = None;
            }
            st.reset();
        }
        self.resets.fetch_add(1, Ordering::Relaxed);
    }
}

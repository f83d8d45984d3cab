//! The cache's bookkeeping, free of I/O: the entries (least recently used
//! evicted), the invalidations seen lately (so that a reply fetched before
//! one is not inserted after it), the listener's health, and the queued
//! touches.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lru::LruCache;

use super::PostgresCacheStats;
use crate::clock::duration_ms;
use crate::store::{Loaded, Timeouts};
use crate::SessionId;

/// Invalidations remembered for replies in flight. A reply whose call
/// started before the oldest remembered one is not cached.
const RECENT: usize = 4096;

/// Taken before a load is sent; a reply is cached only if no invalidation
/// of its id came after the ticket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    seq: u64,
    sent: Instant,
}

struct Entry {
    loaded: Loaded,
    /// The database clock when the copy was read, and when its call was
    /// sent: "now" on the database is estimated as `base_ms` plus the time
    /// since `base_at`, which errs late (a copy stops being served up to
    /// one round trip early, never late).
    base_ms: i64,
    base_at: Instant,
    /// The expiry the database holds (a queued touch has not moved it).
    db_expires_ms: i64,
}

struct State {
    entries: LruCache<SessionId, Entry>,
    /// Bumped by every invalidation.
    seq: u64,
    recent: VecDeque<(u64, SessionId)>,
    /// Tickets older than this are refused (invalidations since were
    /// forgotten, or the whole cache was reset).
    floor: u64,
    /// When the listener last heard a heartbeat; `None` while it is down.
    heard_at: Option<Instant>,
    touches: Vec<(SessionId, i64)>,
    stats: PostgresCacheStats,
}

/// A local cache of sessions; see
/// [`PostgresStoreBuilder::cache`](super::super::PostgresStoreBuilder::cache).
pub(crate) struct Cache {
    state: Mutex<State>,
    capacity: usize,
    /// How long a heartbeat vouches for the listener.
    trust: Duration,
    /// A due touch is queued only if the database's expiry is further away
    /// than this (the flush period plus a statement timeout): a queued
    /// touch must land before the session it extends expires there.
    batch_margin_ms: i64,
}

impl Cache {
    pub(crate) fn new(capacity: usize, heartbeat: Duration, batch_margin: Duration) -> Cache {
        let cap = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Cache {
            state: Mutex::new(State {
                entries: LruCache::new(cap),
                seq: 0,
                recent: VecDeque::with_capacity(RECENT),
                floor: 0,
                heard_at: None,
                touches: Vec::new(),
                stats: PostgresCacheStats {
                    capacity,
                    ..PostgresCacheStats::default()
                },
            }),
            capacity,
            trust: heartbeat * 2,
            batch_margin_ms: duration_ms(batch_margin),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; the
        // worst it can be is a stale entry, which is dropped on reset.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    fn trusted(&self, st: &State) -> bool {
        st.heard_at.is_some_and(|at| at.elapsed() < self.trust)
    }

    pub(crate) fn ticket(&self) -> Ticket {
        Ticket {
            seq: self.lock().seq,
            sent: Instant::now(),
        }
    }

    /// Caches a session read by a call that started at `ticket`.
    pub(crate) fn insert(&self, ticket: Ticket, loaded: &Loaded) {
        let mut st = self.lock();
        if !self.trusted(&st) || ticket.seq < st.floor {
            return;
        }
        let newer = st
            .recent
            .iter()
            .rev()
            .take_while(|(seq, _)| *seq > ticket.seq)
            .any(|(_, id)| *id == loaded.id);
        if newer {
            return;
        }
        let entry = Entry {
            loaded: loaded.clone(),
            base_ms: loaded.now_ms,
            base_at: ticket.sent,
            db_expires_ms: loaded.expires_at_ms,
        };
        st.entries.put(loaded.id.clone(), entry);
        st.stats.entries = st.entries.len();
    }

    /// The cached session, as a load at the estimated database time would
    /// return it (queueing the touch when one is due).
    pub(crate) fn get(&self, id: &SessionId, timeouts: &Timeouts) -> Option<Loaded> {
        let mut st = self.lock();
        if !self.trusted(&st) {
            st.stats.misses += 1;
            return None;
        }
        let Some(entry) = st.entries.get_mut(id) else {
            st.stats.misses += 1;
            return None;
        };
        let now = entry
            .base_ms
            .saturating_add(duration_ms(entry.base_at.elapsed()));
        // Past the database's own expiry the copy is not trusted even if a
        // queued touch extended it here: the touch may not have landed.
        if entry.loaded.expires_at_ms.min(entry.db_expires_ms) <= now {
            st.entries.pop(id);
            st.stats.entries = st.entries.len();
            st.stats.misses += 1;
            return None;
        }
        let touch_due = timeouts.touch_due(entry.loaded.meta.last_seen_ms, now);
        if touch_due && entry.db_expires_ms.saturating_sub(now) < self.batch_margin_ms {
            // Too close to the database's expiry to batch: the load goes
            // to the database, which touches in the same step.
            st.stats.misses += 1;
            return None;
        }
        let mut loaded = entry.loaded.clone();
        loaded.now_ms = now;
        loaded.touched = touch_due;
        if loaded.touched {
            loaded.meta.last_seen_ms = now;
            loaded.expires_at_ms = timeouts.expires_at(now, loaded.meta.absolute_deadline_ms);
            entry.loaded.meta.last_seen_ms = now;
            entry.loaded.expires_at_ms = loaded.expires_at_ms;
            st.touches.push((id.clone(), duration_ms(timeouts.idle)));
            st.stats.touches_queued += 1;
        }
        st.stats.hits += 1;
        Some(loaded)
    }

    /// Drops `id`, and refuses replies to calls that started before.
    pub(crate) fn forget(&self, id: &SessionId) {
        let mut st = self.lock();
        st.seq += 1;
        let seq = st.seq;
        if st.recent.len() == RECENT {
            if let Some((old, _)) = st.recent.pop_front() {
                st.floor = st.floor.max(old);
            }
        }
        st.recent.push_back((seq, id.clone()));
        if st.entries.pop(id).is_some() {
            st.stats.entries = st.entries.len();
        }
        st.stats.invalidations += 1;
    }

    /// Empties the cache and refuses every reply in flight; the cache stays
    /// off until the next heartbeat (`heard`).
    pub(crate) fn reset(&self) {
        let mut st = self.lock();
        st.seq += 1;
        st.floor = st.seq;
        st.recent.clear();
        st.entries.clear();
        st.heard_at = None;
        st.stats.entries = 0;
        st.stats.resets += 1;
    }

    /// The listener heard a heartbeat: every write committed before it sent
    /// has been applied here.
    pub(crate) fn heard(&self) {
        let mut st = self.lock();
        st.heard_at = Some(Instant::now());
        st.stats.heartbeats += 1;
    }

    /// Takes up to `max` queued touches.
    pub(crate) fn take_touches(&self, max: usize) -> Vec<(SessionId, i64)> {
        let mut st = self.lock();
        let n = st.touches.len().min(max);
        st.touches.drain(..n).collect()
    }

    pub(crate) fn touches_waiting(&self) -> usize {
        self.lock().touches.len()
    }

    pub(crate) fn flushed(&self, n: u64) {
        self.lock().stats.touches_flushed += n;
    }

    pub(crate) fn stats(&self) -> PostgresCacheStats {
        self.lock().stats
    }
}

//! The client-side session cache of a [`RedisStore`](super::RedisStore)
//! built with [`client_cache`](super::RedisStoreBuilder::client_cache): the
//! bookkeeping only, free of I/O (the connection that feeds it is in
//! `tracked.rs`, the batched touches in `touches.rs`).
//!
//! # What makes a cached copy trustworthy
//!
//! An entry is inserted only from the reply of a script call made on the
//! tracked connection (RESP3, `CLIENT TRACKING ON NOLOOP`), which read the
//! key and so made Redis promise one invalidation push for the next change
//! of that key by any other client. Three things can make a reply stale by
//! the time its task gets to insert it, and each is checked under one lock:
//!
//! - **an invalidation push** for the key arrived after the call started:
//!   pushes and replies come in over one socket, and redis-rs hands pushes to
//!   our callback from the connection's reader, in order, before it hands
//!   over the replies that follow them; a push processed since the call
//!   started marks the key's *flight* dirty, and the reply is dropped;
//! - **another call of ours on the same key** (NOLOOP silences pushes for our
//!   own writes): every reply carries the session's `(@ver, @seen)` stamp,
//!   which only grows; while calls on a key overlap (a *flight*), a reply
//!   older than one already applied is dropped, and a call that failed or
//!   timed out (its write may still land) marks the flight dirty;
//! - **the connection changed**: each tracked connection has an epoch; a
//!   reply is inserted only if its connection is still the live one, and a
//!   disconnection empties the cache and waits for tracking to be on again
//!   on a new connection (see [`ClientCache::connection_ready`]).
//!
//! Removing an entry is always safe, so every doubt (odd push payload,
//! failed call, unknown effect) ends in a removal or a full reset.
//!
//! # Time
//!
//! Entries are never served at or past the expiry Redis reported for the
//! key. "Now" is the last Redis `TIME` seen in a reply plus the monotonic
//! time elapsed since the call that returned it was *sent* (so it errs
//! late, never early: an entry stops being served up to one round trip
//! early, never late), which keeps app servers' wall clocks out of it.
//!
//! # Why the `lru` crate
//!
//! The cache needs exact least-recently-used eviction with O(1) get, put
//! and remove by key; `lru` is small, widely used, and with default features
//! off has no dependency of its own. A clock (second-chance) ring would save
//! the list links but needs its own index for removal by key; not worth the
//! code here.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use ::redis::Value;
use lru::LruCache;
use tokio::sync::Notify;

use crate::clock::duration_ms;
use crate::store::{Data, Loaded, Meta, Timeouts};
use crate::SessionId;

/// Counters of a client-side cache, from
/// [`RedisStore::client_cache_stats`](super::RedisStore::client_cache_stats).
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

/// What a cached session is.
struct Snapshot {
    id: SessionId,
    meta: Meta,
    data: Data,
}

/// One cached session.
struct Entry {
    snapshot: Arc<Snapshot>,
    /// The key's expiry as Redis last reported it: never served at or past.
    redis_exp: i64,
    /// `@seen` as Redis has it.
    redis_seen: i64,
    /// `last_seen` counting a touch queued but not yet flushed.
    local_seen: i64,
    /// The expiry counting a touch queued but not yet flushed (what a load
    /// reports, for the cookie's `Max-Age`).
    local_exp: i64,
}

/// How far a session's state has gone, as seen in replies. Grows with every
/// change: a write bumps `@ver`, a touch raises `@seen`, and an ended session
/// is gone for good (ids are never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stamp {
    Nothing,
    State { version: u64, seen: i64 },
    Gone,
}

/// The calls in flight on one key, and what they saw.
#[derive(Debug)]
struct Flight {
    ops: u32,
    /// Logical time of the last invalidation or failed call on the key.
    dirty_at: u64,
    /// The newest state applied by a call of this flight.
    newest: Stamp,
}

/// A touch a cache hit found due, waiting for the next flush.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingTouch {
    /// The session key.
    pub(crate) key: String,
    /// The index key of its tag.
    pub(crate) index: String,
    /// Its hash part (the index member).
    pub(crate) hash: String,
    /// The idle timeout, ms.
    pub(crate) idle_ms: i64,
}

struct State {
    lru: LruCache<String, Entry>,
    flights: HashMap<String, Flight>,
    /// Logical time: bumped by every event below.
    clock: u64,
    /// Logical time of the last full reset.
    reset_at: u64,
    /// The epoch of the connection whose replies may be cached, if any.
    live: Option<u64>,
    /// The newest epoch known to be disconnected.
    last_lost: u64,
    /// The last Redis time seen, and the instant its call was sent.
    anchor: Option<(i64, Instant)>,
    touches: HashMap<String, PendingTouch>,
}

impl State {
    fn tick(&mut self) -> u64 {
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

/// How a call on a key ended.
enum Outcome {
    /// The session as the reply shows it.
    Fresh {
        entry: Entry,
        stamp: Stamp,
        now: i64,
    },
    /// A touch took effect: new expiry and `@seen`, at this version.
    Touched {
        now: i64,
        exp: i64,
        seen: i64,
        version: u64,
    },
    /// The key holds no live session (any more).
    Gone,
    /// The call succeeded and says nothing about the key's state.
    Unchanged,
    /// The call failed, timed out or was dropped: its write may land later.
    Failed,
}

/// The cache of one store. See the [module docs](self).
pub(crate) struct ClientCache {
    state: Mutex<State>,
    capacity: NonZeroUsize,
    /// A due touch is queued only if the key's Redis expiry is at least this
    /// far away (one flush interval and one command timeout); otherwise the
    /// load goes to Redis, whose script touches inline.
    batch_margin_ms: i64,
    /// Flush early once this many touches wait.
    batch_size: usize,
    /// Woken when the touch queue reaches `batch_size`.
    pub(crate) batch_full: Notify,
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
    pub(crate) fn new(capacity: NonZeroUsize, batch_margin_ms: i64, batch_size: usize) -> Self {
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
            batch_full: Notify::new(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            touches_queued: AtomicU64::new(0),
            touches_flushed: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
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
    /// batched). A hit whose touch is due queues the touch (`index`, `hash`
    /// name the index member) and reports the refreshed `last_seen` and
    /// expiry, as the load script would.
    pub(crate) fn lookup(
        &self,
        key: &str,
        timeouts: &Timeouts,
        idle_ms: i64,
        touch_target: impl FnOnce() -> (String, String),
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
                let (index, hash) = touch_target();
                st.touches.insert(
                    key.to_owned(),
                    PendingTouch {
                        key: key.to_owned(),
                        index,
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

    /// Starts a call on `key` over the connection of `epoch`.
    pub(crate) fn begin(self: &Arc<Self>, key: String, epoch: u64) -> Ticket {
        let start = {
            let mut st = self.lock();
            let start = st.tick();
            st.flights
                .entry(key.clone())
                .or_insert(Flight {
                    ops: 0,
                    dirty_at: 0,
                    newest: Stamp::Nothing,
                })
                .ops += 1;
            start
        };
        Ticket {
            cache: Arc::clone(self),
            key,
            start,
            epoch,
            sent_at: Instant::now(),
            done: false,
        }
    }

    fn finish(&self, t: &Ticket, outcome: Outcome) {
        let mut guard = self.lock();
        let st = &mut *guard;
        let now = st.tick();
        let live = st.live == Some(t.epoch) && st.reset_at < t.start;
        let State {
            lru,
            flights,
            anchor,
            ..
        } = st;
        let Some(f) = flights.get_mut(&t.key) else {
            // Unreachable: a flight lives until its last ticket ends.
            lru.pop(&t.key);
            return;
        };
        let clean = live && f.dirty_at < t.start;
        match outcome {
            Outcome::Failed => {
                f.dirty_at = now;
                lru.pop(&t.key);
            }
            Outcome::Gone => {
                f.newest = Stamp::Gone;
                lru.pop(&t.key);
            }
            Outcome::Unchanged => {}
            Outcome::Fresh {
                entry,
                stamp,
                now: redis_now,
            } => {
                if clean && stamp >= f.newest {
                    f.newest = stamp;
                    lru.put(t.key.clone(), entry);
                    *anchor = Some((redis_now, t.sent_at));
                }
            }
            Outcome::Touched {
                now: redis_now,
                exp,
                seen,
                version,
            } => {
                let stamp = Stamp::State { version, seen };
                if clean && stamp >= f.newest {
                    f.newest = stamp;
                    *anchor = Some((redis_now, t.sent_at));
                    match lru.peek_mut(&t.key) {
                        Some(e) if e.snapshot.meta.version == version => {
                            e.redis_exp = exp;
                            e.redis_seen = seen;
                            e.local_seen = e.local_seen.max(seen);
                            e.local_exp = e.local_exp.max(exp);
                        }
                        Some(_) => {
                            lru.pop(&t.key);
                        }
                        None => {}
                    }
                }
            }
        }
        f.ops = f.ops.saturating_sub(1);
        if f.ops == 0 {
            flights.remove(&t.key);
        }
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

/// One call on a key, from [`ClientCache::begin`]. End it with one of its
/// methods; dropping it (an error, a timeout, a cancelled future) counts as
/// a failure: the key is dropped and no overlapping call caches its reply.
pub(crate) struct Ticket {
    cache: Arc<ClientCache>,
    key: String,
    start: u64,
    epoch: u64,
    sent_at: Instant,
    done: bool,
}

impl Ticket {
    fn end(mut self, outcome: Outcome) {
        self.done = true;
        self.cache.finish(&self, outcome);
    }

    /// The reply holds the live session `l` (`l.meta` and `l.data` as
    /// stored, `l.now_ms` the Redis time, `l.expires_at_ms` the key's
    /// expiry).
    pub(crate) fn fresh(self, l: &Loaded) {
        let entry = Entry {
            snapshot: Arc::new(Snapshot {
                id: l.id.clone(),
                meta: l.meta.clone(),
                data: l.data.clone(),
            }),
            redis_exp: l.expires_at_ms,
            redis_seen: l.meta.last_seen_ms,
            local_seen: l.meta.last_seen_ms,
            local_exp: l.expires_at_ms,
        };
        let stamp = Stamp::State {
            version: l.meta.version,
            seen: l.meta.last_seen_ms,
        };
        self.end(Outcome::Fresh {
            entry,
            stamp,
            now: l.now_ms,
        });
    }

    /// A batched touch refreshed the session.
    pub(crate) fn touched(self, now: i64, exp: i64, seen: i64, version: u64) {
        self.end(Outcome::Touched {
            now,
            exp,
            seen,
            version,
        });
    }

    /// The key holds no live session.
    pub(crate) fn gone(self) {
        self.end(Outcome::Gone);
    }

    /// The call said nothing about the key.
    pub(crate) fn unchanged(self) {
        self.end(Outcome::Unchanged);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done {
            self.done = true;
            self.cache.finish(self, Outcome::Failed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{Tag, Token};
    use serde_json::json;
    use std::time::Duration;

    const HOUR: i64 = 3_600_000;

    fn timeouts() -> Timeouts {
        Timeouts {
            idle: Duration::from_secs(3600),
            absolute: Duration::from_secs(86_400),
            touch_interval: Duration::from_secs(60),
        }
    }

    fn cache(cap: usize) -> Arc<ClientCache> {
        let c = Arc::new(ClientCache::new(NonZeroUsize::new(cap).unwrap(), 3000, 64));
        assert!(c.connection_ready(1));
        c
    }

    fn loaded(version: u64, seen: i64, value: i64) -> Loaded {
        Loaded {
            id: Token::generate(&Tag::random()).id(),
            meta: Meta {
                user_id: None,
                created_ms: seen,
                last_seen_ms: seen,
                token_issued_ms: seen,
                absolute_deadline_ms: seen + 24 * HOUR,
                version,
                user_agent: None,
                client_ip: None,
            },
            data: [("v".to_owned(), json!(value))].into_iter().collect(),
            now_ms: seen,
            expires_at_ms: seen + HOUR,
            touched: false,
        }
    }

    fn get(c: &ClientCache, key: &str) -> Option<Loaded> {
        c.lookup(key, &timeouts(), HOUR, || ("idx".into(), "h".into()))
    }

    fn value(c: &ClientCache, key: &str) -> Option<i64> {
        get(c, key).map(|l| l.data["v"].as_i64().unwrap())
    }

    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn a_fresh_reply_is_served_until_invalidated() {
        let c = cache(10);
        assert!(get(&c, "k").is_none());
        c.begin("k".into(), 1).fresh(&loaded(1, NOW, 7));
        let hit = get(&c, "k").unwrap();
        assert_eq!(hit.data["v"], json!(7));
        assert!(!hit.touched);
        assert!(hit.now_ms >= NOW);
        assert_eq!(hit.expires_at_ms, NOW + HOUR);
        c.on_invalidate(&[Value::Array(vec![Value::BulkString(b"k".to_vec())])]);
        assert!(get(&c, "k").is_none());
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.invalidations), (1, 2, 1));
    }

    #[test]
    fn an_invalidation_during_the_call_wins() {
        let c = cache(10);
        let t = c.begin("k".into(), 1);
        c.on_invalidate(&[Value::Array(vec![Value::BulkString(b"k".to_vec())])]);
        t.fresh(&loaded(1, NOW, 7));
        assert!(get(&c, "k").is_none(), "the stale reply was not cached");
        // A call started after the push is fine.
        c.begin("k".into(), 1).fresh(&loaded(2, NOW, 8));
        assert_eq!(value(&c, "k"), Some(8));
    }

    #[test]
    fn an_older_reply_never_overwrites_a_newer_one() {
        let c = cache(10);
        let load = c.begin("k".into(), 1);
        let save = c.begin("k".into(), 1);
        save.fresh(&loaded(2, NOW + 5, 2));
        load.fresh(&loaded(1, NOW, 1));
        assert_eq!(value(&c, "k"), Some(2));
        // Even if the newer entry was evicted meanwhile.
        let load = c.begin("k".into(), 1);
        let save = c.begin("k".into(), 1);
        save.fresh(&loaded(3, NOW + 6, 3));
        c.lock().lru.pop("k");
        load.fresh(&loaded(2, NOW + 5, 2));
        assert!(get(&c, "k").is_none());
    }

    #[test]
    fn gone_and_failed_calls_block_overlapping_replies() {
        let c = cache(10);
        let load = c.begin("k".into(), 1);
        c.begin("k".into(), 1).gone();
        load.fresh(&loaded(1, NOW, 1));
        assert!(get(&c, "k").is_none(), "a revoke beats an older read");

        let load = c.begin("k".into(), 1);
        drop(c.begin("k".into(), 1)); // a save that timed out
        load.fresh(&loaded(1, NOW, 1));
        assert!(get(&c, "k").is_none(), "a failed write may still land");

        // No flight left: the next call caches.
        assert!(c.lock().flights.is_empty());
        c.begin("k".into(), 1).fresh(&loaded(1, NOW, 1));
        assert_eq!(value(&c, "k"), Some(1));
        let load = c.begin("k".into(), 1);
        c.forget("k");
        assert!(get(&c, "k").is_none());
        load.fresh(&loaded(1, NOW, 1));
        assert!(get(&c, "k").is_none(), "forget blocks calls in flight");
    }

    #[test]
    fn disconnection_empties_and_blocks_until_tracking_is_back() {
        let c = cache(10);
        c.begin("a".into(), 1).fresh(&loaded(1, NOW, 1));
        let in_flight = c.begin("b".into(), 1);
        c.connection_lost(1);
        assert_eq!(c.len(), 0);
        in_flight.fresh(&loaded(1, NOW, 1));
        c.begin("c".into(), 1).fresh(&loaded(1, NOW, 1));
        assert_eq!(c.len(), 0, "nothing is cached without a live connection");
        // A new connection must be ready before its replies are cached.
        c.begin("d".into(), 2).fresh(&loaded(1, NOW, 1));
        assert_eq!(c.len(), 0);
        assert!(c.connection_ready(2));
        c.begin("d".into(), 2).fresh(&loaded(1, NOW, 1));
        assert_eq!(c.len(), 1);
        // A connection lost before it was ready never becomes live.
        c.connection_lost(3);
        assert!(!c.connection_ready(3));
    }

    #[test]
    fn odd_pushes_empty_the_cache_without_panicking() {
        let c = cache(10);
        for data in [
            vec![],
            vec![Value::Nil],
            vec![Value::Int(3)],
            vec![Value::Array(vec![Value::Int(1)])],
        ] {
            c.begin("k".into(), 1).fresh(&loaded(1, NOW, 1));
            c.on_invalidate(&data);
            assert_eq!(c.len(), 0, "{data:?}");
        }
        c.begin("k".into(), 1).fresh(&loaded(1, NOW, 1));
        c.on_invalidate(&[Value::Array(vec![Value::BulkString(vec![0xff])])]);
        assert_eq!(c.len(), 1, "a key that is not ours changes nothing");
    }

    #[test]
    fn bounded_by_capacity() {
        let c = cache(3);
        for i in 0..10 {
            c.begin(format!("k{i}"), 1).fresh(&loaded(1, NOW, i));
        }
        assert_eq!(c.len(), 3);
        assert_eq!(value(&c, "k9"), Some(9));
        assert!(get(&c, "k0").is_none());
    }

    #[test]
    fn never_served_past_the_redis_expiry() {
        let c = cache(10);
        let mut l = loaded(1, NOW, 1);
        l.expires_at_ms = NOW + 50;
        c.begin("k".into(), 1).fresh(&l);
        assert!(get(&c, "k").is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert!(get(&c, "k").is_none());
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn a_due_touch_is_queued_once_and_applied_by_the_flush() {
        let c = cache(10);
        // Last seen two minutes ago (touch interval 60 s): due.
        let mut l = loaded(4, NOW - 120_000, 1);
        l.now_ms = NOW;
        l.expires_at_ms = NOW - 120_000 + HOUR;
        c.begin("k".into(), 1).fresh(&l);
        let first = get(&c, "k").unwrap();
        assert!(first.touched);
        assert!(first.meta.last_seen_ms >= NOW);
        assert!(first.expires_at_ms >= NOW + HOUR);
        let second = get(&c, "k").unwrap();
        assert!(!second.touched, "queued once");
        assert_eq!(second.expires_at_ms, first.expires_at_ms);
        let batch = c.take_touches(100);
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].key, "k");
        assert!(c.take_touches(100).is_empty());
        c.begin("k".into(), 1)
            .touched(NOW + 1, NOW + 1 + HOUR, NOW + 1, 4);
        let e = c.lock().lru.peek("k").map(|e| (e.redis_exp, e.redis_seen));
        assert_eq!(e, Some((NOW + 1 + HOUR, NOW + 1)));
        // A touch of another version drops the entry.
        c.begin("k".into(), 1)
            .touched(NOW + 2, NOW + 2 + HOUR, NOW + 2, 5);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn a_touch_close_to_the_redis_expiry_goes_to_redis() {
        let c = cache(10);
        let mut l = loaded(1, NOW - 120_000, 1);
        l.now_ms = NOW;
        l.expires_at_ms = NOW + 2000; // closer than the 3 s margin
        c.begin("k".into(), 1).fresh(&l);
        assert!(get(&c, "k").is_none());
        assert!(c.take_touches(10).is_empty());
    }
}

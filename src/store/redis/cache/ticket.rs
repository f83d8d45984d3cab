//! Tickets and stamps: the bookkeeping of calls in flight on a key, which
//! decides whether a reply may be cached (see the race rules in the
//! [module docs](super)).

use std::sync::Arc;
use std::time::Instant;

use super::client::{ClientCache, Entry, Snapshot, State};
use crate::store::Loaded;

/// How far a session's state has gone, as seen in replies. Grows with every
/// change: a write bumps `@ver`, a touch raises `@seen`, and an ended session
/// is gone for good (ids are never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Stamp {
    Nothing,
    State { version: u64, seen: i64 },
    Gone,
}

/// The calls in flight on one key, and what they saw.
#[derive(Debug)]
pub(super) struct Flight {
    pub(super) ops: u32,
    /// Logical time of the last invalidation or failed call on the key.
    pub(super) dirty_at: u64,
    /// The newest state applied by a call of this flight.
    pub(super) newest: Stamp,
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

impl ClientCache {
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

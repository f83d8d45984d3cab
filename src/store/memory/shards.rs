//! The sharded map: shards chosen by slot tag, each behind its own lock, and
//! the view an operation gets of the shards it locked.
//!
//! A session's shard is chosen by its id's slot tag. A user's sessions all
//! carry the user's tag ([`Tag::for_user`](crate::Tag::for_user)) and
//! rotation keeps the tag, so a user's sessions, their index and their
//! rotation aliases share one shard, and most operations lock one shard. A
//! login from an anonymous session locks two (the old one's and the
//! user's). Each shard indexes the sessions it holds, as the Redis store
//! indexes each tag, so a user's sessions are those of the user's tag.
//!
//! An operation names the shards it needs up front; one that finds it needs
//! another (an alias to an id of another tag, which the manager never
//! makes) answers [`Need`] and is run again from the start with that shard
//! locked too. Shards are always locked in ascending order, so operations
//! never deadlock, and an operation runs entirely under its locks, so it is
//! as atomic as under one global lock.

use std::sync::{Mutex, MutexGuard};

use super::state::{Entry, State};
use crate::store::MAX_ALIAS_HOPS;
use crate::SessionId;

/// The fewest shards a store has: enough that each stays small (a rehash or
/// a purge batch of one shard is short) at a million sessions.
const MIN_SHARDS: usize = 256;

/// The shards of one store.
#[derive(Debug)]
pub(super) struct Shards {
    shards: Box<[Mutex<State>]>,
    /// `log2(shards.len())`.
    bits: u32,
}

/// An operation needs shard `.0`, which it did not lock.
#[derive(Debug, Clone, Copy)]
pub(super) struct Need(pub(super) usize);

/// Where an id leads, after expiry and aliases.
pub(super) enum Found {
    /// A live session: `None` when it is stored under the id asked for,
    /// else the id an alias (chain) leads to.
    Live(Option<SessionId>),
    /// A moved marker, or an alias chain that leads to one (or is longer
    /// than [`MAX_ALIAS_HOPS`]).
    Superseded,
    Gone,
}

impl Shards {
    /// A power of two of shards, at least four per core and [`MIN_SHARDS`].
    pub(super) fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let n = cores.saturating_mul(4).max(MIN_SHARDS).next_power_of_two();
        Shards {
            shards: (0..n).map(|_| Mutex::new(State::default())).collect(),
            bits: n.trailing_zeros(),
        }
    }

    /// How many shards there are.
    pub(super) fn count(&self) -> usize {
        self.shards.len()
    }

    /// The shard of a slot tag. Tags are random or derived from SHA-256, so
    /// a multiplicative hash of their bytes spreads them evenly.
    pub(super) fn index_of(&self, tag: &str) -> usize {
        let folded = tag
            .bytes()
            .fold(0u64, |h, b| h.rotate_left(8) ^ u64::from(b));
        let spread = folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - self.bits.max(1));
        // `spread` has at most `bits` bits (the `max(1)` only avoids a
        // shift by 64 for a single shard), so it indexes the shards.
        (spread as usize) & (self.shards.len() - 1)
    }

    /// The shard of a session id.
    pub(super) fn of(&self, id: &SessionId) -> usize {
        self.index_of(id.tag())
    }

    /// Locks one shard.
    pub(super) fn lock(&self, index: usize) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated
        // in a way later calls misread (every update is a plain insert or
        // remove), so a poisoned lock is still usable.
        self.shards[index].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `op` with the shards `want` locked, again with more locked for
    /// as long as it answers [`Need`]. `op` must change nothing visible
    /// before it can answer `Need`.
    pub(super) fn with<T>(
        &self,
        want: &[usize],
        mut op: impl FnMut(&mut Locked<'_>) -> Result<T, Need>,
    ) -> T {
        let mut first = [0; 2];
        let mut more = Vec::new();
        let sorted: &[usize] = match *want {
            [a] => {
                first[0] = a;
                &first[..1]
            }
            [a, b] if a == b => {
                first[0] = a;
                &first[..1]
            }
            [a, b] => {
                first = [a.min(b), a.max(b)];
                &first
            }
            _ => {
                more.extend_from_slice(want);
                more.sort_unstable();
                more.dedup();
                &more
            }
        };
        let mut need = match op(&mut Locked::new(self, sorted)) {
            Ok(v) => return v,
            Err(Need(index)) => sorted.iter().copied().chain([index]).collect::<Vec<_>>(),
        };
        loop {
            need.sort_unstable();
            need.dedup();
            match op(&mut Locked::new(self, &need)) {
                Ok(v) => return v,
                Err(Need(index)) => need.push(index),
            }
        }
    }
}

/// The shards an operation holds locked.
pub(super) struct Locked<'a> {
    shards: &'a Shards,
    /// The lowest-numbered shard held, inline: most operations hold one.
    first: Option<(usize, MutexGuard<'a, State>)>,
    rest: Vec<(usize, MutexGuard<'a, State>)>,
}

impl<'a> Locked<'a> {
    /// Locks `sorted` (ascending, no repeats) in order.
    fn new(shards: &'a Shards, sorted: &[usize]) -> Self {
        let mut held = sorted.iter().copied().filter(|&i| i < shards.count());
        let first = held.next().map(|i| (i, shards.lock(i)));
        let rest = held.map(|i| (i, shards.lock(i))).collect();
        Locked {
            shards,
            first,
            rest,
        }
    }

    /// The shard `index`, if it is held.
    pub(super) fn shard(&mut self, index: usize) -> Result<&mut State, Need> {
        match &mut self.first {
            Some((i, st)) if *i == index => return Ok(st),
            _ => {}
        }
        self.rest
            .iter_mut()
            .find(|(i, _)| *i == index)
            .map(|(_, st)| &mut **st)
            .ok_or(Need(index))
    }

    /// The shard of `id`, if it is held.
    pub(super) fn at(&mut self, id: &SessionId) -> Result<&mut State, Need> {
        let index = self.shards.of(id);
        self.shard(index)
    }

    /// Where `id` leads, following aliases (into other shards if needed),
    /// and dropping the expired entries it meets.
    pub(super) fn find(&mut self, id: &SessionId, now: i64) -> Result<Found, Need> {
        enum Step {
            Gone,
            Expired,
            Moved,
            Live,
            Alias(SessionId),
        }
        let mut next: Option<SessionId> = None;
        for _ in 0..=MAX_ALIAS_HOPS {
            let at = next.as_ref().unwrap_or(id);
            let st = self.at(at)?;
            let step = match st.entries.get(at) {
                None => Step::Gone,
                // An expired session stays for the purge, which reports
                // it (its expiry event); a run-out marker goes now.
                Some(Entry::Live(l)) if l.expires_at_ms <= now => Step::Gone,
                Some(e) if !e.alive(now) => Step::Expired,
                Some(Entry::Moved { .. }) => Step::Moved,
                Some(Entry::Live(_)) => Step::Live,
                Some(Entry::Alias { target, .. }) => Step::Alias(target.clone()),
            };
            match step {
                Step::Gone => return Ok(Found::Gone),
                Step::Expired => {
                    st.remove(at);
                    return Ok(Found::Gone);
                }
                Step::Moved => return Ok(Found::Superseded),
                Step::Live => return Ok(Found::Live(next)),
                Step::Alias(target) => next = Some(target),
            }
        }
        Ok(Found::Superseded)
    }
}

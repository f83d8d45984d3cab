//! One shard's state under its lock: entries, the shard's per-user index,
//! its expiry queue, and the updates the operations are built from.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use crate::store::{Data, Loaded, Meta, Timeouts};
use crate::SessionId;

/// The entries of one shard. Every id it holds, and every id in its user
/// index, maps to this shard (see `Shards::index_of`).
#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) entries: HashMap<SessionId, Entry>,
    /// The user's sessions that live in this shard.
    pub(super) users: HashMap<String, HashSet<SessionId>>,
    /// Every entry's id, at or before the instant it expires (an entry may
    /// have more than one; a queued id may be gone already). The purge pops
    /// the due ones instead of scanning the shard.
    pub(super) expiry: BinaryHeap<Reverse<(i64, SessionId)>>,
}

#[derive(Debug)]
pub(super) enum Entry {
    /// Boxed, so that a rehash of the map moves a pointer, not the session.
    Live(Box<Live>),
    Alias {
        target: SessionId,
        until_ms: i64,
    },
    Moved {
        until_ms: i64,
    },
}

/// A live session.
#[derive(Debug)]
pub(super) struct Live {
    pub(super) meta: Meta,
    pub(super) data: Data,
    pub(super) expires_at_ms: i64,
    /// The session's lock state; moves with the session on rotation.
    pub(super) locks: Locks,
}

/// A session's lock: the latest fence issued (0 before the first
/// acquisition; only grows) and the current holder, if any.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Locks {
    pub(super) fence: u64,
    pub(super) held: Option<Lease>,
}

/// A holder's fence and the end of its lease.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lease {
    pub(super) fence: u64,
    pub(super) until_ms: i64,
}

impl Locks {
    /// The lease of `fence`, if it is the current holder's and still running.
    pub(super) fn running(&mut self, fence: u64, now: i64) -> Option<&mut Lease> {
        self.held
            .as_mut()
            .filter(|l| l.fence == fence && l.until_ms > now)
    }
}

impl Entry {
    /// When the entry stops being valid.
    pub(super) fn deadline(&self) -> i64 {
        match self {
            Entry::Live(live) => live.expires_at_ms,
            Entry::Alias { until_ms, .. } | Entry::Moved { until_ms } => *until_ms,
        }
    }

    pub(super) fn alive(&self, now: i64) -> bool {
        self.deadline() > now
    }
}

impl Live {
    /// Reads the session, refreshing `last_seen` when the touch is due.
    fn read(&mut self, id: SessionId, now: i64, timeouts: &Timeouts) -> Loaded {
        let touched = timeouts.touch_due(self.meta.last_seen_ms, now);
        if touched {
            self.meta.last_seen_ms = now;
            self.expires_at_ms = timeouts.expires_at(now, self.meta.absolute_deadline_ms);
        }
        Loaded {
            id,
            meta: self.meta.clone(),
            data: self.data.clone(),
            now_ms: now,
            expires_at_ms: self.expires_at_ms,
            touched,
        }
    }
}

impl State {
    /// Removes an entry, and a live session from its user's index.
    pub(super) fn remove(&mut self, id: &SessionId) -> Option<Entry> {
        let entry = self.entries.remove(id)?;
        if let Entry::Live(live) = &entry {
            if let Some(user) = &live.meta.user_id {
                if let Some(ids) = self.users.get_mut(user) {
                    ids.remove(id);
                    if ids.is_empty() {
                        self.users.remove(user);
                    }
                }
            }
        }
        Some(entry)
    }

    /// Removes what is stored under `id` (a session or a marker); whether
    /// it was a session still alive at `now` (`revoke`, `logout`).
    pub(super) fn end(&mut self, id: &SessionId, now: i64) -> bool {
        matches!(self.remove(id), Some(e @ Entry::Live(_)) if e.alive(now))
    }

    /// The live session stored under `id` itself, expired or not.
    pub(super) fn live_mut(&mut self, id: &SessionId) -> Option<&mut Live> {
        match self.entries.get_mut(id) {
            Some(Entry::Live(live)) => Some(live),
            _ => None,
        }
    }

    /// Reads the session stored under `id` itself if it is live and not
    /// expired (no alias is followed), refreshing `last_seen` when due.
    pub(super) fn read(&mut self, id: &SessionId, now: i64, timeouts: &Timeouts) -> Option<Loaded> {
        self.live_mut(id)
            .filter(|live| live.expires_at_ms > now)
            .map(|live| live.read(id.clone(), now, timeouts))
    }

    /// The user's live sessions in this shard, dropping entries that are
    /// no session. Expired sessions stay for the purge, which reports
    /// them (their expiry event).
    pub(super) fn live_sessions_of(&mut self, user_id: &str, now: i64) -> Vec<(SessionId, i64)> {
        let ids: Vec<SessionId> = match self.users.get(user_id) {
            Some(ids) => ids.iter().cloned().collect(),
            None => return Vec::new(),
        };
        let mut live = Vec::with_capacity(ids.len());
        for id in ids {
            match self.entries.get(&id) {
                Some(Entry::Live(l)) if l.expires_at_ms > now => {
                    live.push((id, l.meta.last_seen_ms));
                }
                Some(Entry::Live(_)) => {}
                _ => {
                    self.remove(&id);
                    if let Some(set) = self.users.get_mut(user_id) {
                        set.remove(&id);
                        if set.is_empty() {
                            self.users.remove(user_id);
                        }
                    }
                }
            }
        }
        live
    }

    /// Stores a live session (indexing it under its user) and answers its
    /// expiry.
    pub(super) fn insert_live(
        &mut self,
        id: SessionId,
        meta: Meta,
        data: Data,
        locks: Locks,
        timeouts: &Timeouts,
    ) -> i64 {
        let expires_at_ms = timeouts.expires_at(meta.last_seen_ms, meta.absolute_deadline_ms);
        if let Some(user) = &meta.user_id {
            self.users
                .entry(user.clone())
                .or_default()
                .insert(id.clone());
        }
        self.insert(
            id,
            Entry::Live(Box::new(Live {
                meta,
                data,
                expires_at_ms,
                locks,
            })),
        );
        expires_at_ms
    }

    /// Stores an entry and queues it for the purge. The caller has removed
    /// a live session stored under `id` first (so the index stays right).
    pub(super) fn insert(&mut self, id: SessionId, entry: Entry) {
        self.expiry.push(Reverse((entry.deadline(), id.clone())));
        self.entries.insert(id, entry);
    }

    /// Pops up to `budget` due ids off the expiry queue, removing those that
    /// expired and queueing the others again at their new deadline. Answers
    /// how many entries were removed, and whether more ids are due. The
    /// expired live sessions are handed to `expired` when it is given (for
    /// their expiry events).
    pub(super) fn purge_due(
        &mut self,
        now: i64,
        budget: usize,
        mut expired: Option<&mut Vec<(SessionId, Box<Live>)>>,
    ) -> (usize, bool) {
        let mut removed = 0;
        for _ in 0..budget {
            match self.expiry.peek() {
                Some(Reverse((at, _))) if *at <= now => {}
                _ => return (removed, false),
            }
            let Some(Reverse((_, id))) = self.expiry.pop() else {
                return (removed, false);
            };
            match self.entries.get(&id).map(Entry::deadline) {
                None => {}
                Some(deadline) if deadline <= now => {
                    let entry = self.remove(&id);
                    removed += 1;
                    if let (Some(out), Some(Entry::Live(live))) = (expired.as_deref_mut(), entry) {
                        out.push((id, live));
                    }
                }
                Some(deadline) => self.expiry.push(Reverse((deadline, id))),
            }
        }
        let more = self
            .expiry
            .peek()
            .is_some_and(|Reverse((at, _))| *at <= now);
        (removed, more)
    }
}

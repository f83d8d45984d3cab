//! The store's state under its lock: entries, the per-user index, locks,
//! and the lookups and updates the operations are built from.

use std::collections::{HashMap, HashSet};

use crate::store::{Data, Loaded, Meta, Timeouts, MAX_ALIAS_HOPS};
use crate::SessionId;

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) entries: HashMap<SessionId, Entry>,
    pub(super) users: HashMap<String, HashSet<SessionId>>,
}

#[derive(Debug)]
pub(super) enum Entry {
    Live {
        meta: Meta,
        data: Data,
        expires_at_ms: i64,
        /// The session's lock state; moves with the session on rotation.
        locks: Locks,
    },
    Alias {
        target: SessionId,
        until_ms: i64,
    },
    Moved {
        until_ms: i64,
    },
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
    pub(super) fn alive(&self, now: i64) -> bool {
        match self {
            Entry::Live { expires_at_ms, .. } => *expires_at_ms > now,
            Entry::Alias { until_ms, .. } | Entry::Moved { until_ms } => *until_ms > now,
        }
    }
}

/// Where an id leads, after expiry and aliases.
pub(super) enum Found {
    /// A live session, and whether it was reached through an alias.
    Live(SessionId, bool),
    /// A moved marker, or an alias chain that leads to one (or is longer
    /// than [`MAX_ALIAS_HOPS`]).
    Superseded,
    Gone,
}

impl Found {
    pub(super) fn live(self) -> Option<SessionId> {
        match self {
            Found::Live(id, _) => Some(id),
            Found::Superseded | Found::Gone => None,
        }
    }
}

impl State {
    /// Removes an entry, and a live session from its user's index.
    pub(super) fn remove(&mut self, id: &SessionId) -> Option<Entry> {
        let entry = self.entries.remove(id)?;
        if let Entry::Live {
            meta: Meta {
                user_id: Some(user),
                ..
            },
            ..
        } = &entry
        {
            if let Some(ids) = self.users.get_mut(user) {
                ids.remove(id);
                if ids.is_empty() {
                    self.users.remove(user);
                }
            }
        }
        Some(entry)
    }

    pub(super) fn find(&mut self, id: &SessionId, now: i64) -> Found {
        let mut at = id.clone();
        for hop in 0..=MAX_ALIAS_HOPS {
            let next = match self.entries.get(&at) {
                None => return Found::Gone,
                Some(e) if !e.alive(now) => {
                    self.remove(&at);
                    return Found::Gone;
                }
                Some(Entry::Moved { .. }) => return Found::Superseded,
                Some(Entry::Live { .. }) => return Found::Live(at, hop > 0),
                Some(Entry::Alias { target, .. }) => target.clone(),
            };
            at = next;
        }
        Found::Superseded
    }

    pub(super) fn live_mut(&mut self, id: &SessionId) -> Option<(&mut Meta, &mut Data, &mut i64)> {
        match self.entries.get_mut(id) {
            Some(Entry::Live {
                meta,
                data,
                expires_at_ms,
                ..
            }) => Some((meta, data, expires_at_ms)),
            _ => None,
        }
    }

    /// The lock state of the live session an id leads to (after aliases).
    pub(super) fn locks_of(&mut self, id: &SessionId, now: i64) -> Option<&mut Locks> {
        let real = self.find(id, now).live()?;
        match self.entries.get_mut(&real) {
            Some(Entry::Live { locks, .. }) => Some(locks),
            _ => None,
        }
    }

    /// The user's live sessions, dropping dead ones from the index.
    pub(super) fn live_sessions_of(&mut self, user_id: &str, now: i64) -> Vec<(SessionId, i64)> {
        let ids: Vec<SessionId> = match self.users.get(user_id) {
            Some(ids) => ids.iter().cloned().collect(),
            None => return Vec::new(),
        };
        let mut live = Vec::with_capacity(ids.len());
        for id in ids {
            match self.entries.get(&id) {
                Some(e @ Entry::Live { meta, .. }) if e.alive(now) => {
                    live.push((id, meta.last_seen_ms));
                }
                _ => {
                    self.remove(&id);
                    if let Some(set) = self.users.get_mut(user_id) {
                        set.remove(&id);
                    }
                }
            }
        }
        live
    }

    /// Reads a live session, refreshing `last_seen` when the touch is due.
    pub(super) fn read(
        &mut self,
        real: SessionId,
        now: i64,
        timeouts: &Timeouts,
    ) -> Option<Loaded> {
        let (meta, data, expires_at_ms) = self.live_mut(&real)?;
        let touched = timeouts.touch_due(meta.last_seen_ms, now);
        if touched {
            meta.last_seen_ms = now;
            *expires_at_ms = timeouts.expires_at(now, meta.absolute_deadline_ms);
        }
        Some(Loaded {
            id: real,
            meta: meta.clone(),
            data: data.clone(),
            now_ms: now,
            expires_at_ms: *expires_at_ms,
            touched,
        })
    }

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
        self.entries.insert(
            id,
            Entry::Live {
                meta,
                data,
                expires_at_ms,
                locks,
            },
        );
        expires_at_ms
    }
}

//! [`MemoryStore`]: sessions in this process, with every rule a production
//! store keeps.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;

use super::{
    ClientInfo, Data, Delta, LoadOutcome, Loaded, LockOutcome, Login, LoginOutcome, Meta,
    NewSession, Retire, RotateOutcome, SaveOutcome, SessionInfo, SessionStore, Timeouts, Written,
    MAX_ALIAS_HOPS,
};
use crate::clock::{duration_ms, Clock, SystemClock};
use crate::config::{MaxSessionsPolicy, UserLimit};
use crate::{Result, SessionId};

/// An in-process session store: the default for tests, demos and
/// single-process apps. Sessions do not survive a restart and are not shared
/// between processes; use the Redis store for that.
///
/// Expiry is enforced on every read, and a background task (started when the
/// store is built inside a Tokio runtime) purges expired sessions, so memory
/// does not grow with abandoned sessions. Clones share one store.
///
/// ```
/// use sessionkit::{MemoryStore, SessionConfig, SessionManager};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let manager = SessionManager::new(MemoryStore::new(), SessionConfig::default());
/// # let _ = manager; }
/// ```
#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<SessionId, Entry>,
    users: HashMap<String, HashSet<SessionId>>,
}

#[derive(Debug)]
enum Entry {
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
struct Locks {
    fence: u64,
    held: Option<Lease>,
}

/// A holder's fence and the end of its lease.
#[derive(Debug, Clone, Copy)]
struct Lease {
    fence: u64,
    until_ms: i64,
}

impl Locks {
    /// The lease of `fence`, if it is the current holder's and still running.
    fn running(&mut self, fence: u64, now: i64) -> Option<&mut Lease> {
        self.held
            .as_mut()
            .filter(|l| l.fence == fence && l.until_ms > now)
    }
}

/// Builds a [`MemoryStore`] with a custom clock or purge interval.
#[derive(Debug)]
pub struct MemoryStoreBuilder {
    clock: Arc<dyn Clock>,
    purge_interval: Option<Duration>,
}

impl MemoryStoreBuilder {
    /// The clock expiry is judged by. Default [`SystemClock`].
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How often the background task purges expired sessions; `None` turns
    /// it off (call [`MemoryStore::purge_expired`] yourself). Default 60 s.
    pub fn purge_interval(mut self, every: Option<Duration>) -> Self {
        self.purge_interval = every;
        self
    }

    /// Builds the store, starting the purge task if a Tokio runtime is
    /// running. The task holds only a weak reference and ends with the store.
    pub fn build(self) -> MemoryStore {
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            clock: self.clock,
        });
        if let (Some(every), Ok(rt)) = (self.purge_interval, tokio::runtime::Handle::try_current())
        {
            rt.spawn(purge_task(Arc::downgrade(&inner), every));
        }
        MemoryStore { inner }
    }
}

async fn purge_task(store: Weak<Inner>, every: Duration) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(1)));
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(inner) = store.upgrade() else { return };
        let purged = inner.purge();
        if purged > 0 {
            tracing::debug!(purged, "purged expired sessions");
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store on the system clock with a 60 s purge interval.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder for a custom clock or purge interval.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            clock: Arc::new(SystemClock),
            purge_interval: Some(Duration::from_secs(60)),
        }
    }

    /// Removes every expired session and marker now. Returns how many
    /// entries were removed.
    pub fn purge_expired(&self) -> usize {
        self.inner.purge()
    }

    /// How many entries (sessions and short-lived markers) the store holds,
    /// expired ones included until purged.
    pub fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }

    /// Whether the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated
        // in a way later calls misread (every update is a plain insert or
        // remove), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn purge(&self) -> usize {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        let dead: Vec<SessionId> = st
            .entries
            .iter()
            .filter(|(_, e)| !e.alive(now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &dead {
            st.remove(id);
        }
        dead.len()
    }
}

impl Entry {
    fn alive(&self, now: i64) -> bool {
        match self {
            Entry::Live { expires_at_ms, .. } => *expires_at_ms > now,
            Entry::Alias { until_ms, .. } | Entry::Moved { until_ms } => *until_ms > now,
        }
    }
}

/// Where an id leads, after expiry and aliases.
enum Found {
    /// A live session, and whether it was reached through an alias.
    Live(SessionId, bool),
    /// A moved marker, or an alias chain that leads to one (or is longer
    /// than [`MAX_ALIAS_HOPS`]).
    Superseded,
    Gone,
}

impl Found {
    fn live(self) -> Option<SessionId> {
        match self {
            Found::Live(id, _) => Some(id),
            Found::Superseded | Found::Gone => None,
        }
    }
}

impl State {
    /// Removes an entry, and a live session from its user's index.
    fn remove(&mut self, id: &SessionId) -> Option<Entry> {
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

    fn find(&mut self, id: &SessionId, now: i64) -> Found {
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

    fn live_mut(&mut self, id: &SessionId) -> Option<(&mut Meta, &mut Data, &mut i64)> {
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
    fn locks_of(&mut self, id: &SessionId, now: i64) -> Option<&mut Locks> {
        let real = self.find(id, now).live()?;
        match self.entries.get_mut(&real) {
            Some(Entry::Live { locks, .. }) => Some(locks),
            _ => None,
        }
    }

    /// The user's live sessions, dropping dead ones from the index.
    fn live_sessions_of(&mut self, user_id: &str, now: i64) -> Vec<(SessionId, i64)> {
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
    fn read(&mut self, real: SessionId, now: i64, timeouts: &Timeouts) -> Option<Loaded> {
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

    fn insert_live(
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

fn new_meta(now: i64, user_id: Option<String>, client: &ClientInfo, timeouts: &Timeouts) -> Meta {
    Meta {
        user_id,
        created_ms: now,
        last_seen_ms: now,
        token_issued_ms: now,
        absolute_deadline_ms: now.saturating_add(duration_ms(timeouts.absolute)),
        version: 1,
        user_agent: client.user_agent.clone(),
        client_ip: client.ip.map(|ip| ip.to_string()),
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn load(&self, id: &SessionId, timeouts: &Timeouts) -> Result<LoadOutcome> {
        let now = self.inner.clock.now_ms();
        let mut st = self.inner.lock();
        Ok(match st.find(id, now) {
            Found::Live(real, _) => st
                .read(real, now, timeouts)
                .map_or(LoadOutcome::Missing, LoadOutcome::Live),
            Found::Superseded => LoadOutcome::Superseded,
            Found::Gone => LoadOutcome::Missing,
        })
    }

    async fn create(
        &self,
        id: &SessionId,
        session: NewSession<'_>,
        timeouts: &Timeouts,
    ) -> Result<Written> {
        let now = self.inner.clock.now_ms();
        let meta = new_meta(now, None, session.client, timeouts);
        let mut st = self.inner.lock();
        let expires_at_ms = st.insert_live(
            id.clone(),
            meta,
            session.data.clone(),
            Locks::default(),
            timeouts,
        );
        Ok(Written {
            now_ms: now,
            expires_at_ms,
        })
    }

    async fn save(
        &self,
        id: &SessionId,
        delta: &Delta,
        timeouts: &Timeouts,
    ) -> Result<SaveOutcome> {
        let now = self.inner.clock.now_ms();
        let mut st = self.inner.lock();
        let (real, via_alias) = match st.find(id, now) {
            Found::Live(real, via_alias) => (real, via_alias),
            Found::Superseded => return Ok(SaveOutcome::Superseded),
            Found::Gone => return Ok(SaveOutcome::Gone),
        };
        if let Some(fence) = delta.fence {
            match st.entries.get(&real) {
                Some(Entry::Live { locks, .. }) if locks.fence == fence => {}
                Some(Entry::Live { .. }) => return Ok(SaveOutcome::Fenced),
                _ => return Ok(SaveOutcome::Gone),
            }
        }
        let Some((meta, data, expires_at_ms)) = st.live_mut(&real) else {
            return Ok(SaveOutcome::Gone);
        };
        delta.apply_to(data);
        meta.version += 1;
        meta.last_seen_ms = now;
        *expires_at_ms = timeouts.expires_at(now, meta.absolute_deadline_ms);
        let written = Written {
            now_ms: now,
            expires_at_ms: *expires_at_ms,
        };
        Ok(if via_alias {
            SaveOutcome::SavedToSuccessor(written)
        } else {
            SaveOutcome::Saved(written)
        })
    }

    async fn login(&self, login: Login<'_>, timeouts: &Timeouts) -> Result<LoginOutcome> {
        let now = self.inner.clock.now_ms();
        let mut st = self.inner.lock();
        // The old session as it stands now (through aliases), if it lives.
        let old = login.old.and_then(|id| st.find(id, now).live());
        let mut others: Vec<(SessionId, i64)> = st
            .live_sessions_of(login.user_id, now)
            .into_iter()
            .filter(|(id, _)| Some(id) != old.as_ref())
            .collect();
        let mut evicted = Vec::new();
        if let UserLimit::Max { max, policy } = login.limit {
            let room = usize::try_from(max.saturating_sub(1)).unwrap_or(usize::MAX);
            if others.len() > room {
                if policy == MaxSessionsPolicy::RejectNew {
                    return Ok(LoginOutcome::Rejected { max });
                }
                others.sort_by_key(|(_, last_seen)| *last_seen);
                let excess = others.len() - room;
                for (id, _) in others.drain(..excess) {
                    st.remove(&id);
                    evicted.push(id);
                }
            }
        }
        let mut data = match old.as_ref().and_then(|id| st.live_mut(id)) {
            Some((_, data, _)) => data.clone(),
            None => Data::new(),
        };
        login.delta.apply_to(&mut data);
        let meta = new_meta(now, Some(login.user_id.to_owned()), login.client, timeouts);
        let expires_at_ms = st.insert_live(
            login.new.clone(),
            meta,
            data.clone(),
            Locks::default(),
            timeouts,
        );
        if let Some(old) = &old {
            if old != login.new && st.remove(old).is_some() {
                st.entries.insert(
                    old.clone(),
                    Entry::Moved {
                        until_ms: now.saturating_add(duration_ms(login.moved_grace)),
                    },
                );
            }
        }
        Ok(LoginOutcome::LoggedIn {
            written: Written {
                now_ms: now,
                expires_at_ms,
            },
            data,
            evicted,
        })
    }

    async fn rotate(
        &self,
        old: &SessionId,
        new: &SessionId,
        retire: Retire,
        timeouts: &Timeouts,
    ) -> Result<RotateOutcome> {
        let now = self.inner.clock.now_ms();
        let mut st = self.inner.lock();
        match st.find(old, now) {
            Found::Live(_, false) => {}
            Found::Live(_, true) | Found::Superseded => return Ok(RotateOutcome::Superseded),
            Found::Gone => return Ok(RotateOutcome::Gone),
        }
        let Some(Entry::Live {
            mut meta,
            data,
            mut locks,
            ..
        }) = st.remove(old)
        else {
            return Ok(RotateOutcome::Gone);
        };
        meta.token_issued_ms = now;
        meta.last_seen_ms = now;
        meta.version += 1;
        // The fence counter moves with the session; the lock too behind an
        // alias, and is dropped with a token that stops working.
        if matches!(retire, Retire::Moved(_)) {
            locks.held = None;
        }
        let expires_at_ms = st.insert_live(new.clone(), meta, data, locks, timeouts);
        let marker = match retire {
            Retire::Alias(grace) => Entry::Alias {
                target: new.clone(),
                until_ms: now.saturating_add(duration_ms(grace)),
            },
            Retire::Moved(grace) => Entry::Moved {
                until_ms: now.saturating_add(duration_ms(grace)),
            },
        };
        st.entries.insert(old.clone(), marker);
        Ok(RotateOutcome::Rotated(Written {
            now_ms: now,
            expires_at_ms,
        }))
    }

    async fn revoke(&self, id: &SessionId) -> Result<bool> {
        let now = self.inner.clock.now_ms();
        let mut st = self.inner.lock();
        Ok(match st.remove(id) {
            Some(e @ Entry::Live { .. }) => e.alive(now),
            _ => false,
        })
    }

    async fn revoke_user(&self, user_id: &str, except: Option<&SessionId>) -> Result<u64> {
        let now = self.inner.clock.now_ms();
        let mut st = self.inner.lock();
        let mut ended = 0;
        for (id, _) in st.live_sessions_of(user_id, now) {
            if Some(&id) != except {
                st.remove(&id);
                ended += 1;
            }
        }
        Ok(ended)
    }

    async fn sessions_of(&self, user_id: &str, timeouts: &Timeouts) -> Result<Vec<SessionInfo>> {
        let _ = timeouts;
        let now = self.inner.clock.now_ms();
        let mut st = self.inner.lock();
        let mut list: Vec<SessionInfo> = st
            .live_sessions_of(user_id, now)
            .into_iter()
            .filter_map(|(id, _)| match st.entries.get(&id) {
                Some(Entry::Live {
                    meta,
                    expires_at_ms,
                    ..
                }) => Some(SessionInfo::new(
                    id,
                    user_id.to_owned(),
                    meta,
                    *expires_at_ms,
                )),
                _ => None,
            })
            .collect();
        list.sort_by_key(|s| std::cmp::Reverse(s.last_seen));
        Ok(list)
    }

    async fn lock(
        &self,
        id: &SessionId,
        lease: Duration,
        timeouts: &Timeouts,
    ) -> Result<LockOutcome> {
        let now = self.inner.clock.now_ms();
        let mut st = self.inner.lock();
        let Some(real) = st.find(id, now).live() else {
            return Ok(LockOutcome::Gone);
        };
        let fence = match st.entries.get_mut(&real) {
            Some(Entry::Live { locks, .. }) => {
                if locks.held.is_some_and(|l| l.until_ms > now) {
                    return Ok(LockOutcome::Held);
                }
                locks.fence += 1;
                locks.held = Some(Lease {
                    fence: locks.fence,
                    until_ms: now.saturating_add(duration_ms(lease)),
                });
                locks.fence
            }
            _ => return Ok(LockOutcome::Gone),
        };
        match st.read(real, now, timeouts) {
            Some(loaded) => Ok(LockOutcome::Acquired { fence, loaded }),
            None => Ok(LockOutcome::Gone),
        }
    }

    async fn renew_lock(&self, id: &SessionId, fence: u64, lease: Duration) -> Result<bool> {
        let now = self.inner.clock.now_ms();
        let mut st = self.inner.lock();
        let Some(lease_of_fence) = st
            .locks_of(id, now)
            .and_then(|locks| locks.running(fence, now))
        else {
            return Ok(false);
        };
        lease_of_fence.until_ms = now.saturating_add(duration_ms(lease));
        Ok(true)
    }

    async fn unlock(&self, id: &SessionId, fence: u64) -> Result<()> {
        let now = self.inner.clock.now_ms();
        let mut st = self.inner.lock();
        if let Some(locks) = st.locks_of(id, now) {
            if locks.held.is_some_and(|l| l.fence == fence) {
                locks.held = None;
            }
        }
        Ok(())
    }
}

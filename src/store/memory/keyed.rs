//! Keyed sessions in [`MemoryStore`]: one map of records behind one lock,
//! each [`KeyedOp`] applied by [`apply`] while it is held. This file is the
//! reference for the rules of `store/keyed.rs`; the Lua script and the SQL
//! function of the other stores follow it line by line.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use super::MemoryStore;
use crate::store::keyed::{
    Guard, KeyedId, KeyedOp, KeyedRecord, KeyedReply, KeyedState, KeyedStore, KeyedTimeouts,
};
use crate::store::waiters::Waiters;
use crate::store::ReleaseNotice;
use crate::Result;

/// The keyed records of one store, and their lock waiters.
#[derive(Debug, Default)]
pub(super) struct Keyed {
    rows: Mutex<HashMap<KeyedId, Row>>,
    waiters: Waiters<KeyedId>,
}

/// One record.
#[derive(Debug, Clone)]
struct Row {
    state: KeyedState,
    value: String,
    version: u64,
    /// The latest fence issued.
    fence: u64,
    /// The holder's fence and the end of its lease.
    lock: Option<(u64, i64)>,
    started_ms: i64,
    since_ms: i64,
    deadline_ms: i64,
    expires_ms: i64,
}

impl Row {
    fn record(&self, now_ms: i64, fence: Option<u64>) -> KeyedRecord {
        KeyedRecord {
            state: self.state,
            value: self.value.clone(),
            version: self.version,
            started_ms: self.started_ms,
            since_ms: self.since_ms,
            expires_ms: self.expires_ms,
            now_ms,
            fence,
        }
    }

    fn touch(&mut self, now_ms: i64, t: &KeyedTimeouts) {
        self.expires_ms = t.of(self.state).expires_ms(now_ms, self.deadline_ms);
    }

    /// Puts the record in `state` from `now_ms`, with that state's expiry.
    fn enter(&mut self, state: KeyedState, now_ms: i64, t: &KeyedTimeouts) {
        self.state = state;
        self.since_ms = now_ms;
        self.deadline_ms = t.of(state).deadline_ms(now_ms);
        self.version += 1;
        self.lock = None;
        self.touch(now_ms, t);
    }

    /// The live lease's end, if someone holds the lock.
    fn held_until(&self, now_ms: i64) -> Option<i64> {
        self.lock.map(|(_, until)| until).filter(|&u| u > now_ms)
    }

    /// Why `guard` does not hold, if it does not.
    fn refuses(&self, guard: Guard, now_ms: i64) -> Option<KeyedReply> {
        match guard {
            Guard::Version(_) if self.held_until(now_ms).is_some() => Some(held(self, now_ms)),
            Guard::Version(v) if v != self.version => Some(KeyedReply::Conflict {
                version: self.version,
            }),
            Guard::Fence(f) if f != self.fence => Some(KeyedReply::Fenced),
            _ => None,
        }
    }
}

fn held(row: &Row, now_ms: i64) -> KeyedReply {
    let left = row.held_until(now_ms).map_or(0, |u| u - now_ms);
    KeyedReply::Held {
        lease_left: Some(Duration::from_millis(u64::try_from(left).unwrap_or(0))),
    }
}

fn state_reply(state: KeyedState) -> KeyedReply {
    match state {
        KeyedState::Active => KeyedReply::Active,
        KeyedState::Finished => KeyedReply::Finished,
    }
}

fn ms(d: Duration) -> i64 {
    crate::clock::duration_ms(d)
}

/// Applies `op` to the record in `slot` (already cleared if it expired).
/// Answers the reply and whether a lock waiter should be woken.
fn apply(
    slot: &mut Option<Row>,
    op: KeyedOp<'_>,
    now: i64,
    t: &KeyedTimeouts,
) -> (KeyedReply, bool) {
    let Some(row) = slot else {
        return match op {
            KeyedOp::Start { value } => {
                // The clock has milliseconds only: the random part keeps a
                // restart within the same millisecond from reusing versions.
                let seed = u64::try_from(now)
                    .unwrap_or(0)
                    .saturating_mul(1000)
                    .saturating_add(rand::random_range(0..1000));
                let deadline_ms = t.active.deadline_ms(now);
                let row = Row {
                    state: KeyedState::Active,
                    value: value.to_owned(),
                    version: seed,
                    fence: seed,
                    lock: None,
                    started_ms: now,
                    since_ms: now,
                    deadline_ms,
                    expires_ms: t.active.expires_ms(now, deadline_ms),
                };
                let reply = KeyedReply::Record(row.record(now, None));
                *slot = Some(row);
                (reply, false)
            }
            KeyedOp::RenewLock { .. } | KeyedOp::Unlock { .. } | KeyedOp::Remove => {
                (KeyedReply::Done(false), false)
            }
            _ => (KeyedReply::Missing, false),
        };
    };
    let active = row.state == KeyedState::Active;
    match op {
        KeyedOp::Start { .. } => (state_reply(row.state), false),
        KeyedOp::Get { state, .. } if state != row.state => (state_reply(row.state), false),
        KeyedOp::Get { touch, .. } => {
            if touch
                && t.of(row.state)
                    .touch_due(now, row.expires_ms, row.deadline_ms)
            {
                row.touch(now, t);
            }
            (KeyedReply::Record(row.record(now, None)), false)
        }
        KeyedOp::Lock { .. } if !active => (KeyedReply::Finished, false),
        KeyedOp::Lock { .. } if row.held_until(now).is_some() => (held(row, now), false),
        KeyedOp::Lock { lease } => {
            row.fence += 1;
            row.lock = Some((row.fence, now.saturating_add(ms(lease).max(1))));
            row.touch(now, t);
            (KeyedReply::Record(row.record(now, Some(row.fence))), false)
        }
        KeyedOp::RenewLock { fence, lease } => {
            let ours = active && row.lock.is_some_and(|(f, u)| f == fence && u > now);
            if ours {
                row.lock = Some((fence, now.saturating_add(ms(lease).max(1))));
            }
            (KeyedReply::Done(ours), false)
        }
        KeyedOp::Unlock { fence } => {
            let ours = row.lock.is_some_and(|(f, _)| f == fence);
            if ours {
                row.lock = None;
            }
            (KeyedReply::Done(ours), ours)
        }
        KeyedOp::Update { .. } | KeyedOp::Finish { .. } if !active => (KeyedReply::Finished, false),
        KeyedOp::Update { value, guard } => {
            if let Some(refused) = row.refuses(guard, now) {
                return (refused, false);
            }
            value.clone_into(&mut row.value);
            row.version += 1;
            row.touch(now, t);
            (KeyedReply::Record(row.record(now, None)), false)
        }
        KeyedOp::Finish { guard } => {
            if let Some(refused) = guard.and_then(|g| row.refuses(g, now)) {
                return (refused, false);
            }
            let was_locked = row.lock.is_some();
            row.enter(KeyedState::Finished, now, t);
            (KeyedReply::Record(row.record(now, None)), was_locked)
        }
        KeyedOp::Resume if active => (KeyedReply::Active, false),
        KeyedOp::Resume => {
            row.enter(KeyedState::Active, now, t);
            (KeyedReply::Record(row.record(now, None)), false)
        }
        KeyedOp::Remove => {
            let was_locked = row.lock.is_some();
            *slot = None;
            (KeyedReply::Done(true), was_locked)
        }
    }
}

impl Keyed {
    /// Drops every record whose expiry has passed. Answers how many.
    pub(super) fn purge(&self, now_ms: i64) -> usize {
        let mut rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        let before = rows.len();
        rows.retain(|_, r| r.expires_ms > now_ms);
        before - rows.len()
    }

    /// How many records are held, expired ones included until purged.
    pub(super) fn len(&self) -> usize {
        self.rows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[async_trait]
impl KeyedStore for MemoryStore {
    async fn keyed(
        &self,
        id: &KeyedId,
        op: KeyedOp<'_>,
        timeouts: &KeyedTimeouts,
    ) -> Result<KeyedReply> {
        let keyed = &self.inner.keyed;
        let now = self.inner.clock.now_ms();
        let (reply, wake) = {
            let mut rows = keyed.rows.lock().unwrap_or_else(PoisonError::into_inner);
            let mut slot = rows.remove(id).filter(|r| r.expires_ms > now);
            let answer = apply(&mut slot, op, now, timeouts);
            if let Some(row) = slot {
                rows.insert(id.clone(), row);
            }
            answer
        };
        if wake {
            keyed.waiters.wake_one(id);
        }
        Ok(reply)
    }

    fn keyed_release_notice(&self, id: &KeyedId) -> Option<ReleaseNotice> {
        self.inner.keyed.waiters.watch(id.clone())
    }
}

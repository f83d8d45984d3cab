//! The [`SessionStore`] operations of [`MemoryStore`].

use std::time::Duration;

use async_trait::async_trait;

use super::state::{Entry, Found, Lease, Locks};
use super::MemoryStore;
use crate::clock::duration_ms;
use crate::config::{MaxSessionsPolicy, UserLimit};
use crate::store::{
    ClientInfo, Data, Delta, LoadOutcome, LockOutcome, Login, LoginOutcome, Meta, NewSession,
    Retire, RotateOutcome, SaveOutcome, SessionInfo, SessionStore, Timeouts, Written,
};
use crate::{Result, SessionId};

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
                if let Some(l) = locks.held.filter(|l| l.until_ms > now) {
                    return Ok(super::wake::held(l.until_ms - now));
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
                self.wake_next(id);
            }
        }
        Ok(())
    }

    fn release_notice(&self, id: &SessionId) -> Option<crate::store::ReleaseNotice> {
        self.watch(id)
    }
}

//! The [`SessionStore`] operations of [`MemoryStore`]. Each runs under the
//! locks of the shards it touches (see `shards`), so each is one atomic
//! step.

use std::time::Duration;

use async_trait::async_trait;

use super::shards::{Found, Locked, Need};
use super::state::{Entry, Lease, Live, Locks};
use super::MemoryStore;
use crate::clock::duration_ms;
use crate::config::{MaxSessionsPolicy, UserLimit};
use crate::store::{
    ClientInfo, Data, Delta, LoadOutcome, LockOutcome, Login, LoginOutcome, LogoutOutcome, Meta,
    NewSession, Retire, RotateOutcome, SaveOutcome, SessionInfo, SessionStore, Tag, Timeouts,
    Written,
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

impl MemoryStore {
    fn now(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    /// The shard of `id`.
    fn shard_of(&self, id: &SessionId) -> usize {
        self.inner.shards.of(id)
    }

    /// The shard of a user's sessions and index.
    fn shard_of_user(&self, user_id: &str) -> usize {
        self.inner.shards.index_of(Tag::for_user(user_id).as_str())
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn load(&self, id: &SessionId, timeouts: &Timeouts) -> Result<LoadOutcome> {
        let now = self.now();
        Ok(self.inner.shards.with(&[self.shard_of(id)], |l| {
            // The common case, with one lookup: a live session under `id`.
            if let Some(loaded) = l.at(id)?.read(id, now, timeouts) {
                return Ok(LoadOutcome::Live(loaded));
            }
            Ok(match l.find(id, now)? {
                Found::Live(to) => {
                    let real = to.as_ref().unwrap_or(id);
                    l.at(real)?
                        .read(real, now, timeouts)
                        .map_or(LoadOutcome::Missing, LoadOutcome::Live)
                }
                Found::Superseded => LoadOutcome::Superseded,
                Found::Gone => LoadOutcome::Missing,
            })
        }))
    }

    async fn create(
        &self,
        id: &SessionId,
        session: NewSession<'_>,
        timeouts: &Timeouts,
    ) -> Result<Written> {
        let now = self.now();
        let meta = new_meta(now, None, session.client, timeouts);
        let data = session.data.clone();
        let mut st = self.inner.shards.lock(self.shard_of(id));
        // Replacing an entry under the same id must keep the index right.
        st.remove(id);
        let expires_at_ms = st.insert_live(id.clone(), meta, data, Locks::default(), timeouts);
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
        let now = self.now();
        Ok(self.inner.shards.with(&[self.shard_of(id)], |l| {
            let to = match l.find(id, now)? {
                Found::Live(to) => to,
                Found::Superseded => return Ok(SaveOutcome::Superseded),
                Found::Gone => return Ok(SaveOutcome::Gone),
            };
            let real = to.as_ref().unwrap_or(id);
            let Some(live) = l.at(real)?.live_mut(real) else {
                return Ok(SaveOutcome::Gone);
            };
            if delta.fence.is_some_and(|fence| fence != live.locks.fence) {
                return Ok(SaveOutcome::Fenced);
            }
            delta.apply_to(&mut live.data);
            live.meta.version += 1;
            live.meta.last_seen_ms = now;
            live.expires_at_ms = timeouts.expires_at(now, live.meta.absolute_deadline_ms);
            let written = Written {
                now_ms: now,
                expires_at_ms: live.expires_at_ms,
            };
            Ok(if to.is_some() {
                SaveOutcome::SavedToSuccessor(written)
            } else {
                SaveOutcome::Saved(written)
            })
        }))
    }

    async fn login(&self, login: Login<'_>, timeouts: &Timeouts) -> Result<LoginOutcome> {
        let now = self.now();
        let new_shard = self.shard_of(login.new);
        let want: &[usize] = match login.old {
            Some(old) => &[self.shard_of(old), new_shard],
            None => &[new_shard],
        };
        Ok(self.inner.shards.with(want, |l| {
            // The old session as it stands now (through aliases), if it
            // lives. Nothing changes before this, the one step that may
            // need another shard.
            let old: Option<SessionId> = match login.old {
                Some(id) => match l.find(id, now)? {
                    Found::Live(to) => Some(to.unwrap_or_else(|| id.clone())),
                    Found::Superseded | Found::Gone => None,
                },
                None => None,
            };
            let st = l.shard(new_shard)?;
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
            // Take the old session's latest data and retire it as moved.
            let mut data = match &old {
                Some(old) if old != login.new => {
                    let st = l.at(old)?;
                    let data = match st.remove(old) {
                        Some(Entry::Live(live)) => live.data,
                        _ => Data::new(),
                    };
                    let until_ms = now.saturating_add(duration_ms(login.moved_grace));
                    st.insert(old.clone(), Entry::Moved { until_ms });
                    data
                }
                Some(old) => l
                    .at(old)?
                    .live_mut(old)
                    .map(|live| live.data.clone())
                    .unwrap_or_default(),
                None => Data::new(),
            };
            login.delta.apply_to(&mut data);
            let meta = new_meta(now, Some(login.user_id.to_owned()), login.client, timeouts);
            let st = l.shard(new_shard)?;
            st.remove(login.new);
            let expires_at_ms = st.insert_live(
                login.new.clone(),
                meta,
                data.clone(),
                Locks::default(),
                timeouts,
            );
            Ok(LoginOutcome::LoggedIn {
                written: Written {
                    now_ms: now,
                    expires_at_ms,
                },
                data,
                evicted,
            })
        }))
    }

    async fn rotate(
        &self,
        old: &SessionId,
        new: &SessionId,
        retire: Retire,
        timeouts: &Timeouts,
    ) -> Result<RotateOutcome> {
        let now = self.now();
        let want = [self.shard_of(old), self.shard_of(new)];
        Ok(self.inner.shards.with(&want, |l| {
            match l.find(old, now)? {
                Found::Live(None) => {}
                Found::Live(Some(_)) | Found::Superseded => return Ok(RotateOutcome::Superseded),
                Found::Gone => return Ok(RotateOutcome::Gone),
            }
            let st = l.at(old)?;
            let Some(Entry::Live(live)) = st.remove(old) else {
                return Ok(RotateOutcome::Gone);
            };
            let Live {
                mut meta,
                data,
                mut locks,
                ..
            } = *live;
            meta.token_issued_ms = now;
            meta.last_seen_ms = now;
            meta.version += 1;
            // The fence counter moves with the session; the lock too behind
            // an alias, and is dropped with a token that stops working.
            let marker = match retire {
                Retire::Alias(grace) => Entry::Alias {
                    target: new.clone(),
                    until_ms: now.saturating_add(duration_ms(grace)),
                },
                Retire::Moved(grace) => {
                    locks.held = None;
                    Entry::Moved {
                        until_ms: now.saturating_add(duration_ms(grace)),
                    }
                }
            };
            st.insert(old.clone(), marker);
            let st = l.at(new)?;
            st.remove(new);
            let expires_at_ms = st.insert_live(new.clone(), meta, data, locks, timeouts);
            Ok(RotateOutcome::Rotated(Written {
                now_ms: now,
                expires_at_ms,
            }))
        }))
    }

    async fn revoke(&self, id: &SessionId) -> Result<bool> {
        let now = self.now();
        Ok(self.inner.shards.lock(self.shard_of(id)).end(id, now))
    }

    async fn logout(&self, id: &SessionId, timeouts: &Timeouts) -> Result<LogoutOutcome> {
        let _ = timeouts;
        let now = self.now();
        Ok(self.inner.shards.with(&[self.shard_of(id)], |l| {
            Ok(match l.find(id, now)? {
                Found::Live(to) => {
                    let real = to.as_ref().unwrap_or(id);
                    if l.at(real)?.end(real, now) {
                        LogoutOutcome::Ended
                    } else {
                        LogoutOutcome::Missing
                    }
                }
                Found::Superseded => LogoutOutcome::Superseded,
                Found::Gone => LogoutOutcome::Missing,
            })
        }))
    }

    async fn revoke_user(&self, user_id: &str, except: Option<&SessionId>) -> Result<u64> {
        let now = self.now();
        let mut st = self.inner.shards.lock(self.shard_of_user(user_id));
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
        let now = self.now();
        let mut st = self.inner.shards.lock(self.shard_of_user(user_id));
        let mut list: Vec<SessionInfo> = st
            .live_sessions_of(user_id, now)
            .into_iter()
            .filter_map(|(id, _)| {
                let live = st.live_mut(&id)?;
                let info = SessionInfo::new(
                    id.clone(),
                    user_id.to_owned(),
                    &live.meta,
                    live.expires_at_ms,
                );
                Some(info)
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
        let now = self.now();
        Ok(self.inner.shards.with(&[self.shard_of(id)], |l| {
            let Found::Live(to) = l.find(id, now)? else {
                return Ok(LockOutcome::Gone);
            };
            let real = to.as_ref().unwrap_or(id);
            let st = l.at(real)?;
            let Some(live) = st.live_mut(real) else {
                return Ok(LockOutcome::Gone);
            };
            let locks = &mut live.locks;
            if let Some(h) = locks.held.filter(|h| h.until_ms > now) {
                return Ok(super::wake::held(h.until_ms - now));
            }
            locks.fence += 1;
            locks.held = Some(Lease {
                fence: locks.fence,
                until_ms: now.saturating_add(duration_ms(lease)),
            });
            let fence = locks.fence;
            Ok(match st.read(real, now, timeouts) {
                Some(loaded) => LockOutcome::Acquired { fence, loaded },
                None => LockOutcome::Gone,
            })
        }))
    }

    async fn renew_lock(&self, id: &SessionId, fence: u64, lease: Duration) -> Result<bool> {
        let now = self.now();
        Ok(self.inner.shards.with(&[self.shard_of(id)], |l| {
            Ok(
                with_locks(l, id, now, |locks| match locks.running(fence, now) {
                    Some(held) => {
                        held.until_ms = now.saturating_add(duration_ms(lease));
                        true
                    }
                    None => false,
                })?
                .unwrap_or(false),
            )
        }))
    }

    async fn unlock(&self, id: &SessionId, fence: u64) -> Result<()> {
        let now = self.now();
        self.inner.shards.with(&[self.shard_of(id)], |l| {
            with_locks(l, id, now, |locks| {
                if locks.held.is_some_and(|h| h.fence == fence) {
                    locks.held = None;
                    self.wake_next(id);
                }
            })
            .map(|_| ())
        });
        Ok(())
    }

    fn release_notice(&self, id: &SessionId) -> Option<crate::store::ReleaseNotice> {
        self.watch(id)
    }
}

/// Runs `f` on the lock state of the live session `id` leads to (after
/// aliases); `None` if it leads to none.
fn with_locks<T>(
    l: &mut Locked<'_>,
    id: &SessionId,
    now: i64,
    f: impl FnOnce(&mut Locks) -> T,
) -> std::result::Result<Option<T>, Need> {
    let Found::Live(to) = l.find(id, now)? else {
        return Ok(None);
    };
    let real = to.as_ref().unwrap_or(id);
    Ok(l.at(real)?.live_mut(real).map(|live| f(&mut live.locks)))
}

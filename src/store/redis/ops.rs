//! The [`SessionStore`] implementation: each method one script call (see
//! the module docs); login and the lock calls live in `login.rs` and
//! `locking.rs`.

use std::time::Duration;

use ::redis::Value;
use async_trait::async_trait;

use super::args::{alias_target, data_fields, id_in_tag, new_session_fields, warn_corrupt};
use super::cache::Ticket;
use super::conn::invocation;
use super::{ms, reply, RedisStore};
use crate::store::{
    Delta, LoadOutcome, Loaded, LockOutcome, Login, LoginOutcome, Meta, NewSession, Retire,
    RotateOutcome, SaveOutcome, SessionInfo, SessionStore, Timeouts, Written, MAX_ALIAS_HOPS,
};
use crate::token::Tag;
use crate::{Error, Result, SessionId};

impl RedisStore {
    /// One save script call; with a cache, the session it leaves is cached
    /// (the reply then carries every field).
    pub(super) async fn save_once(
        &self,
        id: &SessionId,
        delta: &Delta,
        timeouts: &Timeouts,
    ) -> Result<(Vec<Value>, Option<Ticket>)> {
        let keys = self.inner.keys.session_and_index(id);
        let mut inv = invocation(&self.inner.scripts.save, &keys);
        inv.arg(ms(timeouts.idle))
            .arg(id.hash_part())
            .arg(if delta.clear { "1" } else { "0" })
            .arg(self.cache_flag())
            .arg(delta.fence.map(|f| f.to_string()).unwrap_or_default())
            .arg(delta.remove.len());
        for key in &delta.remove {
            inv.arg(format!("d:{key}"));
        }
        data_fields(&mut inv, delta.set.iter().map(|(k, v)| (k, v)))?;
        let mut conn = self.conn(&keys[0]).await?;
        let ticket = self.ticket(&conn, &keys[0]);
        let items = reply::array("save", self.exec(&mut conn, &inv).await?)?;
        Ok((items, ticket))
    }

    /// Caches the session a save left (`{'ok', now, exp, fields}`).
    pub(super) fn cache_saved(
        &self,
        ticket: Ticket,
        id: &SessionId,
        items: &[Value],
        written: Written,
    ) {
        let Some(Value::Array(fields)) = items.get(3) else {
            return; // Dropped: the key leaves the cache.
        };
        match reply::session_fields(fields) {
            Ok((meta, data)) => ticket.fresh(&Loaded {
                id: id.clone(),
                meta,
                data,
                now_ms: written.now_ms,
                expires_at_ms: written.expires_at_ms,
                touched: false,
            }),
            Err(_) => ticket.gone(),
        }
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn load(&self, id: &SessionId, timeouts: &Timeouts) -> Result<LoadOutcome> {
        const S: &str = "load";
        let mut asked = id.clone();
        let idle = ms(timeouts.idle);
        // A chain of aliases when the successor was rotated again.
        for _ in 0..=MAX_ALIAS_HOPS {
            let key = self.inner.keys.session(&asked);
            if let Some(cache) = self.cache_for(&key) {
                let hit = cache.lookup(&key, timeouts, idle, || {
                    (
                        self.inner.keys.index(asked.tag()),
                        asked.hash_part().to_owned(),
                    )
                });
                if let Some(hit) = hit {
                    return Ok(LoadOutcome::Live(hit));
                }
            }
            let keys = self.inner.keys.session_and_index(&asked);
            let mut inv = invocation(&self.inner.scripts.load, &keys);
            inv.arg(idle)
                .arg(ms(timeouts.touch_interval))
                .arg(asked.hash_part())
                .arg(self.cache_flag());
            let mut conn = self.conn(&keys[0]).await?;
            // Only live sessions are cached, under their own key; anything
            // else read here (nothing, a marker, corrupt data) ends the
            // ticket as gone.
            let mut ticket = self.ticket(&conn, &keys[0]);
            let items = reply::array(S, self.exec(&mut conn, &inv).await?)?;
            let status = reply::status(S, &items)?;
            if status != "ok" {
                if let Some(t) = ticket.take() {
                    t.gone();
                }
            }
            match status.as_str() {
                "ok" => {
                    let loaded = self.loaded(S, asked, &items)?;
                    if let Some(t) = ticket.take() {
                        match &loaded {
                            Some(l) => t.fresh(l),
                            None => t.gone(),
                        }
                    }
                    return Ok(loaded.map_or(LoadOutcome::Missing, LoadOutcome::Live));
                }
                "none" => return Ok(LoadOutcome::Missing),
                "moved" => return Ok(LoadOutcome::Superseded),
                // A target that is not text is corrupt data, not a store
                // failure: a fresh session, as for any corrupt session.
                "alias" => match alias_target(S, &asked, &items) {
                    Some(target) => asked = target,
                    None => {
                        warn_corrupt(&asked, "the alias does not name a session");
                        return Ok(LoadOutcome::Missing);
                    }
                },
                "corrupt" => {
                    let reason = reply::opt_text(S, reply::at(S, &items, 1)?)?;
                    warn_corrupt(&asked, reason.as_deref().unwrap_or("corrupt"));
                    return Ok(LoadOutcome::Missing);
                }
                other => return Err(reply::bad(S, format_args!("unknown status {other:?}"))),
            }
        }
        // Rotated more often than the grace period allows for: the token
        // was replaced, and its successor may be alive.
        Ok(LoadOutcome::Superseded)
    }

    async fn create(
        &self,
        id: &SessionId,
        session: NewSession<'_>,
        timeouts: &Timeouts,
    ) -> Result<Written> {
        const S: &str = "create";
        let keys = self.inner.keys.create(id);
        let mut inv = invocation(&self.inner.scripts.create, &keys);
        inv.arg(ms(timeouts.idle)).arg(ms(timeouts.absolute));
        new_session_fields(&mut inv, session.data, session.client)?;
        let items = reply::array(S, self.run(&keys[0], &inv).await?)?;
        Ok(Written {
            now_ms: reply::int(S, reply::at(S, &items, 0)?)?,
            expires_at_ms: reply::int(S, reply::at(S, &items, 1)?)?,
        })
    }

    async fn save(
        &self,
        id: &SessionId,
        delta: &Delta,
        timeouts: &Timeouts,
    ) -> Result<SaveOutcome> {
        const S: &str = "save";
        let mut target = id.clone();
        for hop in 0..=MAX_ALIAS_HOPS {
            let (items, ticket) = self.save_once(&target, delta, timeouts).await?;
            let status = reply::status(S, &items)?;
            if status == "ok" {
                let written = Written {
                    now_ms: reply::int(S, reply::at(S, &items, 1)?)?,
                    expires_at_ms: reply::int(S, reply::at(S, &items, 2)?)?,
                };
                if let Some(t) = ticket {
                    self.cache_saved(t, &target, &items, written);
                }
                return Ok(if hop == 0 {
                    SaveOutcome::Saved(written)
                } else {
                    SaveOutcome::SavedToSuccessor(written)
                });
            }
            if status == "fenced" {
                // Nothing was written: the cached copy, if any, still holds.
                if let Some(t) = ticket {
                    t.unchanged();
                }
                return Ok(SaveOutcome::Fenced);
            }
            // Anything but a live session: not cached.
            if let Some(t) = ticket {
                t.gone();
            }
            match status.as_str() {
                "gone" => return Ok(SaveOutcome::Gone),
                "moved" => return Ok(SaveOutcome::Superseded),
                "alias" => match alias_target(S, &target, &items) {
                    Some(next) => target = next,
                    None => return Ok(SaveOutcome::Gone),
                },
                other => return Err(reply::bad(S, format_args!("unknown status {other:?}"))),
            }
        }
        Ok(SaveOutcome::Superseded)
    }

    async fn login(&self, login: Login<'_>, timeouts: &Timeouts) -> Result<LoginOutcome> {
        self.login_op(login, timeouts).await
    }

    async fn rotate(
        &self,
        old: &SessionId,
        new: &SessionId,
        retire: Retire,
        timeouts: &Timeouts,
    ) -> Result<RotateOutcome> {
        const S: &str = "rotate";
        if old.tag() != new.tag() {
            // Not one Cluster-safe script, and the manager never asks for it:
            // a session that is not there is Gone, as in every store.
            return match self.load(old, timeouts).await? {
                LoadOutcome::Live(l) if l.id == *old => Err(Error::store(
                    "RedisStore::rotate needs the new id to carry the old id's slot tag",
                )),
                LoadOutcome::Live(_) | LoadOutcome::Superseded => Ok(RotateOutcome::Superseded),
                LoadOutcome::Missing => Ok(RotateOutcome::Gone),
            };
        }
        let (mode, grace) = match retire {
            Retire::Alias(grace) => ("alias", grace),
            Retire::Moved(grace) => ("moved", grace),
        };
        let keys = self.inner.keys.rotate(old, new);
        let mut inv = invocation(&self.inner.scripts.rotate, &keys);
        inv.arg(ms(timeouts.idle))
            .arg(mode)
            .arg(ms(grace))
            .arg(old.hash_part())
            .arg(new.hash_part());
        let mut conn = self.conn(&keys[0]).await?;
        // The old key leaves the cache whatever happened; the new one is
        // cached by its first load.
        let ticket = self.ticket(&conn, &keys[0]);
        let items = reply::array(S, self.exec(&mut conn, &inv).await?)?;
        if let Some(t) = ticket {
            t.gone();
        }
        match reply::status(S, &items)?.as_str() {
            "ok" => Ok(RotateOutcome::Rotated(Written {
                now_ms: reply::int(S, reply::at(S, &items, 1)?)?,
                expires_at_ms: reply::int(S, reply::at(S, &items, 2)?)?,
            })),
            "superseded" => Ok(RotateOutcome::Superseded),
            "gone" => Ok(RotateOutcome::Gone),
            other => Err(reply::bad(S, format_args!("unknown status {other:?}"))),
        }
    }

    async fn revoke(&self, id: &SessionId) -> Result<bool> {
        let keys = self.inner.keys.session_and_index(id);
        let mut inv = invocation(&self.inner.scripts.revoke, &keys);
        inv.arg(id.hash_part());
        // Not served from the cache from now on, and not cached again.
        self.forget(id);
        let mut conn = self.revocation_conn(&keys[0]).await?;
        let ticket = self.ticket(&conn, &keys[0]);
        let ended = self.exec(&mut conn, &inv).await?;
        if let Some(t) = ticket {
            t.gone();
        }
        let ended = reply::int("revoke", &ended)? > 0;
        self.wait_durable(&mut conn, &keys[0]).await?;
        Ok(ended)
    }

    async fn revoke_user(&self, user_id: &str, except: Option<&SessionId>) -> Result<u64> {
        const S: &str = "revoke_user";
        let keys = self.inner.keys.user_index(user_id);
        let user_tag = Tag::for_user(user_id);
        let keep = match except {
            Some(id) if id.tag() == user_tag.as_str() => id.hash_part(),
            _ => "",
        };
        let mut inv = invocation(&self.inner.scripts.revoke_user, &keys);
        inv.arg(user_id).arg(keep);
        let mut conn = self.revocation_conn(&keys[0]).await?;
        let ended = async {
            let ended = reply::array(S, self.exec(&mut conn, &inv).await?)?;
            ended
                .iter()
                .map(|hash| reply::text(S, hash))
                .collect::<Result<Vec<String>>>()
        }
        .await;
        match &ended {
            Ok(ended) => {
                for id in ended.iter().filter_map(|h| id_in_tag(user_tag.as_str(), h)) {
                    self.forget(&id);
                }
            }
            // It may have run: which sessions it ended is unknown.
            Err(_) => self.forget_all(),
        }
        let ended = u64::try_from(ended?.len()).unwrap_or(u64::MAX);
        self.wait_durable(&mut conn, &keys[0]).await?;
        Ok(ended)
    }

    async fn sessions_of(&self, user_id: &str, timeouts: &Timeouts) -> Result<Vec<SessionInfo>> {
        const S: &str = "sessions_of";
        let keys = self.inner.keys.user_index(user_id);
        let tag = Tag::for_user(user_id);
        let mut inv = invocation(&self.inner.scripts.sessions_of, &keys);
        inv.arg(user_id).arg(ms(timeouts.idle));
        let mut list = Vec::new();
        for row in reply::array(S, self.run(&keys[0], &inv).await?)? {
            // One corrupt session must not hide the user's other sessions:
            // a row that does not decode is skipped with a warning.
            let decoded = (|| -> Result<Option<(SessionId, Meta, i64)>> {
                let row = reply::array(S, row)?;
                let hash = reply::text(S, reply::at(S, &row, 0)?)?;
                let Some(id) = id_in_tag(tag.as_str(), &hash) else {
                    return Ok(None);
                };
                let meta = Meta {
                    user_id: Some(user_id.to_owned()),
                    created_ms: reply::int(S, reply::at(S, &row, 1)?)?,
                    last_seen_ms: reply::int(S, reply::at(S, &row, 2)?)?,
                    token_issued_ms: reply::int(S, reply::at(S, &row, 3)?)?,
                    absolute_deadline_ms: reply::int(S, reply::at(S, &row, 4)?)?,
                    version: u64::try_from(reply::int(S, reply::at(S, &row, 5)?)?).unwrap_or(0),
                    user_agent: reply::opt_text(S, reply::at(S, &row, 6)?)?,
                    client_ip: reply::opt_text(S, reply::at(S, &row, 7)?)?,
                };
                let expires_at_ms = reply::int(S, reply::at(S, &row, 8)?)?;
                Ok(Some((id, meta, expires_at_ms)))
            })();
            match decoded {
                Ok(Some((id, meta, expires_at_ms))) => list.push((
                    meta.last_seen_ms,
                    SessionInfo::new(id, user_id.to_owned(), &meta, expires_at_ms),
                )),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "skipped a corrupt session while listing a user's sessions")
                }
            }
        }
        list.sort_by_key(|(last_seen, _)| std::cmp::Reverse(*last_seen));
        Ok(list.into_iter().map(|(_, info)| info).collect())
    }

    async fn lock(
        &self,
        id: &SessionId,
        lease: Duration,
        timeouts: &Timeouts,
    ) -> Result<LockOutcome> {
        self.lock_op(id, lease, timeouts).await
    }

    async fn renew_lock(&self, id: &SessionId, fence: u64, lease: Duration) -> Result<bool> {
        self.renew_lock_op(id, fence, lease).await
    }

    async fn unlock(&self, id: &SessionId, fence: u64) -> Result<()> {
        self.unlock_op(id, fence).await
    }
}

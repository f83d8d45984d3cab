//! The [`SessionStore`] implementation: each method one script call (see
//! the module docs); login and the lock calls live in `login.rs` and
//! `locking.rs`, the Lua-free read and save in `read.rs` and `save.rs`.

use std::time::Duration;

use ::redis::Value;
use async_trait::async_trait;

use super::aliases::Chain;
use super::args::{data_fields, id_in_tag, new_session_fields, warn_corrupt};
use super::cache::Ticket;
use super::conn::invocation;
use super::replies::{self, Read, Rotate, Row, Save};
use super::{ms, reply, RedisStore};
use crate::store::{
    Delta, LoadOutcome, Loaded, LockOutcome, Login, LoginOutcome, LogoutOutcome, NewSession,
    Retire, RotateOutcome, SaveOutcome, SessionInfo, SessionStore, Timeouts, Written,
};
use crate::token::Tag;
use crate::{Error, Result, SessionId};

/// What a `load` or `lock` reply came to, with the cache told.
pub(super) enum Settled {
    /// A live session (and the fence, for `lock`).
    Live(Loaded, Option<u64>),
    /// Nothing usable: none, expired, or corrupt (logged).
    Missing,
    /// Replaced by a login or an explicit rotation.
    Moved,
    /// `lock` only: another holder has the lock.
    Held,
    /// Rotated: follow the alias.
    Alias(Option<String>),
}

impl RedisStore {
    /// One save script call; with a cache, the session it leaves is cached
    /// (the reply then carries every field).
    pub(super) async fn save_once(
        &self,
        id: &SessionId,
        delta: &Delta,
        timeouts: &Timeouts,
    ) -> Result<(Save, Option<Ticket>)> {
        if self.plain_save(delta) {
            return Ok((self.save_plain(id, delta, timeouts).await?, None));
        }
        let keys = self.inner.keys.session_only(id);
        let mut inv = invocation(&self.inner.scripts.save, &keys);
        inv.arg(ms(timeouts.idle))
            .arg(id.hash_part())
            .arg(if delta.clear { "1" } else { "0" })
            .arg(self.cache_flag())
            .arg(delta.fence.map(|f| f.to_string()).unwrap_or_default())
            .arg(ms(timeouts.touch_interval))
            .arg(delta.remove.len());
        for key in &delta.remove {
            inv.arg(format!("d:{key}"));
        }
        data_fields(&mut inv, delta.set.iter().map(|(k, v)| (k, v)))?;
        let mut conn = self.conn(&keys[0]).await?;
        let ticket = self.ticket(&conn, &keys[0]);
        let reply = Save::decode(self.exec(&mut conn, &inv).await?)?;
        Ok((reply, ticket))
    }

    /// One load script call (with a cache, on the key's tracked link).
    async fn load_script(
        &self,
        asked: &SessionId,
        timeouts: &Timeouts,
    ) -> Result<(Read, Option<Ticket>)> {
        let keys = self.inner.keys.session_only(asked);
        let mut inv = invocation(&self.inner.scripts.load, &keys);
        inv.arg(ms(timeouts.idle))
            .arg(ms(timeouts.touch_interval))
            .arg(asked.hash_part())
            .arg(self.cache_flag());
        let mut conn = self.conn(&keys[0]).await?;
        let ticket = self.ticket(&conn, &keys[0]);
        let read = Read::decode("load", self.exec(&mut conn, &inv).await?)?;
        Ok((read, ticket))
    }

    /// Caches the session a save left (`fields`, when the reply has them).
    fn cache_saved(
        &self,
        ticket: Ticket,
        id: &SessionId,
        fields: Option<Vec<Value>>,
        written: Written,
    ) {
        let Some(fields) = fields else {
            return; // Dropped: the key leaves the cache.
        };
        match reply::session_fields(&fields) {
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

    /// Tells the cache what a `load` or `lock` of `asked` read: only a live
    /// session is cached, under its own key; anything else ends the ticket
    /// as gone (a lock found held leaves the copy as it was).
    pub(super) fn settle(&self, asked: &SessionId, read: Read, ticket: Option<Ticket>) -> Settled {
        let settled = match read {
            Read::Live(live, fence) => match live.into_loaded(asked.clone()) {
                Ok(loaded) => {
                    if let Some(t) = ticket {
                        t.fresh(&loaded);
                    }
                    return Settled::Live(loaded, fence);
                }
                Err(reason) => {
                    warn_corrupt(asked, &reason);
                    Settled::Missing
                }
            },
            Read::Held => {
                if let Some(t) = ticket {
                    t.unchanged();
                }
                return Settled::Held;
            }
            Read::None => Settled::Missing,
            Read::Moved => Settled::Moved,
            Read::Alias(target) => Settled::Alias(target),
            Read::Corrupt(reason) => {
                warn_corrupt(asked, reason.as_deref().unwrap_or("corrupt"));
                Settled::Missing
            }
        };
        if let Some(t) = ticket {
            t.gone();
        }
        settled
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn load(&self, id: &SessionId, timeouts: &Timeouts) -> Result<LoadOutcome> {
        let idle = ms(timeouts.idle);
        let mut chain = Chain::new(id);
        while let Some(asked) = chain.next() {
            let key = self.inner.keys.session(&asked);
            if let Some(cache) = self.cache_for(&key) {
                let hit = cache.lookup(&key, timeouts, idle, || asked.hash_part().to_owned());
                if let Some(hit) = hit {
                    return Ok(LoadOutcome::Live(hit));
                }
            }
            let plain = if self.plain_reads() {
                self.read_plain(&key, timeouts, idle).await?
            } else {
                None
            };
            let (read, ticket) = match plain {
                Some(read) => (read, None),
                None => self.load_script(&asked, timeouts).await?,
            };
            match self.settle(&asked, read, ticket) {
                Settled::Live(loaded, _) => return Ok(LoadOutcome::Live(loaded)),
                Settled::Missing | Settled::Held => return Ok(LoadOutcome::Missing),
                Settled::Moved => return Ok(LoadOutcome::Superseded),
                Settled::Alias(target) => {
                    // A target that is not a session id is corrupt data, not
                    // a store failure: a fresh session, as for any corrupt one.
                    if !chain.follow(target) {
                        return Ok(LoadOutcome::Missing);
                    }
                }
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
        let keys = self.inner.keys.create(id);
        let mut inv = invocation(&self.inner.scripts.create, &keys);
        inv.arg(ms(timeouts.idle)).arg(ms(timeouts.absolute));
        new_session_fields(&mut inv, session.data, session.client)?;
        replies::created(self.run(&keys[0], &inv).await?)
    }

    async fn save(
        &self,
        id: &SessionId,
        delta: &Delta,
        timeouts: &Timeouts,
    ) -> Result<SaveOutcome> {
        let mut chain = Chain::new(id);
        while let Some(target) = chain.next() {
            let (reply, ticket) = self.save_once(&target, delta, timeouts).await?;
            match reply {
                Save::Saved(written, fields) => {
                    if let Some(t) = ticket {
                        self.cache_saved(t, &target, fields, written);
                    }
                    return Ok(if chain.moved_on() {
                        SaveOutcome::SavedToSuccessor(written)
                    } else {
                        SaveOutcome::Saved(written)
                    });
                }
                Save::Fenced => {
                    // Nothing was written: the cached copy, if any, holds.
                    if let Some(t) = ticket {
                        t.unchanged();
                    }
                    return Ok(SaveOutcome::Fenced);
                }
                // Anything but a live session: not cached.
                other => {
                    if let Some(t) = ticket {
                        t.gone();
                    }
                    match other {
                        Save::Alias(next) => {
                            if !chain.follow(next) {
                                return Ok(SaveOutcome::Gone);
                            }
                        }
                        Save::Moved => return Ok(SaveOutcome::Superseded),
                        _ => return Ok(SaveOutcome::Gone),
                    }
                }
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
        let reply = self.exec(&mut conn, &inv).await;
        if let Some(t) = ticket {
            t.gone();
        }
        Ok(match Rotate::decode(reply?)? {
            Rotate::Rotated(written) => RotateOutcome::Rotated(written),
            Rotate::Superseded => RotateOutcome::Superseded,
            Rotate::Gone => RotateOutcome::Gone,
        })
    }

    async fn revoke(&self, id: &SessionId) -> Result<bool> {
        self.end_session(
            id,
            &self.inner.scripts.revoke,
            |inv| {
                inv.arg(id.hash_part());
            },
            // Durable whatever it found: a marker or an expired session
            // was deleted too.
            |v| Ok((reply::int("revoke", &v)? > 0, true)),
        )
        .await
    }

    async fn logout(&self, id: &SessionId, timeouts: &Timeouts) -> Result<LogoutOutcome> {
        self.logout_token(id, timeouts).await
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
            match Row::decode(user_id, row) {
                Ok(row) => {
                    let Some(id) = id_in_tag(tag.as_str(), &row.hash) else {
                        continue;
                    };
                    list.push((
                        row.meta.last_seen_ms,
                        SessionInfo::new(id, user_id.to_owned(), &row.meta, row.expires_at_ms),
                    ));
                }
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

    fn release_notice(&self, id: &SessionId) -> Option<crate::store::ReleaseNotice> {
        self.inner.releases.watch(id)
    }
}

//! The write path without Lua (issue 11): a save is one `MULTI`/`EXEC`
//! transaction on the session key, decided here from what it read first.
//!
//! The save script cost Redis about 25 µs of CPU (each `redis.call` costs
//! 3–5 µs inside a script, the shared prelude 4 µs) where the same commands
//! sent in a transaction cost about 6. A transaction cannot branch, so it
//! writes first and this module decides afterwards, on the state the same
//! transaction read *before* its writes (`MULTI` runs them in one go):
//!
//! 1. `HMGET` of the markers and times, `PEXPIRETIME` and `PTTL` (the Redis
//!    time is their difference, as on the read path);
//! 2. the delta: `HSET` of the changed keys, `HDEL` of the removed ones;
//! 3. `HINCRBY @ver 1` (the stamp client caches order copies by);
//! 4. `PEXPIRE key 1 NX`: a key that did not exist (ended meanwhile) was
//!    just created by the `HSET`, without a TTL; this gives it one of a
//!    millisecond, so it is gone at once. A live session always has a TTL,
//!    which `NX` leaves alone.
//!
//! What the first step read then says what the writes were:
//!
//! - a live session: saved. When the idle-deadline touch is due (once per
//!   touch interval per session) the touch script follows, as a load's
//!   would: a handler that writes without reading keeps its session alive;
//! - no session: the write vanished with its millisecond TTL; `Gone`;
//! - a rotation marker (`@alias`, `@moved`): the delta landed in the
//!   marker, which readers never take data from; it is taken out again,
//!   and the caller follows the alias as it did after the script;
//! - a session past its idle or absolute deadline (its key outlives the
//!   idle deadline by up to one touch interval): the writes did not make it
//!   live again (its `@seen` was not changed), and it is deleted as the
//!   script did.
//!
//! The cases after the first cost a second round trip; they only happen
//! when a session ends, rotates or expires while a request writes it. A
//! due touch costs one too, at most once per touch interval.
//!
//! Used on one server without the client cache (not on a Cluster: see
//! `plain_save`), for
//! deltas without a lock fence and without `clear`: a fenced save must
//! write nothing when the fence is stale, and `clear` must find every
//! stored key; both keep the script.

use ::redis::{RedisResult, Value};

use super::args::json_pairs;
use super::conn::{invocation, Conn};
use super::connection::{redis_error, timed, Backend};
use super::replies::{self, Save};
use super::RedisStore;
use crate::store::{Delta, Timeouts, Written};
use crate::{Result, SessionId};

/// The fields the transaction reads before it writes.
const READ: [&str; 5] = ["@alias", "@moved", "@user", "@seen", "@deadline"];

impl RedisStore {
    /// Whether this delta can be saved without the script.
    ///
    /// One server only: on a Cluster, a slot that moved aborts the whole
    /// transaction with `MOVED` inside `EXECABORT`, which redis-rs does not
    /// redirect as it does a script call (`redis_partition` caught it).
    pub(super) fn plain_save(&self, delta: &Delta) -> bool {
        self.plain_reads()
            && matches!(self.inner.backend, Backend::Standalone(_))
            && delta.fence.is_none()
            && !delta.clear
    }

    /// Saves `delta` to `id` in one transaction (see the module docs).
    pub(super) async fn save_plain(
        &self,
        id: &SessionId,
        delta: &Delta,
        timeouts: &Timeouts,
    ) -> Result<Save> {
        let key = self.inner.keys.session(id);
        let pairs = json_pairs(delta.set.iter().map(|(k, v)| (k, v)))?;
        let mut pipe = ::redis::pipe();
        pipe.atomic().ignore_errors();
        pipe.cmd("HMGET").arg(&key).arg(&READ[..]);
        pipe.cmd("PEXPIRETIME").arg(&key);
        pipe.cmd("PTTL").arg(&key);
        if !pairs.is_empty() {
            let hset = pipe.cmd("HSET").arg(&key);
            for (field, json) in &pairs {
                hset.arg(field).arg(json);
            }
        }
        let removed: Vec<String> = delta.remove.iter().map(|k| format!("d:{k}")).collect();
        if !removed.is_empty() {
            pipe.cmd("HDEL").arg(&key).arg(&removed);
        }
        pipe.cmd("HINCRBY").arg(&key).arg("@ver").arg(1);
        pipe.cmd("PEXPIRE").arg(&key).arg(1).arg("NX");
        let replies = self.transact(&key, &pipe).await?;
        // `HINCRBY` fails on a corrupt `@ver`: the script answered `gone`.
        let ver_ok = replies.len() >= 2 && replies[replies.len() - 2].is_ok();
        let Some((state, expire_at, ttl)) = read_part(replies) else {
            return Err(super::reply::bad("save", "a transaction reply"));
        };
        let limit = self.inner.command_timeout;
        let state = match state {
            Ok(v) => v,
            // Another type (only outside interference makes one): no
            // session, and nothing was written (every write failed too).
            Err(e) if e.code() == Some("WRONGTYPE") => return Ok(Save::Gone),
            Err(e) => return Err(redis_error(e, limit)),
        };
        let [alias, moved, user, seen, deadline] = state;
        if alias.is_some() || moved.is_some() {
            self.undo_marker(&key, &pairs).await?;
            return Ok(match alias {
                Some(target) => Save::Alias(Some(target)),
                None => Save::Moved,
            });
        }
        let (Some(seen), Some(deadline)) = (number(seen), number(deadline)) else {
            // No session (the write expires in a millisecond), or one
            // without its times: corrupt, as the script saw it.
            return Ok(Save::Gone);
        };
        if !ver_ok {
            return Ok(Save::Gone);
        }
        let (Ok(expire_at), Ok(ttl)) = (expire_at, ttl) else {
            return Err(super::reply::bad("save", "PEXPIRETIME or PTTL"));
        };
        let now = expire_at - ttl;
        let idle = super::ms(timeouts.idle);
        let exp = expire_at.min(seen.saturating_add(idle)).min(deadline);
        if expire_at < 0 || ttl < 0 || now >= exp {
            self.end_expired(id, &key, user.is_some()).await?;
            return Ok(Save::Gone);
        }
        if timeouts.touch_due(seen, now) {
            // A save is activity: once per touch interval it moves the idle
            // deadline, as a load does (a handler may write without reading).
            if let Some(written) = self.touch_saved(id, &key, timeouts).await? {
                return Ok(Save::Saved(written, None));
            }
            // Ended between the two steps: the delta landed while it lived.
        }
        Ok(Save::Saved(
            Written {
                now_ms: now,
                expires_at_ms: exp,
            },
            None,
        ))
    }

    /// Runs the touch script on a session a plain save found due.
    async fn touch_saved(
        &self,
        id: &SessionId,
        key: &str,
        timeouts: &Timeouts,
    ) -> Result<Option<Written>> {
        let keys = [key.to_owned()];
        let mut inv = invocation(&self.inner.scripts.touch, &keys);
        inv.arg(super::ms(timeouts.idle)).arg(id.hash_part());
        let mut conn = self.conn(key).await?;
        let touched = replies::touched(self.exec(&mut conn, &inv).await?)?;
        Ok(touched.map(|t| Written {
            now_ms: t.now_ms,
            expires_at_ms: t.expires_at_ms,
        }))
    }

    /// Runs a transaction on the plain connection of `key`.
    async fn transact(
        &self,
        key: &str,
        pipe: &::redis::Pipeline,
    ) -> Result<Vec<RedisResult<Value>>> {
        let limit = self.inner.command_timeout;
        match Self::plain(&self.inner.backend, key).await? {
            Conn::Manager(mut c) => timed(limit, pipe.query_async(&mut c)).await?,
            Conn::Cluster(mut c) => timed(limit, pipe.query_async(&mut c)).await?,
            // `plain_save` rules links out.
            Conn::Link { .. } => return Err(super::reply::bad("save", "a link")),
        }
        .map_err(|e| aborted(e, limit))
    }

    /// Takes a delta out of the rotation marker it landed in (a marker
    /// holds `@alias` or `@moved` alone: see `rotate.lua`).
    async fn undo_marker(&self, key: &str, pairs: &[(String, String)]) -> Result<()> {
        let mut fields: Vec<&str> = pairs.iter().map(|(f, _)| f.as_str()).collect();
        fields.push("@ver");
        let mut pipe = ::redis::pipe();
        pipe.cmd("HDEL").arg(key).arg(&fields).ignore();
        self.transact(key, &pipe).await.map(drop)
    }

    /// Deletes a session found past its deadline, and its index entry.
    /// With expiry events on, the hash is left for the expiry watcher,
    /// which reports it (as `drop_expired` in `common.lua` does).
    async fn end_expired(&self, id: &SessionId, key: &str, has_user: bool) -> Result<()> {
        let watched = self.inner.expiry.get().is_some();
        if watched && !has_user {
            return Ok(());
        }
        let mut pipe = ::redis::pipe();
        if !watched {
            pipe.cmd("DEL").arg(key).ignore();
        }
        if has_user {
            pipe.cmd("ZREM")
                .arg(self.inner.keys.index(id.tag()))
                .arg(id.hash_part())
                .ignore();
        }
        self.transact(key, &pipe).await.map(drop)
    }
}

/// A transaction error as a sessionkit error. A command refused while
/// queued (`OOM` at `maxmemory`, `READONLY`) aborts the transaction, and
/// redis-rs reports `EXECABORT` with the refusals inside: the first
/// refusal says what happened, as the script's error did.
fn aborted(e: ::redis::RedisError, limit: std::time::Duration) -> crate::Error {
    if e.kind() != ::redis::ErrorKind::Server(::redis::ServerErrorKind::ExecAbort) {
        return redis_error(e, limit);
    }
    let full = e
        .clone()
        .into_server_errors()
        .is_some_and(|errs| errs.iter().any(|(_, err)| err.code() == "OOM"));
    if full {
        crate::Error::StoreFull
    } else {
        redis_error(e, limit)
    }
}

type State = [Option<String>; 5];

/// The replies of the reading commands (the first three of the
/// transaction), typed.
#[allow(clippy::type_complexity)]
fn read_part(
    replies: Vec<RedisResult<Value>>,
) -> Option<(RedisResult<State>, RedisResult<i64>, RedisResult<i64>)> {
    let mut it = replies.into_iter();
    let state = it
        .next()?
        .and_then(|v| ::redis::from_redis_value(v).map_err(Into::into));
    let expire_at = it
        .next()?
        .and_then(|v| ::redis::from_redis_value(v).map_err(Into::into));
    let ttl = it
        .next()?
        .and_then(|v| ::redis::from_redis_value(v).map_err(Into::into));
    Some((state, expire_at, ttl))
}

fn number(v: Option<String>) -> Option<i64> {
    v?.parse().ok()
}

//! Keyed sessions ([`Tracker`](crate::tracker::Tracker)) on Redis: every
//! operation is one call of `scripts/keyed.lua` on the record's one hash,
//! `<prefix>:{<keyed id>}:k` (the active and the finished session are one
//! key, so finish and resume are one step in one slot on a Cluster too).
//! A `get` whose touch is not due is a plain `HMGET` + `PTTL` pipeline
//! instead (as cookie-session reads are). Keyed calls go over the store's
//! plain connection, never the client cache's tracked links: keyed
//! sessions are not cached.

use ::redis::Value;
use async_trait::async_trait;

use super::conn::invocation;
use super::connection::within;
use super::release::keyed_waiter;
use super::replies::{rest, split, unknown};
use super::RedisStore;
use crate::store::keyed::{
    Expiry, Guard, KeyedId, KeyedOp, KeyedRecord, KeyedReply, KeyedState, KeyedStore, KeyedTimeouts,
};
use crate::store::ReleaseNotice;
use crate::{Error, Result};

const S: &str = "keyed";

/// A limit in ms for the script, `-1` for none.
fn limit(d: Option<std::time::Duration>) -> i64 {
    d.map_or(-1, super::ms)
}

fn expiry_args(e: &Expiry) -> [i64; 2] {
    [limit(e.absolute), limit(e.sliding)]
}

/// The `record` reply's fields after the status.
type RecordFields = (String, String, u64, i64, i64, i64, i64, u64);

fn decode(v: Value) -> Result<KeyedReply> {
    let (status, items) = split(S, v)?;
    Ok(match status.as_str() {
        "record" => {
            let (st, value, version, started_ms, since_ms, expires_ms, now_ms, fence): RecordFields =
                rest(S, &status, items)?;
            let state = KeyedState::parse(&st)
                .ok_or_else(|| Error::store("RedisStore: a keyed record in an unknown state"))?;
            KeyedReply::Record(KeyedRecord {
                state,
                value,
                version,
                started_ms,
                since_ms,
                expires_ms,
                now_ms,
                // Fences start from the clock in microseconds: never 0.
                fence: (fence != 0).then_some(fence),
            })
        }
        "missing" => KeyedReply::Missing,
        "active" => KeyedReply::Active,
        "finished" => KeyedReply::Finished,
        "fenced" => KeyedReply::Fenced,
        "conflict" => {
            let (version,): (u64,) = rest(S, &status, items)?;
            KeyedReply::Conflict { version }
        }
        "held" => {
            let (left,): (u64,) = rest(S, &status, items)?;
            KeyedReply::Held {
                lease_left: Some(std::time::Duration::from_millis(left)),
            }
        }
        "done" => {
            let (n,): (i64,) = rest(S, &status, items)?;
            KeyedReply::Done(n == 1)
        }
        other => return Err(unknown(S, other)),
    })
}

/// The fields a plain read takes, in this order.
const READ_FIELDS: [&str; 7] = ["st", "val", "ver", "t0", "since", "exp", "dl"];

/// What a plain read found: a reply, or that the script must decide.
enum Plain {
    Reply(KeyedReply),
    Script,
}

impl RedisStore {
    /// A `get` without Lua: `HMGET` and `PTTL` in one pipeline. Redis
    /// refuses an expired key itself, and the key's expiry is the record's
    /// (`PEXPIREAT exp`), so the Redis time is `exp - PTTL`. A due touch,
    /// a key without a TTL or fields that do not decode go to the script.
    async fn plain_get(
        &self,
        key: &str,
        state: KeyedState,
        touch: bool,
        timeouts: &KeyedTimeouts,
    ) -> Result<Plain> {
        let mut pipe = ::redis::pipe();
        pipe.cmd("HMGET")
            .arg(key)
            .arg(&READ_FIELDS[..])
            .cmd("PTTL")
            .arg(key);
        let mut conn = self.connection().await?;
        let (fields, pttl): (Vec<Option<String>>, i64) =
            within(self.inner.command_timeout, pipe.query_async(&mut conn)).await?;
        let [Some(st), Some(value), ver, t0, since, exp, dl] =
            <[Option<String>; 7]>::try_from(fields)
                .map_err(|_| Error::store("RedisStore: HMGET answered another number of fields"))?
        else {
            return Ok(Plain::Reply(KeyedReply::Missing));
        };
        let num = |v: Option<String>| v.and_then(|v| v.parse::<i64>().ok());
        let (Some(found), Some(ver), Some(t0), Some(since), Some(exp), Some(dl)) = (
            KeyedState::parse(&st),
            num(ver).and_then(|v| u64::try_from(v).ok()),
            num(t0),
            num(since),
            num(exp),
            num(dl),
        ) else {
            return Ok(Plain::Script);
        };
        if pttl < 0 {
            return Ok(Plain::Script);
        }
        if found != state {
            return Ok(Plain::Reply(match found {
                KeyedState::Active => KeyedReply::Active,
                KeyedState::Finished => KeyedReply::Finished,
            }));
        }
        let now_ms = exp - pttl;
        if touch && timeouts.of(found).touch_due(now_ms, exp, dl) {
            return Ok(Plain::Script);
        }
        Ok(Plain::Reply(KeyedReply::Record(KeyedRecord {
            state: found,
            value,
            version: ver,
            started_ms: t0,
            since_ms: since,
            expires_ms: exp,
            now_ms,
            fence: None,
        })))
    }
}

#[async_trait]
impl KeyedStore for RedisStore {
    async fn keyed(
        &self,
        id: &KeyedId,
        op: KeyedOp<'_>,
        timeouts: &KeyedTimeouts,
    ) -> Result<KeyedReply> {
        let keys = [self.inner.keys.keyed(id)];
        if let KeyedOp::Get { state, touch } = op {
            if let Plain::Reply(reply) = self.plain_get(&keys[0], state, touch, timeouts).await? {
                return Ok(reply);
            }
        }
        let args = op.args();
        let releases = &self.inner.releases;
        let mut inv = invocation(&self.inner.scripts.keyed, &keys);
        inv.arg(args.op)
            .arg(args.value.unwrap_or(""))
            .arg(args.guard.map_or("", Guard::kind))
            .arg(args.guard.map_or(0, Guard::number))
            .arg(args.lease.map_or(0, super::lease_ms))
            .arg(args.state.map_or("", KeyedState::as_str))
            .arg(if args.touch { "1" } else { "0" })
            .arg(&expiry_args(&timeouts.active)[..])
            .arg(&expiry_args(&timeouts.finished)[..])
            .arg(releases.channel())
            .arg(format!("{}{}", releases.origin(), keyed_waiter(id)));
        let mut conn = self.connection().await?;
        let reply = decode(within(self.inner.command_timeout, inv.invoke_async(&mut conn)).await?)?;
        // The subscriber skips this store's own notices: wake locally.
        if matches!(
            (&op, &reply),
            (
                KeyedOp::Unlock { .. } | KeyedOp::Remove,
                KeyedReply::Done(true)
            ) | (KeyedOp::Finish { .. }, KeyedReply::Record(_))
        ) {
            releases.wake_keyed(id);
        }
        Ok(reply)
    }

    fn keyed_release_notice(&self, id: &KeyedId) -> Option<ReleaseNotice> {
        self.inner.releases.watch_keyed(id)
    }
}

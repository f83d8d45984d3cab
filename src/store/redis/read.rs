//! The read path without Lua (issue 11): a load is one pipeline of
//! `HGETALL`, `PEXPIRETIME` and `PTTL` on the session key, decoded here.
//!
//! A script costs Redis about 10 µs of CPU where these three cost about 2,
//! and Redis is single-threaded: the script capped every uncached read. What
//! the load script decided in Lua is decided here on the same facts:
//!
//! - expiry: a key that exists has not outlived its TTL, which every write
//!   sets to `min(idle, absolute deadline)` on the Redis clock; the idle and
//!   absolute deadlines are also checked against the Redis time, so a
//!   shorter idle timeout applies at once;
//! - the Redis time is `PEXPIRETIME - PTTL` of the key, both read by the
//!   server in one batch: no `TIME` (keyless, so on a Cluster it could go to
//!   another node, with another clock);
//! - markers (`@alias`, `@moved`) and corrupt data are recognised from the
//!   fields;
//! - when the idle-deadline touch is due (once per touch interval per
//!   session), the load script runs instead and touches in the same step.
//!   Queuing the touch for a batch, as the client cache does for its hits,
//!   was tried and dropped: a login right after a read then ranked the
//!   session by its old use (the per-user limit evicts the least recently
//!   used), and one script per session per interval costs little.
//!
//! Used on one server and on a Cluster without the client cache. A Sentinel
//! master keeps the script: a demoted master (a replica now) still answers
//! plain reads with what it had, where the script, which may write, gets
//! `READONLY` and is retried on the new master. The client cache keeps the
//! script for its misses, which must free the tracking entries of missing
//! keys (see `untrack` in `common.lua`).

use ::redis::{RedisResult, Value};

use super::conn::Conn;
use super::connection::{redis_error, timed, Backend};
use super::replies::{Live, Read};
use super::RedisStore;
use crate::store::Timeouts;
use crate::Result;

impl RedisStore {
    /// Whether loads take the Lua-free path.
    pub(super) fn plain_reads(&self) -> bool {
        self.inner.cache.is_none()
            && matches!(
                self.inner.backend,
                Backend::Standalone(_) | Backend::Cluster(_)
            )
    }

    /// Reads session key `key`. `None` when the idle-deadline touch is due:
    /// the caller runs the load script, which touches.
    pub(super) async fn read_plain(
        &self,
        key: &str,
        timeouts: &Timeouts,
        idle_ms: i64,
    ) -> Result<Option<Read>> {
        let mut pipe = ::redis::pipe();
        pipe.ignore_errors();
        pipe.cmd("HGETALL").arg(key);
        pipe.cmd("PEXPIRETIME").arg(key);
        pipe.cmd("PTTL").arg(key);
        let limit = self.inner.command_timeout;
        let replies = match Self::plain(&self.inner.backend, key).await? {
            Conn::Manager(mut c) => {
                timed(limit, pipe.query_async::<Vec<RedisResult<Value>>>(&mut c)).await?
            }
            Conn::Cluster(mut c) => {
                timed(limit, pipe.query_async::<Vec<RedisResult<Value>>>(&mut c)).await?
            }
            // `plain_reads` rules links out.
            Conn::Link { .. } => return Ok(None),
        }
        .map_err(|e| redis_error(e, limit))?;
        let Ok([all, expire_at, ttl]) = <[RedisResult<Value>; 3]>::try_from(replies) else {
            return Err(super::reply::bad(
                "load",
                "a pipeline reply of another length",
            ));
        };
        let fields = match all {
            Ok(v) => flat_fields(v).ok_or_else(|| super::reply::bad("load", "HGETALL"))?,
            Err(e) if e.code() == Some("WRONGTYPE") => {
                return Ok(Some(Read::Corrupt(Some(
                    "the key is not a hash".to_owned(),
                ))))
            }
            Err(e) => return Err(redis_error(e, limit)),
        };
        if fields.is_empty() {
            return Ok(Some(Read::None));
        }
        if let Some(marker) = marker(&fields) {
            return Ok(Some(marker));
        }
        let (expire_at, ttl) = match (expire_at, ttl) {
            (Ok(Value::Int(at)), Ok(Value::Int(ttl))) => (at, ttl),
            (Err(e), _) | (_, Err(e)) => return Err(redis_error(e, limit)),
            _ => return Err(super::reply::bad("load", "PEXPIRETIME or PTTL")),
        };
        if expire_at < 0 || ttl < 0 {
            // -2: gone between the commands (a batch runs in one go, so only
            // if it spanned two reads of the socket); -1: no TTL, which no
            // session key is written without.
            return Ok(Some(if expire_at == -2 || ttl == -2 {
                Read::None
            } else {
                Read::Corrupt(Some("the key has no time to live".to_owned()))
            }));
        }
        let now = expire_at - ttl;
        // The data is decoded once, by the caller; a missing or invalid
        // time is corrupt there too.
        let (Some(seen), Some(deadline)) = (number(&fields, "@seen"), number(&fields, "@deadline"))
        else {
            return Ok(Some(Read::Corrupt(Some(
                "missing or invalid metadata".to_owned(),
            ))));
        };
        let exp = expire_at.min(seen.saturating_add(idle_ms)).min(deadline);
        if now >= exp {
            return Ok(Some(Read::None));
        }
        if timeouts.touch_due(seen, now) {
            // The load script reads again and touches in the same step: once
            // per touch interval per session, so its cost does not show, and
            // the touch is in Redis before the reply (a queued one would let
            // a login right after rank this session by its old use).
            return Ok(None);
        }
        Ok(Some(Read::Live(
            Live {
                now_ms: now,
                expires_at_ms: exp,
                touched: false,
                fields,
            },
            None,
        )))
    }
}

/// `HGETALL` as `[field, value, ...]` (RESP2 sends that; RESP3 a map).
fn flat_fields(v: Value) -> Option<Vec<Value>> {
    match v {
        Value::Array(items) => Some(items),
        Value::Map(pairs) => Some(pairs.into_iter().flat_map(|(k, v)| [k, v]).collect()),
        _ => None,
    }
}

/// The marker a hash holds instead of a session, if any. `@alias` wins
/// over `@moved` wherever each sits in the hash, as in the scripts'
/// `inspect` (a hash with both is corrupt; both paths must read it alike).
fn marker(fields: &[Value]) -> Option<Read> {
    let mut moved = false;
    for pair in fields.chunks_exact(2) {
        match field_name(&pair[0]) {
            Some(b"@alias") => {
                let target = match &pair[1] {
                    Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
                    _ => None,
                };
                return Some(Read::Alias(target));
            }
            Some(b"@moved") => moved = true,
            _ => {}
        }
    }
    moved.then_some(Read::Moved)
}

fn field_name(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// The integer value of metadata field `name`.
fn number(fields: &[Value], name: &str) -> Option<i64> {
    fields
        .chunks_exact(2)
        .find(|pair| field_name(&pair[0]) == Some(name.as_bytes()))
        .and_then(|pair| match &pair[1] {
            Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn markers_are_found_in_any_position() {
        let alias = vec![bulk("@ver"), bulk("1"), bulk("@alias"), bulk("abc")];
        assert!(matches!(marker(&alias), Some(Read::Alias(Some(t))) if t == "abc"));
        let moved = vec![bulk("@moved"), bulk("1")];
        assert!(matches!(marker(&moved), Some(Read::Moved)));
        // Both (corrupt): the alias decides, in either order, as in Lua.
        let both = vec![bulk("@moved"), bulk(""), bulk("@alias"), bulk("abc")];
        assert!(matches!(marker(&both), Some(Read::Alias(Some(t))) if t == "abc"));
        assert!(marker(&[bulk("@ver"), bulk("1")]).is_none());
    }

    #[test]
    fn resp3_maps_flatten_in_order() {
        let map = Value::Map(vec![(bulk("a"), bulk("1")), (bulk("b"), bulk("2"))]);
        let flat = flat_fields(map).unwrap_or_default();
        assert_eq!(flat, vec![bulk("a"), bulk("1"), bulk("b"), bulk("2")]);
        assert!(flat_fields(Value::Int(1)).is_none());
    }
}

//! The replies of the scripts, as types: each script's reply is decoded
//! here, once, through redis-rs's typed conversions (a status word, then a
//! tuple of the rest), so the operations match on variants instead of
//! picking elements by position. Anything of another shape is a store
//! error naming the script, never a panic; the content of a reply (which
//! may be session data) is never quoted in an error.

use ::redis::{from_redis_value, FromRedisValue, ParsingError, Value};

use super::reply::{bad, data_fields, session_fields};
use crate::store::{Data, Loaded, Meta, Written};
use crate::{Result, SessionId};

/// Splits `{status, rest...}`.
pub(super) fn split(script: &str, v: Value) -> Result<(String, Vec<Value>)> {
    let Value::Array(mut items) = v else {
        return Err(bad(script, "expected an array"));
    };
    if items.is_empty() {
        return Err(bad(script, "an empty reply"));
    }
    let status: String =
        from_redis_value(items.remove(0)).map_err(|_| bad(script, "the status is not text"))?;
    Ok((status, items))
}

/// The rest of a reply as the tuple `T`.
pub(super) fn rest<T: FromRedisValue>(script: &str, status: &str, rest: Vec<Value>) -> Result<T> {
    from_redis_value(Value::Array(rest)).map_err(|e| {
        bad(
            script,
            format_args!("a {status:?} reply of another shape: {e}"),
        )
    })
}

pub(super) fn unknown(script: &str, status: &str) -> crate::Error {
    bad(script, format_args!("unknown status {status:?}"))
}

/// An optional text element (Lua's `false` or nil become `None`; so does a
/// value that is not UTF-8 text, which only corrupt data holds).
fn opt_text(v: Value) -> Option<String> {
    strict_opt_text(v).ok().flatten()
}

/// An optional text element: Lua's `false` (nil in RESP2, a boolean in
/// RESP3) or nil become `None`; anything but UTF-8 text is an error.
fn strict_opt_text(v: Value) -> std::result::Result<Option<String>, ParsingError> {
    match v {
        Value::Nil | Value::Boolean(false) => Ok(None),
        v => from_redis_value(v).map(Some),
    }
}

/// A live session as a script read it: the Redis time, the key's expiry,
/// whether this call touched it, and its hash fields.
#[derive(Debug)]
pub(crate) struct Live {
    pub(crate) now_ms: i64,
    pub(crate) expires_at_ms: i64,
    pub(crate) touched: bool,
    pub(crate) fields: Vec<Value>,
}

impl Live {
    /// The session, or why its fields are unusable (corrupt).
    pub(crate) fn into_loaded(self, id: SessionId) -> std::result::Result<Loaded, String> {
        let (meta, data) = session_fields(&self.fields)?;
        Ok(Loaded {
            id,
            meta,
            data,
            now_ms: self.now_ms,
            expires_at_ms: self.expires_at_ms,
            touched: self.touched,
        })
    }
}

/// `load` and `lock`: what stands under the asked id.
#[derive(Debug)]
pub(crate) enum Read {
    /// `{'ok', now, exp, touched, fields[, fence]}` (`lock` adds the fence).
    Live(Live, Option<u64>),
    /// `{'none'}`: nothing, or expired.
    None,
    /// `{'moved'}`: replaced by a login or an explicit rotation.
    Moved,
    /// `{'alias', target}`: rotated; `None` when the target is not text.
    Alias(Option<String>),
    /// `{'corrupt', reason}`.
    Corrupt(Option<String>),
    /// `{'held'}` (`lock` only): another holder has the lock.
    Held,
}

impl Read {
    pub(crate) fn decode(script: &str, v: Value) -> Result<Self> {
        let (status, items) = split(script, v)?;
        Ok(match status.as_str() {
            "ok" if items.len() == 5 => {
                let (now_ms, expires_at_ms, touched, fields, fence): (
                    i64,
                    i64,
                    i64,
                    Vec<Value>,
                    i64,
                ) = rest(script, &status, items)?;
                let fence =
                    u64::try_from(fence).map_err(|_| bad(script, "the fence is negative"))?;
                Read::Live(
                    Live::new(now_ms, expires_at_ms, touched, fields),
                    Some(fence),
                )
            }
            "ok" => {
                let (now_ms, expires_at_ms, touched, fields): (i64, i64, i64, Vec<Value>) =
                    rest(script, &status, items)?;
                Read::Live(Live::new(now_ms, expires_at_ms, touched, fields), None)
            }
            "none" => Read::None,
            "moved" => Read::Moved,
            "held" => Read::Held,
            "alias" => Read::Alias(items.into_iter().next().and_then(opt_text)),
            "corrupt" => Read::Corrupt(items.into_iter().next().and_then(opt_text)),
            other => return Err(unknown(script, other)),
        })
    }
}

impl Live {
    fn new(now_ms: i64, expires_at_ms: i64, touched: i64, fields: Vec<Value>) -> Self {
        Live {
            now_ms,
            expires_at_ms,
            touched: touched != 0,
            fields,
        }
    }
}

/// `save`.
#[derive(Debug)]
pub(crate) enum Save {
    /// `{'ok', now, exp[, fields]}`: fields when the caller keeps a cache.
    Saved(Written, Option<Vec<Value>>),
    /// `{'fenced'}`: nothing written.
    Fenced,
    /// `{'gone'}`.
    Gone,
    /// `{'moved'}`.
    Moved,
    /// `{'alias', target}`.
    Alias(Option<String>),
}

impl Save {
    pub(crate) fn decode(v: Value) -> Result<Self> {
        const S: &str = "save";
        let (status, items) = split(S, v)?;
        Ok(match status.as_str() {
            "ok" if items.len() == 3 => {
                let (now_ms, expires_at_ms, fields): (i64, i64, Vec<Value>) =
                    rest(S, &status, items)?;
                Save::Saved(written(now_ms, expires_at_ms), Some(fields))
            }
            "ok" => {
                let (now_ms, expires_at_ms): (i64, i64) = rest(S, &status, items)?;
                Save::Saved(written(now_ms, expires_at_ms), None)
            }
            "fenced" => Save::Fenced,
            "gone" => Save::Gone,
            "moved" => Save::Moved,
            "alias" => Save::Alias(items.into_iter().next().and_then(opt_text)),
            other => return Err(unknown(S, other)),
        })
    }
}

fn written(now_ms: i64, expires_at_ms: i64) -> Written {
    Written {
        now_ms,
        expires_at_ms,
    }
}

/// `create`: `{now, exp}`.
pub(crate) fn created(v: Value) -> Result<Written> {
    let (now_ms, expires_at_ms): (i64, i64) = from_redis_value(v).map_err(|e| bad("create", e))?;
    Ok(written(now_ms, expires_at_ms))
}

/// `rotate`.
#[derive(Debug)]
pub(crate) enum Rotate {
    /// `{'ok', now, exp}`.
    Rotated(Written),
    /// `{'superseded'}`: a sibling rotated first.
    Superseded,
    /// `{'gone'}`.
    Gone,
}

impl Rotate {
    pub(crate) fn decode(v: Value) -> Result<Self> {
        const S: &str = "rotate";
        let (status, items) = split(S, v)?;
        Ok(match status.as_str() {
            "ok" => {
                let (now_ms, expires_at_ms): (i64, i64) = rest(S, &status, items)?;
                Rotate::Rotated(written(now_ms, expires_at_ms))
            }
            "superseded" => Rotate::Superseded,
            "gone" => Rotate::Gone,
            other => return Err(unknown(S, other)),
        })
    }
}

/// `touch`: `{'ok', now, exp, seen, version}` as `Some`, `{'gone'}` as `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Touched {
    pub(crate) now_ms: i64,
    pub(crate) expires_at_ms: i64,
    pub(crate) seen_ms: i64,
    pub(crate) version: u64,
}

pub(crate) fn touched(v: Value) -> Result<Option<Touched>> {
    const S: &str = "touch";
    let (status, items) = split(S, v)?;
    match status.as_str() {
        "ok" => {
            let (now_ms, expires_at_ms, seen_ms, version): (i64, i64, i64, i64) =
                rest(S, &status, items)?;
            Ok(Some(Touched {
                now_ms,
                expires_at_ms,
                seen_ms,
                version: u64::try_from(version).unwrap_or(0),
            }))
        }
        "gone" => Ok(None),
        other => Err(unknown(S, other)),
    }
}

/// `login`.
#[derive(Debug)]
pub(crate) enum LoginReply {
    /// `{'ok', now, exp, evicted hash parts, new session's fields, retired
    /// hash part or ''}`.
    LoggedIn {
        written: Written,
        evicted: Vec<String>,
        data: Data,
        retired: Option<String>,
    },
    /// `{'rejected'}`: the per-user limit refused it.
    Rejected,
}

impl LoginReply {
    pub(crate) fn decode(v: Value) -> Result<Self> {
        const S: &str = "login";
        let (status, items) = split(S, v)?;
        match status.as_str() {
            "ok" => {
                let (now_ms, expires_at_ms, evicted, fields, retired): (
                    i64,
                    i64,
                    Vec<String>,
                    Vec<Value>,
                    String,
                ) = rest(S, &status, items)?;
                Ok(LoginReply::LoggedIn {
                    written: written(now_ms, expires_at_ms),
                    evicted,
                    data: data_fields(&fields).map_err(|e| bad(S, e))?,
                    retired: (!retired.is_empty()).then_some(retired),
                })
            }
            "rejected" => Ok(LoginReply::Rejected),
            other => Err(unknown(S, other)),
        }
    }
}

/// `retire`: `{1, data fields, hash part}` as the data and the retired hash
/// part, `{0}` (not live) as `None`.
pub(crate) fn retired(v: Value) -> Result<Option<(Data, String)>> {
    const S: &str = "retire";
    let Value::Array(items) = v else {
        return Err(bad(S, "expected an array"));
    };
    if items.len() == 1 {
        return Ok(None);
    }
    let (_, fields, hash): (i64, Vec<Value>, String) =
        from_redis_value(Value::Array(items)).map_err(|e| bad(S, e))?;
    let data = data_fields(&fields).map_err(|e| bad(S, e))?;
    Ok(Some((data, hash)))
}

/// One row of `sessions_of`: `{hash, created, seen, issued, deadline, ver,
/// ua, ip, exp}`.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) hash: String,
    pub(crate) meta: Meta,
    pub(crate) expires_at_ms: i64,
}

impl Row {
    /// A row of `user_id`'s listing.
    pub(crate) fn decode(user_id: &str, v: Value) -> Result<Self> {
        const S: &str = "sessions_of";
        type Raw = (String, i64, i64, i64, i64, i64, Value, Value, i64);
        let (hash, created, seen, issued, deadline, ver, ua, ip, exp): Raw =
            from_redis_value(v).map_err(|e| bad(S, e))?;
        // A user agent or address that is not text makes the row corrupt.
        let ua = strict_opt_text(ua).map_err(|e| bad(S, e))?;
        let ip = strict_opt_text(ip).map_err(|e| bad(S, e))?;
        Ok(Row {
            hash,
            meta: Meta {
                user_id: Some(user_id.to_owned()),
                created_ms: created,
                last_seen_ms: seen,
                token_issued_ms: issued,
                absolute_deadline_ms: deadline,
                version: u64::try_from(ver).unwrap_or(0),
                user_agent: ua,
                client_ip: ip,
            },
            expires_at_ms: exp,
        })
    }
}

/// `renew_lock` and `unlock`: `{'ok'}`, `{'lost'}`, or `{'alias', target}`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LockCall {
    /// `{'ok'}`.
    Ok,
    /// `{'lost'}`: another holder, or no lock.
    Lost,
    /// `{'alias', target}`.
    Alias(Option<String>),
}

impl LockCall {
    pub(crate) fn decode(script: &str, v: Value) -> Result<Self> {
        let (status, items) = split(script, v)?;
        Ok(match status.as_str() {
            "ok" => LockCall::Ok,
            "lost" => LockCall::Lost,
            "alias" => LockCall::Alias(items.into_iter().next().and_then(opt_text)),
            other => return Err(unknown(script, other)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn decodes_each_shape() {
        let ok = Value::Array(vec![
            bulk("ok"),
            Value::Int(1),
            Value::Int(2),
            Value::Int(1),
            Value::Array(vec![]),
        ]);
        assert!(
            matches!(Read::decode("load", ok).unwrap(), Read::Live(l, None) if l.touched && l.now_ms == 1)
        );
        let alias = Value::Array(vec![bulk("alias"), Value::BulkString(vec![0xff])]);
        assert!(matches!(
            Read::decode("load", alias).unwrap(),
            Read::Alias(None)
        ));
        let saved = Value::Array(vec![bulk("ok"), Value::Int(5), Value::Int(6)]);
        assert!(
            matches!(Save::decode(saved).unwrap(), Save::Saved(w, None) if w.expires_at_ms == 6)
        );
        assert_eq!(
            created(Value::Array(vec![Value::Int(1), Value::Int(2)]))
                .unwrap()
                .now_ms,
            1
        );
        assert!(retired(Value::Array(vec![Value::Int(0)]))
            .unwrap()
            .is_none());
        let login = Value::Array(vec![
            bulk("ok"),
            Value::Int(1),
            Value::Int(2),
            Value::Array(vec![bulk("h")]),
            Value::Array(vec![]),
            bulk(""),
        ]);
        assert!(
            matches!(LoginReply::decode(login).unwrap(), LoginReply::LoggedIn { retired: None, ref evicted, .. } if evicted == &["h".to_owned()])
        );
    }

    #[test]
    fn odd_shapes_are_errors_not_panics() {
        assert!(Read::decode("load", Value::Int(3)).is_err());
        assert!(Read::decode("load", Value::Array(vec![])).is_err());
        assert!(Read::decode("load", Value::Array(vec![bulk("ok"), Value::Int(1)])).is_err());
        assert!(Read::decode("load", Value::Array(vec![bulk("what")])).is_err());
        assert!(Save::decode(Value::Array(vec![bulk("ok"), bulk("x"), Value::Int(1)])).is_err());
        assert!(touched(Value::Array(vec![bulk("ok")])).is_err());
        assert!(Row::decode("u", Value::Array(vec![bulk("h")])).is_err());
        assert!(LockCall::decode("unlock", Value::Nil).is_err());
        let lock = Value::Array(vec![
            bulk("ok"),
            Value::Int(1),
            Value::Int(2),
            Value::Int(0),
            Value::Array(vec![]),
            Value::Int(-1),
        ]);
        assert!(Read::decode("lock", lock).is_err());
    }
}

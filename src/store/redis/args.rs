//! Encoding script arguments and decoding the replies shared by several
//! operations (a session's fields, alias targets).

use ::redis::{ScriptInvocation, Value};

use super::{reply, RedisStore};
use crate::store::{ClientInfo, Data, Loaded};
use crate::{Error, Result, SessionId};

/// The session id of a hash part under an id's tag.
pub(super) fn id_in_tag(tag: &str, hash_part: &str) -> Option<SessionId> {
    format!("{tag}.{hash_part}").parse().ok()
}

/// Where the alias in a reply (`{'alias', target hash part}`) leads: a
/// session id of the same tag. `None` when the target is not a hash part
/// (corrupt data: treated as no session).
pub(super) fn alias_target(script: &str, asked: &SessionId, items: &[Value]) -> Option<SessionId> {
    let target = reply::text(script, reply::at(script, items, 1).ok()?).ok()?;
    id_in_tag(asked.tag(), &target)
}

/// `@ua`, `@ip` and `d:<key>` pairs for a new session.
pub(super) fn new_session_fields(
    inv: &mut ScriptInvocation<'_>,
    data: &Data,
    client: &ClientInfo,
) -> Result<()> {
    client_fields(inv, client);
    data_fields(inv, data.iter())
}

/// `@ua`, `@ip` pairs.
pub(super) fn client_fields(inv: &mut ScriptInvocation<'_>, client: &ClientInfo) {
    if let Some(ua) = &client.user_agent {
        inv.arg("@ua").arg(ua);
    }
    if let Some(ip) = client.ip {
        inv.arg("@ip").arg(ip.to_string());
    }
}

/// `d:<key>`, JSON pairs.
pub(super) fn data_fields<'k>(
    inv: &mut ScriptInvocation<'_>,
    pairs: impl Iterator<Item = (&'k String, &'k serde_json::Value)>,
) -> Result<()> {
    for (key, value) in pairs {
        let json = serde_json::to_string(value).map_err(|source| Error::Serialize {
            key: key.clone(),
            source,
        })?;
        inv.arg(format!("d:{key}")).arg(json);
    }
    Ok(())
}

pub(super) fn warn_corrupt(id: &SessionId, reason: &str) {
    tracing::warn!(
        session = %id,
        reason,
        "ignoring a corrupt session in Redis; the request gets a fresh session"
    );
}

impl RedisStore {
    /// The session in a `load` or `lock` reply (`{'ok', now, exp, touched,
    /// fields, ...}`); `None` when its fields are corrupt.
    pub(super) fn loaded(
        &self,
        script: &str,
        id: SessionId,
        items: &[Value],
    ) -> Result<Option<Loaded>> {
        let now_ms = reply::int(script, reply::at(script, items, 1)?)?;
        let expires_at_ms = reply::int(script, reply::at(script, items, 2)?)?;
        let touched = reply::int(script, reply::at(script, items, 3)?)? != 0;
        let fields = match reply::at(script, items, 4)? {
            Value::Array(fields) => fields,
            other => {
                return Err(reply::bad(
                    script,
                    format_args!("expected fields, got {}", reply::kind(other)),
                ))
            }
        };
        match reply::session_fields(fields) {
            Ok((meta, data)) => Ok(Some(Loaded {
                id,
                meta,
                data,
                now_ms,
                expires_at_ms,
                touched,
            })),
            Err(reason) => {
                warn_corrupt(&id, &reason);
                Ok(None)
            }
        }
    }
}

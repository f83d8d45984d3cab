//! Encoding script arguments (a new session's fields, a delta's pairs) and
//! naming the sessions a reply lists.

use ::redis::ScriptInvocation;

use crate::store::{ClientInfo, Data};
use crate::{Error, Result, SessionId};

/// The session id of a hash part under an id's tag.
pub(super) fn id_in_tag(tag: &str, hash_part: &str) -> Option<SessionId> {
    format!("{tag}.{hash_part}").parse().ok()
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

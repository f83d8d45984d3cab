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

/// The most bytes of a `User-Agent` one hash field holds. Redis keeps a
/// small hash in its compact listpack encoding only while every value is at
/// most `hash-max-listpack-value` (64 by default) bytes; one longer value,
/// as most browsers' `User-Agent` is, makes the whole session a hashtable,
/// about three times larger (issue 11).
pub(super) const UA_CHUNK: usize = 64;

/// The fields a `User-Agent` is written to, in order: `@ua`, then `@ua1`..
/// `@ua3` (the header is truncated to 256 bytes, so four suffice).
pub(super) const UA_FIELDS: [&str; 4] = ["@ua", "@ua1", "@ua2", "@ua3"];

/// `@ua` (in chunks: [`UA_CHUNK`]), `@ip` pairs.
pub(super) fn client_fields(inv: &mut ScriptInvocation<'_>, client: &ClientInfo) {
    if let Some(ua) = &client.user_agent {
        for (field, chunk) in UA_FIELDS.iter().zip(ua_chunks(ua)) {
            inv.arg(*field).arg(chunk);
        }
    }
    if let Some(ip) = client.ip {
        inv.arg("@ip").arg(ip.to_string());
    }
}

/// `ua` cut into pieces of at most [`UA_CHUNK`] bytes, at character
/// boundaries (each piece is stored, and read back, as text). An empty
/// `User-Agent` is one empty piece.
fn ua_chunks(ua: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = ua;
    loop {
        let mut cut = rest.len().min(UA_CHUNK);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (piece, tail) = rest.split_at(cut);
        out.push(piece);
        rest = tail;
        if rest.is_empty() {
            return out;
        }
    }
}

/// `d:<key>`, JSON pairs.
pub(super) fn data_fields<'k>(
    inv: &mut ScriptInvocation<'_>,
    pairs: impl Iterator<Item = (&'k String, &'k serde_json::Value)>,
) -> Result<()> {
    for (field, json) in json_pairs(pairs)? {
        inv.arg(field).arg(json);
    }
    Ok(())
}

/// `(d:<key>, JSON)` of each pair: the hash fields a session's data is
/// stored in.
pub(super) fn json_pairs<'k>(
    pairs: impl Iterator<Item = (&'k String, &'k serde_json::Value)>,
) -> Result<Vec<(String, String)>> {
    pairs
        .map(|(key, value)| {
            let json = serde_json::to_string(value).map_err(|source| Error::Serialize {
                key: key.clone(),
                source,
            })?;
            Ok((format!("d:{key}"), json))
        })
        .collect()
}

pub(super) fn warn_corrupt(id: &SessionId, reason: &str) {
    tracing::warn!(
        session = %id,
        reason,
        "ignoring a corrupt session in Redis; the request gets a fresh session"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agents_are_cut_at_char_boundaries_into_short_pieces() {
        assert_eq!(ua_chunks(""), vec![""]);
        assert_eq!(ua_chunks("abc"), vec!["abc"]);
        let long = "x".repeat(130);
        let pieces = ua_chunks(&long);
        assert_eq!(
            pieces.iter().map(|p| p.len()).collect::<Vec<_>>(),
            vec![64, 64, 2]
        );
        let wide = "é".repeat(40); // 80 bytes, 2 each
        let pieces = ua_chunks(&wide);
        assert!(pieces.iter().all(|p| p.len() <= UA_CHUNK));
        assert_eq!(pieces.concat(), wide);
        assert!(ua_chunks(&"y".repeat(256)).len() <= UA_FIELDS.len());
    }
}

//! Ending a session: `SessionStore::logout` (the session a token names,
//! without loading it first: `LazySession`), the call `revoke` shares with
//! it, and the claim of an expired session for its event (`expiry.rs`),
//! one script each.

use ::redis::Value;

use super::args::id_in_tag;
use super::conn::invocation;
use super::replies::{rest, split, unknown};
use super::reply::{bad, data_fields};
use super::{ms, RedisStore};
use crate::events::{EventKind, ExpiryReason, NewEvent};
use crate::store::{LogoutOutcome, Timeouts};
use crate::{Result, SessionId};

impl RedisStore {
    /// Runs `logout.lua` on the token's key; see
    /// [`SessionStore::logout`](crate::SessionStore::logout).
    pub(super) async fn logout_token(
        &self,
        id: &SessionId,
        timeouts: &Timeouts,
    ) -> Result<LogoutOutcome> {
        let script = &self.inner.scripts.logout;
        let ended = self
            .end_session(
                id,
                script,
                |inv| {
                    inv.arg(id.hash_part()).arg(ms(timeouts.idle));
                },
                |v| {
                    let (outcome, ended) = decode(v)?;
                    // Reached through an alias, the session that ended has
                    // another key: NOLOOP sends this instance no invalidation.
                    if let Some(ended) = ended.and_then(|h| id_in_tag(id.tag(), &h)) {
                        if ended != *id {
                            self.forget(&ended);
                        }
                    }
                    Ok((outcome, outcome == LogoutOutcome::Ended))
                },
            )
            .await?;
        Ok(ended)
    }

    /// Runs a script that ends the session `id` (`revoke`, `logout`): the
    /// session leaves this instance's cache first and is not cached again,
    /// the script runs on the revocation connection, its reply is decoded
    /// by `decode` (which also says whether a session ended), and an ended
    /// session is waited on for durability when the store asks for it.
    pub(super) async fn end_session<T>(
        &self,
        id: &SessionId,
        script: &::redis::Script,
        args: impl FnOnce(&mut ::redis::ScriptInvocation<'_>),
        decode: impl FnOnce(Value) -> Result<(T, bool)>,
    ) -> Result<T> {
        let keys = self.inner.keys.session_only(id);
        let mut inv = invocation(script, &keys);
        args(&mut inv);
        self.forget(id);
        let mut conn = self.revocation_conn(&keys[0]).await?;
        let ticket = self.ticket(&conn, &keys[0]);
        let reply = self.exec(&mut conn, &inv).await;
        if let Some(t) = ticket {
            t.gone();
        }
        let (out, ended) = decode(reply?)?;
        if ended {
            self.wait_durable(&mut conn, &keys[0]).await?;
        }
        Ok(out)
    }
}

/// `{'ended', hash part} | {'none'} | {'moved'}`.
fn decode(v: Value) -> Result<(LogoutOutcome, Option<String>)> {
    const S: &str = "logout";
    let (status, items) = split(S, v)?;
    match status.as_str() {
        "ended" => {
            let (hash,): (String,) = rest(S, &status, items)?;
            Ok((LogoutOutcome::Ended, Some(hash)))
        }
        "none" => Ok((LogoutOutcome::Missing, None)),
        "moved" => Ok((LogoutOutcome::Superseded, None)),
        other => Err(unknown(S, other)),
    }
}

impl RedisStore {
    /// Runs `expire.lua` on `id`: its event when this call claimed it.
    pub(super) async fn claim_expired(&self, id: &SessionId) -> Result<Option<NewEvent>> {
        const S: &str = "expire";
        let script = &self.inner.scripts.expire;
        let reply = self
            .end_session(
                id,
                script,
                |inv| {
                    inv.arg(id.hash_part());
                },
                |v| Ok((v, false)),
            )
            .await?;
        let (status, items) = split(S, reply)?;
        match status.as_str() {
            "none" => Ok(None),
            "expired" => {
                let (user, reason, fields): (String, String, Vec<Value>) = rest(S, &status, items)?;
                let reason = match reason.as_str() {
                    "absolute" => ExpiryReason::Absolute,
                    _ => ExpiryReason::Idle,
                };
                let data = data_fields(&fields).map_err(|e| bad(S, e))?;
                Ok(Some(NewEvent {
                    kind: EventKind::Expired {
                        reason,
                        data: data.into_iter().collect(),
                    },
                    session: Some(id.clone()),
                    user: (!user.is_empty()).then_some(user),
                }))
            }
            other => Err(unknown(S, other)),
        }
    }
}

//! `SessionStore::logout`: ending the session a token names without
//! loading it first (`LazySession`), in one script call.

use ::redis::Value;

use super::args::id_in_tag;
use super::conn::invocation;
use super::replies::{rest, split, unknown};
use super::{ms, RedisStore};
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
        let keys = self.inner.keys.session_only(id);
        let mut inv = invocation(&self.inner.scripts.logout, &keys);
        inv.arg(id.hash_part()).arg(ms(timeouts.idle));
        // As for `revoke`: not served from the cache from now on.
        self.forget(id);
        let mut conn = self.revocation_conn(&keys[0]).await?;
        let ticket = self.ticket(&conn, &keys[0]);
        let reply = self.exec(&mut conn, &inv).await;
        if let Some(t) = ticket {
            t.gone();
        }
        let (outcome, ended) = decode(reply?)?;
        // Reached through an alias, the session that ended has another
        // key: NOLOOP sends this instance no invalidation for it.
        if let Some(ended) = ended.and_then(|h| id_in_tag(id.tag(), &h)) {
            if ended != *id {
                self.forget(&ended);
            }
        }
        if outcome == LogoutOutcome::Ended {
            self.wait_durable(&mut conn, &keys[0]).await?;
        }
        Ok(outcome)
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

//! Login on Redis: one script on a server without Cluster or when the old
//! session shares the user's slot; otherwise the login script, then
//! `retire` (take the old session's data and retire it), then a save that
//! carries the taken keys over. See the module docs, "Atomicity".

use std::time::Duration;

use super::args::{client_fields, data_fields, id_in_tag};
use super::conn::invocation;
use super::replies::{self, LoginReply};
use super::{ms, RedisStore};
use crate::config::{MaxSessionsPolicy, UserLimit};
use crate::store::{
    Data, Delta, Login, LoginOutcome, SaveOutcome, SessionStore, Timeouts, Written,
};
use crate::{Result, SessionId};

impl RedisStore {
    pub(super) async fn login_op(
        &self,
        login: Login<'_>,
        timeouts: &Timeouts,
    ) -> Result<LoginOutcome> {
        let keys = self
            .inner
            .keys
            .login(login.new, login.old, self.inner.one_slot_per_call);
        let (max, policy) = match login.limit {
            UserLimit::Unlimited => (0, "evict"),
            UserLimit::Max { max, policy } => (
                max.max(1),
                match policy {
                    MaxSessionsPolicy::EvictOldest => "evict",
                    MaxSessionsPolicy::RejectNew => "reject",
                },
            ),
        };
        let old_hash = match login.old {
            Some(old) if keys.old_in_login => old.hash_part(),
            _ => "",
        };
        let delta = login.delta;
        let mut inv = invocation(&self.inner.scripts.login, &keys.login);
        inv.arg(ms(timeouts.idle))
            .arg(ms(timeouts.absolute))
            .arg(login.user_id)
            .arg(max)
            .arg(policy)
            .arg(ms(login.moved_grace))
            .arg(login.new.hash_part())
            .arg(old_hash)
            .arg(if delta.clear { "1" } else { "0" })
            .arg(delta.remove.len());
        for key in &delta.remove {
            inv.arg(format!("d:{key}"));
        }
        client_fields(&mut inv, login.client);
        data_fields(&mut inv, delta.set.iter().map(|(k, v)| (k, v)))?;
        let mut conn = self.conn(&keys.login[0]).await?;
        // The new session is not cached (its first load is); the old one,
        // retired here, and the evicted ones leave the cache.
        let old_ticket = match login.old {
            Some(old) if keys.old_in_login => self.ticket(&conn, &self.inner.keys.session(old)),
            _ => None,
        };
        let result = async {
            let (written, evicted_hashes, data, retired) =
                match LoginReply::decode(self.exec(&mut conn, &inv).await?)? {
                    LoginReply::Rejected => return Ok::<_, crate::Error>(LoginOutcome::Rejected { max }),
                    LoginReply::LoggedIn {
                        written,
                        evicted,
                        data,
                        retired,
                    } => (written, evicted, data, retired),
                };
            let mut evicted = Vec::new();
            for hash in evicted_hashes {
                match id_in_tag(login.new.tag(), &hash) {
                    Some(id) => evicted.push(id),
                    None => {
                        tracing::warn!(member = %hash, "evicted an index member that is not a session id")
                    }
                }
            }
            // The session retired may be a successor reached through an
            // alias: NOLOOP sends no invalidation for it, so drop it here.
            if let (Some(old), Some(hash)) = (login.old, retired) {
                if let Some(retired) = id_in_tag(old.tag(), &hash) {
                    self.forget(&retired);
                }
            }
            Ok(LoginOutcome::LoggedIn {
                written,
                data,
                evicted,
            })
        }
        .await;
        match &result {
            Ok(LoginOutcome::LoggedIn { evicted, .. }) => {
                if let Some(t) = old_ticket {
                    t.gone();
                }
                for id in evicted {
                    self.forget(id);
                }
            }
            Ok(LoginOutcome::Rejected { .. }) => {
                if let Some(t) = old_ticket {
                    t.unchanged();
                }
            }
            // It may have run: which sessions it evicted is unknown.
            Err(_) => self.forget_all(),
        }
        let mut outcome = result?;
        if let (
            Some(retire),
            Some(old),
            LoginOutcome::LoggedIn {
                data, ref written, ..
            },
        ) = (&keys.retire, login.old, &mut outcome)
        {
            let carried = self.retire_elsewhere(retire, old, login.moved_grace).await;
            if let Some(old_data) = carried.filter(|_| !delta.clear) {
                self.carry_over(login.new, old_data, delta, data, *written, timeouts)
                    .await;
            }
        }
        Ok(outcome)
    }

    /// The second step of a login whose old session lives in another
    /// slot: takes the old session's latest data and retires it. `None`
    /// when it was not live (or the call failed: the login stands, the old
    /// session stays as it was until it expires, and a warning is logged).
    pub(super) async fn retire_elsewhere(
        &self,
        keys: &[String],
        old: &SessionId,
        grace: Duration,
    ) -> Option<Data> {
        let mut inv = invocation(&self.inner.scripts.retire, keys);
        inv.arg(ms(grace)).arg(old.hash_part());
        let outcome = async {
            let mut conn = self.conn(&keys[0]).await?;
            let ticket = self.ticket(&conn, &keys[0]);
            let reply = self.exec(&mut conn, &inv).await;
            if let Some(t) = ticket {
                t.gone();
            }
            let Some((data, hash)) = replies::retired(reply?)? else {
                return Ok::<_, crate::Error>(None);
            };
            if let Some(retired) = id_in_tag(old.tag(), &hash) {
                self.forget(&retired);
            }
            Ok(Some(data))
        };
        match outcome.await {
            Ok(data) => data,
            Err(e) => {
                tracing::warn!(
                    session = %old,
                    error = %e,
                    "login succeeded but the previous session could not be retired; it stays as it was until it expires"
                );
                None
            }
        }
    }

    /// The third step of a login across slots: the old session's keys that
    /// the login's delta did not decide are written to the new session,
    /// which no other request knows yet. `data` and `written` are updated;
    /// a failure is logged and leaves the login with the delta's keys only.
    pub(super) async fn carry_over(
        &self,
        new: &SessionId,
        old_data: Data,
        delta: &Delta,
        data: &mut Data,
        written: Written,
        timeouts: &Timeouts,
    ) {
        let set: Vec<(String, serde_json::Value)> = old_data
            .into_iter()
            .filter(|(k, _)| !delta.touches(k))
            .collect();
        if set.is_empty() {
            return;
        }
        let carry = Delta {
            set,
            ..Delta::default()
        };
        match self.save(new, &carry, timeouts).await {
            Ok(SaveOutcome::Saved(_)) => carry.apply_to(data),
            outcome => tracing::warn!(
                session = %new,
                ?outcome,
                at = written.now_ms,
                "login succeeded but the previous session's data could not be carried over"
            ),
        }
    }
}

//! Session locks on Redis: `lock` (take the lock and read the session in
//! one script), `renew_lock` and `unlock`, each following rotation aliases.

use std::time::Duration;

use ::redis::{Script, ScriptInvocation};

use super::args::{alias_target, warn_corrupt};
use super::conn::invocation;
use super::{lease_ms, ms, reply, RedisStore};
use crate::store::{LockOutcome, Timeouts, MAX_ALIAS_HOPS};
use crate::{Result, SessionId};

impl RedisStore {
    pub(super) async fn lock_op(
        &self,
        id: &SessionId,
        lease: Duration,
        timeouts: &Timeouts,
    ) -> Result<LockOutcome> {
        const S: &str = "lock";
        let mut asked = id.clone();
        for _ in 0..=MAX_ALIAS_HOPS {
            let keys = self.inner.keys.session_and_index(&asked);
            let mut inv = invocation(&self.inner.scripts.lock, &keys);
            inv.arg(ms(timeouts.idle))
                .arg(ms(timeouts.touch_interval))
                .arg(asked.hash_part())
                .arg(lease_ms(lease));
            let mut conn = self.conn(&keys[0]).await?;
            // The reply carries the whole session, read after the script's
            // writes: it refreshes the cache as a load does. A lock is never
            // served from the cache: taking it is a write.
            let ticket = self.ticket(&conn, &keys[0]);
            let items = reply::array(S, self.exec(&mut conn, &inv).await?)?;
            let status = reply::status(S, &items)?;
            match status.as_str() {
                "ok" => {
                    let fence = reply::int(S, reply::at(S, &items, 5)?)?;
                    let fence =
                        u64::try_from(fence).map_err(|_| reply::bad(S, "the fence is negative"))?;
                    let loaded = self.loaded(S, asked, &items)?;
                    if let Some(t) = ticket {
                        match &loaded {
                            Some(l) => t.fresh(l),
                            None => t.gone(),
                        }
                    }
                    // Fields that do not decode: the session is unusable, as
                    // for `load`; the lock lapses with its lease.
                    return Ok(match loaded {
                        Some(loaded) => LockOutcome::Acquired { fence, loaded },
                        None => LockOutcome::Gone,
                    });
                }
                "held" => {
                    if let Some(t) = ticket {
                        t.unchanged();
                    }
                    return Ok(LockOutcome::Held);
                }
                _ => {
                    if let Some(t) = ticket {
                        t.gone();
                    }
                }
            }
            match status.as_str() {
                "none" | "moved" => return Ok(LockOutcome::Gone),
                "alias" => match alias_target(S, &asked, &items) {
                    Some(target) => asked = target,
                    None => {
                        warn_corrupt(&asked, "the alias does not name a session");
                        return Ok(LockOutcome::Gone);
                    }
                },
                "corrupt" => {
                    let reason = reply::opt_text(S, reply::at(S, &items, 1)?)?;
                    warn_corrupt(&asked, reason.as_deref().unwrap_or("corrupt"));
                    return Ok(LockOutcome::Gone);
                }
                other => return Err(reply::bad(S, format_args!("unknown status {other:?}"))),
            }
        }
        Ok(LockOutcome::Gone)
    }

    pub(super) async fn renew_lock_op(
        &self,
        id: &SessionId,
        fence: u64,
        lease: Duration,
    ) -> Result<bool> {
        const S: &str = "renew_lock";
        let lease = lease_ms(lease);
        let status = self
            .lock_call(S, &self.inner.scripts.renew_lock, id, |inv| {
                inv.arg(fence).arg(lease);
            })
            .await?;
        match status.as_deref() {
            Some("ok") => Ok(true),
            Some("lost") | None => Ok(false),
            Some(other) => Err(reply::bad(S, format_args!("unknown status {other:?}"))),
        }
    }

    pub(super) async fn unlock_op(&self, id: &SessionId, fence: u64) -> Result<()> {
        const S: &str = "unlock";
        let status = self
            .lock_call(S, &self.inner.scripts.unlock, id, |inv| {
                inv.arg(fence);
            })
            .await?;
        match status.as_deref() {
            Some("ok") | None => Ok(()),
            Some(other) => Err(reply::bad(S, format_args!("unknown status {other:?}"))),
        }
    }

    /// Runs `renew_lock` or `unlock` on `id`'s lock, following a rotation
    /// alias once. The status word of the reply; `None` when an alias led
    /// nowhere usable. Neither script writes a session, so the client-side
    /// cache is not involved.
    pub(super) async fn lock_call(
        &self,
        script_name: &str,
        script: &Script,
        id: &SessionId,
        args: impl Fn(&mut ScriptInvocation<'_>),
    ) -> Result<Option<String>> {
        let mut target = id.clone();
        for _ in 0..=MAX_ALIAS_HOPS {
            let keys = self.inner.keys.lock_and_session(&target);
            let mut inv = invocation(script, &keys);
            args(&mut inv);
            let items = reply::array(script_name, self.run(&keys[0], &inv).await?)?;
            let status = reply::status(script_name, &items)?;
            if status != "alias" {
                return Ok(Some(status));
            }
            match alias_target(script_name, &target, &items) {
                Some(next) => target = next,
                None => break,
            }
        }
        Ok(None)
    }
}

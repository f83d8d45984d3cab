//! Session locks on Redis: `lock` (take the lock and read the session in
//! one script), `renew_lock` and `unlock`, each following rotation aliases.
//! `unlock` wakes the next waiter (see `release.rs`).

use std::time::Duration;

use ::redis::{Script, ScriptInvocation, Value};

use super::aliases::Chain;
use super::conn::invocation;
use super::ops::Settled;
use super::replies::{LockCall, Read};
use super::{lease_ms, ms, RedisStore};
use crate::store::{LockOutcome, Timeouts};
use crate::{Result, SessionId};

impl RedisStore {
    pub(super) async fn lock_op(
        &self,
        id: &SessionId,
        lease: Duration,
        timeouts: &Timeouts,
    ) -> Result<LockOutcome> {
        let mut chain = Chain::new(id);
        while let Some(asked) = chain.next() {
            let keys = self.inner.keys.session_only(&asked);
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
            let reply = self.exec(&mut conn, &inv).await?;
            let lease_left = lease_left(&reply);
            let read = Read::decode("lock", reply)?;
            match self.settle(&asked, read, ticket) {
                Settled::Live(loaded, Some(fence)) => {
                    return Ok(LockOutcome::Acquired { fence, loaded })
                }
                Settled::Held => return Ok(LockOutcome::Held { lease_left }),
                Settled::Alias(target) => {
                    if !chain.follow(target) {
                        return Ok(LockOutcome::Gone);
                    }
                }
                // Fields that do not decode leave the session unusable, as
                // for `load`; the lock lapses with its lease.
                Settled::Live(_, None) | Settled::Missing | Settled::Moved => {
                    return Ok(LockOutcome::Gone)
                }
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
        Ok(status == Some(LockCall::Ok))
    }

    pub(super) async fn unlock_op(&self, id: &SessionId, fence: u64) -> Result<()> {
        const S: &str = "unlock";
        let releases = &self.inner.releases;
        let status = self
            .lock_call(S, &self.inner.scripts.unlock, id, |inv| {
                inv.arg(fence)
                    .arg(releases.channel())
                    .arg(releases.origin());
            })
            .await?;
        // `lost` (another holder, or none): nothing of ours to release.
        let _ = status;
        // Local waiters are woken here; `unlock.lua` notifies the others.
        releases.wake_local(id);
        Ok(())
    }

    /// Runs `renew_lock` or `unlock` on `id`'s lock, following rotation
    /// aliases. `None` when an alias led nowhere usable. Neither script
    /// writes a session, so the client-side cache is not involved.
    pub(super) async fn lock_call(
        &self,
        script_name: &str,
        script: &Script,
        id: &SessionId,
        args: impl Fn(&mut ScriptInvocation<'_>),
    ) -> Result<Option<LockCall>> {
        let mut chain = Chain::new(id);
        while let Some(target) = chain.next() {
            let keys = self.inner.keys.lock_and_session(&target);
            let mut inv = invocation(script, &keys);
            args(&mut inv);
            match LockCall::decode(script_name, self.run(&keys[0], &inv).await?)? {
                LockCall::Alias(next) => {
                    if !chain.follow(next) {
                        return Ok(None);
                    }
                }
                done => return Ok(Some(done)),
            }
        }
        Ok(None)
    }
}

/// The lease left in a `{'held', ms}` reply of `lock`.
fn lease_left(reply: &Value) -> Option<Duration> {
    let Value::Array(items) = reply else {
        return None;
    };
    match items.as_slice() {
        [Value::BulkString(status), Value::Int(ms)] if status.as_slice() == b"held" => {
            u64::try_from(*ms).ok().map(Duration::from_millis)
        }
        _ => None,
    }
}

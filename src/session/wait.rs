//! Waiting for a session lock held by another request: each attempt is
//! preceded by a release notice from the store, and a held lock is waited
//! out on that notice (bounded by the holder's lease and a recheck), or
//! polled with a jittered backoff when the store sends no notices. See the
//! "Waiting" guarantee in [`crate::lock`].

use std::time::Duration;

use crate::store::{Loaded, LockOutcome};
use crate::{Error, Result, SessionId, SessionManager};

/// The first pause between two attempts to take a held lock.
const LOCK_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// The longest pause between two attempts to take a held lock.
const LOCK_BACKOFF_MAX: Duration = Duration::from_millis(50);
/// With release notices, the longest a waiter waits before trying again
/// without one: the bound on what a missed notice costs (a lock dropped by
/// a rotation, a login or a revocation, which send none; a waiter that came
/// in through a rotation alias; a notice lost with a Redis connection).
const NOTICE_RECHECK: Duration = Duration::from_millis(500);

/// One `lock` call that cannot leak the lock. The call runs as a task of
/// its own: if nobody is left to take a granted lock — the request was
/// cancelled (a client that hung up) or the attempt timed out after the store
/// granted it — the task releases it, where it would otherwise block the
/// session for a whole lease (found by the bench: wrk ending its warm-up cut
/// a request in the middle of a Redis `lock`, and every later request
/// waited 10 s).
async fn attempt(manager: &SessionManager, id: &SessionId) -> Result<LockOutcome> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (m, owned) = (manager.clone(), id.clone());
    tokio::spawn(async move {
        let lease = m.config().lock_lease;
        let outcome = m.store().lock(&owned, lease, m.timeouts()).await;
        if let Err(Ok(LockOutcome::Acquired { fence, .. })) = tx.send(outcome) {
            super::lock::release(&m, &owned, fence).await;
        }
    });
    manager
        .call(async {
            rx.await
                .map_err(|_| Error::store("the session lock attempt ended without an answer"))?
        })
        .await
}

/// Tries the lock of `id` until it is ours or the lock timeout has passed.
/// Between two attempts it waits for the store's release notice, taken
/// before the attempt so that a release right after it is not missed,
/// bounded by the holder's lease and [`NOTICE_RECHECK`]; a store without
/// notices is polled with a jittered backoff instead.
pub(super) async fn wait_for(manager: &SessionManager, id: &SessionId) -> Result<(u64, Loaded)> {
    let config = manager.config();
    let store = manager.store();
    let started = tokio::time::Instant::now();
    let mut backoff = LOCK_BACKOFF_MIN;
    loop {
        let notice = store.release_notice(id);
        let outcome = attempt(manager, id).await?;
        let lease_left = match outcome {
            LockOutcome::Acquired { fence, loaded } => return Ok((fence, loaded)),
            LockOutcome::Gone => return Err(Error::SessionEnded),
            LockOutcome::Held { lease_left } => lease_left,
        };
        let waited = started.elapsed();
        if waited >= config.lock_timeout {
            tracing::debug!(session = %id, ?waited, "gave up waiting for the session lock");
            return Err(Error::LockTimeout(config.lock_timeout));
        }
        let time_left = config.lock_timeout - waited;
        match notice {
            Some(notice) => {
                // A lease that runs out sends no notice: try again when it
                // has (1 ms after, the store's clock and ours being apart
                // by the reply's trip at most).
                let quiet = lease_left
                    .map_or(NOTICE_RECHECK, |l| {
                        (l + Duration::from_millis(1)).min(NOTICE_RECHECK)
                    })
                    .min(time_left);
                let _ = tokio::time::timeout(quiet, notice).await;
                backoff = LOCK_BACKOFF_MIN;
            }
            None => {
                // Jittered, so waiters spread out instead of polling in step.
                let pause = jittered(backoff).min(time_left);
                tokio::time::sleep(pause).await;
                backoff = (backoff * 2).min(LOCK_BACKOFF_MAX);
            }
        }
    }
}

/// A pause of between half and all of `backoff`.
fn jittered(backoff: Duration) -> Duration {
    let max = u64::try_from(backoff.as_micros())
        .unwrap_or(u64::MAX)
        .max(2);
    Duration::from_micros(rand::random_range(max / 2..=max))
}

//! Waiting out a lock another holder has: the pacing shared by session
//! locks ([`crate::lock`]) and keyed-session locks
//! ([`Tracker::lock`](crate::tracker::Tracker::lock)). Each attempt is
//! preceded by a release notice from the store; a held lock is waited out
//! on that notice (bounded by the holder's lease and a recheck), or polled
//! with a jittered backoff when the store sends no notices.

use std::future::Future;
use std::time::Duration;

use super::ReleaseNotice;

/// The first pause between two attempts to take a held lock.
const LOCK_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// The longest pause between two attempts to take a held lock.
const LOCK_BACKOFF_MAX: Duration = Duration::from_millis(50);
/// With release notices, the longest a waiter waits before trying again
/// without one: the bound on what a missed notice costs (a lock dropped by
/// a rotation, a login or a revocation, which send none; a waiter that came
/// in through a rotation alias; a notice lost with a Redis connection).
const NOTICE_RECHECK: Duration = Duration::from_millis(500);

/// What one attempt to take a lock found.
pub(crate) enum Attempt<R> {
    /// Taken (or settled otherwise: the caller's answer).
    Done(R),
    /// Another holder has it, with this much of its lease left if known.
    Held(Option<Duration>),
}

/// Runs `attempt` until it is [`Attempt::Done`] or `timeout` has passed
/// (`Ok(None)`). Before each attempt it takes `notice()`, so that a
/// release right after the attempt's answer is not missed, and waits on it
/// between attempts, bounded by the holder's lease and [`NOTICE_RECHECK`];
/// without notices it sleeps a jittered backoff (5 ms doubling to 50 ms).
pub(crate) async fn until_free<R, E, F, Fut>(
    timeout: Duration,
    notice: impl Fn() -> Option<ReleaseNotice>,
    mut attempt: F,
) -> Result<Option<R>, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Attempt<R>, E>>,
{
    let started = tokio::time::Instant::now();
    let mut backoff = LOCK_BACKOFF_MIN;
    loop {
        let notice = notice();
        let lease_left = match attempt().await? {
            Attempt::Done(r) => return Ok(Some(r)),
            Attempt::Held(lease_left) => lease_left,
        };
        let waited = started.elapsed();
        if waited >= timeout {
            return Ok(None);
        }
        let time_left = timeout - waited;
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

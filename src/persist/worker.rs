//! [`PersistWorker`]: claims due jobs from the store's queue, calls the
//! hook, and settles each (done, retry with backoff, or give up).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::hook::{PersistHook, PersistReason, PersistRecord};
use crate::store::persist::{Claimed, Ending, PersistJob, PersistQueue, Settle};
use crate::store::LoadOutcome;
use crate::{Error, Result, SessionManager};

/// How a [`PersistWorker`] runs.
#[derive(Debug, Clone)]
pub struct PersistOptions {
    /// How often an idle worker looks for due jobs (default 500 ms).
    pub poll: Duration,
    /// How long a claimed job is this worker's (default 30 s): if the hook
    /// has not answered by then, the attempt counts as failed and another
    /// instance may claim it. Keep it above the hook's slowest write.
    pub lease: Duration,
    /// Attempts before a job is given up, with an error in the log
    /// (default 5).
    pub max_attempts: u32,
    /// The pause after a first failure, doubling after each (default 1 s,
    /// at most 5 min).
    pub backoff: Duration,
    /// The most jobs claimed, and handled concurrently, at once (default
    /// 16).
    pub batch: usize,
}

impl Default for PersistOptions {
    fn default() -> Self {
        PersistOptions {
            poll: Duration::from_millis(500),
            lease: Duration::from_secs(30),
            max_attempts: 5,
            backoff: Duration::from_secs(1),
            batch: 16,
        }
    }
}

/// The longest pause between retries.
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Runs the persistence hook for the jobs of a manager's store, on this
/// instance; run one on as many instances as you like (each job is
/// claimed by one). Stop it with [`shutdown`](Self::shutdown), which
/// handles what is due first.
#[derive(Debug)]
pub struct PersistWorker {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

struct Ctx {
    manager: SessionManager,
    queue: Arc<dyn PersistQueue>,
    hook: Arc<dyn PersistHook>,
    options: PersistOptions,
}

impl PersistWorker {
    /// Starts a worker calling `hook` for `manager`'s jobs, on the current
    /// Tokio runtime.
    ///
    /// # Errors
    /// [`Error::PersistOff`] if the manager was built without
    /// [`with_persistence`](SessionManager::with_persistence).
    pub fn spawn(
        manager: &SessionManager,
        hook: impl PersistHook,
        options: PersistOptions,
    ) -> Result<Self> {
        let queue = manager
            .persistence()
            .ok_or(Error::PersistOff)?
            .queue
            .clone();
        let ctx = Arc::new(Ctx {
            manager: manager.clone(),
            queue,
            hook: Arc::new(hook),
            options,
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(ctx, stopped));
        Ok(PersistWorker { stop, task })
    }

    /// Stops claiming, waits for the jobs in hand, then handles every job
    /// due now (on the memory store, every pending job: no other instance
    /// would), and returns.
    pub async fn shutdown(self) {
        // The task holds the receiver until it ends.
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the persistence worker ended abnormally");
        }
    }
}

async fn run(ctx: Arc<Ctx>, mut stopped: watch::Receiver<bool>) {
    while !*stopped.borrow() {
        if ctx.round().await == 0 {
            tokio::select! {
                () = tokio::time::sleep(ctx.options.poll) => {}
                _ = stopped.changed() => {}
            }
        }
    }
    if ctx.queue.process_local() {
        if let Err(e) = ctx.queue.make_due().await {
            tracing::warn!(error = %e, "persistence: pending jobs not brought forward at shutdown");
        }
    }
    // Retries are due later, so this ends.
    while ctx.round().await > 0 {}
}

impl Ctx {
    /// Claims due jobs and handles them; answers how many it claimed.
    async fn round(self: &Arc<Self>) -> usize {
        let jobs = match self
            .manager
            .call(
                self.queue
                    .claim(self.options.batch.max(1), self.options.lease),
            )
            .await
        {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!(error = %e, "persistence: claiming jobs failed; retrying");
                return 0;
            }
        };
        let claimed = jobs.len();
        let mut running = JoinSet::new();
        for job in jobs {
            let ctx = self.clone();
            running.spawn(async move { ctx.handle(job).await });
        }
        while let Some(done) = running.join_next().await {
            if let Err(e) = done {
                // A panicking hook: its job's lease runs out and it is
                // claimed again.
                tracing::error!(error = %e, "persistence: a hook call panicked");
            }
        }
        claimed
    }

    async fn handle(&self, job: Claimed) {
        let verdict = match self.record(&job).await {
            Ok(None) => Settle::Done,
            Ok(Some(record)) => {
                let session = record.session.clone();
                let called = tokio::time::timeout(self.options.lease, self.hook.persist(record));
                match called.await {
                    Ok(Ok(())) => Settle::Done,
                    Ok(Err(e)) => self.failed(&job, &e.to_string(), &session.to_string()),
                    Err(_) => {
                        self.failed(&job, "the hook ran past its lease", &session.to_string())
                    }
                }
            }
            Err(e) => self.failed(&job, &e.to_string(), &job.key),
        };
        if let Err(e) = self.manager.call(self.queue.settle(&job, verdict)).await {
            tracing::warn!(error = %e, job = %job.key, "persistence: job not settled; it is claimed again after its lease");
        }
    }

    /// The verdict after a failed attempt: a retry, or a logged give-up.
    fn failed(&self, job: &Claimed, why: &str, session: &str) -> Settle {
        if job.tries >= self.options.max_attempts {
            tracing::error!(
                session,
                attempts = job.tries,
                error = why,
                "persistence: giving up on a session after repeated failures"
            );
            return Settle::Done;
        }
        tracing::warn!(
            session,
            attempt = job.tries,
            error = why,
            "persistence: the hook failed; retrying"
        );
        let doublings = job.tries.saturating_sub(1).min(16);
        let pause = self
            .options
            .backoff
            .saturating_mul(1u32 << doublings)
            .min(BACKOFF_MAX);
        Settle::RetryAfter(pause)
    }

    /// What the hook is called with; `None` when there is nothing to
    /// persist (a live session's job for a session that ended since: its
    /// ending has a job of its own).
    async fn record(&self, job: &Claimed) -> Result<Option<PersistRecord>> {
        let parsed: PersistJob = match serde_json::from_str(&job.payload) {
            Ok(parsed) => parsed,
            Err(e) => {
                tracing::error!(error = %e, job = %job.key, "persistence: a job that does not decode is dropped");
                return Ok(None);
            }
        };
        Ok(Some(match parsed {
            PersistJob::Live { session, on_demand } => {
                let LoadOutcome::Live(l) = self.manager.load_untouched(&session).await? else {
                    return Ok(None);
                };
                PersistRecord {
                    session: l.id,
                    user: l.meta.user_id,
                    data: Some(l.data.into_iter().collect()),
                    reason: if on_demand {
                        PersistReason::OnDemand
                    } else {
                        PersistReason::Interval
                    },
                    attempt: job.tries,
                }
            }
            PersistJob::Ended {
                session,
                user,
                why,
                data,
            } => PersistRecord {
                session,
                user,
                data,
                reason: reason_of(why),
                attempt: job.tries,
            },
        }))
    }
}

fn reason_of(why: Ending) -> PersistReason {
    use crate::events::ExpiryReason;
    match why {
        Ending::LoggedOut => PersistReason::LoggedOut,
        Ending::Revoked => PersistReason::Revoked,
        Ending::Evicted => PersistReason::Evicted,
        Ending::ExpiredIdle => PersistReason::Expired(ExpiryReason::Idle),
        Ending::ExpiredAbsolute => PersistReason::Expired(ExpiryReason::Absolute),
    }
}

//! The memory store's persistence queue: jobs in a map behind one lock,
//! timed by the store's clock. Claims scan the map: the queue holds one job
//! per session changed within the persistence interval, not one per
//! session.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::{duration_ms, Clock};
use crate::store::persist::{Claimed, PersistJob, PersistQueue, Settle};
use crate::Result;

/// The [`PersistQueue`] of a [`MemoryStore`](super::MemoryStore), from
/// [`MemoryStore::persist_queue`](super::MemoryStore::persist_queue);
/// clones of the store share it.
#[derive(Debug, Clone)]
pub struct MemoryQueue {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    jobs: Mutex<HashMap<String, Job>>,
    clock: Arc<dyn Clock>,
    /// Whether a queue was handed out: the purge enqueues expiries only
    /// then.
    requested: AtomicBool,
}

#[derive(Debug)]
struct Job {
    payload: String,
    due_ms: i64,
    generation: u64,
    tries: u32,
    leased: bool,
}

impl MemoryQueue {
    pub(super) fn new(clock: Arc<dyn Clock>) -> Self {
        MemoryQueue {
            inner: Arc::new(Inner {
                jobs: Mutex::default(),
                clock,
                requested: AtomicBool::new(false),
            }),
        }
    }

    pub(super) fn request(&self) -> Self {
        self.inner.requested.store(true, Ordering::SeqCst);
        self.clone()
    }

    /// Whether the purge should enqueue the jobs of expired sessions.
    pub(super) fn requested(&self) -> bool {
        self.inner.requested.load(Ordering::SeqCst)
    }

    fn jobs(&self) -> MutexGuard<'_, HashMap<String, Job>> {
        // A panic while the lock was held left the map consistent: every
        // change below is one insert, update or remove.
        self.inner
            .jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds `job`, due now (the purge's expiries).
    pub(super) fn enqueue_now(&self, job: &PersistJob) {
        self.add(&job.key(), &job.payload(), 0);
    }

    fn add(&self, key: &str, payload: &str, delay_ms: i64) {
        let due_ms = self.inner.clock.now_ms().saturating_add(delay_ms);
        let mut jobs = self.jobs();
        match jobs.get_mut(key) {
            Some(job) if !job.leased => {
                job.payload = payload.to_owned();
                job.due_ms = job.due_ms.min(due_ms);
            }
            Some(job) => {
                *job = Job {
                    payload: payload.to_owned(),
                    due_ms,
                    generation: job.generation + 1,
                    tries: 0,
                    leased: false,
                };
            }
            None => {
                jobs.insert(
                    key.to_owned(),
                    Job {
                        payload: payload.to_owned(),
                        due_ms,
                        generation: 1,
                        tries: 0,
                        leased: false,
                    },
                );
            }
        }
    }

    /// How many jobs the queue holds (waiting or leased).
    pub fn len(&self) -> usize {
        self.jobs().len()
    }

    /// Whether the queue holds no job.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl PersistQueue for MemoryQueue {
    async fn enqueue(&self, key: &str, payload: &str, delay: Duration) -> Result<()> {
        self.add(key, payload, duration_ms(delay));
        Ok(())
    }

    async fn claim(&self, limit: usize, lease: Duration) -> Result<Vec<Claimed>> {
        let now = self.inner.clock.now_ms();
        let mut jobs = self.jobs();
        let mut due: Vec<(&String, &mut Job)> =
            jobs.iter_mut().filter(|(_, j)| j.due_ms <= now).collect();
        due.sort_by_key(|(_, j)| j.due_ms);
        Ok(due
            .into_iter()
            .take(limit)
            .map(|(key, job)| {
                job.leased = true;
                job.tries += 1;
                job.due_ms = now.saturating_add(duration_ms(lease));
                Claimed {
                    key: key.clone(),
                    payload: job.payload.clone(),
                    generation: job.generation,
                    tries: job.tries,
                }
            })
            .collect())
    }

    async fn settle(&self, claimed: &Claimed, verdict: Settle) -> Result<()> {
        let now = self.inner.clock.now_ms();
        let mut jobs = self.jobs();
        let Some(job) = jobs.get_mut(&claimed.key) else {
            return Ok(());
        };
        if !job.leased || job.generation != claimed.generation || job.tries != claimed.tries {
            return Ok(());
        }
        match verdict {
            Settle::Done => {
                jobs.remove(&claimed.key);
            }
            Settle::RetryAfter(pause) => {
                job.leased = false;
                job.due_ms = now.saturating_add(duration_ms(pause));
            }
        }
        Ok(())
    }

    async fn make_due(&self) -> Result<u64> {
        let now = self.inner.clock.now_ms();
        let mut moved = 0;
        for job in self
            .jobs()
            .values_mut()
            .filter(|j| !j.leased && j.due_ms > now)
        {
            job.due_ms = now;
            moved += 1;
        }
        Ok(moved)
    }

    fn process_local(&self) -> bool {
        true
    }
}

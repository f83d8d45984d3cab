//! Helpers of the persistence suite (`tests/persist.rs`): the store's
//! queue, a recording hook that can fail on purpose, and waits.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sessionkit::persist::{
    hook_fn, PersistHook, PersistOptions, PersistQueue, PersistReason, PersistRecord,
};
use sessionkit::SessionId;

use super::Concrete;

/// How long an expected hook call may take to come.
pub const WAIT: Duration = Duration::from_secs(15);

/// The store's persistence queue (a Redis store must have expiry events).
pub fn queue_of(c: &Concrete) -> Arc<dyn PersistQueue> {
    match c {
        Concrete::Memory(s) => Arc::new(s.persist_queue()),
        #[cfg(feature = "redis")]
        Concrete::Redis(s) => {
            Arc::new(s.persist_queue().expect("a Redis store with expiry events"))
        }
        #[cfg(feature = "postgres")]
        Concrete::Postgres(s) => Arc::new(s.persist_queue()),
    }
}

/// Worker options for tests: quick polls and retries.
pub fn quick() -> PersistOptions {
    PersistOptions {
        poll: Duration::from_millis(50),
        lease: Duration::from_secs(5),
        max_attempts: 5,
        backoff: Duration::from_millis(100),
        batch: 16,
    }
}

/// One hook call, as recorded: which instance, what record, and whether
/// the hook answered with success.
#[derive(Debug, Clone)]
pub struct Call {
    pub instance: usize,
    pub record: PersistRecord,
    pub ok: bool,
}

/// Records every hook call; `fail_first` calls per session fail.
#[derive(Clone, Default)]
pub struct Recorder {
    calls: Arc<Mutex<Vec<Call>>>,
    fail_first: Arc<Mutex<u32>>,
}

impl Recorder {
    /// A recorder whose hook fails the first `n` attempts of each job.
    pub fn failing_first(n: u32) -> Self {
        let r = Recorder::default();
        *r.fail_first.lock().unwrap() = n;
        r
    }

    /// The hook of instance `instance`.
    pub fn hook(&self, instance: usize) -> impl PersistHook {
        let me = self.clone();
        hook_fn(move |record: PersistRecord| {
            let me = me.clone();
            async move {
                let ok = record.attempt > *me.fail_first.lock().unwrap();
                me.calls.lock().unwrap().push(Call {
                    instance,
                    record,
                    ok,
                });
                if ok {
                    Ok(())
                } else {
                    Err("the app's database is down (on purpose)")
                }
            }
        })
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// The successful calls for `session` with `reason`.
    pub fn done(&self, session: &SessionId, reason: PersistReason) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.ok && &c.record.session == session && c.record.reason == reason)
            .collect()
    }

    /// Waits until a successful call for `session` with `reason` came;
    /// answers it.
    pub async fn wait(&self, session: &SessionId, reason: PersistReason, what: &str) -> Call {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(c) = self.done(session, reason).into_iter().next() {
                return c;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "{what}: no successful {reason:?} call for {session} within {WAIT:?}; calls: {:#?}",
                    self.calls()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

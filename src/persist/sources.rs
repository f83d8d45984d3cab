//! Where persistence jobs come from on the manager's side: changes of live
//! sessions (at commit), endings (logout, revoke, eviction), and the
//! on-demand calls. Expiries come from the stores' own expiry sources.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{MaxSessionsPolicy, Timeouts, UserLimit};
use crate::context::Persistence;
use crate::store::persist::{Ending, PersistJob, PersistQueue};
use crate::store::{LoadOutcome, Loaded};
use crate::{Error, Result, SessionId, SessionManager};

/// A session read just before it is ended: what its ending's job carries.
#[derive(Debug)]
pub(crate) struct Snapshot {
    id: SessionId,
    user: Option<String>,
    data: serde_json::Map<String, serde_json::Value>,
}

impl Snapshot {
    fn of(l: Loaded) -> Self {
        Snapshot {
            id: l.id,
            user: l.meta.user_id,
            data: l.data.into_iter().collect(),
        }
    }
}

/// So long that a read never refreshes the session: persisting a session
/// is not activity, and must not keep it alive.
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

impl SessionManager {
    /// This manager with the persistence hook's jobs on, kept in `queue`
    /// (the store's: [`MemoryStore::persist_queue`](crate::MemoryStore::persist_queue),
    /// `RedisStore::persist_queue`, `PostgresStore::persist_queue`). A
    /// changed session is persisted `interval` after its first change
    /// since it was last persisted; endings at once. Run a
    /// [`PersistWorker`](super::PersistWorker) with the hook on at least
    /// one instance. See the [`persist`](super) module.
    #[must_use]
    pub fn with_persistence(self, queue: impl PersistQueue, interval: Duration) -> Self {
        self.rebuilt(|s| {
            s.persist = Some(Persistence {
                queue: Arc::new(queue),
                interval,
            });
        })
    }

    pub(crate) fn persistence(&self) -> Option<&Persistence> {
        self.inner.persist.as_ref()
    }

    /// Has the hook persist session `id`'s current data now (by whichever
    /// instance's worker claims it first), whether or not it changed.
    ///
    /// # Errors
    /// [`Error::PersistOff`] without [`with_persistence`](Self::with_persistence);
    /// store failures.
    pub async fn persist_now(&self, id: &SessionId) -> Result<()> {
        let p = self.persistence().ok_or(Error::PersistOff)?;
        let job = PersistJob::Live {
            session: id.clone(),
            on_demand: true,
        };
        self.call(job.enqueue_on(&*p.queue, Duration::ZERO)).await
    }

    /// Has the hook persist, now, every session whose persistence is
    /// pending (changed since it was last persisted), instead of at the end
    /// of its interval. Returns how many jobs were brought forward.
    ///
    /// # Errors
    /// [`Error::PersistOff`]; store failures.
    pub async fn persist_all(&self) -> Result<u64> {
        let p = self.persistence().ok_or(Error::PersistOff)?;
        self.call(p.queue.make_due()).await
    }

    /// Reads session `id` without refreshing it.
    pub(crate) async fn load_untouched(&self, id: &SessionId) -> Result<LoadOutcome> {
        let timeouts = Timeouts {
            touch_interval: NEVER,
            ..*self.timeouts()
        };
        self.call(self.store().load(id, &timeouts)).await
    }

    /// After a commit wrote session `id`: its job, due after the interval
    /// (an earlier pending one stays).
    pub(crate) async fn note_changed(&self, id: &SessionId) {
        let Some(p) = self.persistence() else { return };
        let job = PersistJob::Live {
            session: id.clone(),
            on_demand: false,
        };
        if let Err(e) = self.call(job.enqueue_on(&*p.queue, p.interval)).await {
            tracing::warn!(error = %e, session = %id, "the session's persistence could not be scheduled");
        }
    }

    /// Before ending session `id`: its data, if persistence is on (else
    /// `None`, with no store call).
    pub(crate) async fn snapshot(&self, id: &SessionId) -> Option<Snapshot> {
        self.persistence()?;
        match self.load_untouched(id).await {
            Ok(LoadOutcome::Live(l)) => Some(Snapshot::of(l)),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, session = %id, "session not read before its end; it is persisted without data");
                None
            }
        }
    }

    /// Before ending the sessions of `user` but `except`: their data, if
    /// persistence is on.
    pub(crate) async fn snapshots_of(
        &self,
        user: &str,
        except: Option<&SessionId>,
    ) -> Vec<Snapshot> {
        if self.persistence().is_none() {
            return Vec::new();
        }
        let listed = match self.sessions_of(user).await {
            Ok(listed) => listed,
            Err(e) => {
                tracing::warn!(error = %e, "sessions not read before their end; they are not persisted");
                return Vec::new();
            }
        };
        let mut out = Vec::with_capacity(listed.len());
        for info in listed.iter().filter(|s| Some(&s.id) != except) {
            if let Some(s) = self.snapshot(&info.id).await {
                out.push(s);
            }
        }
        out
    }

    /// After sessions ended: their jobs, due now.
    pub(crate) async fn note_ended(&self, ended: Vec<Snapshot>, why: Ending) {
        for s in ended {
            let job = PersistJob::Ended {
                session: s.id,
                user: s.user,
                why,
                data: Some(s.data),
            };
            self.enqueue_ending(job).await;
        }
    }

    /// Before a login of `user` (from `old`, if stored): the data of the
    /// sessions its per-user limit would evict, the least recently used
    /// ones past the limit, read without refreshing them (which would
    /// change that order). Nothing if persistence is off, the limit does
    /// not evict, or the user is under it.
    pub(crate) async fn snapshots_before_login(
        &self,
        user: &str,
        old: Option<&SessionId>,
    ) -> Vec<Snapshot> {
        let UserLimit::Max {
            max,
            policy: MaxSessionsPolicy::EvictOldest,
        } = self.config().user_limit
        else {
            return Vec::new();
        };
        if self.persistence().is_none() {
            return Vec::new();
        }
        let Ok(listed) = self.sessions_of(user).await else {
            return Vec::new();
        };
        let others: Vec<_> = listed.iter().filter(|s| Some(&s.id) != old).collect();
        // Most recently used first: the login keeps `max - 1` of them.
        let keep = usize::try_from(max.saturating_sub(1)).unwrap_or(usize::MAX);
        let mut out = Vec::new();
        for info in others.iter().skip(keep) {
            if let Some(s) = self.snapshot(&info.id).await {
                out.push(s);
            }
        }
        out
    }

    /// After a login evicted `ids` of `user`: their jobs, with the data
    /// read before the login where it was (`before`; a concurrent login
    /// can evict another session than the one foreseen: that one then has
    /// no data).
    pub(crate) async fn note_evicted(
        &self,
        ids: &[SessionId],
        user: &str,
        mut before: Vec<Snapshot>,
    ) {
        if self.persistence().is_none() {
            return;
        }
        for id in ids {
            let data = before
                .iter()
                .position(|s| &s.id == id)
                .map(|i| before.swap_remove(i).data);
            let job = PersistJob::Ended {
                session: id.clone(),
                user: Some(user.to_owned()),
                why: Ending::Evicted,
                data,
            };
            self.enqueue_ending(job).await;
        }
    }

    async fn enqueue_ending(&self, job: PersistJob) {
        let Some(p) = self.persistence() else { return };
        if let Err(e) = self.call(job.enqueue_on(&*p.queue, Duration::ZERO)).await {
            // The session is already gone: nothing can bring this back.
            tracing::error!(error = %e, job = %job.key(), "an ended session's persistence job is lost");
        }
    }
}

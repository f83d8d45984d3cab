//! The persistence queue a store keeps for the persistence hook
//! ([`crate::persist`]): jobs saying which session's data the app wants
//! written to its own database, shared by every instance on the store, so
//! that exactly one instance handles each.
//!
//! # Implementing a custom queue
//!
//! A queue holds jobs by **key** (at most one per key), each with a
//! payload (a [`PersistJob`] as JSON), a due time by the store's clock, a
//! generation and a try count. Five operations, each one atomic step:
//!
//! - [`enqueue`](PersistQueue::enqueue): a new key is added, due after
//!   `delay`. A key already waiting takes the new payload and the earlier
//!   of its two due times (so a session changed on every request is still
//!   persisted once per interval). A key being handled (claimed, its lease
//!   running) becomes a new occurrence: the new payload, due after `delay`,
//!   a new generation, zero tries, so the handler's settle no longer
//!   touches it.
//! - [`claim`](PersistQueue::claim): up to `limit` jobs whose due time
//!   passed (waiting ones, and claimed ones whose lease ran out: their
//!   handler died), earliest first; each is leased (due again after
//!   `lease`) and its try count goes up by one.
//! - [`settle`](PersistQueue::settle): the handler's verdict on a job it
//!   claimed: done (removed) or retry after a pause (waiting again). Does
//!   nothing if the job's generation or try count moved since the claim
//!   (another instance claimed it after the lease ran out, or a new
//!   occurrence replaced it).
//! - [`make_due`](PersistQueue::make_due): every waiting job due now
//!   (`persist_all`).
//!
//! Times come from the store's clock, so instances with skewed clocks agree
//! on what is due and whose lease ran out.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::events::{EventKind, ExpiryReason, NewEvent};
use crate::{Result, SessionId};

/// One job the queue hands to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The job's key.
    pub key: String,
    /// Its payload (a [`PersistJob`] as JSON).
    pub payload: String,
    /// The occurrence the claim is for: settle checks it.
    pub generation: u64,
    /// How many times the job was claimed, this claim included.
    pub tries: u32,
}

/// What a worker does with a job it claimed ([`PersistQueue::settle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Handled (or given up): remove it.
    Done,
    /// Failed: claimable again after this pause.
    RetryAfter(Duration),
}

/// A store's persistence queue (see the [module docs](self)).
#[async_trait]
pub trait PersistQueue: Send + Sync + std::fmt::Debug + 'static {
    /// Adds or merges the job `key` (see the module docs).
    ///
    /// # Errors
    /// Store failures and timeouts.
    async fn enqueue(&self, key: &str, payload: &str, delay: Duration) -> Result<()>;

    /// Leases up to `limit` due jobs for `lease`.
    ///
    /// # Errors
    /// Store failures and timeouts; nothing was claimed (after a timeout
    /// the claim may have landed: its lease then runs out).
    async fn claim(&self, limit: usize, lease: Duration) -> Result<Vec<Claimed>>;

    /// Removes or reschedules a claimed job, if it is still that claim's.
    ///
    /// # Errors
    /// Store failures and timeouts; the job stays leased, and is claimed
    /// again when its lease runs out.
    async fn settle(&self, job: &Claimed, verdict: Settle) -> Result<()>;

    /// Makes every waiting job due now; returns how many jobs it moved.
    ///
    /// # Errors
    /// Store failures and timeouts.
    async fn make_due(&self) -> Result<u64>;

    /// Whether the jobs live in this process only (the memory store): a
    /// worker's shutdown then makes them all due and handles them, since
    /// no other instance will.
    fn process_local(&self) -> bool {
        false
    }
}

#[async_trait]
impl<Q: PersistQueue + ?Sized> PersistQueue for std::sync::Arc<Q> {
    async fn enqueue(&self, key: &str, payload: &str, delay: Duration) -> Result<()> {
        (**self).enqueue(key, payload, delay).await
    }

    async fn claim(&self, limit: usize, lease: Duration) -> Result<Vec<Claimed>> {
        (**self).claim(limit, lease).await
    }

    async fn settle(&self, job: &Claimed, verdict: Settle) -> Result<()> {
        (**self).settle(job, verdict).await
    }

    async fn make_due(&self) -> Result<u64> {
        (**self).make_due().await
    }

    fn process_local(&self) -> bool {
        (**self).process_local()
    }
}

/// What a job asks for, as its payload holds it (JSON with a `job` tag).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "job", rename_all = "snake_case")]
pub enum PersistJob {
    /// Persist a live session's current data (read when handled).
    Live {
        /// The session.
        session: SessionId,
        /// Why now.
        on_demand: bool,
    },
    /// Persist an ended session's data as it was when it ended.
    Ended {
        /// The session that ended.
        session: SessionId,
        /// Its user, if logged in.
        user: Option<String>,
        /// How it ended.
        why: Ending,
        /// Its data then; `None` where it was not known.
        data: Option<serde_json::Map<String, serde_json::Value>>,
    },
}

/// How a session ended ([`PersistJob::Ended`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// Its own request logged out.
    LoggedOut,
    /// Revoked from elsewhere.
    Revoked,
    /// Evicted by a login over the per-user limit.
    Evicted,
    /// The idle timeout ran out.
    ExpiredIdle,
    /// The absolute timeout ran out.
    ExpiredAbsolute,
}

impl Ending {
    /// The ending of an expiry for `reason`.
    pub fn expired(reason: ExpiryReason) -> Self {
        match reason {
            ExpiryReason::Idle => Ending::ExpiredIdle,
            ExpiryReason::Absolute => Ending::ExpiredAbsolute,
        }
    }
}

impl PersistJob {
    /// The queue key: one job per session and kind, so repeated changes of
    /// a session merge into one job, and a session's ending is one job.
    pub fn key(&self) -> String {
        match self {
            PersistJob::Live { session, .. } => format!("l:{session}"),
            PersistJob::Ended { session, .. } => format!("e:{session}"),
        }
    }

    /// The payload, as JSON.
    pub fn payload(&self) -> String {
        // A map of strings and JSON values always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The job of an [`Expired`](EventKind::Expired) event (the stores'
    /// expiry sources build both); `None` for any other event.
    pub fn of_expiry(event: &NewEvent) -> Option<Self> {
        let (EventKind::Expired { reason, data }, Some(session)) = (&event.kind, &event.session)
        else {
            return None;
        };
        Some(PersistJob::Ended {
            session: session.clone(),
            user: event.user.clone(),
            why: Ending::expired(*reason),
            data: Some(data.clone()),
        })
    }

    /// Adds this job to `queue`, due after `delay`.
    ///
    /// # Errors
    /// As [`PersistQueue::enqueue`].
    pub async fn enqueue_on(&self, queue: &dyn PersistQueue, delay: Duration) -> Result<()> {
        queue.enqueue(&self.key(), &self.payload(), delay).await
    }
}

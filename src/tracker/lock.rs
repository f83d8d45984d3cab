//! [`TrackerLock`]: a held lock of a keyed session, fenced like session
//! locks: every write it makes carries its fence, and the store refuses it
//! once another holder has taken the lock since.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::ops::refused;
use super::{Tracked, Tracker, TrackerError};
use crate::events::KeyedChange;
use crate::store::keyed::{Guard, KeyedId, KeyedOp, KeyedRecord, KeyedReply, KeyedState};
use crate::store::lock_wait::{until_free, Attempt};

type Result<T, E = TrackerError> = std::result::Result<T, E>;

/// The lock of one keyed session, from [`Tracker::lock`] or
/// [`Tracker::get_locked`]. Writes through it are fenced: if the lease ran
/// out and another holder took the lock, they answer
/// [`LockLost`](TrackerError::LockLost) and write nothing.
///
/// Release it with [`release`](Self::release) (or end it with
/// [`finish`](Self::finish)); a lock dropped unreleased is released in the
/// background, and at worst lapses with its lease.
#[derive(Debug)]
pub struct TrackerLock<T: Serialize + DeserializeOwned + Send + Sync + 'static> {
    tracker: Tracker<T>,
    id: KeyedId,
    /// The application's key (for events).
    key: String,
    fence: u64,
    /// Whether the lock still needs releasing.
    held: bool,
}

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Tracker<T> {
    /// Takes the lock (waiting for other holders), answering the record
    /// read in the same step.
    pub(super) async fn lock_record(&self, key: &str) -> Result<(KeyedRecord, TrackerLock<T>)> {
        let id = self.id(key);
        let wait = self.settings.lock_wait;
        let got = until_free(
            wait,
            || self.store.keyed_release_notice(&id),
            || async {
                Ok::<_, TrackerError>(match attempt(self, &id).await? {
                    KeyedReply::Record(r) => Attempt::Done(Ok(r)),
                    KeyedReply::Held { lease_left } => Attempt::Held(lease_left),
                    other => Attempt::Done(Err(refused(other, KeyedState::Active))),
                })
            },
        )
        .await?;
        let record = got.ok_or(TrackerError::LockTimeout(wait))??;
        let Some(fence) = record.fence else {
            return Err(TrackerError::Store(crate::Error::store(
                "the keyed store answered a lock without a fence",
            )));
        };
        let lock = TrackerLock {
            tracker: self.clone(),
            id,
            key: key.to_owned(),
            fence,
            held: true,
        };
        Ok((record, lock))
    }
}

/// One `Lock` call that cannot leak the lock: it runs as a task of its own,
/// which releases a granted lock nobody is left to take (the caller was
/// cancelled), as session locks do.
async fn attempt<T>(tracker: &Tracker<T>, id: &KeyedId) -> Result<KeyedReply>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (store, owned, timeouts) = (
        Arc::clone(&tracker.store),
        id.clone(),
        tracker.settings.timeouts(),
    );
    let lease = tracker.settings.lock_lease;
    tokio::spawn(async move {
        let reply = store
            .keyed(&owned, KeyedOp::Lock { lease }, &timeouts)
            .await;
        if let Err(Ok(KeyedReply::Record(KeyedRecord {
            fence: Some(fence), ..
        }))) = tx.send(reply)
        {
            let _ = store
                .keyed(&owned, KeyedOp::Unlock { fence }, &timeouts)
                .await;
        }
    });
    rx.await
        .map_err(|_| crate::Error::store("the keyed lock attempt ended without an answer"))?
        .map_err(TrackerError::Store)
}

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> TrackerLock<T> {
    /// The lock's fence: grows with every acquisition of this session's lock.
    pub fn fence(&self) -> u64 {
        self.fence
    }

    /// Writes `value` under the lock (whatever the version). Answers the
    /// session as written.
    ///
    /// # Errors
    /// [`LockLost`](TrackerError::LockLost) (nothing written),
    /// [`Finished`](TrackerError::Finished), [`NotFound`](TrackerError::NotFound),
    /// [`TooLarge`](TrackerError::TooLarge).
    pub async fn update(&mut self, value: &T) -> Result<Tracked<T>> {
        let json = self.tracker.encode(value)?;
        let op = KeyedOp::Update {
            value: &json,
            guard: Guard::Fence(self.fence),
        };
        let r = self
            .tracker
            .record(&self.id, op, KeyedState::Active)
            .await?;
        let version = r.version;
        self.tracker
            .emit(&self.key, KeyedChange::Updated { version })
            .await;
        Tracked::decode(r)
    }

    /// Extends the lease to [`lock_lease`](super::TrackerSettings::lock_lease)
    /// from now.
    ///
    /// # Errors
    /// [`LockLost`](TrackerError::LockLost) if the lock is no longer ours.
    pub async fn renew(&self) -> Result<()> {
        let op = KeyedOp::RenewLock {
            fence: self.fence,
            lease: self.tracker.settings.lock_lease,
        };
        match self.tracker.call(&self.id, op).await? {
            KeyedReply::Done(true) => Ok(()),
            _ => Err(TrackerError::LockLost),
        }
    }

    /// Finishes the session under the lock, which ends with it. Answers the
    /// session as finished.
    ///
    /// # Errors
    /// [`LockLost`](TrackerError::LockLost) (nothing changed),
    /// [`Finished`](TrackerError::Finished), [`NotFound`](TrackerError::NotFound).
    pub async fn finish(mut self) -> Result<Tracked<T>> {
        let op = KeyedOp::Finish {
            guard: Some(Guard::Fence(self.fence)),
        };
        let r = self.tracker.record(&self.id, op, KeyedState::Active).await;
        if r.is_ok() {
            self.held = false;
            self.tracker.emit(&self.key, KeyedChange::Finished).await;
        }
        Tracked::decode(r?)
    }

    /// Releases the lock. Answers whether it was still ours.
    ///
    /// # Errors
    /// Only [`Store`](TrackerError::Store).
    pub async fn release(mut self) -> Result<bool> {
        self.held = false;
        let op = KeyedOp::Unlock { fence: self.fence };
        Ok(matches!(
            self.tracker.call(&self.id, op).await?,
            KeyedReply::Done(true)
        ))
    }
}

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Drop for TrackerLock<T> {
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        // Outside a runtime the lock lapses with its lease.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (store, id, fence) = (Arc::clone(&self.tracker.store), self.id.clone(), self.fence);
            let timeouts = self.tracker.settings.timeouts();
            rt.spawn(async move {
                let _ = store.keyed(&id, KeyedOp::Unlock { fence }, &timeouts).await;
            });
        }
    }
}

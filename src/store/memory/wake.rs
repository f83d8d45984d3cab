//! Waking lock waiters in [`MemoryStore`]: `unlock` wakes the longest
//! waiting waiter of the session at once (a per-session `Notify`, kept
//! only while the session has waiters; see `store/waiters.rs`), and a
//! `Held` answer carries the holder's remaining lease, so a waiter whose
//! holder never unlocks tries again when the lease has run out. Locks that
//! end without `unlock` (revocation, login, rotation) wake nobody: the
//! waiter's next attempt, at the latest after the manager's recheck
//! interval, finds the session gone.

use std::time::Duration;

use super::MemoryStore;
use crate::store::{LockOutcome, ReleaseNotice};
use crate::SessionId;

/// The answer to a lock attempt on a lock whose lease runs `left_ms` more
/// (on the store's clock).
pub(super) fn held(left_ms: i64) -> LockOutcome {
    let left = u64::try_from(left_ms).unwrap_or(0);
    LockOutcome::Held {
        lease_left: Some(Duration::from_millis(left)),
    }
}

impl MemoryStore {
    /// A notice for the next release of `id`'s lock (`None` once the
    /// registry watches its maximum of sessions: the waiter polls).
    pub(super) fn watch(&self, id: &SessionId) -> Option<ReleaseNotice> {
        self.inner.waiters.watch(id.clone())
    }

    /// Wakes the next waiter of `id`'s lock, just released.
    pub(super) fn wake_next(&self, id: &SessionId) {
        self.inner.waiters.wake_one(id);
    }

    /// How many sessions have lock waiters now (for tests).
    #[cfg(test)]
    pub(super) fn watched(&self) -> usize {
        self.inner.waiters.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::store::{ClientInfo, Data, LockOutcome, NewSession, SessionStore, Timeouts};
    use crate::MemoryStore;

    #[tokio::test]
    async fn unlock_wakes_a_waiter_and_the_registry_empties() {
        let store = MemoryStore::new();
        let t = Timeouts {
            idle: Duration::from_secs(60),
            absolute: Duration::from_secs(600),
            touch_interval: Duration::from_secs(1),
        };
        let id = crate::store::Token::generate(&crate::store::Tag::random()).id();
        let data = Data::new();
        let client = ClientInfo::default();
        store
            .create(
                &id,
                NewSession {
                    data: &data,
                    client: &client,
                },
                &t,
            )
            .await
            .unwrap();
        let lease = Duration::from_secs(10);
        let LockOutcome::Acquired { fence, .. } = store.lock(&id, lease, &t).await.unwrap() else {
            panic!("free lock");
        };
        let notice = store.release_notice(&id).expect("memory sends notices");
        let held = store.lock(&id, lease, &t).await.unwrap();
        let LockOutcome::Held { lease_left } = held else {
            panic!("held: {held:?}");
        };
        assert!(lease_left.is_some_and(|l| l <= lease && l > lease / 2));
        assert_eq!(store.watched(), 1);
        store.unlock(&id, fence).await.unwrap();
        tokio::time::timeout(Duration::from_secs(1), notice)
            .await
            .expect("woken by unlock, long before the lease");
        assert_eq!(store.watched(), 0);
    }
}

//! A store wrapper that fails chosen calls on demand, for tests of what a
//! request does when one store step of many fails.
//!
//! Kept in a file of its own and free of other test helpers: it spells out
//! the `SessionStore` trait, so it is the one place to adapt when the
//! trait's signature changes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sessionkit::store::{
    Delta, LoadOutcome, LockOutcome, Login, LoginOutcome, NewSession, ReleaseNotice, Retire,
    RotateOutcome, SaveOutcome, Timeouts, Written,
};
use sessionkit::{Error, Result, SessionId, SessionInfo, SessionStore};

/// Delegates every call to `inner`, except that an armed `save` or `load`
/// fails with `Error::store("injected")` (and disarms).
#[derive(Debug)]
pub struct FailingStore {
    inner: Arc<dyn SessionStore>,
    failing_saves: AtomicUsize,
    failing_loads: AtomicUsize,
}

impl FailingStore {
    pub fn new(inner: Arc<dyn SessionStore>) -> Self {
        FailingStore {
            inner,
            failing_saves: AtomicUsize::new(0),
            failing_loads: AtomicUsize::new(0),
        }
    }

    /// The next `save` fails.
    pub fn fail_next_save(&self) {
        self.failing_saves.store(1, Ordering::SeqCst);
    }

    /// The next `load` fails.
    pub fn fail_next_load(&self) {
        self.failing_loads.store(1, Ordering::SeqCst);
    }

    /// Nothing armed any more; answers whether something still was (a call
    /// the test expected never came).
    pub fn disarm(&self) -> bool {
        let saves = self.failing_saves.swap(0, Ordering::SeqCst);
        let loads = self.failing_loads.swap(0, Ordering::SeqCst);
        saves + loads > 0
    }

    fn take(counter: &AtomicUsize) -> Result<()> {
        let armed = counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if armed {
            Err(Error::store("injected"))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl SessionStore for FailingStore {
    async fn load(&self, id: &SessionId, timeouts: &Timeouts) -> Result<LoadOutcome> {
        Self::take(&self.failing_loads)?;
        self.inner.load(id, timeouts).await
    }

    async fn create(
        &self,
        id: &SessionId,
        session: NewSession<'_>,
        timeouts: &Timeouts,
    ) -> Result<Written> {
        self.inner.create(id, session, timeouts).await
    }

    async fn save(
        &self,
        id: &SessionId,
        delta: &Delta,
        timeouts: &Timeouts,
    ) -> Result<SaveOutcome> {
        Self::take(&self.failing_saves)?;
        self.inner.save(id, delta, timeouts).await
    }

    async fn login(&self, login: Login<'_>, timeouts: &Timeouts) -> Result<LoginOutcome> {
        self.inner.login(login, timeouts).await
    }

    async fn rotate(
        &self,
        old: &SessionId,
        new: &SessionId,
        retire: Retire,
        timeouts: &Timeouts,
    ) -> Result<RotateOutcome> {
        self.inner.rotate(old, new, retire, timeouts).await
    }

    async fn revoke(&self, id: &SessionId) -> Result<bool> {
        self.inner.revoke(id).await
    }

    async fn revoke_user(&self, user_id: &str, except: Option<&SessionId>) -> Result<u64> {
        self.inner.revoke_user(user_id, except).await
    }

    async fn sessions_of(&self, user_id: &str, timeouts: &Timeouts) -> Result<Vec<SessionInfo>> {
        self.inner.sessions_of(user_id, timeouts).await
    }

    async fn lock(
        &self,
        id: &SessionId,
        lease: Duration,
        timeouts: &Timeouts,
    ) -> Result<LockOutcome> {
        self.inner.lock(id, lease, timeouts).await
    }

    async fn renew_lock(&self, id: &SessionId, fence: u64, lease: Duration) -> Result<bool> {
        self.inner.renew_lock(id, fence, lease).await
    }

    async fn unlock(&self, id: &SessionId, fence: u64) -> Result<()> {
        self.inner.unlock(id, fence).await
    }

    fn release_notice(&self, id: &SessionId) -> Option<ReleaseNotice> {
        self.inner.release_notice(id)
    }
}

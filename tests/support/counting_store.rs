//! A store wrapper that counts `lock` attempts, and can hide the inner
//! store's release notices (its waiters then poll, as every store's did
//! before notices): for the tests and the measurement of lock waking.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sessionkit::store::{
    Delta, LoadOutcome, LockOutcome, Login, LoginOutcome, NewSession, ReleaseNotice, Retire,
    RotateOutcome, SaveOutcome, Timeouts, Written,
};
use sessionkit::{Result, SessionId, SessionInfo, SessionStore};

/// Delegates every call to `inner`, counting `lock` calls; with `notices`
/// off, answers no release notices.
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn SessionStore>,
    notices: bool,
    locks: AtomicU64,
    /// How long a `lock` answer is held back after the inner store gave it
    /// (a slow network: the store has granted the lock, the caller does not
    /// know yet).
    lock_answer_delay: Mutex<Duration>,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn SessionStore>, notices: bool) -> Self {
        CountingStore {
            inner,
            notices,
            locks: AtomicU64::new(0),
            lock_answer_delay: Mutex::new(Duration::ZERO),
        }
    }

    /// Holds back every later `lock` answer by `delay`.
    pub fn delay_lock_answers(&self, delay: Duration) {
        *self.lock_answer_delay.lock().unwrap() = delay;
    }

    /// How many `lock` calls were made so far.
    pub fn locks(&self) -> u64 {
        self.locks.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl SessionStore for CountingStore {
    async fn load(&self, id: &SessionId, timeouts: &Timeouts) -> Result<LoadOutcome> {
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
        self.locks.fetch_add(1, Ordering::SeqCst);
        let delay = *self.lock_answer_delay.lock().unwrap();
        let outcome = self.inner.lock(id, lease, timeouts).await;
        tokio::time::sleep(delay).await;
        outcome
    }

    async fn renew_lock(&self, id: &SessionId, fence: u64, lease: Duration) -> Result<bool> {
        self.inner.renew_lock(id, fence, lease).await
    }

    async fn unlock(&self, id: &SessionId, fence: u64) -> Result<()> {
        self.inner.unlock(id, fence).await
    }

    fn release_notice(&self, id: &SessionId) -> Option<ReleaseNotice> {
        if self.notices {
            self.inner.release_notice(id)
        } else {
            None
        }
    }
}

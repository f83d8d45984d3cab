//! A store wrapper that fails chosen calls on demand, for tests of what a
//! request does when one store step of many fails; it also counts `lock`
//! attempts, can hold back `lock` answers, and can hide the inner store's
//! release notices (its waiters then poll), for the tests and the
//! measurement of lock waking.
//!
//! Kept in a file of its own and free of other test helpers: it spells out
//! the `SessionStore` trait, so it is the one place to adapt when the
//! trait's signature changes.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sessionkit::store::{
    Delta, LoadOutcome, LockOutcome, Login, LoginOutcome, LogoutOutcome, NewSession, ReleaseNotice,
    Retire, RotateOutcome, SaveOutcome, Timeouts, Written,
};
use sessionkit::{Error, Result, SessionId, SessionInfo, SessionStore};

/// Delegates every call to `inner`, except that an armed `save` or `load`
/// fails with `Error::store("injected")` (and disarms); counts `lock`
/// calls; with `notices` off, answers no release notices.
#[derive(Debug)]
pub struct FailingStore {
    inner: Arc<dyn SessionStore>,
    failing_saves: AtomicUsize,
    failing_loads: AtomicUsize,
    notices: bool,
    locks: AtomicU64,
    /// How long a `lock` answer is held back after the inner store gave it
    /// (a slow network: the store has granted the lock, the caller does not
    /// know yet).
    lock_answer_delay: Mutex<Duration>,
    /// The same for `login` and `rotate` answers: the token changed in the
    /// store, the caller's timeout fires before it hears so.
    token_answer_delay: Mutex<Duration>,
}

impl FailingStore {
    pub fn new(inner: Arc<dyn SessionStore>) -> Self {
        Self::with_notices(inner, true)
    }

    /// With `notices` off, the inner store's release notices are hidden.
    pub fn with_notices(inner: Arc<dyn SessionStore>, notices: bool) -> Self {
        FailingStore {
            inner,
            failing_saves: AtomicUsize::new(0),
            failing_loads: AtomicUsize::new(0),
            notices,
            locks: AtomicU64::new(0),
            lock_answer_delay: Mutex::new(Duration::ZERO),
            token_answer_delay: Mutex::new(Duration::ZERO),
        }
    }

    /// How many `lock` calls were made so far.
    pub fn locks(&self) -> u64 {
        self.locks.load(Ordering::SeqCst)
    }

    /// Holds back every later `lock` answer by `delay`.
    pub fn delay_lock_answers(&self, delay: Duration) {
        *self.lock_answer_delay.lock().unwrap() = delay;
    }

    /// Holds back every later `login` and `rotate` answer by `delay`.
    pub fn delay_token_answers(&self, delay: Duration) {
        *self.token_answer_delay.lock().unwrap() = delay;
    }

    async fn after_token_delay<T>(&self, answer: T) -> T {
        let delay = *self.token_answer_delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        answer
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
        let outcome = self.inner.login(login, timeouts).await;
        self.after_token_delay(outcome).await
    }

    async fn rotate(
        &self,
        old: &SessionId,
        new: &SessionId,
        retire: Retire,
        timeouts: &Timeouts,
    ) -> Result<RotateOutcome> {
        let outcome = self.inner.rotate(old, new, retire, timeouts).await;
        self.after_token_delay(outcome).await
    }

    async fn revoke(&self, id: &SessionId) -> Result<bool> {
        self.inner.revoke(id).await
    }

    async fn logout(&self, id: &SessionId, timeouts: &Timeouts) -> Result<LogoutOutcome> {
        self.inner.logout(id, timeouts).await
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

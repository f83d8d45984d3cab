//! What the application writes: the [`PersistHook`] a worker calls, and the
//! [`PersistRecord`] it is called with.

use std::future::Future;

use async_trait::async_trait;

use crate::events::ExpiryReason;
use crate::store::BoxError;
use crate::SessionId;

/// One session's data to write to the application's own database.
#[derive(Debug, Clone, PartialEq)]
pub struct PersistRecord {
    /// The session (its public id, never the token).
    pub session: SessionId,
    /// Its user, if logged in.
    pub user: Option<String>,
    /// Its data: current for a live session, as it was when it ended
    /// otherwise. `None` where it was not known (see "Sources" in the
    /// [module docs](super)).
    pub data: Option<serde_json::Map<String, serde_json::Value>>,
    /// Why the hook is called.
    pub reason: PersistReason,
    /// Which attempt this is, from 1.
    pub attempt: u32,
}

/// Why a [`PersistRecord`] is handed to the hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PersistReason {
    /// The session changed, and the persistence interval passed since.
    Interval,
    /// [`persist_now`](crate::SessionManager::persist_now) or
    /// [`persist_all`](crate::SessionManager::persist_all).
    OnDemand,
    /// The session logged out.
    LoggedOut,
    /// The session was revoked.
    Revoked,
    /// A login over the per-user limit evicted the session.
    Evicted,
    /// The session expired.
    Expired(ExpiryReason),
}

/// The application's code that writes session data to its own database.
/// An error (or a panic, or running past the worker's lease) makes the
/// worker retry later, up to [`max_attempts`](super::PersistOptions::max_attempts).
///
/// A closure works through [`hook_fn`]:
///
/// ```
/// use sessionkit::persist::{hook_fn, PersistRecord};
///
/// let hook = hook_fn(|record: PersistRecord| async move {
///     println!("{} {:?} {:?}", record.session, record.user, record.data);
///     Ok::<(), std::io::Error>(())
/// });
/// # let _ = hook;
/// ```
#[async_trait]
pub trait PersistHook: Send + Sync + 'static {
    /// Writes `record`. Called at least once per occurrence, by one
    /// instance at a time; make it idempotent (an upsert by session id).
    ///
    /// # Errors
    /// Any: the worker retries with backoff, then gives up with an error
    /// in the log.
    async fn persist(&self, record: PersistRecord) -> Result<(), BoxError>;
}

/// A [`PersistHook`] from an async closure (see [`hook_fn`]).
#[derive(Debug, Clone)]
pub struct HookFn<F>(F);

/// The hook that calls `f`.
pub fn hook_fn<F, Fut, E>(f: F) -> HookFn<F>
where
    F: Fn(PersistRecord) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: Into<BoxError>,
{
    HookFn(f)
}

#[async_trait]
impl<F, Fut, E> PersistHook for HookFn<F>
where
    F: Fn(PersistRecord) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: Into<BoxError>,
{
    async fn persist(&self, record: PersistRecord) -> Result<(), BoxError> {
        (self.0)(record).await.map_err(Into::into)
    }
}

#[async_trait]
impl<H: PersistHook + ?Sized> PersistHook for std::sync::Arc<H> {
    async fn persist(&self, record: PersistRecord) -> Result<(), BoxError> {
        (**self).persist(record).await
    }
}

//! Waiting for a session lock held by another request, paced by
//! [`crate::store::lock_wait`]. See the "Waiting" guarantee in
//! [`crate::lock`].

use crate::store::lock_wait::{until_free, Attempt};
use crate::store::{Loaded, LockOutcome};
use crate::{Error, Result, SessionId, SessionManager};

/// One `lock` call that cannot leak the lock. The call runs as a task of
/// its own: if nobody is left to take a granted lock — the request was
/// cancelled (a client that hung up) or the attempt timed out after the store
/// granted it — the task releases it, where it would otherwise block the
/// session for a whole lease (found by the bench: wrk ending its warm-up cut
/// a request in the middle of a Redis `lock`, and every later request
/// waited 10 s).
async fn attempt(manager: &SessionManager, id: &SessionId) -> Result<LockOutcome> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (m, owned) = (manager.clone(), id.clone());
    tokio::spawn(async move {
        let lease = m.config().lock_lease;
        let outcome = m.store().lock(&owned, lease, m.timeouts()).await;
        if let Err(Ok(LockOutcome::Acquired { fence, .. })) = tx.send(outcome) {
            super::lock::release(&m, &owned, fence).await;
        }
    });
    manager
        .call(async {
            rx.await
                .map_err(|_| Error::store("the session lock attempt ended without an answer"))?
        })
        .await
}

/// Tries the lock of `id` until it is ours or the lock timeout has passed.
pub(super) async fn wait_for(manager: &SessionManager, id: &SessionId) -> Result<(u64, Loaded)> {
    let timeout = manager.config().lock_timeout;
    let store = manager.store();
    let got = until_free(
        timeout,
        || store.release_notice(id),
        || async {
            Ok::<_, Error>(match attempt(manager, id).await? {
                LockOutcome::Acquired { fence, loaded } => Attempt::Done(Ok((fence, loaded))),
                LockOutcome::Gone => Attempt::Done(Err(Error::SessionEnded)),
                LockOutcome::Held { lease_left } => Attempt::Held(lease_left),
            })
        },
    )
    .await?;
    match got {
        Some(settled) => settled,
        None => {
            tracing::debug!(session = %id, ?timeout, "gave up waiting for the session lock");
            Err(Error::LockTimeout(timeout))
        }
    }
}

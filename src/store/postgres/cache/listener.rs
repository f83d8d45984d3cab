//! The listener (one connection per store, `LISTEN` on the changes and
//! unlocked channels) and the heartbeat that vouches for it.
//!
//! The listener drops the ids each change notification names, counts an
//! empty one as a heartbeat, and wakes this instance's lock waiters on an
//! unlock (of a session, or of a keyed session released by another
//! instance). When its connection is lost (a network failure, a restart, a
//! `pg_terminate_backend`), notifications sent meanwhile are lost, so the
//! cache is emptied and stays off until a heartbeat is heard on the new
//! connection; lock waiters poll meanwhile.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::postgres::{PgListener, PgNotification, PgPoolOptions};

use crate::store::postgres::Inner;
use crate::SessionId;

/// The wait before connecting again after the listener failed to.
const RETRY: Duration = Duration::from_millis(200);

/// Starts the listener task; it ends when the store is dropped (its pool
/// of one connection is closed then, see `Inner`'s `Drop`).
pub(crate) fn spawn_listener(inner: &Arc<Inner>) {
    let weak = Arc::downgrade(inner);
    tokio::spawn(async move {
        while let Some(inner) = weak.upgrade() {
            let listener = subscribe(&inner).await;
            drop(inner);
            match listener {
                Some(listener) => listen(&weak, listener).await,
                None => tokio::time::sleep(RETRY).await,
            }
        }
    });
}

/// A one-connection pool for the listener, on the store pool's settings.
pub(crate) fn listener_pool(pool: &sqlx::PgPool) -> sqlx::PgPool {
    PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy_with((*pool.connect_options()).clone())
}

async fn subscribe(inner: &Inner) -> Option<PgListener> {
    let mut listener = PgListener::connect_with(&inner.listener_pool).await.ok()?;
    let channels = [
        inner.names.changes_channel(),
        inner.names.unlocked_channel(),
    ];
    listener
        .listen_all(channels.iter().map(String::as_str))
        .await
        .ok()?;
    inner.listening.store(true, Ordering::Release);
    Some(listener)
}

/// Handles notifications until the connection is lost or the store dropped.
async fn listen(weak: &Weak<Inner>, mut listener: PgListener) {
    loop {
        let next = listener.try_recv().await;
        let Some(inner) = weak.upgrade() else {
            return;
        };
        match next {
            Ok(Some(n)) => handle(&inner, &n),
            // Lost and (eagerly) reconnected, or failed: either way the
            // notifications in between are gone.
            Ok(None) | Err(_) => {
                lost(&inner);
                if next.is_err() {
                    return;
                }
            }
        }
    }
}

fn lost(inner: &Inner) {
    tracing::debug!("PostgresStore: listener connection lost; cache emptied");
    if let Some(cache) = &inner.cache {
        cache.reset();
    }
    inner.listening.store(false, Ordering::Release);
    // Waiters registered on the lost subscription would never hear their
    // release: wake them all, so they try again.
    inner.waiters.wake_all();
    inner.keyed_waiters.wake_all();
}

fn handle(inner: &Inner, n: &PgNotification) {
    let payload = n.payload();
    if n.channel() == inner.names.unlocked_channel() {
        // Keyed releases: `k:<origin>:<keyed id>`. This instance's own were
        // woken by the call that released them; waking again here would
        // send a second waiter to find the lock taken.
        if let Some(rest) = payload.strip_prefix("k:") {
            if let Some((origin, id)) = rest.split_once(':') {
                if origin != inner.origin {
                    inner.keyed_waiters.wake_one(&id.to_owned());
                }
            }
        } else if let Ok(id) = payload.parse::<SessionId>() {
            inner.waiters.wake_one(&id);
        }
        return;
    }
    // A notification after a reconnect means the subscription is back.
    inner.listening.store(true, Ordering::Release);
    let Some(cache) = &inner.cache else {
        return;
    };
    if payload.is_empty() {
        cache.heard();
        return;
    }
    for part in payload.split(',') {
        match part.parse::<SessionId>() {
            Ok(id) => cache.forget(&id),
            // Not ours to read: doubt ends in a reset.
            Err(_) => cache.reset(),
        }
    }
}

/// Starts the heartbeat: an empty notification on the changes channel
/// every `every`, through the store's pool.
pub(crate) fn spawn_heartbeat(inner: &Arc<Inner>, every: Duration) {
    let weak = Arc::downgrade(inner);
    tokio::spawn(async move {
        loop {
            let Some(inner) = weak.upgrade() else {
                return;
            };
            if let Err(e) = sqlx::query(&inner.sql.ping).execute(&inner.pool).await {
                tracing::debug!(error = %e, "PostgresStore: heartbeat failed");
            }
            drop(inner);
            tokio::time::sleep(every).await;
        }
    });
}

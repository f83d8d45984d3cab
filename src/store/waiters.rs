//! Release notices for session-lock waiters: [`ReleaseNotice`] (what
//! [`SessionStore::release_notice`](super::SessionStore::release_notice)
//! returns) and the registry the crate's stores keep them in.
//!
//! The registry holds one [`Notify`] per session that has waiters, and
//! only while it has them: the last notice of a session to drop removes its
//! entry. A release wakes *one* waiter (the longest waiting, FIFO), which
//! retries the lock; a waiter woken for a release it then does not use
//! (its wait had ended, it was dropped) passes the wake on to the next one
//! (`tokio::sync::Notify` forwards a `notify_one` its future did not
//! consume). Waking one rather than all spares the store a stampede of
//! failing attempts per release.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;

/// The most sessions a registry watches at once. Past it, further waiters
/// get no notice and fall back to polling: the registry stays bounded
/// whatever the load.
pub(crate) const MAX_WATCHED: usize = 65_536;

/// A future that completes when a session's lock may have been released:
/// the waiter should then try to take it again. A notice is a hint, never a
/// promise: it may come for a release another waiter wins, and a lock that
/// ends without a release (its lease ran out, its session ended) may send
/// none, so the waiter also bounds its wait by the holder's lease.
///
/// A store builds one with [`ReleaseNotice::new`] from any future that is
/// *already registered* when built: a release that happens after
/// [`release_notice`](super::SessionStore::release_notice) returned must
/// complete it, even if it is first polled later. With a
/// `tokio::sync::Notify`, that is `notified_owned()` with `enable()` called
/// on it before wrapping.
pub struct ReleaseNotice(Pin<Box<dyn Future<Output = ()> + Send>>);

impl ReleaseNotice {
    /// Wraps a registered future (see the type's docs).
    pub fn new(fut: impl Future<Output = ()> + Send + 'static) -> Self {
        ReleaseNotice(Box::pin(fut))
    }
}

impl Future for ReleaseNotice {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl fmt::Debug for ReleaseNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReleaseNotice")
    }
}

/// Waiters by session (a `SessionId` in memory, a hash part in Redis).
pub(crate) struct Waiters<K> {
    inner: Arc<Mutex<HashMap<K, Arc<Notify>>>>,
}

impl<K> Default for Waiters<K> {
    fn default() -> Self {
        Waiters {
            inner: Arc::default(),
        }
    }
}

impl<K> fmt::Debug for Waiters<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiters")
            .field(
                "sessions",
                &self
                    .inner
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .len(),
            )
            .finish()
    }
}

impl<K: Hash + Eq + Clone + Send + 'static> Waiters<K> {
    /// A notice for the next release of `key`, registered now (`None` when
    /// the registry is full).
    pub(crate) fn watch(&self, key: K) -> Option<ReleaseNotice> {
        let notify = {
            let mut map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            if !map.contains_key(&key) && map.len() >= MAX_WATCHED {
                return None;
            }
            map.entry(key.clone()).or_default().clone()
        };
        let mut notified = Box::pin(notify.notified_owned());
        // Registered before the caller's next lock attempt: a release
        // between that attempt's answer and the first poll is not missed.
        notified.as_mut().enable();
        let watch = Watch {
            notified: Some(notified),
            key,
            registry: Arc::downgrade(&self.inner),
        };
        Some(ReleaseNotice::new(watch))
    }

    /// Wakes the longest-waiting waiter of `key`, if any.
    pub(crate) fn wake_one(&self, key: &K) {
        let map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get(key) {
            // `notify_one` only: a registry entry exists only while a
            // notice is registered on it, so no permit is stored for a
            // session nobody waits for.
            n.notify_one();
        }
    }

    /// Wakes every waiter (the source of remote notices was lost or came
    /// back: whatever it missed, they retry now).
    // Only the Redis store loses track of releases (a dropped subscription).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn wake_all(&self) {
        let map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        for n in map.values() {
            n.notify_waiters();
        }
    }

    /// How many sessions have waiters now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

type Registry<K> = std::sync::Weak<Mutex<HashMap<K, Arc<Notify>>>>;

/// One registered notice; removes its session's entry when it is the last.
struct Watch<K: Hash + Eq> {
    notified: Option<Pin<Box<OwnedNotified>>>,
    key: K,
    registry: Registry<K>,
}

impl<K: Hash + Eq> Future for Watch<K> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.notified.as_mut() {
            Some(n) => n.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }
}

// `Watch` holds no self-references (the notified future is boxed).
impl<K: Hash + Eq> Unpin for Watch<K> {}

impl<K: Hash + Eq> Drop for Watch<K> {
    fn drop(&mut self) {
        let Some(registry) = self.registry.upgrade() else {
            return;
        };
        let mut map = registry.lock().unwrap_or_else(PoisonError::into_inner);
        // Dropped under the registry's lock, so no new notice can clone the
        // entry between the drop and the count.
        drop(self.notified.take());
        if map
            .get(&self.key)
            .is_some_and(|n| Arc::strong_count(n) == 1)
        {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_release_after_watch_is_not_missed_and_wakes_one() {
        let w: Waiters<u32> = Waiters::default();
        let first = w.watch(1).expect("room");
        let second = w.watch(1).expect("room");
        w.wake_one(&1);
        tokio::time::timeout(Duration::from_secs(1), first)
            .await
            .expect("the first waiter is woken");
        let second = tokio::time::timeout(Duration::from_millis(20), second).await;
        assert!(second.is_err(), "one release wakes one waiter");
        assert_eq!(w.len(), 0, "entries go with their last notice");
    }

    #[tokio::test]
    async fn an_unused_wake_passes_to_the_next_waiter() {
        let w: Waiters<u32> = Waiters::default();
        let first = w.watch(1).expect("room");
        let second = w.watch(1).expect("room");
        w.wake_one(&1);
        drop(first);
        tokio::time::timeout(Duration::from_secs(1), second)
            .await
            .expect("forwarded");
    }

    #[tokio::test]
    async fn no_waiter_no_permit() {
        let w: Waiters<u32> = Waiters::default();
        w.wake_one(&1);
        let late = w.watch(1).expect("room");
        let late = tokio::time::timeout(Duration::from_millis(20), late).await;
        assert!(late.is_err(), "a release before the watch is not stored");
    }

    #[tokio::test]
    async fn wake_all_wakes_every_session() {
        let w: Waiters<u32> = Waiters::default();
        let a = w.watch(1).expect("room");
        let b = w.watch(2).expect("room");
        w.wake_all();
        tokio::time::timeout(Duration::from_secs(1), async {
            a.await;
            b.await;
        })
        .await
        .expect("all woken");
    }
}

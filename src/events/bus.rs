//! The contract a store's event transport keeps ([`EventBus`]), and the
//! subscription it hands out ([`EventFeed`]).

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::event::{NewEvent, SessionEvent};
use crate::Result;

/// How many events a feed buffers for a subscriber that reads slowly.
const FEED_BUFFER: usize = 1024;

/// The longest pause between reads of a polling feed after failures.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Carries events between the instances that share a store.
///
/// # Implementing a custom bus
///
/// `publish` records the event *in the store* (so every instance on that
/// store can read it), giving it an id that increases in recording order
/// and the store's time. `subscribe` returns a feed of the events recorded
/// from then on, in that order, for as long as the feed lives: a feed whose
/// connection is lost reconnects and resumes after the last event it
/// delivered, so a subscriber misses nothing the store still holds. Build
/// the feed with [`EventFeed::spawn`].
#[async_trait]
pub trait EventBus: Send + Sync + std::fmt::Debug + 'static {
    /// Records `event` for every subscriber, on every instance.
    ///
    /// # Errors
    /// Store failures and timeouts; nothing was recorded (or, after a
    /// timeout, it may have been).
    async fn publish(&self, event: NewEvent) -> Result<SessionEvent>;

    /// A feed of the events recorded from now on.
    ///
    /// # Errors
    /// The store could not be reached to find where "now" is.
    async fn subscribe(&self) -> Result<EventFeed>;
}

/// Why [`EventFeed::recv`] gave no event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FeedError {
    /// The subscriber read too slowly and `missed` events were dropped
    /// for it (the feed goes on with the next ones).
    #[error("the event feed fell behind: {missed} events were dropped for it")]
    Lagged {
        /// How many.
        missed: u64,
    },
    /// The feed ended (its bus or runtime is gone).
    #[error("the event feed ended")]
    Closed,
}

/// The sending half a bus's feed task writes to.
#[derive(Debug, Clone)]
pub struct FeedSender(mpsc::Sender<Result<SessionEvent, FeedError>>);

impl FeedSender {
    /// Hands one event to the subscriber, waiting while its buffer is full;
    /// `false` once the subscriber dropped the feed (the task should end).
    pub async fn send(&self, event: SessionEvent) -> bool {
        self.0.send(Ok(event)).await.is_ok()
    }

    /// Tells the subscriber `missed` events were dropped for it.
    pub async fn lagged(&self, missed: u64) -> bool {
        self.0.send(Err(FeedError::Lagged { missed })).await.is_ok()
    }

    /// Whether the subscriber dropped the feed.
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

/// A subscription to a store's events, from
/// [`SessionManager::events`](crate::SessionManager::events). Dropping it
/// ends the subscription (and its background task).
#[derive(Debug)]
pub struct EventFeed {
    rx: mpsc::Receiver<Result<SessionEvent, FeedError>>,
    task: tokio::task::AbortHandle,
}

impl Drop for EventFeed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EventFeed {
    /// A feed filled by `task`, spawned on the current Tokio runtime; the
    /// task is aborted when the feed is dropped.
    ///
    /// # Panics
    /// Outside a Tokio runtime (as `tokio::spawn`).
    pub fn spawn<F, Fut>(task: F) -> Self
    where
        F: FnOnce(FeedSender) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(FEED_BUFFER);
        let task = tokio::spawn(task(FeedSender(tx))).abort_handle();
        EventFeed { rx, task }
    }

    /// A feed that polls the store: `read(after)` answers the entries
    /// recorded after the cursor `after`, oldest first, each with its
    /// cursor and its event (`None` for an entry that does not decode:
    /// skipped, after the store logged it). An empty answer waits `poll`;
    /// a failed one waits too, doubling up to 2 s, and reads again from
    /// the same cursor, so a reconnect loses nothing the store kept.
    pub fn polling<C, R, Fut>(start: C, poll: Duration, mut read: R) -> Self
    where
        C: Clone + Send + 'static,
        R: FnMut(C) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<(C, Option<SessionEvent>)>>> + Send,
    {
        Self::spawn(move |tx| async move {
            let mut cursor = start;
            let mut pause = poll;
            while !tx.is_closed() {
                match read(cursor.clone()).await {
                    Ok(entries) if entries.is_empty() => {
                        pause = poll;
                        tokio::time::sleep(poll).await;
                    }
                    Ok(entries) => {
                        pause = poll;
                        for (at, event) in entries {
                            cursor = at;
                            if let Some(event) = event {
                                if !tx.send(event).await {
                                    return;
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "event feed: read failed; retrying");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(BACKOFF_MAX);
                    }
                }
            }
        })
    }

    /// The events of this feed that `keep` accepts, in a feed of their
    /// own (a task forwards them; dropping the new feed ends both).
    ///
    /// # Panics
    /// Outside a Tokio runtime (as `tokio::spawn`).
    pub fn filtered(mut self, keep: impl Fn(&SessionEvent) -> bool + Send + 'static) -> EventFeed {
        Self::spawn(move |tx| async move {
            loop {
                let delivered = match self.recv().await {
                    Ok(event) if keep(&event) => tx.send(event).await,
                    Ok(_) => !tx.is_closed(),
                    Err(FeedError::Lagged { missed }) => tx.lagged(missed).await,
                    Err(FeedError::Closed) => false,
                };
                if !delivered {
                    return;
                }
            }
        })
    }

    /// The next event, in the order the store recorded them.
    ///
    /// # Errors
    /// [`FeedError::Lagged`] when events were dropped for a slow reader
    /// (call again for the next ones), [`FeedError::Closed`] when the feed
    /// ended.
    pub async fn recv(&mut self) -> Result<SessionEvent, FeedError> {
        self.rx.recv().await.unwrap_or(Err(FeedError::Closed))
    }
}

#[async_trait]
impl<B: EventBus + ?Sized> EventBus for std::sync::Arc<B> {
    async fn publish(&self, event: NewEvent) -> Result<SessionEvent> {
        (**self).publish(event).await
    }

    async fn subscribe(&self) -> Result<EventFeed> {
        (**self).subscribe().await
    }
}

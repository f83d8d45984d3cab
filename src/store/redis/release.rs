//! Release notices for lock waiters on Redis: one Pub/Sub subscription per
//! store, and the local registry of waiters it wakes.
//!
//! A `lock` attempt that finds the lock held sets the lock's *waiters key*
//! (`<prefix>:{<tag>}:w:<hash>`, the lease as its TTL); an `unlock` that
//! releases the lock deletes it and, if it existed, publishes
//! `<origin><hash>` on `<prefix>:lock-released` (both in `unlock.lua`), so
//! an uncontended unlock publishes nothing. Plain `PUBLISH` reaches every
//! subscriber of a Cluster whichever node it subscribed on (Cluster
//! broadcasts it over its bus), and the replicas of a primary (it is
//! replicated): one subscription on any reachable node is enough.
//!
//! The subscriber is a RESP3 connection of its own: to the URL's server, to
//! the first reachable seed node of a Cluster, or to the master the
//! sentinels name now. A notice wakes the longest waiting local waiter of
//! the session; the store's own unlocks wake theirs directly (and the
//! subscriber skips notices of its own origin). When the connection is
//! lost (a `Disconnection` push, a heartbeat `PING` unanswered) it wakes
//! every waiter, answers `None` to new waiters (they poll, as without
//! notices) until it has subscribed again, then wakes every waiter once
//! more for what it missed. A store built from a connection manager has no
//! client to subscribe with: its waiters always poll.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ::redis::{AsyncConnectionConfig, Client, PushInfo, PushKind, Value};

use super::builder::{RedisStoreBuilder, Source};
use super::connection::target::Target;
use super::connection::{timed, within};
use crate::store::keyed::KeyedId;
use crate::store::waiters::Waiters;
use crate::store::ReleaseNotice;
use crate::{Error, Result, SessionId};

/// The first pause before subscribing again after a failure; it doubles up
/// to [`RESUBSCRIBE_MAX`].
const RESUBSCRIBE_MIN: Duration = Duration::from_millis(100);
const RESUBSCRIBE_MAX: Duration = Duration::from_secs(2);

/// A store's release notices: the waiters and the subscription's task.
pub(super) struct Releases {
    shared: Arc<Shared>,
    /// `<prefix>:lock-released`.
    channel: String,
    /// This store's origin, `<16 hex digits>:`, prefixed to its notices.
    origin: String,
    task: Option<tokio::task::AbortHandle>,
}

struct Shared {
    waiters: Waiters<String>,
    /// Whether the subscription is up: only then are notices promised.
    live: AtomicBool,
}

impl Drop for Releases {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl Releases {
    /// A notice for the next release of `id`'s lock, while the
    /// subscription is up.
    pub(super) fn watch(&self, id: &SessionId) -> Option<ReleaseNotice> {
        if !self.shared.live.load(Ordering::Acquire) {
            return None;
        }
        self.shared.waiters.watch(id.hash_part().to_owned())
    }

    /// Wakes the next local waiter of `id`'s lock (this store released it).
    pub(super) fn wake_local(&self, id: &SessionId) {
        self.shared.waiters.wake_one(&id.hash_part().to_owned());
    }

    /// [`watch`](Self::watch) for a keyed session's lock: its waiters are
    /// registered as `k.<id>` (`.` is in no session hash part), the tail
    /// of its notices.
    pub(super) fn watch_keyed(&self, id: &KeyedId) -> Option<ReleaseNotice> {
        if !self.shared.live.load(Ordering::Acquire) {
            return None;
        }
        self.shared.waiters.watch(keyed_waiter(id))
    }

    /// [`wake_local`](Self::wake_local) for a keyed session's lock.
    pub(super) fn wake_keyed(&self, id: &KeyedId) {
        self.shared.waiters.wake_one(&keyed_waiter(id));
    }

    /// The channel notices go to.
    pub(super) fn channel(&self) -> &str {
        &self.channel
    }

    /// This store's origin, which its notices start with.
    pub(super) fn origin(&self) -> &str {
        &self.origin
    }
}

/// The waiter key, and notice tail, of a keyed session's lock.
pub(super) fn keyed_waiter(id: &KeyedId) -> String {
    format!("k.{id}")
}

impl RedisStoreBuilder {
    /// The release notices of the store being built, its subscriber
    /// started on the current runtime (none for a store built from a
    /// connection manager, or outside a Tokio runtime).
    pub(super) fn releases(&self, prefix: &str) -> Result<Releases> {
        let runtime = tokio::runtime::Handle::try_current().ok();
        let targets = match &self.source {
            Source::Url(url) => {
                vec![Target::Fixed(Box::new(
                    Client::open(url.as_str()).map_err(Error::store)?,
                ))]
            }
            Source::Client(c) => vec![Target::Fixed(Box::new(c.clone()))],
            Source::Cluster(nodes) => nodes
                .iter()
                .map(|n| Client::open(n.as_str()).map(|c| Target::Fixed(Box::new(c))))
                .collect::<std::result::Result<_, _>>()
                .map_err(Error::store)?,
            Source::Sentinel { .. } => vec![self.sentinel_target()?],
            Source::None | Source::Manager(_) => Vec::new(),
        };
        let shared = Arc::new(Shared {
            waiters: Waiters::default(),
            live: AtomicBool::new(false),
        });
        let channel = format!("{prefix}:lock-released");
        let origin = format!("{:016x}:", rand::random::<u64>());
        let runtime = runtime.filter(|_| !targets.is_empty());
        let task = runtime.map(|runtime| {
            let sub = Subscriber {
                targets,
                shared: shared.clone(),
                channel: channel.clone(),
                origin: origin.clone(),
                connect_limit: self.connect_limit(),
                command_timeout: self.command_timeout,
                heartbeat: self.heartbeat,
            };
            runtime.spawn(sub.run()).abort_handle()
        });
        Ok(Releases {
            shared,
            channel,
            origin,
            task,
        })
    }
}

/// The subscription's task.
struct Subscriber {
    targets: Vec<Target>,
    shared: Arc<Shared>,
    channel: String,
    origin: String,
    connect_limit: Duration,
    command_timeout: Duration,
    heartbeat: Duration,
}

impl Subscriber {
    /// Subscribes, listens until the connection is lost, and again, for as
    /// long as the store lives (its `Releases` aborts the task).
    async fn run(self) {
        let mut pause = RESUBSCRIBE_MIN;
        let mut next = 0;
        loop {
            let target = &self.targets[next % self.targets.len()];
            match self.listen(target).await {
                Ok(()) => pause = RESUBSCRIBE_MIN,
                Err(e) => {
                    tracing::debug!(error = %e, "lock release notices: subscription failed");
                    // Another seed node next time (Cluster).
                    next += 1;
                }
            }
            self.shared.live.store(false, Ordering::Release);
            // Whatever they were waiting for, they try again (and poll
            // until the subscription is back).
            self.shared.waiters.wake_all();
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RESUBSCRIBE_MAX);
        }
    }

    /// One subscription, until its connection is lost.
    async fn listen(&self, target: &Target) -> Result<()> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PushInfo>();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_limit))
            .set_response_timeout(Some(self.command_timeout))
            .set_push_sender(tx);
        let limit = self.connect_limit;
        // RESP3: notices arrive as pushes on a connection that also
        // answers the heartbeat's `PING`.
        let client = timed(limit, target.client()).await??;
        let mut conn = within(
            limit,
            client.get_multiplexed_async_connection_with_config(&config),
        )
        .await?;
        within(self.command_timeout, conn.subscribe(&self.channel)).await?;
        self.shared.live.store(true, Ordering::Release);
        // Waiters that registered while it was down poll; those woken now
        // retry at once rather than at their next poll.
        self.shared.waiters.wake_all();
        loop {
            match tokio::time::timeout(self.heartbeat, rx.recv()).await {
                Ok(Some(push)) => match push.kind {
                    PushKind::Message => self.on_notice(&push.data),
                    PushKind::Disconnection => return Ok(()),
                    _ => {}
                },
                Ok(None) => return Ok(()),
                Err(_) => {
                    let ping = ::redis::cmd("PING");
                    let answer = within(self.command_timeout, ping.query_async::<Value>(&mut conn));
                    if answer.await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// A `[channel, notice]` push: wake the next waiter of its session.
    fn on_notice(&self, data: &[Value]) {
        let Some(Value::BulkString(notice)) = data.get(1) else {
            return;
        };
        let Ok(notice) = std::str::from_utf8(notice) else {
            return;
        };
        if notice.starts_with(&self.origin) {
            return;
        }
        if let Some((_, hash)) = notice.split_once(':') {
            self.shared.waiters.wake_one(&hash.to_owned());
        }
    }
}

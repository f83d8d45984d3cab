//! Expiry events on Redis ([`RedisStoreBuilder::expiry_events`]): sessions
//! that run out of time with no request are reported, with their user and
//! data, from Redis keyspace notifications.
//!
//! A key that expires is gone when Redis reports it, so each session gets a
//! *shadow*: `<prefix>:{<tag>}:x:<hash>`, an empty string whose TTL is the
//! session's `@exp`, written wherever the session's TTL is (`refresh` in
//! `common.lua`). The session hash itself lives [`EXPIRY_GRACE`] longer.
//! When the shadow expires, Redis publishes its name on
//! `__keyevent@<db>__:expired`; every instance's watcher hears it and runs
//! `expire.lua`, which reads and deletes the session in one step, so one
//! instance gets its user and data and publishes the event on the stream.
//!
//! Notifications are per server: the watcher subscribes on the URL's
//! server, the master the sentinels name, or every primary of a Cluster
//! (found with `CLUSTER NODES`; when one subscription ends, all are made
//! again, so a failover or resharding is followed). Each subscription first
//! makes sure the server's `notify-keyspace-events` includes `E` and `x`,
//! setting it with `CONFIG SET` if not (unless
//! [`configure_notifications(false)`](RedisStoreBuilder::configure_notifications)).
//!
//! Pub/Sub is at most once: a notice sent while no watcher is subscribed
//! (every instance down, or reconnecting) is lost, and that session then
//! goes at the end of its grace with no event.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Client, ConnectionAddr, PushKind, Value};

use super::builder::{RedisStoreBuilder, Source};
use super::connection::target::{resp3, Target};
use super::connection::{timed, within};
use super::{Inner, RedisStore};
use crate::events::EventBus;
use crate::{Error, Result, SessionId};

/// How much longer than its expiry a session hash lives when expiry events
/// are on: the time a watcher has to claim it after its shadow expired.
/// Redis expires keys in a background sweep, which can lag behind their
/// TTL under load; five minutes, as Spring Session keeps.
pub const EXPIRY_GRACE: Duration = Duration::from_secs(300);

const RESUBSCRIBE_MIN: Duration = Duration::from_millis(100);
const RESUBSCRIBE_MAX: Duration = Duration::from_secs(2);

/// The running watcher; dropped with the store, which stops it.
pub(super) struct Watch(tokio::task::AbortHandle);

impl Drop for Watch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Where the watcher subscribes.
enum Nodes {
    /// One server: the URL's, the client's, or the master the sentinels
    /// name at each (re)connection.
    One(Target),
    /// Every primary of the Cluster these seed nodes belong to.
    Cluster(Vec<Client>),
}

/// What every subscription of a watcher shares.
struct Ctx {
    store: Weak<Inner>,
    /// `<prefix>:{`, what every key of the store starts with.
    start: String,
    connect_limit: Duration,
    command_timeout: Duration,
    heartbeat: Duration,
    /// Whether subscriptions check and set `notify-keyspace-events`.
    configure: bool,
}

impl RedisStoreBuilder {
    /// Where expiry notices are heard, for this builder's source.
    fn expiry_nodes(&self) -> Result<Nodes> {
        let open = |url: &str| Client::open(url).map_err(Error::store);
        match &self.source {
            Source::Url(url) => Ok(Nodes::One(Target::Fixed(Box::new(open(url)?)))),
            Source::Client(c) => Ok(Nodes::One(Target::Fixed(Box::new(c.clone())))),
            Source::Cluster(seeds) => seeds
                .iter()
                .map(|s| open(s))
                .collect::<Result<_>>()
                .map(Nodes::Cluster),
            Source::Sentinel { .. } => Ok(Nodes::One(self.sentinel_target()?)),
            Source::None | Source::Manager(_) => Err(Error::store(
                "RedisStore: expiry events subscribe with connections of their own, so the \
                 store must be built from a URL, a client, Cluster nodes or sentinels, not \
                 from a connection manager",
            )),
        }
    }

    /// Starts the expiry watcher of `store`, after checking (and if need
    /// be setting) every server's notification flags: a server that
    /// refuses fails the build here, not later in a log (unless the store
    /// connects lazily).
    pub(super) async fn watch_expiry(&self, store: &RedisStore) -> Result<Watch> {
        let ctx = Arc::new(Ctx {
            store: Arc::downgrade(&store.inner),
            start: format!("{}:{{", store.key_prefix()),
            connect_limit: self.connect_limit(),
            command_timeout: self.command_timeout,
            heartbeat: self.heartbeat,
            configure: self.configure_notifications,
        });
        let nodes = self.expiry_nodes()?;
        // A lazy store does not reach Redis at build time: its watcher
        // checks (and logs) when it first subscribes.
        let checked = if self.lazy || !self.configure_notifications {
            Vec::new()
        } else {
            ctx.clients(&nodes).await?
        };
        for client in checked {
            let mut conn =
                within(ctx.connect_limit, client.get_multiplexed_async_connection()).await?;
            ensure_notices(&mut conn, ctx.command_timeout).await?;
        }
        let task = tokio::spawn(run(ctx, nodes));
        Ok(Watch(task.abort_handle()))
    }
}

/// Subscribes, and again after every loss, for as long as the store lives.
async fn run(ctx: Arc<Ctx>, nodes: Nodes) {
    let mut pause = RESUBSCRIBE_MIN;
    loop {
        match watch_all(&ctx, &nodes).await {
            Ok(()) => pause = RESUBSCRIBE_MIN,
            Err(e) => {
                tracing::warn!(error = %e, "RedisStore expiry events: subscription failed; retrying")
            }
        }
        if ctx.store.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RESUBSCRIBE_MAX);
    }
}

/// One subscription per server, until the first of them ends.
async fn watch_all(ctx: &Arc<Ctx>, nodes: &Nodes) -> Result<()> {
    let mut set = tokio::task::JoinSet::new();
    for client in ctx.clients(nodes).await? {
        set.spawn(listen(ctx.clone(), client));
    }
    // The topology may have changed: the others are dropped (aborted) and
    // made again.
    match set.join_next().await {
        Some(Ok(result)) => result,
        Some(Err(e)) => Err(Error::store(e)),
        None => Ok(()),
    }
}

impl Ctx {
    /// The servers to subscribe on now, as RESP3 clients.
    async fn clients(&self, nodes: &Nodes) -> Result<Vec<Client>> {
        match nodes {
            Nodes::One(target) => Ok(vec![timed(self.connect_limit, target.client()).await??]),
            Nodes::Cluster(seeds) => {
                let mut failure = None;
                for seed in seeds {
                    match self.primaries(seed).await {
                        Ok(found) => return Ok(found),
                        Err(e) => failure = Some(e),
                    }
                }
                Err(failure.unwrap_or_else(|| Error::store("no Redis Cluster seed node")))
            }
        }
    }

    /// The primaries `CLUSTER NODES` on `seed` lists, with the seed's
    /// settings (password, TLS).
    async fn primaries(&self, seed: &Client) -> Result<Vec<Client>> {
        let mut conn = within(self.connect_limit, seed.get_multiplexed_async_connection()).await?;
        let nodes: String = within(
            self.command_timeout,
            ::redis::cmd("CLUSTER").arg("NODES").query_async(&mut conn),
        )
        .await?;
        let info = seed.get_connection_info();
        let mut out = Vec::new();
        for (host, port) in primary_addrs(&nodes) {
            let mut addr = info.addr().clone();
            match &mut addr {
                ConnectionAddr::Tcp(h, p)
                | ConnectionAddr::TcpTls {
                    host: h, port: p, ..
                } => {
                    if !host.is_empty() {
                        *h = host.to_owned();
                    }
                    *p = port;
                }
                _ => continue,
            }
            let client = Client::open(info.clone().set_addr(addr)).map_err(Error::store)?;
            out.push(resp3(&client)?);
        }
        if out.is_empty() {
            return Err(Error::store("CLUSTER NODES lists no reachable primary"));
        }
        Ok(out)
    }

    /// A `[channel, key]` notice: claims and reports the session if the key
    /// is one of this store's shadows.
    async fn on_expired(&self, data: &[Value]) {
        let Some(Value::BulkString(key)) = data.get(1) else {
            return;
        };
        let Some(id) = std::str::from_utf8(key)
            .ok()
            .and_then(|k| shadow_id(&self.start, k))
        else {
            return;
        };
        let Some(inner) = self.store.upgrade() else {
            return;
        };
        let store = RedisStore { inner };
        match store.claim_expired(&id).await {
            Ok(None) => {}
            Ok(Some(event)) => {
                if store.persist_on() {
                    store.enqueue_expiry(&event).await;
                }
                if let Err(e) = store.events().publish(event).await {
                    tracing::warn!(error = %e, session = %id, "expired session's event lost");
                }
            }
            Err(e) => tracing::warn!(error = %e, session = %id, "expired session not claimed"),
        }
    }
}

/// Listens on one server until its connection is lost.
async fn listen(ctx: Arc<Ctx>, client: Client) -> Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(ctx.connect_limit))
        .set_response_timeout(Some(ctx.command_timeout))
        .set_push_sender(tx);
    let mut conn = within(
        ctx.connect_limit,
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await?;
    if ctx.configure {
        ensure_notices(&mut conn, ctx.command_timeout).await?;
    }
    let db = client.get_connection_info().redis_settings().db();
    let channel = format!("__keyevent@{db}__:expired");
    within(ctx.command_timeout, conn.subscribe(&channel)).await?;
    loop {
        match tokio::time::timeout(ctx.heartbeat, rx.recv()).await {
            Ok(Some(push)) => match push.kind {
                PushKind::Message => ctx.on_expired(&push.data).await,
                PushKind::Disconnection => return Ok(()),
                _ => {}
            },
            Ok(None) => return Ok(()),
            Err(_) => {
                let ping = ::redis::cmd("PING");
                within(ctx.command_timeout, ping.query_async::<Value>(&mut conn)).await?;
            }
        }
    }
}

/// Makes sure the server sends keyevent notices of expired keys (`E` and
/// `x` in `notify-keyspace-events`; `A` includes `x`), adding them to what
/// is set. A server that refuses `CONFIG` (managed services often do) is a
/// clear error saying what to set instead.
async fn ensure_notices(conn: &mut MultiplexedConnection, limit: Duration) -> Result<()> {
    const P: &str = "notify-keyspace-events";
    let refused = |flags: &str, e: Error| {
        Error::store(format!(
            "RedisStore: expiry events need the server's {P} to include `E` and `x` (it is \
             {flags:?}), and setting it failed: {e}. Set `{P} Ex` in the server's \
             configuration (on a managed service, its parameter group) and build the store \
             with configure_notifications(false)"
        ))
    };
    let current: HashMap<String, String> = within(
        limit,
        ::redis::cmd("CONFIG").arg("GET").arg(P).query_async(conn),
    )
    .await
    .map_err(|e| refused("unknown", e))?;
    let flags = current.get(P).cloned().unwrap_or_default();
    let Some(wanted) = with_expired_notices(&flags) else {
        return Ok(());
    };
    within(
        limit,
        ::redis::cmd("CONFIG")
            .arg("SET")
            .arg(P)
            .arg(&wanted)
            .query_async::<()>(conn),
    )
    .await
    .map_err(|e| refused(&flags, e))
}

/// The flags to set so that `flags` sends keyevent notices of expired
/// keys, or `None` when it does already.
fn with_expired_notices(flags: &str) -> Option<String> {
    let keyevent = flags.contains('E');
    let expired = flags.contains('x') || flags.contains('A');
    if keyevent && expired {
        return None;
    }
    let mut wanted = flags.to_owned();
    if !keyevent {
        wanted.push('E');
    }
    if !expired {
        wanted.push('x');
    }
    Some(wanted)
}

/// The `(host, port)` of every primary in a `CLUSTER NODES` reply that is
/// not marked failing (an empty host: the node we asked).
fn primary_addrs(nodes: &str) -> Vec<(&str, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let (_id, addr, flags) = (fields.next()?, fields.next()?, fields.next()?);
            let flags: Vec<&str> = flags.split(',').collect();
            let usable = flags.contains(&"master")
                && !flags
                    .iter()
                    .any(|f| matches!(*f, "fail" | "fail?" | "noaddr"));
            if !usable {
                return None;
            }
            let (host, port) = addr.split('@').next()?.rsplit_once(':')?;
            Some((host, port.parse().ok()?))
        })
        .collect()
}

/// The session whose shadow is `key`, if `key` (`<start><tag>}:x:<hash>`)
/// is one of the store's shadows.
fn shadow_id(start: &str, key: &str) -> Option<SessionId> {
    let (tag, hash) = key.strip_prefix(start)?.split_once("}:x:")?;
    super::args::id_in_tag(tag, hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notice_flags_are_added_to_what_is_set() {
        assert_eq!(with_expired_notices("").as_deref(), Some("Ex"));
        assert_eq!(with_expired_notices("Kg").as_deref(), Some("KgEx"));
        assert_eq!(with_expired_notices("Ex"), None);
        assert_eq!(with_expired_notices("KEA"), None);
        assert_eq!(with_expired_notices("Kx").as_deref(), Some("KxE"));
    }

    #[test]
    fn primaries_are_read_from_cluster_nodes() {
        let nodes = "a 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\n\
                     b 127.0.0.1:7001@17001 slave a 0 0 1 connected\n\
                     c 10.0.0.2:7002@17002 master,fail - 0 0 2 connected\n\
                     d :7003@17003 master - 0 0 3 connected 5461-16383\n";
        assert_eq!(primary_addrs(nodes), vec![("127.0.0.1", 7000), ("", 7003)]);
    }

    #[test]
    fn only_the_stores_shadows_name_sessions() {
        let id: SessionId = format!("abcdefgh.{}", "A".repeat(22)).parse().unwrap();
        let key = format!("app:{{abcdefgh}}:x:{}", id.hash_part());
        assert_eq!(shadow_id("app:{", &key), Some(id.clone()));
        assert_eq!(shadow_id("other:{", &key), None);
        assert_eq!(shadow_id("app:{", &key.replace(":x:", ":s:")), None);
    }
}

//! [`RedisStore`]: the production store. Sessions live in Redis (one
//! server, a Redis Cluster, or a Sentinel-monitored primary), every
//! write is one atomic step (a Lua script, or for a plain save one
//! `MULTI`/`EXEC`), a read is one pipeline of plain commands (a script
//! under Sentinel or with the client-side cache), and expiry follows the
//! Redis clock.
//!
//! Requires Redis 7.0 or later (`PEXPIRETIME`, `#!lua` script flags).
//!
//! ```no_run
//! use sessionkit::{redis::RedisStore, SessionConfig, SessionManager};
//!
//! # #[tokio::main] async fn main() -> sessionkit::Result<()> {
//! let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
//! let manager = SessionManager::new(store, SessionConfig::default());
//! # let _ = manager; Ok(()) }
//! ```
//!
//! # Topologies
//!
//! One connection type (`connection/mod.rs`) serves the three: a
//! `ConnectionManager` for one server, redis-rs's `ClusterConnection` for a
//! Cluster ([`RedisStoreBuilder::cluster`]; primaries only), and for
//! Sentinel ([`RedisStoreBuilder::sentinel`]) a link that asks the sentinels
//! for the master whenever it (re)connects, and drops its connection on a
//! connection error, a `READONLY` reply or a heartbeat finding the server
//! demoted. With the client-side cache, script calls go over tracked links
//! instead, one per server (one per primary on a Cluster, routed by slot
//! from the store's own `CLUSTER SLOTS` map: `connection/nodes.rs`).
//! [`RedisStoreBuilder::durable_revocations`] adds a `WAIT` after every
//! revocation, on a connection of its own.
//!
//! # Key layout
//!
//! `<prefix>` is `sessionkit` unless [`RedisStoreBuilder::key_prefix`] says
//! otherwise; `<tag>` is the 8-character slot tag a token carries (random
//! for anonymous sessions, derived from the user id for logged-in ones);
//! `<hash>` is the 22-character hash part of the [`SessionId`] (a truncated
//! SHA-256 of the token: the raw token is never stored).
//!
//! | key | type | holds |
//! |-----|------|-------|
//! | `<prefix>:{<tag>}:s:<hash>` | HASH | one session |
//! | `<prefix>:{<tag>}:l:<hash>` | STRING | the session's lock: the holder's fence, with the lease as its TTL |
//! | `<prefix>:{<tag>}:w:<hash>` | STRING | set while requests wait for that lock (the lease as its TTL): `unlock` then publishes a release notice |
//! | `<prefix>:{<tag>}:idx` | ZSET | the logged-in sessions of that tag: member = `<hash>`, score = the session's expiry (ms, Redis clock) |
//! | `<prefix>:{<keyed id>}:k` | HASH | one keyed session ([`Tracker`](crate::tracker::Tracker)), active or finished; see `keyed.rs` |
//! | `<prefix>:events` | STREAM | lifecycle events ([`RedisStore::events`]), field `e` = the event's JSON; only with events on |
//! | `<prefix>:{persist}:due`, `:jobs`, `:meta` | ZSET, HASH, HASH | the persistence jobs ([`RedisStore::persist_queue`]): key → due time (ms, Redis clock); key → payload JSON; key → `generation,tries,leased`; only with persistence on (see `persist.rs`) |
//! | `<prefix>:{<tag>}:x:<hash>` | STRING | the session's expiry shadow (empty, its TTL the session's `@exp`): only with [`RedisStoreBuilder::expiry_events`], whose session hashes then live [`EXPIRY_GRACE`] past their expiry (see `expiry.rs`) |
//!
//! A session hash has one field per data key, `d:<key>`, holding the value's
//! JSON, and metadata fields: `@user` (absent while anonymous), `@created`,
//! `@seen`, `@issued` (token issued), `@deadline` (absolute deadline), all in
//! milliseconds on the Redis clock, `@ver` (bumped by every write), `@ua`
//! (with `@ua1`..`@ua3`: the `User-Agent` in pieces of at most 64 bytes, so
//! the hash keeps Redis's compact encoding at the default configuration),
//! `@ip`, and `@fence` (the latest lock fence issued: `HINCRBY` on every
//! acquisition, absent until the first). Where a session used to be, a short-lived marker hash may stand:
//! `@alias = <new hash>` after periodic rotation (the old token keeps reading
//! and writing the new session for the grace period), or `@moved = 1` after
//! login or explicit rotation (reads find nothing; writes are dropped
//! without clearing the client's new cookie). Markers expire after the
//! grace period.
//!
//! # Expiry
//!
//! Every session key has a TTL of `min(idle timeout, absolute deadline -
//! now)`, computed inside the scripts from Redis `TIME`, and every read also
//! checks both deadlines against the Redis time (`TIME` in a script; the
//! Lua-free read takes it from the key itself, `PEXPIRETIME - PTTL`), so a
//! session is never served late even if its key lingers. Reads refresh
//! `@seen` and the TTL at most once per touch interval: the Lua-free read
//! hands a due touch to the load script; the client cache queues the touch
//! of a hit and sends it in batches (every second, or per 128), except close
//! to the deadline. An index's TTL is kept at or beyond the expiry of its
//! longest-lived member, so it disappears with its last session.
//!
//! Index scores are the members' expiry times, moved by every write that
//! moves a session's expiry, so expired members leave an index in one
//! `ZREMRANGEBYSCORE` and `ZCARD` counts the rest: a login with no per-user
//! limit never reads the index, and one with a limit reads only the members
//! over it, soonest-expiring first (for sessions below their absolute
//! deadline, that is the least recently used).
//!
//! # The index, and why it is per tag
//!
//! `revoke(id)` knows only the id, so the index key must follow from the id:
//! it is the index of the id's tag. All of a user's sessions carry the user's
//! tag, so a user's index is their tag's index. Two users may share a 48-bit
//! tag, so every script that reads an index keeps only members whose
//! session's `@user` is the user asked about and never touches the others.
//! Scripts that read an index (`revoke_user`, `sessions_of`, and login over
//! a limit) drop members whose session is gone, expired, corrupt or a
//! marker: listing and "log out everywhere" cost O(the user's sessions),
//! never a scan of the keyspace, and a login O(log n).
//!
//! # Atomicity and Redis Cluster
//!
//! Each [`SessionStore`](crate::SessionStore) method is one script call (one round trip, atomic
//! in Redis), with these exceptions:
//! - **a save without a lock fence and without `clear`, on one server
//!   without the client cache**: one `MULTI`/`EXEC` on the session
//!   key that reads the markers and times, then writes the delta (a second
//!   round trip only when the session ended, rotated or expired meanwhile,
//!   to take the delta back out, or once per touch interval for the
//!   idle-deadline touch; see `save.rs`). On a Cluster, under Sentinel
//!   and with the cache the script stays;
//! - **login from a session in another slot on a Redis Cluster** (an
//!   anonymous session, or switching users): the new session lives in the
//!   user's slot and the old one in its own, which no single Cluster-safe
//!   script may touch. The login script runs first (new session with the
//!   request's own changes, index, per-user limit — atomically); only if it
//!   succeeded does a second script take the old session's latest data and
//!   retire it as moved, and a third call (a `save` of the new session,
//!   which no other request knows yet) writes the taken keys the login did
//!   not set. On a server without Cluster (checked with `INFO cluster` when
//!   the store is built; a lazily connected store assumes Cluster), slots
//!   do not constrain scripts, and the login script reads and retires the
//!   old session itself. If a later call fails, the login still stands
//!   with the request's own changes and a warning is logged; the old
//!   session stays as it was until it expires, and gains nothing. A login
//!   from a session already in the user's slot (a re-login) is one script.
//! - **an alias left by periodic rotation**: the script returns the new hash
//!   part and the store repeats the call on the new id (same slot). This
//!   only happens during the rotation grace period.
//!
//! # Session locks
//!
//! `lock` is one script: it checks the session (following an alias, like
//! `load`), answers `held` if the lock key exists, else bumps `@fence`,
//! sets the lock key to the new fence with `PX <lease>`, and returns the
//! whole session; a fenced `save` compares `@fence` with the delta's fence
//! before writing anything. `renew_lock` (`PEXPIRE` if the key still holds
//! the caller's fence) and `unlock` (`DEL` if it does) follow an alias too.
//! A lock key with no TTL, or not a string (only outside interference makes
//! one), is dropped by the next `lock` rather than blocking the session
//! forever. Every script that ends a session deletes its lock key (the
//! index-reading ones derive it from the index key, like the session key);
//! `rotate` moves it to the new id behind an alias and drops it with a moved
//! marker; a lock key outlives a session that merely expired by at most its
//! lease. See [`crate::lock`] for the guarantees and the failover caveat.
//!
//! Waiters are woken, not left to poll: an `unlock` that releases a lock
//! some `lock` found held within the lease (the `w` key) publishes its hash
//! part on `<prefix>:lock-released`, which each store subscribes to once
//! (any Cluster node will do: Cluster broadcasts `PUBLISH`).
//!
//! Every call's KEYS share one hash slot (`{<tag>}`; see [`key_slot`]). The
//! index-reading scripts derive a member's session key from the index key
//! they were given (same prefix and `{tag}`, so the same slot), because which
//! sessions a user has is only known inside the script. Every script starts
//! with `#!lua`, which makes Redis Cluster refuse any key, declared or not,
//! outside the slot of the first: a slip cannot silently go cross-slot.
//!
//! # Costs
//!
//! Round trips per request through the middleware: a read-only request 1
//! (the read pipeline `HGETALL`, `PEXPIRETIME`, `PTTL`; an `EVALSHA` load
//! under Sentinel; touches are batched); a write 2 (read, save: a
//! `MULTI`/`EXEC` of `HMGET`, `PEXPIRETIME`, `PTTL`, `HSET`/`HDEL`,
//! `HINCRBY`, `PEXPIRE NX` where the transaction applies); a login 1 without a prior session, 2 from an anonymous
//! session (load, login; 3 on a Cluster: load, login, retire, plus a
//! save when the old session holds data to carry over); a
//! logout 2 (load, revoke); a write under the session lock 4 (load, lock,
//! save, unlock), plus one `lock` per wake while another request holds it
//! (and one `PUBLISH` in `unlock` when a `lock` failed within the lease),
//! and one `renew_lock` per third of the lease while the guard lives.
//!
//! With the client-side cache and the session cached: a read-only request
//! 0; a write 1 (save; the save refills the cache, so the next request is
//! a hit too); a login from a cached session 1; a logout 1. The first read
//! of a session on an instance, and the first read after another instance
//! changed it, cost 1 as without the cache. A lock is never served from
//! the cache (taking it is a write: it bumps `@fence`, which invalidates
//! other instances' copies); its reply refreshes the taker's copy, so a
//! locked write costs 3 when the session is cached.
//!
//! # Client-side cache
//!
//! Off by default; [`RedisStoreBuilder::client_cache`] turns it on and
//! documents the trade-offs for users. How it works:
//!
//! - **Connection.** A second connection per server (per primary on a
//!   Cluster), RESP3, opened by the store itself (not a `ConnectionManager`,
//!   which would reconnect behind the store's back without re-running
//!   `CLIENT TRACKING`), with `CLIENT TRACKING ON NOLOOP`. Every script call
//!   goes over the link of its key's server; the plain connection stays for
//!   [`RedisStore::connection`]. Each connection has an epoch; tracking is
//!   on before a connection is handed out.
//! - **Tracking mode.** The default mode: Redis remembers the keys this
//!   connection read, including keys read by commands inside a Lua script
//!   (checked on Redis 7.0: an `HGETALL` inside `EVALSHA` registers the key
//!   for the calling client, and another client's `HSET` then pushes
//!   `invalidate`), so each instance only hears about sessions it holds.
//!   BCAST (every change under the prefix, to every instance) was not
//!   needed. `NOLOOP` spares the store pushes for its own writes — which
//!   it applies to its copy itself, so a write keeps the cache warm — but a
//!   write also takes the key out of the writer's tracking table, so every
//!   script that writes a session the store keeps cached reads it again
//!   last (`load` after a touch, `save`, `touch`). Scripts that end a
//!   session (`revoke`, `rotate`, `login`, `retire`, `revoke_user`) need no
//!   re-read: the store drops its copy.
//! - **Races.** Pushes are handled on the connection's reader, in socket
//!   order, before the replies behind them reach their callers. Every call
//!   on a cached key holds a ticket (start time, connection epoch); a reply
//!   is cached only if no invalidation for the key, no failed or dropped
//!   call on it and no reset happened since the ticket started, if its
//!   connection is still live, and if its `(@ver, @seen)` stamp is not older
//!   than one already applied by an overlapping call (NOLOOP: our own writes
//!   send no push, so concurrent calls of one instance are ordered by
//!   stamps). A cancelled call (a timed-out future) counts as failed.
//! - **Reconnection.** A `Disconnection` push, a call failing with a
//!   connection error or `READONLY`, or a heartbeat `ROLE` (every
//!   heartbeat interval, on its own schedule) unanswered or answered by a
//!   replica empties that server's cache and retires the epoch; the next
//!   call connects again and switches tracking on before anything is cached
//!   again. A hit is served only if its server answered within two
//!   heartbeat intervals, which bounds what a partitioned instance serves.
//! - **Touches.** A hit that finds the idle-expiry touch due queues it; a
//!   background task sends the queue every second or per 128, as a
//!   pipeline of `touch` calls (one per key: Cluster-safe).

mod aliases;
mod args;
mod builder;
mod cache;
mod conn;
mod connection;
mod events;
mod expiry;
mod keyed;
mod keys;
mod locking;
mod login;
mod logout;
mod open;
mod ops;
mod persist;
mod read;
mod release;
mod replies;
mod reply;
mod save;
mod scripts;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use self::builder::RedisStoreBuilder;
pub use self::cache::ClientCacheStats;
use self::connection::nodes::CacheNodes;
pub use self::connection::RedisConnection;
use self::connection::{within, Backend};
pub use self::events::RedisEvents;
pub use self::expiry::EXPIRY_GRACE;
pub use self::keys::key_slot;
use self::keys::Keys;
pub use self::persist::RedisQueue;
use self::scripts::Scripts;
use crate::clock::duration_ms;
use crate::token::Tag;
use crate::{Result, SessionId};

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "sessionkit";

/// Durations sent to the scripts are capped so that `now + duration` stays
/// an exact integer in Lua's doubles (below 2^53); 2^47 ms is 4,460 years.
const MAX_MS: i64 = 1 << 47;

fn ms(d: Duration) -> i64 {
    duration_ms(d).min(MAX_MS)
}

/// A lock lease in ms: `SET ... PX` and `PEXPIRE` need at least 1.
fn lease_ms(d: Duration) -> i64 {
    ms(d).max(1)
}

/// A [`SessionStore`](crate::SessionStore) in Redis: atomic Lua scripts, a per-user index, keys
/// that are safe for Redis Cluster, and expiry on the Redis clock. See the
/// [module docs](self) for the key layout.
///
/// `Clone` is cheap (one shared, auto-reconnecting multiplexed connection,
/// plus the tracked connection of the client-side cache when it is on);
/// share one store between every manager of a process: its cache is shared
/// too.
///
/// ```no_run
/// use std::time::Duration;
/// use sessionkit::{redis::RedisStore, SessionConfig, SessionManager};
///
/// # #[tokio::main] async fn main() -> sessionkit::Result<()> {
/// let store = RedisStore::builder()
///     .url("redis://127.0.0.1:6379")
///     .key_prefix("myapp:sessions")
///     .command_timeout(Duration::from_millis(500))
///     .build()
///     .await?;
/// let manager = SessionManager::new(store, SessionConfig::default().single_login(true));
/// # let _ = manager; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// The topology's plain connection.
    backend: Backend,
    keys: Keys,
    scripts: Scripts,
    command_timeout: Duration,
    /// Whether every script call must stay in one hash slot: true on a
    /// Cluster, or when the server could not be asked (lazy connect).
    one_slot_per_call: bool,
    /// The tracked links of the client-side cache, when
    /// [`RedisStoreBuilder::client_cache`] is on. With the cache on, every
    /// script call goes over them: `NOLOOP` spares the store invalidations
    /// for its own writes, which it applies itself.
    cache: Option<CacheNodes>,
    /// The heartbeat interval (cache links, Sentinel).
    heartbeat: Duration,
    /// Replicas and timeout of [`RedisStoreBuilder::durable_revocations`].
    durable: Option<(u64, Duration)>,
    /// The connection revocations go over when they are durable.
    durable_backend: Option<Backend>,
    /// Lock release notices (`release.rs`).
    releases: release::Releases,
    /// The expiry watcher, when expiry events are on (`expiry.rs`).
    expiry: std::sync::OnceLock<expiry::Watch>,
    /// How many entries the event stream keeps: the last
    /// [`RedisEvents::retained`] set, which the watcher's expiry events
    /// trim to as well.
    events_retained: std::sync::atomic::AtomicU64,
    /// Whether [`RedisStore::persist_queue`] was called: the expiry watcher
    /// then enqueues a job per expired session it claims.
    persist_on: std::sync::atomic::AtomicBool,
    /// The persistence queue's scripts (`persist.rs`).
    persist_scripts: persist::PersistScripts,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("topology", &self.inner.backend.topology())
            .field("key_prefix", &self.inner.keys.prefix())
            .field("command_timeout", &self.inner.command_timeout)
            .field("client_cache", &self.client_cache_stats())
            .field("durable_revocations", &self.inner.durable)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to `url` with the default settings (see
    /// [`RedisStoreBuilder`]).
    ///
    /// # Errors
    /// An invalid URL, or Redis unreachable within 2 s.
    pub async fn connect(url: &str) -> Result<RedisStore> {
        Self::builder().url(url).build().await
    }

    /// A builder with the defaults: prefix `sessionkit`, command and
    /// connection timeouts 2 s, 6 reconnection retries 100 ms to 2 s apart,
    /// eager connection.
    pub fn builder() -> RedisStoreBuilder {
        RedisStoreBuilder::new()
    }

    /// The key prefix in use.
    pub fn key_prefix(&self) -> &str {
        self.inner.keys.prefix()
    }

    /// A connection to the store's Redis (a cheap clone of the store's
    /// plain one), for your own commands; on a Cluster it routes by key, on
    /// Sentinel it goes to the current master.
    ///
    /// # Errors
    /// With Sentinel, no master reachable within the connection timeout.
    pub async fn connection(&self) -> Result<RedisConnection> {
        self.inner.backend.connection().await
    }

    /// The Redis key of a session, for inspection and tests.
    pub fn session_key(&self, id: &SessionId) -> String {
        self.inner.keys.session(id)
    }

    /// The Redis key of a session's lock, for inspection and tests.
    pub fn lock_key(&self, id: &SessionId) -> String {
        self.inner.keys.lock(id)
    }

    /// The Redis key of the index that holds a user's sessions.
    pub fn user_index_key(&self, user_id: &str) -> String {
        self.inner.keys.index(Tag::for_user(user_id).as_str())
    }

    pub(crate) async fn preload_scripts(&self) -> Result<()> {
        // On a Cluster, `SCRIPT LOAD` goes to every primary. A replica
        // promoted later answers NOSCRIPT once; the call then loads it.
        let limit = self.inner.command_timeout;
        let persist = self.inner.persist_scripts.all();
        for script in self.inner.scripts.all().into_iter().chain(persist) {
            let mut conn = self.connection().await?;
            within(limit, script.load_async(&mut conn)).await?;
        }
        Ok(())
    }

    /// How many sessions the client-side cache holds now (0 without one).
    /// For tests and monitoring: it never exceeds the `max_sessions` given
    /// to [`RedisStoreBuilder::client_cache`].
    pub fn cached_len(&self) -> usize {
        self.caches().iter().map(|c| c.len()).sum()
    }

    /// The counters of the client-side cache (hits, misses, invalidations,
    /// resets, touches; on a Cluster, summed over the primaries' caches),
    /// or `None` without one.
    pub fn client_cache_stats(&self) -> Option<ClientCacheStats> {
        self.inner.cache.as_ref()?;
        Some(
            self.caches()
                .iter()
                .fold(ClientCacheStats::default(), |sum, c| sum.plus(&c.stats())),
        )
    }
}

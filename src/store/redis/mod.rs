//! [`RedisStore`]: the production store. Sessions live in Redis (standalone,
//! or a Redis Cluster node), every operation is one atomic Lua script, and
//! expiry follows the Redis clock.
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
//! | `<prefix>:{<tag>}:idx` | ZSET | the logged-in sessions of that tag: member = `<hash>`, score = last seen (ms) |
//!
//! A session hash has one field per data key, `d:<key>`, holding the value's
//! JSON, and metadata fields: `@user` (absent while anonymous), `@created`,
//! `@seen`, `@issued` (token issued), `@deadline` (absolute deadline), all in
//! milliseconds on the Redis clock, `@ver` (bumped by every write), `@ua`,
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
//! checks both deadlines against `TIME`, so a session is never served late
//! even if its key lingers. Reads refresh `@seen` and the TTL at most once
//! per touch interval. An index's TTL is kept at or beyond the expiry of its
//! longest-lived member, so it disappears with its last session.
//!
//! # The index, and why it is per tag
//!
//! `revoke(id)` knows only the id, so the index key must follow from the id:
//! it is the index of the id's tag. All of a user's sessions carry the user's
//! tag, so a user's index is their tag's index. Two users may share a 48-bit
//! tag, so every script that reads an index keeps only members whose
//! session's `@user` is the user asked about and never touches the others.
//! Scripts that read an index (login, `revoke_user`, `sessions_of`) drop
//! members whose session is gone, expired, corrupt or a marker: listing,
//! "log out everywhere" and the per-user limits cost O(the user's sessions),
//! never a scan of the keyspace.
//!
//! # Atomicity and Redis Cluster
//!
//! Each [`SessionStore`] method is one script call (one round trip, atomic
//! in Redis), with these exceptions:
//! - **login from a session in another slot on a Redis Cluster node** (an
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
//! Every call's KEYS share one hash slot (`{<tag>}`; see [`key_slot`]). The
//! index-reading scripts derive a member's session key from the index key
//! they were given (same prefix and `{tag}`, so the same slot), because which
//! sessions a user has is only known inside the script. Every script starts
//! with `#!lua`, which makes Redis Cluster refuse any key, declared or not,
//! outside the slot of the first: a slip cannot silently go cross-slot.
//!
//! # Costs
//!
//! Commands per request through the middleware: a read-only request 1
//! (`EVALSHA` load, touching at most once per touch interval); a write 2
//! (load, save); a login 1 without a prior session, 2 from an anonymous
//! session (load, login; 3 on a Cluster node: load, login, retire, plus a
//! save when the old session holds data to carry over); a
//! logout 2 (load, revoke); a write under the session lock 4 (load, lock,
//! save, unlock), plus one `lock` per poll while another request holds it,
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
//! - **Connection.** A second connection, RESP3, opened by the store itself
//!   (not a `ConnectionManager`, which would reconnect behind the store's
//!   back without re-running `CLIENT TRACKING`), with `CLIENT TRACKING ON
//!   NOLOOP`. Every script call goes over it; the shared connection stays
//!   for [`RedisStore::connection`]. Each connection has an epoch; tracking
//!   is on before a connection is handed out.
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
//!   connection error, or an unanswered heartbeat `PING` (sent when the
//!   connection has been quiet for a second and the cache is not empty)
//!   empties the cache and retires the epoch; the next call connects again
//!   and switches tracking on before anything is cached again.
//! - **Touches.** A hit that finds the idle-expiry touch due queues it; a
//!   background task sends the queue every second or per 128, as a
//!   pipeline of `touch` calls (one per key: Cluster-safe).

mod builder;
mod cache;
mod keys;
mod reply;
mod scripts;
mod touches;
mod tracked;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, MultiplexedConnection};
use ::redis::{RedisError, Script, ScriptInvocation, Value};
use async_trait::async_trait;

pub use self::builder::RedisStoreBuilder;
pub use self::cache::ClientCacheStats;
use self::cache::{ClientCache, Ticket};
pub use self::keys::key_slot;
use self::keys::Keys;
use self::scripts::Scripts;
use self::tracked::TrackedLink;
use crate::clock::duration_ms;
use crate::config::{MaxSessionsPolicy, UserLimit};
use crate::store::{
    ClientInfo, Data, Delta, LoadOutcome, Loaded, LockOutcome, Login, LoginOutcome, Meta,
    NewSession, Retire, RotateOutcome, SaveOutcome, SessionInfo, SessionStore, Timeouts, Written,
    MAX_ALIAS_HOPS,
};
use crate::token::Tag;
use crate::{Error, Result, SessionId};

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

/// A [`SessionStore`] in Redis: atomic Lua scripts, a per-user index, keys
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
    conn: ConnectionManager,
    keys: Keys,
    scripts: Scripts,
    command_timeout: Duration,
    /// Whether every script call must stay in one hash slot: true on a
    /// Cluster node, or when the server could not be asked (lazy connect).
    one_slot_per_call: bool,
    /// The client-side cache, when [`RedisStoreBuilder::client_cache`] is on.
    cache: Option<Cached>,
}

/// A client-side cache and the tracked connection that feeds it. With the
/// cache on, every script call goes over that connection: `NOLOOP` spares
/// the store invalidations for its own writes, which it applies itself.
struct Cached {
    cache: Arc<ClientCache>,
    link: Arc<TrackedLink>,
}

/// The connection one call goes over.
enum Conn {
    /// The shared auto-reconnecting connection (no cache).
    Shared(ConnectionManager),
    /// The tracked connection of the cache, and its epoch.
    Tracked {
        conn: MultiplexedConnection,
        epoch: u64,
    },
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("key_prefix", &self.inner.keys.prefix())
            .field("command_timeout", &self.inner.command_timeout)
            .field(
                "client_cache",
                &self.inner.cache.as_ref().map(|c| c.cache.stats()),
            )
            .finish_non_exhaustive()
    }
}

/// Runs a future under a time limit.
async fn timed<T>(limit: Duration, fut: impl std::future::Future<Output = T>) -> Result<T> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| Error::StoreTimeout(limit))
}

/// A Redis error as a sessionkit error.
fn redis_error(e: RedisError, limit: Duration) -> Error {
    if e.is_timeout() {
        Error::StoreTimeout(limit)
    } else {
        Error::store(e)
    }
}

/// A script invocation with these KEYS.
fn invocation<'a>(script: &'a Script, keys: &[String]) -> ScriptInvocation<'a> {
    let mut inv = script.prepare_invoke();
    for key in keys {
        inv.key(key);
    }
    inv
}

/// The session id of a hash part under an id's tag.
fn id_in_tag(tag: &str, hash_part: &str) -> Option<SessionId> {
    format!("{tag}.{hash_part}").parse().ok()
}

/// Where the alias in a reply (`{'alias', target hash part}`) leads: a
/// session id of the same tag. `None` when the target is not a hash part
/// (corrupt data: treated as no session).
fn alias_target(script: &str, asked: &SessionId, items: &[Value]) -> Option<SessionId> {
    let target = reply::text(script, reply::at(script, items, 1).ok()?).ok()?;
    id_in_tag(asked.tag(), &target)
}

/// `@ua`, `@ip` and `d:<key>` pairs for a new session.
fn new_session_fields(
    inv: &mut ScriptInvocation<'_>,
    data: &Data,
    client: &ClientInfo,
) -> Result<()> {
    client_fields(inv, client);
    data_fields(inv, data.iter())
}

/// `@ua`, `@ip` pairs.
fn client_fields(inv: &mut ScriptInvocation<'_>, client: &ClientInfo) {
    if let Some(ua) = &client.user_agent {
        inv.arg("@ua").arg(ua);
    }
    if let Some(ip) = client.ip {
        inv.arg("@ip").arg(ip.to_string());
    }
}

/// `d:<key>`, JSON pairs.
fn data_fields<'k>(
    inv: &mut ScriptInvocation<'_>,
    pairs: impl Iterator<Item = (&'k String, &'k serde_json::Value)>,
) -> Result<()> {
    for (key, value) in pairs {
        let json = serde_json::to_string(value).map_err(|source| Error::Serialize {
            key: key.clone(),
            source,
        })?;
        inv.arg(format!("d:{key}")).arg(json);
    }
    Ok(())
}

fn warn_corrupt(id: &SessionId, reason: &str) {
    tracing::warn!(
        session = %id,
        reason,
        "ignoring a corrupt session in Redis; the request gets a fresh session"
    );
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

    /// The store's connection (a cheap clone), for your own commands.
    pub fn connection(&self) -> ConnectionManager {
        self.inner.conn.clone()
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
        let limit = self.inner.command_timeout;
        for script in self.inner.scripts.all() {
            let mut conn = self.inner.conn.clone();
            timed(limit, script.load_async(&mut conn))
                .await?
                .map_err(|e| redis_error(e, limit))?;
        }
        Ok(())
    }

    /// How many sessions the client-side cache holds now (0 without one).
    /// For tests and monitoring: it never exceeds the `max_sessions` given
    /// to [`RedisStoreBuilder::client_cache`].
    pub fn cached_len(&self) -> usize {
        self.inner.cache.as_ref().map_or(0, |c| c.cache.len())
    }

    /// The counters of the client-side cache (hits, misses, invalidations,
    /// resets, touches), or `None` without one.
    pub fn client_cache_stats(&self) -> Option<ClientCacheStats> {
        self.inner.cache.as_ref().map(|c| c.cache.stats())
    }

    /// The connection for the next call: the tracked one with a cache.
    async fn conn(&self) -> Result<Conn> {
        match &self.inner.cache {
            None => Ok(Conn::Shared(self.inner.conn.clone())),
            Some(c) => {
                let (conn, epoch) = c.link.get().await?;
                Ok(Conn::Tracked { conn, epoch })
            }
        }
    }

    /// Runs one script call on `conn` under the command timeout.
    async fn exec(&self, conn: &mut Conn, inv: &ScriptInvocation<'_>) -> Result<Value> {
        let limit = self.inner.command_timeout;
        match conn {
            Conn::Shared(conn) => timed(limit, inv.invoke_async::<Value>(conn))
                .await?
                .map_err(|e| redis_error(e, limit)),
            Conn::Tracked { conn, epoch } => {
                let result = timed(limit, inv.invoke_async::<Value>(conn)).await?;
                if let Some(c) = &self.inner.cache {
                    match &result {
                        Ok(_) => c.link.replied(),
                        Err(e) => c.link.failed(*epoch, e),
                    }
                }
                result.map_err(|e| redis_error(e, limit))
            }
        }
    }

    /// Runs one script call under the command timeout.
    async fn run(&self, inv: &ScriptInvocation<'_>) -> Result<Value> {
        let mut conn = self.conn().await?;
        self.exec(&mut conn, inv).await
    }

    /// Starts a call on session key `key` for the cache, if there is one.
    fn ticket(&self, conn: &Conn, key: &str) -> Option<Ticket> {
        match (&self.inner.cache, conn) {
            (Some(c), Conn::Tracked { epoch, .. }) => Some(c.cache.begin(key.to_owned(), *epoch)),
            _ => None,
        }
    }

    /// Drops a session this store ended from its cache.
    fn forget(&self, id: &SessionId) {
        if let Some(c) = &self.inner.cache {
            c.cache.forget(&self.inner.keys.session(id));
        }
    }

    /// A write failed after it may have run, and which sessions it ended is
    /// unknown (login evictions, `revoke_user`): empty the cache.
    fn forget_all(&self) {
        if let Some(c) = &self.inner.cache {
            c.cache.reset();
        }
    }

    /// `ARGV` flag of the load and save scripts: whether this store keeps a
    /// client-side cache.
    fn cache_flag(&self) -> &'static str {
        if self.inner.cache.is_some() {
            "1"
        } else {
            "0"
        }
    }

    /// The session in a `load` or `lock` reply (`{'ok', now, exp, touched,
    /// fields, ...}`); `None` when its fields are corrupt.
    fn loaded(&self, script: &str, id: SessionId, items: &[Value]) -> Result<Option<Loaded>> {
        let now_ms = reply::int(script, reply::at(script, items, 1)?)?;
        let expires_at_ms = reply::int(script, reply::at(script, items, 2)?)?;
        let touched = reply::int(script, reply::at(script, items, 3)?)? != 0;
        let fields = match reply::at(script, items, 4)? {
            Value::Array(fields) => fields,
            other => {
                return Err(reply::bad(
                    script,
                    format_args!("expected fields, got {}", reply::kind(other)),
                ))
            }
        };
        match reply::session_fields(fields) {
            Ok((meta, data)) => Ok(Some(Loaded {
                id,
                meta,
                data,
                now_ms,
                expires_at_ms,
                touched,
            })),
            Err(reason) => {
                warn_corrupt(&id, &reason);
                Ok(None)
            }
        }
    }

    /// One save script call; with a cache, the session it leaves is cached
    /// (the reply then carries every field).
    async fn save_once(
        &self,
        id: &SessionId,
        delta: &Delta,
        timeouts: &Timeouts,
    ) -> Result<(Vec<Value>, Option<Ticket>)> {
        let keys = self.inner.keys.session_and_index(id);
        let mut inv = invocation(&self.inner.scripts.save, &keys);
        inv.arg(ms(timeouts.idle))
            .arg(id.hash_part())
            .arg(if delta.clear { "1" } else { "0" })
            .arg(self.cache_flag())
            .arg(delta.fence.map(|f| f.to_string()).unwrap_or_default())
            .arg(delta.remove.len());
        for key in &delta.remove {
            inv.arg(format!("d:{key}"));
        }
        data_fields(&mut inv, delta.set.iter().map(|(k, v)| (k, v)))?;
        let mut conn = self.conn().await?;
        let ticket = self.ticket(&conn, &keys[0]);
        let items = reply::array("save", self.exec(&mut conn, &inv).await?)?;
        Ok((items, ticket))
    }

    /// Caches the session a save left (`{'ok', now, exp, fields}`).
    fn cache_saved(&self, ticket: Ticket, id: &SessionId, items: &[Value], written: Written) {
        let Some(Value::Array(fields)) = items.get(3) else {
            return; // Dropped: the key leaves the cache.
        };
        match reply::session_fields(fields) {
            Ok((meta, data)) => ticket.fresh(&Loaded {
                id: id.clone(),
                meta,
                data,
                now_ms: written.now_ms,
                expires_at_ms: written.expires_at_ms,
                touched: false,
            }),
            Err(_) => ticket.gone(),
        }
    }

    /// Runs `renew_lock` or `unlock` on `id`'s lock, following a rotation
    /// alias once. The status word of the reply; `None` when an alias led
    /// nowhere usable. Neither script writes a session, so the client-side
    /// cache is not involved.
    async fn lock_call(
        &self,
        script_name: &str,
        script: &Script,
        id: &SessionId,
        args: impl Fn(&mut ScriptInvocation<'_>),
    ) -> Result<Option<String>> {
        let mut target = id.clone();
        for _ in 0..=MAX_ALIAS_HOPS {
            let keys = self.inner.keys.lock_and_session(&target);
            let mut inv = invocation(script, &keys);
            args(&mut inv);
            let items = reply::array(script_name, self.run(&inv).await?)?;
            let status = reply::status(script_name, &items)?;
            if status != "alias" {
                return Ok(Some(status));
            }
            match alias_target(script_name, &target, &items) {
                Some(next) => target = next,
                None => break,
            }
        }
        Ok(None)
    }

    /// The second step of a login whose old session lives in another
    /// slot: takes the old session's latest data and retires it. `None`
    /// when it was not live (or the call failed: the login stands, the old
    /// session stays as it was until it expires, and a warning is logged).
    async fn retire_elsewhere(
        &self,
        keys: &[String],
        old: &SessionId,
        grace: Duration,
    ) -> Option<Data> {
        const S: &str = "retire";
        let mut inv = invocation(&self.inner.scripts.retire, keys);
        inv.arg(ms(grace)).arg(old.hash_part());
        let outcome = async {
            let mut conn = self.conn().await?;
            let ticket = self.ticket(&conn, &keys[0]);
            let items = reply::array(S, self.exec(&mut conn, &inv).await?);
            if let Some(t) = ticket {
                t.gone();
            }
            let items = items?;
            if reply::int(S, reply::at(S, &items, 0)?)? == 0 {
                return Ok(None);
            }
            let fields = reply::array(S, reply::at(S, &items, 1)?.clone())?;
            let hash = reply::text(S, reply::at(S, &items, 2)?)?;
            if let Some(retired) = id_in_tag(old.tag(), &hash) {
                self.forget(&retired);
            }
            reply::data_fields(&fields)
                .map(Some)
                .map_err(|e| reply::bad(S, e))
        };
        match outcome.await {
            Ok(data) => data,
            Err(e) => {
                tracing::warn!(
                    session = %old,
                    error = %e,
                    "login succeeded but the previous session could not be retired; it stays as it was until it expires"
                );
                None
            }
        }
    }

    /// The third step of a login across slots: the old session's keys that
    /// the login's delta did not decide are written to the new session,
    /// which no other request knows yet. `data` and `written` are updated;
    /// a failure is logged and leaves the login with the delta's keys only.
    async fn carry_over(
        &self,
        new: &SessionId,
        old_data: Data,
        delta: &Delta,
        data: &mut Data,
        written: Written,
        timeouts: &Timeouts,
    ) {
        let set: Vec<(String, serde_json::Value)> = old_data
            .into_iter()
            .filter(|(k, _)| !delta.touches(k))
            .collect();
        if set.is_empty() {
            return;
        }
        let carry = Delta {
            set,
            ..Delta::default()
        };
        match self.save(new, &carry, timeouts).await {
            Ok(SaveOutcome::Saved(_)) => carry.apply_to(data),
            outcome => tracing::warn!(
                session = %new,
                ?outcome,
                at = written.now_ms,
                "login succeeded but the previous session's data could not be carried over"
            ),
        }
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn load(&self, id: &SessionId, timeouts: &Timeouts) -> Result<LoadOutcome> {
        const S: &str = "load";
        let mut asked = id.clone();
        let idle = ms(timeouts.idle);
        // A chain of aliases when the successor was rotated again.
        for _ in 0..=MAX_ALIAS_HOPS {
            if let Some(c) = &self.inner.cache {
                let key = self.inner.keys.session(&asked);
                let hit = c.cache.lookup(&key, timeouts, idle, || {
                    (
                        self.inner.keys.index(asked.tag()),
                        asked.hash_part().to_owned(),
                    )
                });
                if let Some(hit) = hit {
                    return Ok(LoadOutcome::Live(hit));
                }
            }
            let keys = self.inner.keys.session_and_index(&asked);
            let mut inv = invocation(&self.inner.scripts.load, &keys);
            inv.arg(idle)
                .arg(ms(timeouts.touch_interval))
                .arg(asked.hash_part())
                .arg(self.cache_flag());
            let mut conn = self.conn().await?;
            // Only live sessions are cached, under their own key; anything
            // else read here (nothing, a marker, corrupt data) ends the
            // ticket as gone.
            let mut ticket = self.ticket(&conn, &keys[0]);
            let items = reply::array(S, self.exec(&mut conn, &inv).await?)?;
            let status = reply::status(S, &items)?;
            if status != "ok" {
                if let Some(t) = ticket.take() {
                    t.gone();
                }
            }
            match status.as_str() {
                "ok" => {
                    let loaded = self.loaded(S, asked, &items)?;
                    if let Some(t) = ticket.take() {
                        match &loaded {
                            Some(l) => t.fresh(l),
                            None => t.gone(),
                        }
                    }
                    return Ok(loaded.map_or(LoadOutcome::Missing, LoadOutcome::Live));
                }
                "none" => return Ok(LoadOutcome::Missing),
                "moved" => return Ok(LoadOutcome::Superseded),
                // A target that is not text is corrupt data, not a store
                // failure: a fresh session, as for any corrupt session.
                "alias" => match alias_target(S, &asked, &items) {
                    Some(target) => asked = target,
                    None => {
                        warn_corrupt(&asked, "the alias does not name a session");
                        return Ok(LoadOutcome::Missing);
                    }
                },
                "corrupt" => {
                    let reason = reply::opt_text(S, reply::at(S, &items, 1)?)?;
                    warn_corrupt(&asked, reason.as_deref().unwrap_or("corrupt"));
                    return Ok(LoadOutcome::Missing);
                }
                other => return Err(reply::bad(S, format_args!("unknown status {other:?}"))),
            }
        }
        // Rotated more often than the grace period allows for: the token
        // was replaced, and its successor may be alive.
        Ok(LoadOutcome::Superseded)
    }

    async fn create(
        &self,
        id: &SessionId,
        session: NewSession<'_>,
        timeouts: &Timeouts,
    ) -> Result<Written> {
        const S: &str = "create";
        let keys = self.inner.keys.create(id);
        let mut inv = invocation(&self.inner.scripts.create, &keys);
        inv.arg(ms(timeouts.idle)).arg(ms(timeouts.absolute));
        new_session_fields(&mut inv, session.data, session.client)?;
        let items = reply::array(S, self.run(&inv).await?)?;
        Ok(Written {
            now_ms: reply::int(S, reply::at(S, &items, 0)?)?,
            expires_at_ms: reply::int(S, reply::at(S, &items, 1)?)?,
        })
    }

    async fn save(
        &self,
        id: &SessionId,
        delta: &Delta,
        timeouts: &Timeouts,
    ) -> Result<SaveOutcome> {
        const S: &str = "save";
        let mut target = id.clone();
        for hop in 0..=MAX_ALIAS_HOPS {
            let (items, ticket) = self.save_once(&target, delta, timeouts).await?;
            let status = reply::status(S, &items)?;
            if status == "ok" {
                let written = Written {
                    now_ms: reply::int(S, reply::at(S, &items, 1)?)?,
                    expires_at_ms: reply::int(S, reply::at(S, &items, 2)?)?,
                };
                if let Some(t) = ticket {
                    self.cache_saved(t, &target, &items, written);
                }
                return Ok(if hop == 0 {
                    SaveOutcome::Saved(written)
                } else {
                    SaveOutcome::SavedToSuccessor(written)
                });
            }
            if status == "fenced" {
                // Nothing was written: the cached copy, if any, still holds.
                if let Some(t) = ticket {
                    t.unchanged();
                }
                return Ok(SaveOutcome::Fenced);
            }
            // Anything but a live session: not cached.
            if let Some(t) = ticket {
                t.gone();
            }
            match status.as_str() {
                "gone" => return Ok(SaveOutcome::Gone),
                "moved" => return Ok(SaveOutcome::Superseded),
                "alias" => match alias_target(S, &target, &items) {
                    Some(next) => target = next,
                    None => return Ok(SaveOutcome::Gone),
                },
                other => return Err(reply::bad(S, format_args!("unknown status {other:?}"))),
            }
        }
        Ok(SaveOutcome::Superseded)
    }

    async fn login(&self, login: Login<'_>, timeouts: &Timeouts) -> Result<LoginOutcome> {
        const S: &str = "login";
        let keys = self
            .inner
            .keys
            .login(login.new, login.old, self.inner.one_slot_per_call);
        let (max, policy) = match login.limit {
            UserLimit::Unlimited => (0, "evict"),
            UserLimit::Max { max, policy } => (
                max.max(1),
                match policy {
                    MaxSessionsPolicy::EvictOldest => "evict",
                    MaxSessionsPolicy::RejectNew => "reject",
                },
            ),
        };
        let old_hash = match login.old {
            Some(old) if keys.old_in_login => old.hash_part(),
            _ => "",
        };
        let delta = login.delta;
        let mut inv = invocation(&self.inner.scripts.login, &keys.login);
        inv.arg(ms(timeouts.idle))
            .arg(ms(timeouts.absolute))
            .arg(login.user_id)
            .arg(max)
            .arg(policy)
            .arg(ms(login.moved_grace))
            .arg(login.new.hash_part())
            .arg(old_hash)
            .arg(if delta.clear { "1" } else { "0" })
            .arg(delta.remove.len());
        for key in &delta.remove {
            inv.arg(format!("d:{key}"));
        }
        client_fields(&mut inv, login.client);
        data_fields(&mut inv, delta.set.iter().map(|(k, v)| (k, v)))?;
        let mut conn = self.conn().await?;
        // The new session is not cached (its first load is); the old one,
        // retired here, and the evicted ones leave the cache.
        let old_ticket = match login.old {
            Some(old) if keys.old_in_login => self.ticket(&conn, &self.inner.keys.session(old)),
            _ => None,
        };
        let result = async {
            let items = reply::array(S, self.exec(&mut conn, &inv).await?)?;
            match reply::status(S, &items)?.as_str() {
                "ok" => {}
                "rejected" => return Ok(LoginOutcome::Rejected { max }),
                other => return Err(reply::bad(S, format_args!("unknown status {other:?}"))),
            }
            let written = Written {
                now_ms: reply::int(S, reply::at(S, &items, 1)?)?,
                expires_at_ms: reply::int(S, reply::at(S, &items, 2)?)?,
            };
            let mut evicted = Vec::new();
            for hash in reply::array(S, reply::at(S, &items, 3)?.clone())? {
                let hash = reply::text(S, &hash)?;
                match id_in_tag(login.new.tag(), &hash) {
                    Some(id) => evicted.push(id),
                    None => {
                        tracing::warn!(member = %hash, "evicted an index member that is not a session id")
                    }
                }
            }
            let fields = reply::array(S, reply::at(S, &items, 4)?.clone())?;
            let data = reply::data_fields(&fields).map_err(|e| reply::bad(S, e))?;
            // The session retired may be a successor reached through an
            // alias: NOLOOP sends no invalidation for it, so drop it here.
            if let (Some(old), Ok(hash)) = (login.old, reply::text(S, reply::at(S, &items, 5)?)) {
                if let Some(retired) = id_in_tag(old.tag(), &hash) {
                    self.forget(&retired);
                }
            }
            Ok(LoginOutcome::LoggedIn {
                written,
                data,
                evicted,
            })
        }
        .await;
        match &result {
            Ok(LoginOutcome::LoggedIn { evicted, .. }) => {
                if let Some(t) = old_ticket {
                    t.gone();
                }
                for id in evicted {
                    self.forget(id);
                }
            }
            Ok(LoginOutcome::Rejected { .. }) => {
                if let Some(t) = old_ticket {
                    t.unchanged();
                }
            }
            // It may have run: which sessions it evicted is unknown.
            Err(_) => self.forget_all(),
        }
        let mut outcome = result?;
        if let (
            Some(retire),
            Some(old),
            LoginOutcome::LoggedIn {
                data, ref written, ..
            },
        ) = (&keys.retire, login.old, &mut outcome)
        {
            let carried = self.retire_elsewhere(retire, old, login.moved_grace).await;
            if let Some(old_data) = carried.filter(|_| !delta.clear) {
                self.carry_over(login.new, old_data, delta, data, *written, timeouts)
                    .await;
            }
        }
        Ok(outcome)
    }

    async fn rotate(
        &self,
        old: &SessionId,
        new: &SessionId,
        retire: Retire,
        timeouts: &Timeouts,
    ) -> Result<RotateOutcome> {
        const S: &str = "rotate";
        if old.tag() != new.tag() {
            // Not one Cluster-safe script, and the manager never asks for it:
            // a session that is not there is Gone, as in every store.
            return match self.load(old, timeouts).await? {
                LoadOutcome::Live(l) if l.id == *old => Err(Error::store(
                    "RedisStore::rotate needs the new id to carry the old id's slot tag",
                )),
                LoadOutcome::Live(_) | LoadOutcome::Superseded => Ok(RotateOutcome::Superseded),
                LoadOutcome::Missing => Ok(RotateOutcome::Gone),
            };
        }
        let (mode, grace) = match retire {
            Retire::Alias(grace) => ("alias", grace),
            Retire::Moved(grace) => ("moved", grace),
        };
        let keys = self.inner.keys.rotate(old, new);
        let mut inv = invocation(&self.inner.scripts.rotate, &keys);
        inv.arg(ms(timeouts.idle))
            .arg(mode)
            .arg(ms(grace))
            .arg(old.hash_part())
            .arg(new.hash_part());
        let mut conn = self.conn().await?;
        // The old key leaves the cache whatever happened; the new one is
        // cached by its first load.
        let ticket = self.ticket(&conn, &keys[0]);
        let items = reply::array(S, self.exec(&mut conn, &inv).await?)?;
        if let Some(t) = ticket {
            t.gone();
        }
        match reply::status(S, &items)?.as_str() {
            "ok" => Ok(RotateOutcome::Rotated(Written {
                now_ms: reply::int(S, reply::at(S, &items, 1)?)?,
                expires_at_ms: reply::int(S, reply::at(S, &items, 2)?)?,
            })),
            "superseded" => Ok(RotateOutcome::Superseded),
            "gone" => Ok(RotateOutcome::Gone),
            other => Err(reply::bad(S, format_args!("unknown status {other:?}"))),
        }
    }

    async fn revoke(&self, id: &SessionId) -> Result<bool> {
        let keys = self.inner.keys.session_and_index(id);
        let mut inv = invocation(&self.inner.scripts.revoke, &keys);
        inv.arg(id.hash_part());
        // Not served from the cache from now on, and not cached again.
        self.forget(id);
        let mut conn = self.conn().await?;
        let ticket = self.ticket(&conn, &keys[0]);
        let ended = self.exec(&mut conn, &inv).await?;
        if let Some(t) = ticket {
            t.gone();
        }
        Ok(reply::int("revoke", &ended)? > 0)
    }

    async fn revoke_user(&self, user_id: &str, except: Option<&SessionId>) -> Result<u64> {
        const S: &str = "revoke_user";
        let keys = self.inner.keys.user_index(user_id);
        let user_tag = Tag::for_user(user_id);
        let keep = match except {
            Some(id) if id.tag() == user_tag.as_str() => id.hash_part(),
            _ => "",
        };
        let mut inv = invocation(&self.inner.scripts.revoke_user, &keys);
        inv.arg(user_id).arg(keep);
        let ended = async {
            let ended = reply::array(S, self.run(&inv).await?)?;
            ended
                .iter()
                .map(|hash| reply::text(S, hash))
                .collect::<Result<Vec<String>>>()
        }
        .await;
        match &ended {
            Ok(ended) => {
                for id in ended.iter().filter_map(|h| id_in_tag(user_tag.as_str(), h)) {
                    self.forget(&id);
                }
            }
            // It may have run: which sessions it ended is unknown.
            Err(_) => self.forget_all(),
        }
        Ok(u64::try_from(ended?.len()).unwrap_or(u64::MAX))
    }

    async fn sessions_of(&self, user_id: &str, timeouts: &Timeouts) -> Result<Vec<SessionInfo>> {
        const S: &str = "sessions_of";
        let keys = self.inner.keys.user_index(user_id);
        let tag = Tag::for_user(user_id);
        let mut inv = invocation(&self.inner.scripts.sessions_of, &keys);
        inv.arg(user_id).arg(ms(timeouts.idle));
        let mut list = Vec::new();
        for row in reply::array(S, self.run(&inv).await?)? {
            // One corrupt session must not hide the user's other sessions:
            // a row that does not decode is skipped with a warning.
            let decoded = (|| -> Result<Option<(SessionId, Meta, i64)>> {
                let row = reply::array(S, row)?;
                let hash = reply::text(S, reply::at(S, &row, 0)?)?;
                let Some(id) = id_in_tag(tag.as_str(), &hash) else {
                    return Ok(None);
                };
                let meta = Meta {
                    user_id: Some(user_id.to_owned()),
                    created_ms: reply::int(S, reply::at(S, &row, 1)?)?,
                    last_seen_ms: reply::int(S, reply::at(S, &row, 2)?)?,
                    token_issued_ms: reply::int(S, reply::at(S, &row, 3)?)?,
                    absolute_deadline_ms: reply::int(S, reply::at(S, &row, 4)?)?,
                    version: u64::try_from(reply::int(S, reply::at(S, &row, 5)?)?).unwrap_or(0),
                    user_agent: reply::opt_text(S, reply::at(S, &row, 6)?)?,
                    client_ip: reply::opt_text(S, reply::at(S, &row, 7)?)?,
                };
                let expires_at_ms = reply::int(S, reply::at(S, &row, 8)?)?;
                Ok(Some((id, meta, expires_at_ms)))
            })();
            match decoded {
                Ok(Some((id, meta, expires_at_ms))) => list.push((
                    meta.last_seen_ms,
                    SessionInfo::new(id, user_id.to_owned(), &meta, expires_at_ms),
                )),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "skipped a corrupt session while listing a user's sessions")
                }
            }
        }
        list.sort_by_key(|(last_seen, _)| std::cmp::Reverse(*last_seen));
        Ok(list.into_iter().map(|(_, info)| info).collect())
    }

    async fn lock(
        &self,
        id: &SessionId,
        lease: Duration,
        timeouts: &Timeouts,
    ) -> Result<LockOutcome> {
        const S: &str = "lock";
        let mut asked = id.clone();
        for _ in 0..=MAX_ALIAS_HOPS {
            let keys = self.inner.keys.session_and_index(&asked);
            let mut inv = invocation(&self.inner.scripts.lock, &keys);
            inv.arg(ms(timeouts.idle))
                .arg(ms(timeouts.touch_interval))
                .arg(asked.hash_part())
                .arg(lease_ms(lease));
            let mut conn = self.conn().await?;
            // The reply carries the whole session, read after the script's
            // writes: it refreshes the cache as a load does. A lock is never
            // served from the cache: taking it is a write.
            let ticket = self.ticket(&conn, &keys[0]);
            let items = reply::array(S, self.exec(&mut conn, &inv).await?)?;
            let status = reply::status(S, &items)?;
            match status.as_str() {
                "ok" => {
                    let fence = reply::int(S, reply::at(S, &items, 5)?)?;
                    let fence =
                        u64::try_from(fence).map_err(|_| reply::bad(S, "the fence is negative"))?;
                    let loaded = self.loaded(S, asked, &items)?;
                    if let Some(t) = ticket {
                        match &loaded {
                            Some(l) => t.fresh(l),
                            None => t.gone(),
                        }
                    }
                    // Fields that do not decode: the session is unusable, as
                    // for `load`; the lock lapses with its lease.
                    return Ok(match loaded {
                        Some(loaded) => LockOutcome::Acquired { fence, loaded },
                        None => LockOutcome::Gone,
                    });
                }
                "held" => {
                    if let Some(t) = ticket {
                        t.unchanged();
                    }
                    return Ok(LockOutcome::Held);
                }
                _ => {
                    if let Some(t) = ticket {
                        t.gone();
                    }
                }
            }
            match status.as_str() {
                "none" | "moved" => return Ok(LockOutcome::Gone),
                "alias" => match alias_target(S, &asked, &items) {
                    Some(target) => asked = target,
                    None => {
                        warn_corrupt(&asked, "the alias does not name a session");
                        return Ok(LockOutcome::Gone);
                    }
                },
                "corrupt" => {
                    let reason = reply::opt_text(S, reply::at(S, &items, 1)?)?;
                    warn_corrupt(&asked, reason.as_deref().unwrap_or("corrupt"));
                    return Ok(LockOutcome::Gone);
                }
                other => return Err(reply::bad(S, format_args!("unknown status {other:?}"))),
            }
        }
        Ok(LockOutcome::Gone)
    }

    async fn renew_lock(&self, id: &SessionId, fence: u64, lease: Duration) -> Result<bool> {
        const S: &str = "renew_lock";
        let lease = lease_ms(lease);
        let status = self
            .lock_call(S, &self.inner.scripts.renew_lock, id, |inv| {
                inv.arg(fence).arg(lease);
            })
            .await?;
        match status.as_deref() {
            Some("ok") => Ok(true),
            Some("lost") | None => Ok(false),
            Some(other) => Err(reply::bad(S, format_args!("unknown status {other:?}"))),
        }
    }

    async fn unlock(&self, id: &SessionId, fence: u64) -> Result<()> {
        const S: &str = "unlock";
        let status = self
            .lock_call(S, &self.inner.scripts.unlock, id, |inv| {
                inv.arg(fence);
            })
            .await?;
        match status.as_deref() {
            Some("ok") | None => Ok(()),
            Some(other) => Err(reply::bad(S, format_args!("unknown status {other:?}"))),
        }
    }
}

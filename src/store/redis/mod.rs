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
//! | `<prefix>:{<tag>}:idx` | ZSET | the logged-in sessions of that tag: member = `<hash>`, score = last seen (ms) |
//!
//! A session hash has one field per data key, `d:<key>`, holding the value's
//! JSON, and metadata fields: `@user` (absent while anonymous), `@created`,
//! `@seen`, `@issued` (token issued), `@deadline` (absolute deadline), all in
//! milliseconds on the Redis clock, `@ver` (bumped by every write), `@ua` and
//! `@ip`. Where a session used to be, a short-lived marker hash may stand:
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
//!   script may touch. The login script runs first (new session, index,
//!   per-user limit — atomically); only if it succeeded does a second script
//!   retire the old id as moved. That costs one extra command. On a server
//!   without Cluster (checked with `INFO cluster` when the store is built;
//!   a lazily connected store assumes Cluster), slots do not constrain
//!   scripts, and the login script retires the old session itself. If the second call fails, the login still
//!   stands and a warning is logged; the old session stays anonymous (or
//!   stays with its previous user) until it expires, and gains nothing. A
//!   login from a session already in the user's slot (a re-login) is one
//!   script.
//! - **an alias left by periodic rotation**: the script returns the new hash
//!   part and the store repeats the call on the new id (same slot). This
//!   only happens during the rotation grace period.
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
//! session (load, login; 3 on a Cluster node: load, login, retire); a
//! logout 2 (load, revoke).

mod builder;
mod keys;
mod reply;
mod scripts;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::ConnectionManager;
use ::redis::{RedisError, Script, ScriptInvocation, Value};
use async_trait::async_trait;

pub use self::builder::RedisStoreBuilder;
pub use self::keys::key_slot;
use self::keys::Keys;
use self::scripts::Scripts;
use crate::clock::duration_ms;
use crate::config::{MaxSessionsPolicy, UserLimit};
use crate::store::{
    Data, Delta, Loaded, Login, LoginOutcome, Meta, NewSession, Retire, RotateOutcome, SaveOutcome,
    SessionInfo, SessionStore, Timeouts, Written,
};
use crate::{Error, Result, SessionId};

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "sessionkit";

/// Durations sent to the scripts are capped so that `now + duration` stays
/// an exact integer in Lua's doubles (below 2^53); 2^47 ms is 4,460 years.
const MAX_MS: i64 = 1 << 47;

fn ms(d: Duration) -> i64 {
    duration_ms(d).min(MAX_MS)
}

/// A [`SessionStore`] in Redis: atomic Lua scripts, a per-user index, keys
/// that are safe for Redis Cluster, and expiry on the Redis clock. See the
/// [module docs](self) for the key layout.
///
/// `Clone` is cheap (one shared, auto-reconnecting multiplexed connection);
/// share one store between every manager of a process.
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
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("key_prefix", &self.inner.keys.prefix())
            .field("command_timeout", &self.inner.command_timeout)
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

/// `@ua`, `@ip` and `d:<key>` pairs for a new session.
fn new_session_fields(
    inv: &mut ScriptInvocation<'_>,
    data: &Data,
    client: &crate::ClientInfo,
) -> Result<()> {
    if let Some(ua) = &client.user_agent {
        inv.arg("@ua").arg(ua);
    }
    if let Some(ip) = client.ip {
        inv.arg("@ip").arg(ip.to_string());
    }
    data_fields(inv, data.iter())
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

    /// The Redis key of the index that holds a user's sessions.
    pub fn user_index_key(&self, user_id: &str) -> String {
        self.inner
            .keys
            .index(crate::Tag::for_user(user_id).as_str())
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

    /// Runs one script call under the command timeout.
    async fn run(&self, inv: &ScriptInvocation<'_>) -> Result<Value> {
        let limit = self.inner.command_timeout;
        let mut conn = self.inner.conn.clone();
        timed(limit, inv.invoke_async::<Value>(&mut conn))
            .await?
            .map_err(|e| redis_error(e, limit))
    }

    fn loaded(&self, id: SessionId, items: &[Value]) -> Result<Option<Loaded>> {
        const S: &str = "load";
        let now_ms = reply::int(S, reply::at(S, items, 1)?)?;
        let expires_at_ms = reply::int(S, reply::at(S, items, 2)?)?;
        let touched = reply::int(S, reply::at(S, items, 3)?)? != 0;
        let fields = match reply::at(S, items, 4)? {
            Value::Array(fields) => fields,
            other => {
                return Err(reply::bad(
                    S,
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

    async fn save_once(
        &self,
        id: &SessionId,
        delta: &Delta,
        timeouts: &Timeouts,
    ) -> Result<Vec<Value>> {
        let keys = self.inner.keys.session_and_index(id);
        let mut inv = invocation(&self.inner.scripts.save, &keys);
        inv.arg(ms(timeouts.idle))
            .arg(id.hash_part())
            .arg(if delta.clear { "1" } else { "0" })
            .arg(delta.remove.len());
        for key in &delta.remove {
            inv.arg(format!("d:{key}"));
        }
        data_fields(&mut inv, delta.set.iter().map(|(k, v)| (k, v)))?;
        reply::array("save", self.run(&inv).await?)
    }

    async fn retire_elsewhere(&self, keys: &[String], old: &SessionId, grace: Duration) {
        let mut inv = invocation(&self.inner.scripts.retire, keys);
        inv.arg(ms(grace)).arg(old.hash_part());
        if let Err(e) = self.run(&inv).await {
            tracing::warn!(
                session = %old,
                error = %e,
                "login succeeded but the previous session could not be retired; it stays as it was until it expires"
            );
        }
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn load(&self, id: &SessionId, timeouts: &Timeouts) -> Result<Option<Loaded>> {
        const S: &str = "load";
        let mut asked = id.clone();
        // At most one hop: an alias points at a session, never at an alias.
        for hop in 0..2 {
            let keys = self.inner.keys.session_and_index(&asked);
            let mut inv = invocation(&self.inner.scripts.load, &keys);
            inv.arg(ms(timeouts.idle))
                .arg(ms(timeouts.touch_interval))
                .arg(asked.hash_part());
            let items = reply::array(S, self.run(&inv).await?)?;
            match reply::status(S, &items)?.as_str() {
                "ok" => return self.loaded(asked, &items),
                "none" | "moved" => return Ok(None),
                "alias" if hop == 0 => {
                    let target = reply::text(S, reply::at(S, &items, 1)?)?;
                    match id_in_tag(asked.tag(), &target) {
                        Some(target) => asked = target,
                        None => {
                            warn_corrupt(&asked, "the alias does not name a session");
                            return Ok(None);
                        }
                    }
                }
                "alias" => return Ok(None),
                "corrupt" => {
                    let reason = reply::opt_text(S, reply::at(S, &items, 1)?)?;
                    warn_corrupt(&asked, reason.as_deref().unwrap_or("corrupt"));
                    return Ok(None);
                }
                other => return Err(reply::bad(S, format_args!("unknown status {other:?}"))),
            }
        }
        Ok(None)
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
        for hop in 0..2 {
            let items = self.save_once(&target, delta, timeouts).await?;
            match reply::status(S, &items)?.as_str() {
                "ok" => {
                    return Ok(SaveOutcome::Saved(Written {
                        now_ms: reply::int(S, reply::at(S, &items, 1)?)?,
                        expires_at_ms: reply::int(S, reply::at(S, &items, 2)?)?,
                    }))
                }
                "gone" => return Ok(SaveOutcome::Gone),
                "moved" if hop == 0 => return Ok(SaveOutcome::Moved),
                "alias" if hop == 0 => {
                    let next = reply::text(S, reply::at(S, &items, 1)?)?;
                    match id_in_tag(target.tag(), &next) {
                        Some(next) => target = next,
                        None => return Ok(SaveOutcome::Gone),
                    }
                }
                // An alias leads to a session or nowhere.
                "moved" | "alias" => return Ok(SaveOutcome::Gone),
                other => return Err(reply::bad(S, format_args!("unknown status {other:?}"))),
            }
        }
        Ok(SaveOutcome::Gone)
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
        let mut inv = invocation(&self.inner.scripts.login, &keys.login);
        inv.arg(ms(timeouts.idle))
            .arg(ms(timeouts.absolute))
            .arg(login.user_id)
            .arg(max)
            .arg(policy)
            .arg(ms(login.moved_grace))
            .arg(login.new.hash_part())
            .arg(old_hash);
        new_session_fields(&mut inv, login.data, login.client)?;
        let items = reply::array(S, self.run(&inv).await?)?;
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
        if let (Some(retire), Some(old)) = (&keys.retire, login.old) {
            self.retire_elsewhere(retire, old, login.moved_grace).await;
        }
        Ok(LoginOutcome::LoggedIn { written, evicted })
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
                // An alias is not a session: rotating it is Gone too.
                Some(l) if l.id == *old => Err(Error::store(
                    "RedisStore::rotate needs the new id to carry the old id's slot tag",
                )),
                _ => Ok(RotateOutcome::Gone),
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
        let items = reply::array(S, self.run(&inv).await?)?;
        match reply::status(S, &items)?.as_str() {
            "ok" => Ok(RotateOutcome::Rotated(Written {
                now_ms: reply::int(S, reply::at(S, &items, 1)?)?,
                expires_at_ms: reply::int(S, reply::at(S, &items, 2)?)?,
            })),
            "gone" => Ok(RotateOutcome::Gone),
            other => Err(reply::bad(S, format_args!("unknown status {other:?}"))),
        }
    }

    async fn revoke(&self, id: &SessionId) -> Result<bool> {
        let keys = self.inner.keys.session_and_index(id);
        let mut inv = invocation(&self.inner.scripts.revoke, &keys);
        inv.arg(id.hash_part());
        Ok(reply::int("revoke", &self.run(&inv).await?)? > 0)
    }

    async fn revoke_user(&self, user_id: &str, except: Option<&SessionId>) -> Result<u64> {
        let keys = self.inner.keys.user_index(user_id);
        let user_tag = crate::Tag::for_user(user_id);
        let keep = match except {
            Some(id) if id.tag() == user_tag.as_str() => id.hash_part(),
            _ => "",
        };
        let mut inv = invocation(&self.inner.scripts.revoke_user, &keys);
        inv.arg(user_id).arg(keep);
        let n = reply::int("revoke_user", &self.run(&inv).await?)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn sessions_of(&self, user_id: &str, timeouts: &Timeouts) -> Result<Vec<SessionInfo>> {
        const S: &str = "sessions_of";
        let keys = self.inner.keys.user_index(user_id);
        let tag = crate::Tag::for_user(user_id);
        let mut inv = invocation(&self.inner.scripts.sessions_of, &keys);
        inv.arg(user_id).arg(ms(timeouts.idle));
        let mut list = Vec::new();
        for row in reply::array(S, self.run(&inv).await?)? {
            let row = reply::array(S, row)?;
            let hash = reply::text(S, reply::at(S, &row, 0)?)?;
            let Some(id) = id_in_tag(tag.as_str(), &hash) else {
                continue;
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
            list.push((
                meta.last_seen_ms,
                SessionInfo::new(id, user_id.to_owned(), &meta, expires_at_ms),
            ));
        }
        list.sort_by_key(|(last_seen, _)| std::cmp::Reverse(*last_seen));
        Ok(list.into_iter().map(|(_, info)| info).collect())
    }
}

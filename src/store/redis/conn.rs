//! Connection plumbing of [`RedisStore`]: which connection a call goes
//! over (the shared one, or the client cache's tracked one), running a
//! script call under the command timeout, and the cache bookkeeping each
//! call needs (tickets, forgetting ended sessions).

use std::time::Duration;

use ::redis::{RedisError, Script, ScriptInvocation, Value};

use super::cache::Ticket;
use super::{Conn, RedisStore};
use crate::{Error, Result, SessionId};

/// Runs a future under a time limit.
pub(super) async fn timed<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = T>,
) -> Result<T> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| Error::StoreTimeout(limit))
}

/// A Redis error as a sessionkit error.
pub(super) fn redis_error(e: RedisError, limit: Duration) -> Error {
    if e.is_timeout() {
        Error::StoreTimeout(limit)
    } else {
        Error::store(e)
    }
}

/// A script invocation with these KEYS.
pub(super) fn invocation<'a>(script: &'a Script, keys: &[String]) -> ScriptInvocation<'a> {
    let mut inv = script.prepare_invoke();
    for key in keys {
        inv.key(key);
    }
    inv
}

impl RedisStore {
    /// The connection for the next call: the tracked one with a cache.
    pub(super) async fn conn(&self) -> Result<Conn> {
        match &self.inner.cache {
            None => Ok(Conn::Shared(self.inner.conn.clone())),
            Some(c) => {
                let (conn, epoch) = c.link.get().await?;
                Ok(Conn::Tracked { conn, epoch })
            }
        }
    }

    /// Runs one script call on `conn` under the command timeout.
    pub(super) async fn exec(&self, conn: &mut Conn, inv: &ScriptInvocation<'_>) -> Result<Value> {
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
    pub(super) async fn run(&self, inv: &ScriptInvocation<'_>) -> Result<Value> {
        let mut conn = self.conn().await?;
        self.exec(&mut conn, inv).await
    }

    /// Starts a call on session key `key` for the cache, if there is one.
    pub(super) fn ticket(&self, conn: &Conn, key: &str) -> Option<Ticket> {
        match (&self.inner.cache, conn) {
            (Some(c), Conn::Tracked { epoch, .. }) => Some(c.cache.begin(key.to_owned(), *epoch)),
            _ => None,
        }
    }

    /// Drops a session this store ended from its cache.
    pub(super) fn forget(&self, id: &SessionId) {
        if let Some(c) = &self.inner.cache {
            c.cache.forget(&self.inner.keys.session(id));
        }
    }

    /// A write failed after it may have run, and which sessions it ended is
    /// unknown (login evictions, `revoke_user`): empty the cache.
    pub(super) fn forget_all(&self) {
        if let Some(c) = &self.inner.cache {
            c.cache.reset();
        }
    }

    /// `ARGV` flag of the load and save scripts: whether this store keeps a
    /// client-side cache.
    pub(super) fn cache_flag(&self) -> &'static str {
        if self.inner.cache.is_some() {
            "1"
        } else {
            "0"
        }
    }
}

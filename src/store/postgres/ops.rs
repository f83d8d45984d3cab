//! The [`SessionStore`] operations of [`PostgresStore`]: each one call of
//! the store's SQL function of the same name (see `sql/`), plus what the
//! local cache needs around it.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::reply::Reply;
use super::{pg_error, PostgresStore};
use crate::clock::duration_ms;
use crate::config::{MaxSessionsPolicy, UserLimit};
use crate::store::{
    Data, Delta, LoadOutcome, LockOutcome, Login, LoginOutcome, LogoutOutcome, NewSession,
    ReleaseNotice, Retire, RotateOutcome, SaveOutcome, SessionInfo, SessionStore, Timeouts,
    Written,
};
use crate::{Error, Result, SessionId};

/// Keys and JSON texts of the values to set, each key once (the last write
/// of a key wins, as when a delta is applied in order).
fn encode_set<'a>(set: impl IntoIterator<Item = (&'a String, &'a Value)>) -> Result<Encoded> {
    let mut at: HashMap<&str, usize> = HashMap::new();
    let mut out = Encoded::default();
    for (k, v) in set {
        let text = serde_json::to_string(v).map_err(|e| Error::Store(Box::new(e)))?;
        match at.get(k.as_str()) {
            Some(&i) => out.vals[i] = text,
            None => {
                at.insert(k, out.keys.len());
                out.keys.push(k.clone());
                out.vals.push(text);
            }
        }
    }
    Ok(out)
}

#[derive(Default)]
struct Encoded {
    keys: Vec<String>,
    vals: Vec<String>,
}

fn encode_delta(delta: &Delta) -> Result<Encoded> {
    encode_set(delta.set.iter().map(|(k, v)| (k, v)))
}

fn encode_data(data: &Data) -> Result<Encoded> {
    encode_set(data.iter())
}

fn ms(d: Duration) -> i64 {
    duration_ms(d)
}

fn unexpected(op: &str, status: &str) -> Error {
    Error::Store(format!("PostgresStore: {op} answered {status:?}").into())
}

impl PostgresStore {
    async fn reply(
        &self,
        q: sqlx::query::QueryAs<'_, sqlx::Postgres, Reply, sqlx::postgres::PgArguments>,
    ) -> Result<Reply> {
        q.fetch_one(&self.inner.pool).await.map_err(pg_error)
    }

    /// Drops `ids` from the local cache (before and after a write of ours,
    /// so that no load in flight re-inserts what the write replaced).
    fn forget(&self, ids: &[&SessionId]) {
        if let Some(cache) = &self.inner.cache {
            for id in ids {
                cache.forget(id);
            }
        }
    }

    /// Drops the session a write reached through an alias.
    /// Runs an ending call (`revoke`, `logout`: `(id, notify)`), with `id`
    /// forgotten here before it (no new copy from a load racing it) and
    /// after it (none that such a load fetched before).
    async fn end(&self, sql: &str, id: &SessionId) -> Result<Reply> {
        self.forget(&[id]);
        let r = self
            .reply(
                sqlx::query_as(sql)
                    .bind(id.as_str())
                    .bind(self.inner.notify),
            )
            .await;
        self.forget(&[id]);
        r
    }

    fn forget_reply(&self, r: &Reply) {
        if let Some(id) = r.session_id() {
            self.forget(&[&id]);
        }
    }

    async fn load_uncached(&self, id: &SessionId, timeouts: &Timeouts) -> Result<LoadOutcome> {
        let ticket = self.inner.cache.as_ref().map(|c| c.ticket());
        let sql = &self.inner.sql.load;
        let r = self
            .reply(
                sqlx::query_as(sql)
                    .bind(id.as_str())
                    .bind(ms(timeouts.idle))
                    .bind(ms(timeouts.touch_interval)),
            )
            .await?;
        Ok(match r.status.as_str() {
            "live" | "alias" => match r.loaded()? {
                Some(loaded) => {
                    if let (Some(cache), Some(ticket), "live") =
                        (&self.inner.cache, ticket, r.status.as_str())
                    {
                        cache.insert(ticket, &loaded);
                    }
                    LoadOutcome::Live(loaded)
                }
                None => LoadOutcome::Missing,
            },
            "superseded" => LoadOutcome::Superseded,
            "gone" => LoadOutcome::Missing,
            other => return Err(unexpected("load", other)),
        })
    }
}

#[async_trait]
impl SessionStore for PostgresStore {
    async fn load(&self, id: &SessionId, timeouts: &Timeouts) -> Result<LoadOutcome> {
        if let Some(loaded) = self.inner.cache.as_ref().and_then(|c| c.get(id, timeouts)) {
            return Ok(LoadOutcome::Live(loaded));
        }
        self.load_uncached(id, timeouts).await
    }

    async fn create(
        &self,
        id: &SessionId,
        session: NewSession<'_>,
        timeouts: &Timeouts,
    ) -> Result<Written> {
        let data = encode_data(session.data)?;
        let ip = session.client.ip.map(|ip| ip.to_string());
        self.forget(&[id]);
        let r = self
            .reply(
                sqlx::query_as(&self.inner.sql.create)
                    .bind(id.as_str())
                    .bind(&data.keys)
                    .bind(&data.vals)
                    .bind(session.client.user_agent.as_deref())
                    .bind(ip)
                    .bind(ms(timeouts.idle))
                    .bind(ms(timeouts.absolute)),
            )
            .await?;
        r.written()
    }

    async fn save(
        &self,
        id: &SessionId,
        delta: &Delta,
        timeouts: &Timeouts,
    ) -> Result<SaveOutcome> {
        let set = encode_delta(delta)?;
        let fence = delta.fence.map(|f| i64::try_from(f).unwrap_or(i64::MAX));
        self.forget(&[id]);
        let r = self
            .reply(
                sqlx::query_as(&self.inner.sql.save)
                    .bind(id.as_str())
                    .bind(delta.clear)
                    .bind(&delta.remove)
                    .bind(&set.keys)
                    .bind(&set.vals)
                    .bind(fence)
                    .bind(ms(timeouts.idle))
                    .bind(self.inner.notify),
            )
            .await;
        self.forget(&[id]);
        let r = r?;
        self.forget_reply(&r);
        Ok(match r.status.as_str() {
            "live" => SaveOutcome::Saved(r.written()?),
            "alias" => SaveOutcome::SavedToSuccessor(r.written()?),
            "gone" => SaveOutcome::Gone,
            "superseded" => SaveOutcome::Superseded,
            "fenced" => SaveOutcome::Fenced,
            other => return Err(unexpected("save", other)),
        })
    }

    async fn login(&self, login: Login<'_>, timeouts: &Timeouts) -> Result<LoginOutcome> {
        let set = encode_delta(login.delta)?;
        let (max, reject) = match login.limit {
            UserLimit::Unlimited => (None, false),
            UserLimit::Max { max, policy } => (
                Some(i32::try_from(max.max(1)).unwrap_or(i32::MAX)),
                policy == MaxSessionsPolicy::RejectNew,
            ),
        };
        let ip = login.client.ip.map(|ip| ip.to_string());
        let mut touched: Vec<&SessionId> = vec![login.new];
        touched.extend(login.old);
        self.forget(&touched);
        let r = self
            .reply(
                sqlx::query_as(&self.inner.sql.login)
                    .bind(login.old.map(SessionId::as_str))
                    .bind(login.new.as_str())
                    .bind(login.user_id)
                    .bind(login.delta.clear)
                    .bind(&login.delta.remove)
                    .bind(&set.keys)
                    .bind(&set.vals)
                    .bind(login.client.user_agent.as_deref())
                    .bind(ip)
                    .bind(max)
                    .bind(reject)
                    .bind(ms(login.moved_grace))
                    .bind(ms(timeouts.idle))
                    .bind(ms(timeouts.absolute))
                    .bind(self.inner.notify),
            )
            .await;
        self.forget(&touched);
        let r = r?;
        Ok(match r.status.as_str() {
            "logged_in" => {
                let evicted = r.evicted()?;
                let evicted_refs: Vec<&SessionId> = evicted.iter().collect();
                self.forget(&evicted_refs);
                LoginOutcome::LoggedIn {
                    written: r.written()?,
                    data: r.data()?.unwrap_or_default(),
                    evicted,
                }
            }
            "rejected" => LoginOutcome::Rejected {
                max: max.map_or(0, |m| u32::try_from(m).unwrap_or(0)),
            },
            other => return Err(unexpected("login", other)),
        })
    }

    async fn rotate(
        &self,
        old: &SessionId,
        new: &SessionId,
        retire: Retire,
        timeouts: &Timeouts,
    ) -> Result<RotateOutcome> {
        let (alias, grace) = match retire {
            Retire::Alias(d) => (true, d),
            Retire::Moved(d) => (false, d),
        };
        self.forget(&[old, new]);
        let r = self
            .reply(
                sqlx::query_as(&self.inner.sql.rotate)
                    .bind(old.as_str())
                    .bind(new.as_str())
                    .bind(alias)
                    .bind(ms(grace))
                    .bind(ms(timeouts.idle))
                    .bind(self.inner.notify),
            )
            .await;
        self.forget(&[old, new]);
        let r = r?;
        Ok(match r.status.as_str() {
            "rotated" => RotateOutcome::Rotated(r.written()?),
            "superseded" => RotateOutcome::Superseded,
            "gone" => RotateOutcome::Gone,
            other => return Err(unexpected("rotate", other)),
        })
    }

    async fn revoke(&self, id: &SessionId) -> Result<bool> {
        let sql = &self.inner.sql.revoke;
        Ok(self.end(sql, id).await?.status == "ended")
    }

    async fn logout(&self, id: &SessionId, timeouts: &Timeouts) -> Result<LogoutOutcome> {
        let _ = timeouts;
        let r = self.end(&self.inner.sql.logout, id).await?;
        // The token may have been an alias: forget its successor too.
        self.forget_reply(&r);
        Ok(match r.status.as_str() {
            "ended" => LogoutOutcome::Ended,
            "missing" => LogoutOutcome::Missing,
            "superseded" => LogoutOutcome::Superseded,
            other => return Err(unexpected("logout", other)),
        })
    }

    async fn revoke_user(&self, user_id: &str, except: Option<&SessionId>) -> Result<u64> {
        let ended: Vec<String> = sqlx::query_scalar(&self.inner.sql.revoke_user)
            .bind(user_id)
            .bind(except.map(SessionId::as_str))
            .bind(self.inner.notify)
            .fetch_one(&self.inner.pool)
            .await
            .map_err(pg_error)?;
        if let Some(cache) = &self.inner.cache {
            for id in ended.iter().filter_map(|s| s.parse::<SessionId>().ok()) {
                cache.forget(&id);
            }
        }
        Ok(u64::try_from(ended.len()).unwrap_or(u64::MAX))
    }

    async fn sessions_of(&self, user_id: &str, timeouts: &Timeouts) -> Result<Vec<SessionInfo>> {
        let _ = timeouts;
        let rows: Vec<Reply> = sqlx::query_as(&self.inner.sql.sessions_of)
            .bind(user_id)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(pg_error)?;
        rows.iter().map(Reply::info).collect()
    }

    async fn lock(
        &self,
        id: &SessionId,
        lease: Duration,
        timeouts: &Timeouts,
    ) -> Result<LockOutcome> {
        let r = self
            .reply(
                sqlx::query_as(&self.inner.sql.lock)
                    .bind(id.as_str())
                    .bind(ms(lease))
                    .bind(ms(timeouts.idle))
                    .bind(ms(timeouts.touch_interval)),
            )
            .await?;
        Ok(match r.status.as_str() {
            "acquired" => match r.loaded()? {
                Some(loaded) => LockOutcome::Acquired {
                    fence: r.acquired_fence()?,
                    loaded,
                },
                None => LockOutcome::Gone,
            },
            "held" => LockOutcome::Held {
                lease_left: r.lease_left(),
            },
            "gone" => LockOutcome::Gone,
            other => return Err(unexpected("lock", other)),
        })
    }

    async fn renew_lock(&self, id: &SessionId, fence: u64, lease: Duration) -> Result<bool> {
        sqlx::query_scalar(&self.inner.sql.renew_lock)
            .bind(id.as_str())
            .bind(i64::try_from(fence).unwrap_or(i64::MAX))
            .bind(ms(lease))
            .fetch_one(&self.inner.pool)
            .await
            .map_err(pg_error)
    }

    async fn unlock(&self, id: &SessionId, fence: u64) -> Result<()> {
        let _released: bool = sqlx::query_scalar(&self.inner.sql.unlock)
            .bind(id.as_str())
            .bind(i64::try_from(fence).unwrap_or(i64::MAX))
            .fetch_one(&self.inner.pool)
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    fn release_notice(&self, id: &SessionId) -> Option<ReleaseNotice> {
        if !self
            .inner
            .listening
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return None;
        }
        self.inner.waiters.watch(id.clone())
    }
}

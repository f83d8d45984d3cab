//! The one row every store function answers (`{prefix}reply`), decoded by
//! column name, and its conversions into the store records.

use std::time::Duration;

use sqlx::postgres::PgRow;
use sqlx::{FromRow, Row};

use crate::store::{Data, Loaded, Meta, SessionInfo, Written};
use crate::{Error, Result, SessionId};

/// A reply row. Only `status` and `now_ms` are always set; the rest is set
/// by the functions whose status carries a session.
#[derive(Debug)]
pub(super) struct Reply {
    pub(super) status: String,
    id: Option<String>,
    user_id: Option<String>,
    created_ms: Option<i64>,
    last_seen_ms: Option<i64>,
    token_issued_ms: Option<i64>,
    absolute_ms: Option<i64>,
    pub(super) expires_ms: Option<i64>,
    version: Option<i64>,
    user_agent: Option<String>,
    client_ip: Option<String>,
    keys: Option<Vec<String>>,
    vals: Option<Vec<String>>,
    pub(super) now_ms: i64,
    touched: Option<bool>,
    pub(super) fence: Option<i64>,
    lease_left_ms: Option<i64>,
    evicted: Option<Vec<String>>,
}

impl<'r> FromRow<'r, PgRow> for Reply {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        Ok(Reply {
            status: row.try_get("status")?,
            id: row.try_get("id")?,
            user_id: row.try_get("user_id")?,
            created_ms: row.try_get("created_ms")?,
            last_seen_ms: row.try_get("last_seen_ms")?,
            token_issued_ms: row.try_get("token_issued_ms")?,
            absolute_ms: row.try_get("absolute_ms")?,
            expires_ms: row.try_get("expires_ms")?,
            version: row.try_get("version")?,
            user_agent: row.try_get("user_agent")?,
            client_ip: row.try_get("client_ip")?,
            keys: row.try_get("keys")?,
            vals: row.try_get("vals")?,
            now_ms: row.try_get::<Option<i64>, _>("now_ms")?.unwrap_or_default(),
            touched: row.try_get("touched")?,
            fence: row.try_get("fence")?,
            lease_left_ms: row.try_get("lease_left_ms")?,
            evicted: row.try_get("evicted")?,
        })
    }
}

/// A reply that lacks what its status promises: a schema that does not
/// match this build.
fn malformed(what: &str) -> Error {
    Error::Store(format!("PostgresStore: malformed reply (no {what})").into())
}

fn session_id(s: &str) -> Result<SessionId> {
    s.parse()
        .map_err(|_| Error::Store("PostgresStore: a stored session id does not parse".into()))
}

impl Reply {
    /// When the session was written, as the database's clock saw it.
    pub(super) fn written(&self) -> Result<Written> {
        Ok(Written {
            now_ms: self.now_ms,
            expires_at_ms: self.expires_ms.ok_or_else(|| malformed("expires_ms"))?,
        })
    }

    fn meta(&self) -> Result<Meta> {
        let need = |v: Option<i64>, what: &str| v.ok_or_else(|| malformed(what));
        Ok(Meta {
            user_id: self.user_id.clone(),
            created_ms: need(self.created_ms, "created_ms")?,
            last_seen_ms: need(self.last_seen_ms, "last_seen_ms")?,
            token_issued_ms: need(self.token_issued_ms, "token_issued_ms")?,
            absolute_deadline_ms: need(self.absolute_ms, "absolute_ms")?,
            version: u64::try_from(need(self.version, "version")?).unwrap_or(0),
            user_agent: self.user_agent.clone(),
            client_ip: self.client_ip.clone(),
        })
    }

    /// The session's data. `None` if a stored value is not JSON (a row
    /// written by something else): such a session is treated as corrupt.
    pub(super) fn data(&self) -> Result<Option<Data>> {
        let (Some(keys), Some(vals)) = (&self.keys, &self.vals) else {
            return Err(malformed("data"));
        };
        let mut data = Data::with_capacity(keys.len());
        for (k, v) in keys.iter().zip(vals) {
            match serde_json::from_str(v) {
                Ok(value) => {
                    data.insert(k.clone(), value);
                }
                Err(_) => {
                    tracing::warn!(key = %k, "PostgresStore: a stored value is not JSON");
                    return Ok(None);
                }
            }
        }
        Ok(Some(data))
    }

    /// The live session the reply carries; `None` if its data is corrupt.
    pub(super) fn loaded(&self) -> Result<Option<Loaded>> {
        let Some(data) = self.data()? else {
            return Ok(None);
        };
        let id = session_id(self.id.as_deref().ok_or_else(|| malformed("id"))?)?;
        Ok(Some(Loaded {
            id,
            meta: self.meta()?,
            data,
            now_ms: self.now_ms,
            expires_at_ms: self.expires_ms.ok_or_else(|| malformed("expires_ms"))?,
            touched: self.touched.unwrap_or(false),
        }))
    }

    /// The listing entry of a `sessions_of` row.
    pub(super) fn info(&self) -> Result<SessionInfo> {
        let id = session_id(self.id.as_deref().ok_or_else(|| malformed("id"))?)?;
        let user = self.user_id.clone().ok_or_else(|| malformed("user_id"))?;
        let expires = self.expires_ms.ok_or_else(|| malformed("expires_ms"))?;
        Ok(SessionInfo::new(id, user, &self.meta()?, expires))
    }

    /// The id of the session the reply names, if it names one.
    pub(super) fn session_id(&self) -> Option<SessionId> {
        self.id.as_deref().and_then(|s| s.parse().ok())
    }

    /// The ids a login evicted.
    pub(super) fn evicted(&self) -> Result<Vec<SessionId>> {
        self.evicted
            .iter()
            .flatten()
            .map(|s| session_id(s))
            .collect()
    }

    /// How long a held lock's lease still runs.
    pub(super) fn lease_left(&self) -> Option<Duration> {
        self.lease_left_ms
            .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
    }

    /// The fence of an acquired lock.
    pub(super) fn acquired_fence(&self) -> Result<u64> {
        let fence = self.fence.ok_or_else(|| malformed("fence"))?;
        Ok(u64::try_from(fence).unwrap_or(0))
    }
}

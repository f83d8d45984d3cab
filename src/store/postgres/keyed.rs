//! Keyed sessions in [`PostgresStore`]: each [`KeyedOp`] is one call of
//! `{prefix}keyed` (`sql/keyed_v2.sql`), which applies it to the record's
//! row under a row lock, as `apply` in `store/memory/keyed.rs` does, and
//! answers one `{prefix}keyed_reply` row, decoded here by column name.
//! Keyed records never go through the local cache.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, Row};

use super::{pg_error, PostgresStore};
use crate::clock::duration_ms;
use crate::store::keyed::{
    Expiry, Guard, KeyedId, KeyedOp, KeyedRecord, KeyedReply, KeyedState, KeyedStore,
    KeyedTimeouts, NEVER_MS,
};
use crate::store::ReleaseNotice;
use crate::{Error, Result};

/// A `{prefix}keyed_reply` row. Only `status` and `now_ms` are always set;
/// the rest as the status needs.
#[derive(Debug)]
struct Reply {
    status: String,
    state: Option<String>,
    value: Option<String>,
    version: Option<i64>,
    started_ms: Option<i64>,
    since_ms: Option<i64>,
    expires_ms: Option<i64>,
    now_ms: i64,
    fence: Option<i64>,
    lease_left_ms: Option<i64>,
    done: Option<bool>,
    released: Option<bool>,
}

impl<'r> FromRow<'r, PgRow> for Reply {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        Ok(Reply {
            status: row.try_get("status")?,
            state: row.try_get("state")?,
            value: row.try_get("value")?,
            version: row.try_get("version")?,
            started_ms: row.try_get("started_ms")?,
            since_ms: row.try_get("since_ms")?,
            expires_ms: row.try_get("expires_ms")?,
            now_ms: row.try_get::<Option<i64>, _>("now_ms")?.unwrap_or_default(),
            fence: row.try_get("fence")?,
            lease_left_ms: row.try_get("lease_left_ms")?,
            done: row.try_get("done")?,
            released: row.try_get("released")?,
        })
    }
}

/// A reply that lacks what its status promises: a schema that does not
/// match this build.
fn malformed(what: &str) -> Error {
    Error::Store(format!("PostgresStore: malformed keyed reply ({what})").into())
}

/// A stored number as the `u64` the contract speaks; versions and fences
/// are seeded from the clock and only grow, so a negative one is corrupt.
fn unsigned(n: Option<i64>, what: &str) -> Result<u64> {
    let n = n.ok_or_else(|| malformed(what))?;
    u64::try_from(n).map_err(|_| malformed(what))
}

impl Reply {
    fn into_keyed(self) -> Result<KeyedReply> {
        Ok(match self.status.as_str() {
            "record" => KeyedReply::Record(self.record()?),
            "missing" => KeyedReply::Missing,
            "active" => KeyedReply::Active,
            "finished" => KeyedReply::Finished,
            "conflict" => KeyedReply::Conflict {
                version: unsigned(self.version, "version")?,
            },
            "fenced" => KeyedReply::Fenced,
            "held" => KeyedReply::Held {
                lease_left: self
                    .lease_left_ms
                    .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
            },
            "done" => KeyedReply::Done(self.done.ok_or_else(|| malformed("done"))?),
            other => return Err(malformed(&format!("status {other:?}"))),
        })
    }

    fn record(&self) -> Result<KeyedRecord> {
        let need = |v: Option<i64>, what: &str| v.ok_or_else(|| malformed(what));
        let state = self.state.as_deref().and_then(KeyedState::parse);
        Ok(KeyedRecord {
            state: state.ok_or_else(|| malformed("state"))?,
            value: self.value.clone().ok_or_else(|| malformed("value"))?,
            version: unsigned(self.version, "version")?,
            started_ms: need(self.started_ms, "started_ms")?,
            since_ms: need(self.since_ms, "since_ms")?,
            expires_ms: need(self.expires_ms, "expires_ms")?,
            now_ms: self.now_ms,
            fence: self.fence.map(|f| unsigned(Some(f), "fence")).transpose()?,
        })
    }
}

/// A duration as the function takes it: whole ms, capped at
/// [`NEVER_MS`] so that `now + it` cannot overflow in SQL.
fn ms(d: Duration) -> i64 {
    duration_ms(d).min(NEVER_MS)
}

/// The guard's kind and number. A number past `i64::MAX` was never issued
/// by this store, so it goes as -1, which matches nothing.
fn guard(g: Option<Guard>) -> (Option<&'static str>, Option<i64>) {
    match g {
        Some(g) => (
            Some(g.kind()),
            Some(i64::try_from(g.number()).unwrap_or(-1)),
        ),
        None => (None, None),
    }
}

/// An expiry's two limits in ms, `None` for "no limit".
fn limits(e: &Expiry) -> (Option<i64>, Option<i64>) {
    (e.absolute.map(ms), e.sliding.map(ms))
}

#[async_trait]
impl KeyedStore for PostgresStore {
    async fn keyed(
        &self,
        id: &KeyedId,
        op: KeyedOp<'_>,
        timeouts: &KeyedTimeouts,
    ) -> Result<KeyedReply> {
        let args = op.args();
        let (guard, guard_n) = guard(args.guard);
        let (active_absolute, active_sliding) = limits(&timeouts.active);
        let (finished_absolute, finished_sliding) = limits(&timeouts.finished);
        let reply: Reply = sqlx::query_as(&self.inner.sql.keyed)
            .bind(id.as_str())
            .bind(args.op)
            .bind(args.value)
            .bind(guard)
            .bind(guard_n)
            .bind(args.lease.map(ms))
            .bind(args.state.map(KeyedState::as_str))
            .bind(args.touch)
            .bind(active_absolute)
            .bind(active_sliding)
            .bind(finished_absolute)
            .bind(finished_sliding)
            .bind(&self.inner.origin)
            .fetch_one(&self.inner.pool)
            .await
            .map_err(pg_error)?;
        if reply.released == Some(true) {
            // The listener skips this instance's own notices: wake here,
            // without waiting for the round trip.
            self.inner.keyed_waiters.wake_one(&id.as_str().to_owned());
        }
        reply.into_keyed()
    }

    fn keyed_release_notice(&self, id: &KeyedId) -> Option<ReleaseNotice> {
        if !self
            .inner
            .listening
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return None;
        }
        self.inner.keyed_waiters.watch(id.as_str().to_owned())
    }
}

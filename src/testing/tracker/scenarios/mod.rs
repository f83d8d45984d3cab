//! The tracker conformance scenarios, in three parts: each operation's
//! answers (`basics`), expiry by state (`expiry`), locks and contention
//! between tasks and instances (`contention`).

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::KeyedHarness;
use crate::tracker::{Expiry, Tracker, TrackerSettings};

mod basics;
mod contention;
mod expiry;

pub(crate) use self::basics::*;
pub(crate) use self::contention::*;
pub(crate) use self::expiry::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Conversation {
    pub(super) turns: Vec<String>,
    pub(super) count: u32,
}

pub(super) fn conv(first: &str) -> Conversation {
    Conversation {
        turns: vec![first.to_owned()],
        count: 0,
    }
}

pub(super) fn tracker(h: &dyn KeyedHarness) -> Tracker<Conversation> {
    Tracker::from_arc(h.store(), "chat")
}

pub(super) fn quick_locks(
    t: Tracker<Conversation>,
    lease: Duration,
    wait: Duration,
) -> Tracker<Conversation> {
    let s = TrackerSettings {
        lock_lease: lease,
        lock_wait: wait,
        ..*t.settings()
    };
    t.with_settings(s)
}

pub(super) fn expiring(active: Expiry, finished: Expiry) -> TrackerSettings {
    TrackerSettings {
        active,
        finished,
        ..TrackerSettings::default()
    }
}

pub(super) const MS: fn(u64) -> Option<Duration> = |ms| Some(Duration::from_millis(ms));

pub(super) const LONG: Expiry = Expiry {
    absolute: Some(Duration::from_secs(3600)),
    sliding: None,
};

/// Runs `op` on `a` and on `b` at once (two instances), answering both.
pub(super) async fn race<F, Fut, R>(
    a: &Tracker<Conversation>,
    b: &Tracker<Conversation>,
    key: &str,
    op: F,
) -> (R, R)
where
    F: Fn(Tracker<Conversation>, String) -> Fut,
    Fut: Future<Output = R> + Send + 'static,
    R: Send + 'static,
{
    let ta = tokio::spawn(op(a.clone(), key.to_owned()));
    let tb = tokio::spawn(op(b.clone(), key.to_owned()));
    (
        ta.await.expect("the first racer"),
        tb.await.expect("the second racer"),
    )
}

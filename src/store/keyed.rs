//! The store contract behind [`Tracker`](crate::tracker::Tracker): sessions
//! the application names by its own key, kept by the same stores as cookie
//! sessions.
//!
//! # Implementing it
//!
//! Implement [`KeyedStore`]: one method, [`KeyedStore::keyed`], that applies
//! one [`KeyedOp`] to one record in **one atomic step** (one Lua script, one
//! lock-held section, one SQL function call) and answers a [`KeyedReply`].
//! The stores in this crate keep the rules below; the tracker conformance
//! suite ([`sessionkit::testing::tracker`](crate::testing), feature
//! `testing`) checks them on each, and on yours: implement its
//! `KeyedHarness` and call `sessionkit::tracker_conformance_tests!`.
//!
//! A record is stored under its [`KeyedId`] (a hash of the tracker's name
//! and the application's key: the store never sees the key itself) and
//! holds: its [`KeyedState`], the value (JSON text), a version, the latest
//! lock fence issued, the current lock holder (fence and lease end), when
//! it started, when it entered its state, its deadline in that state
//! (`entered + absolute`, never moved by use) and its expiry
//! `min(last use + sliding, deadline)`. Every time is the store's clock in
//! milliseconds. A record whose expiry has passed is absent for every
//! operation, whether or not it was purged yet.
//!
//! | op | needs | does | answers |
//! |----|-------|------|---------|
//! | `Start` | absent | creates it, active | `Record` · `Active` · `Finished` |
//! | `Get` | the state asked for | touches (if asked and [`Expiry::touch_due`]) | `Record` · `Missing` · the other state |
//! | `Lock` | active, no live lease | bumps the fence, takes the lease, touches | `Record` with `fence` · `Held` · `Missing` · `Finished` |
//! | `RenewLock` | active, held with the fence, lease live | extends the lease | `Done` |
//! | `Unlock` | held with the fence | ends the lease, wakes a waiter | `Done` |
//! | `Update` | active; guard holds | sets the value, version + 1, touches | `Record` · `Conflict` · `Fenced` · `Held` · `Missing` · `Finished` |
//! | `Finish` | active; guard (if any) holds | state finished, version + 1, lock ended, finished expiry from now | as `Update` |
//! | `Resume` | finished | state active, version + 1, active expiry from now | `Record` · `Missing` · `Active` |
//! | `Remove` | anything | deletes it | `Done(existed)` |
//!
//! Guards: [`Guard::Version`] holds when the record's version is that one
//! *and* no other holder's lease is live (else `Held`: an update without the
//! lock must not slip under a holder, whose next fenced write would undo
//! it); [`Guard::Fence`] holds when the fence is the latest issued.
//! Versions and fences start, with `Start`, from the store's clock in
//! microseconds (plus a random part below 1000 where the clock has only
//! milliseconds), so a version or fence from a removed and restarted
//! record's earlier life does not match the new one.

use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::Result;

/// The id a keyed record is stored under: 22 characters of URL-safe base64
/// of SHA-256 over the tracker's name and the application's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyedId(String);

impl KeyedId {
    /// The id of `key` in the tracker named `name`. The two are hashed
    /// with a separator no name contains (`\0`), so `("a", "b:c")` and
    /// `("a:b", "c")` do not meet.
    pub fn new(name: &str, key: &str) -> KeyedId {
        use base64::Engine as _;
        let mut h = Sha256::new();
        h.update(b"sessionkit keyed\0");
        h.update(name.as_bytes());
        h.update(b"\0");
        h.update(key.as_bytes());
        let digest = h.finalize();
        KeyedId(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16]))
    }

    /// The id as text (22 URL-safe base64 characters).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for KeyedId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The two states of a keyed session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyedState {
    /// Started (or resumed) and not finished: it can be read, locked and
    /// updated.
    Active,
    /// Finished: kept for reading (and resuming) under its finished expiry.
    Finished,
}

impl KeyedState {
    /// `"active"` or `"finished"`, as the stores keep it.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyedState::Active => "active",
            KeyedState::Finished => "finished",
        }
    }

    /// The state named by [`as_str`](Self::as_str).
    pub fn parse(s: &str) -> Option<KeyedState> {
        match s {
            "active" => Some(KeyedState::Active),
            "finished" => Some(KeyedState::Finished),
            _ => None,
        }
    }
}

/// How long a keyed session lasts in one state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    /// From entering the state; use never extends it. `None`: no limit.
    pub absolute: Option<Duration>,
    /// From the last use (a read, a lock, an update). `None`: only the
    /// absolute limit counts.
    pub sliding: Option<Duration>,
}

impl Expiry {
    /// The expiry instant of a record used at `now_ms` whose deadline in
    /// its state is `deadline_ms`.
    pub fn expires_ms(&self, now_ms: i64, deadline_ms: i64) -> i64 {
        match self.sliding {
            Some(s) => now_ms.saturating_add(ms(s)).min(deadline_ms),
            None => deadline_ms,
        }
    }

    /// Whether a read at `now_ms` refreshes a record expiring at
    /// `expires_ms`: when it would move the expiry by at least a tenth of
    /// the sliding window, or a second, whichever is less. A read of a
    /// record read a moment ago then writes nothing, and an expiry is
    /// never more than that early.
    pub fn touch_due(&self, now_ms: i64, expires_ms: i64, deadline_ms: i64) -> bool {
        match self.sliding {
            Some(s) => {
                let step = (ms(s) / 10).min(1000);
                self.expires_ms(now_ms, deadline_ms) - expires_ms >= step.max(1)
            }
            None => false,
        }
    }

    /// The deadline of a record entering the state at `now_ms`.
    pub fn deadline_ms(&self, now_ms: i64) -> i64 {
        match self.absolute {
            Some(a) => now_ms.saturating_add(ms(a)).min(NEVER_MS),
            None => NEVER_MS,
        }
    }
}

/// "No deadline": 2^52 ms, so that times stay exact in Lua's doubles.
pub const NEVER_MS: i64 = 1 << 52;

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis())
        .unwrap_or(NEVER_MS)
        .min(NEVER_MS)
}

/// The expiry of each state, sent with every operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyedTimeouts {
    /// While active.
    pub active: Expiry,
    /// Once finished.
    pub finished: Expiry,
}

impl KeyedTimeouts {
    /// The expiry of `state`.
    pub fn of(&self, state: KeyedState) -> &Expiry {
        match state {
            KeyedState::Active => &self.active,
            KeyedState::Finished => &self.finished,
        }
    }
}

/// What a write must still hold to be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// The record is at this version, and no other holder's lease is live.
    Version(u64),
    /// This fence is the latest issued (the writer holds the lock).
    Fence(u64),
}

/// One operation on one record; see the [module docs](self) for each.
#[derive(Debug, Clone, Copy)]
pub enum KeyedOp<'a> {
    /// Create an active record holding `value` (JSON text).
    Start {
        /// The value, as JSON.
        value: &'a str,
    },
    /// Read the record, which must be in `state`; refresh its sliding
    /// expiry if `touch`.
    Get {
        /// The state the caller expects.
        state: KeyedState,
        /// Whether to refresh the sliding expiry.
        touch: bool,
    },
    /// Take the lock for `lease` and read the record.
    Lock {
        /// How long the lock is held unless renewed or released.
        lease: Duration,
    },
    /// Extend the lock held with `fence` to `lease` from now.
    RenewLock {
        /// The holder's fence.
        fence: u64,
        /// The new lease, from now.
        lease: Duration,
    },
    /// Release the lock held with `fence`.
    Unlock {
        /// The holder's fence.
        fence: u64,
    },
    /// Replace the value, if `guard` holds.
    Update {
        /// The new value, as JSON.
        value: &'a str,
        /// The version or fence the writer holds.
        guard: Guard,
    },
    /// Move the record to the finished state (ending its lock), if `guard`
    /// holds; `None` finishes whatever the version.
    Finish {
        /// The version or fence the writer holds, if any.
        guard: Option<Guard>,
    },
    /// Move a finished record back to the active state.
    Resume,
    /// Delete the record, whatever its state.
    Remove,
}

impl Guard {
    /// `"version"` or `"fence"`, as the stores' scripts take it.
    pub fn kind(self) -> &'static str {
        match self {
            Guard::Version(_) => "version",
            Guard::Fence(_) => "fence",
        }
    }

    /// The version or fence.
    pub fn number(self) -> u64 {
        match self {
            Guard::Version(n) | Guard::Fence(n) => n,
        }
    }
}

/// A [`KeyedOp`] as flat arguments, for a store that hands every operation
/// to one script or function (the Redis and PostgreSQL stores do).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyedArgs<'a> {
    /// `start`, `get`, `lock`, `renew_lock`, `unlock`, `update`, `finish`,
    /// `resume` or `remove`.
    pub op: &'static str,
    /// The value (`start`, `update`).
    pub value: Option<&'a str>,
    /// The guard (`renew_lock` and `unlock` carry the fence as one).
    pub guard: Option<Guard>,
    /// The lease (`lock`, `renew_lock`).
    pub lease: Option<Duration>,
    /// The state asked for (`get`).
    pub state: Option<KeyedState>,
    /// Whether to refresh the sliding expiry (`get`).
    pub touch: bool,
}

impl<'a> KeyedOp<'a> {
    /// The operation as flat arguments.
    pub fn args(self) -> KeyedArgs<'a> {
        let none = KeyedArgs::default();
        match self {
            KeyedOp::Start { value } => KeyedArgs {
                op: "start",
                value: Some(value),
                ..none
            },
            KeyedOp::Get { state, touch } => KeyedArgs {
                op: "get",
                state: Some(state),
                touch,
                ..none
            },
            KeyedOp::Lock { lease } => KeyedArgs {
                op: "lock",
                lease: Some(lease),
                ..none
            },
            KeyedOp::RenewLock { fence, lease } => KeyedArgs {
                op: "renew_lock",
                guard: Some(Guard::Fence(fence)),
                lease: Some(lease),
                ..none
            },
            KeyedOp::Unlock { fence } => KeyedArgs {
                op: "unlock",
                guard: Some(Guard::Fence(fence)),
                ..none
            },
            KeyedOp::Update { value, guard } => KeyedArgs {
                op: "update",
                value: Some(value),
                guard: Some(guard),
                ..none
            },
            KeyedOp::Finish { guard } => KeyedArgs {
                op: "finish",
                guard,
                ..none
            },
            KeyedOp::Resume => KeyedArgs {
                op: "resume",
                ..none
            },
            KeyedOp::Remove => KeyedArgs {
                op: "remove",
                ..none
            },
        }
    }
}

/// A keyed record as a store returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedRecord {
    /// Its state after the operation.
    pub state: KeyedState,
    /// The value, as JSON text.
    pub value: String,
    /// Bumped by every write.
    pub version: u64,
    /// When `Start` created it.
    pub started_ms: i64,
    /// When it entered its state (started, finished or resumed).
    pub since_ms: i64,
    /// When it expires unless used again.
    pub expires_ms: i64,
    /// The store's clock at the time of the operation.
    pub now_ms: i64,
    /// The fence of the lock this operation took (`Lock` only).
    pub fence: Option<u64>,
}

/// The answer to a [`KeyedOp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyedReply {
    /// Done; the record as it is now.
    Record(KeyedRecord),
    /// No live record under the id.
    Missing,
    /// The record is active, and the operation needed it absent or finished.
    Active,
    /// The record is finished, and the operation needed it absent or active.
    Finished,
    /// A [`Guard::Version`] did not match: the record is at `version`.
    Conflict {
        /// The record's current version.
        version: u64,
    },
    /// A [`Guard::Fence`] is not the latest fence: another holder took the
    /// lock since.
    Fenced,
    /// Another holder's lease is live (`Lock`, or a write with
    /// [`Guard::Version`]).
    Held {
        /// How much of that lease is left, if the store knows.
        lease_left: Option<Duration>,
    },
    /// `RenewLock`, `Unlock`, `Remove`: whether there was something to act on.
    Done(bool),
}

/// A store of keyed sessions. Implemented by
/// [`MemoryStore`](crate::MemoryStore), the Redis store and the PostgreSQL
/// store; see the [module docs](self) for the rules.
#[async_trait]
pub trait KeyedStore: Send + Sync + std::fmt::Debug + 'static {
    /// Applies `op` to the record `id` in one atomic step.
    async fn keyed(
        &self,
        id: &KeyedId,
        op: KeyedOp<'_>,
        timeouts: &KeyedTimeouts,
    ) -> Result<KeyedReply>;

    /// A notice for the next release of `id`'s lock, registered when this
    /// returns (see [`SessionStore::release_notice`](crate::SessionStore::release_notice)).
    /// The default sends none: waiters poll.
    fn keyed_release_notice(&self, id: &KeyedId) -> Option<crate::store::ReleaseNotice> {
        let _ = id;
        None
    }
}

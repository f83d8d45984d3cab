//! Keyed sessions: sessions the application names by its own key — a
//! chat-bot conversation, a websocket exchange, a multi-step job handled by
//! whichever replica gets the next event — kept in the same stores as
//! cookie sessions and seen alike by every instance.
//!
//! A [`Tracker<T>`] holds one kind of them, each a value of type `T` under
//! a key, with its own [`TrackerSettings`]. A session is **active** from
//! [`start`](Tracker::start) until [`finish`](Tracker::finish), then
//! **finished**: still readable with [`get_finished`](Tracker::get_finished)
//! under its finished expiry, until it is [`resume`](Tracker::resume)d or
//! expires. [`remove`](Tracker::remove) deletes it in either state.
//!
//! # Guarantees
//!
//! - **One store step per operation.** Each method is one call of the
//!   store's [`KeyedStore::keyed`]
//!   (one Lua script in Redis, one SQL function call in PostgreSQL, one
//!   lock-held section in memory). [`get_locked`](Tracker::get_locked)
//!   takes the lock and reads in that one step; finish and resume change
//!   the state in one step (on Redis the active and finished session are
//!   one hash, so the move is also one key and Redis Cluster-safe).
//! - **No lost updates.** [`update`](Tracker::update) is compare-and-set on
//!   the version read: a stale one answers [`TrackerError::Conflict`] and
//!   writes nothing. While another holder has the lock it answers
//!   [`TrackerError::Locked`], so the holder's next write cannot undo it.
//! - **Fenced locks**, as session locks ([`crate::lock`]): each acquisition
//!   issues a larger fence, and [`TrackerLock`]'s writes are refused
//!   ([`TrackerError::LockLost`]) once another holder took the lock after
//!   this one's lease ran out. Waiters wait on the store's release notices
//!   where it sends them (memory, Redis, PostgreSQL), bounded by the
//!   holder's lease.
//! - **Expiry by the store's clock** (Redis `TIME`, PostgreSQL
//!   `clock_timestamp()`, the memory store's [`Clock`](crate::clock::Clock)),
//!   with an absolute and a sliding limit per state.
//! - **Namespaced keys.** The store sees only a hash of the tracker's name
//!   and the key ([`KeyedId`]), kept apart from cookie sessions (Redis:
//!   `<prefix>:{<id>}:k`, PostgreSQL: its own table), so neither can reach
//!   the other under the same prefix.
//!
//! # Events
//!
//! [`Tracker::with_events`] publishes an
//! [`EventKind::Keyed`](crate::events::EventKind::Keyed) event (tracker,
//! key and [`KeyedChange`](crate::events::KeyedChange): started, updated
//! with its version, finished, resumed, removed) after each operation that
//! changed something, on the store's event bus; [`Tracker::events`] is a
//! feed of one tracker's events from every instance. Delivery and cost are
//! those of session events ([`crate::events`]): one command per event,
//! at most once; off by default, and then nothing is sent.
//!
//! # From SessionTracker
//!
//! The model is that of SessionTracker (C#, on Redis); its operations map
//! to these:
//!
//! | SessionTracker | sessionkit | differences |
//! |----------------|------------|-------------|
//! | `StartAsync` | [`start`](Tracker::start) | errors [`AlreadyStarted`](TrackerError::AlreadyStarted) / [`Finished`](TrackerError::Finished) |
//! | `GetAsync` | [`get`](Tracker::get) | refreshes the sliding expiry, as there |
//! | `GetLockedAsync` | [`get_locked`](Tracker::get_locked) | lock and read are one step (there: two) |
//! | `LockAsync` | [`lock`](Tracker::lock) | fenced; waits up to `lock_wait` on release notices |
//! | `RefreshAsync` | [`refresh`](Tracker::refresh) | |
//! | `UpdateAsync` | [`update`](Tracker::update) or [`TrackerLock::update`] | the version is checked (there: bumped only) |
//! | `UpdateAndGetAsync` | [`update_and_get`](Tracker::update_and_get) | |
//! | `FinishAsync` | [`finish`](Tracker::finish) or [`TrackerLock::finish`] | one step, one Cluster slot |
//! | `FinishAndGetAsync` | [`finish_and_get`](Tracker::finish_and_get) | |
//! | `GetFinishedAsync` | [`get_finished`](Tracker::get_finished) | |
//! | `ResumeAsync` | [`resume`](Tracker::resume) | one step, one Cluster slot |
//! | `ResumeAndGetAsync` | [`resume_and_get`](Tracker::resume_and_get) | |
//! | (delete) | [`remove`](Tracker::remove) | |
//! | "in progress" | [`TrackerError::AlreadyStarted`] | |
//! | "already finished" | [`TrackerError::Finished`] | |
//! | "already resumed" | [`TrackerError::NotFinished`] | |
//! | "lock not acquired" | [`TrackerError::LockTimeout`] | also [`LockLost`](TrackerError::LockLost) (fenced) |
//! | per-type settings | [`TrackerSettings`], one [`Tracker`] per type | plus `lock_wait` and `max_value_bytes` |
//!
//! # Example
//!
//! `examples/tracker_flow.rs` passes a conversation between two workers,
//! each with its own store connection.

mod error;
mod lock;
mod ops;
mod settings;
mod tracked;

pub use self::error::TrackerError;
pub use self::lock::TrackerLock;
pub use self::ops::Tracker;
pub use self::settings::TrackerSettings;
pub use self::tracked::Tracked;
pub use crate::store::keyed::{Expiry, KeyedId, KeyedState, KeyedStore};

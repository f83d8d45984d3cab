//! The persistence hook: application code called with a session's user and
//! data, to write them to the application's own database, when the session
//! ends (logout, revoke, eviction, expiry), on an interval while it lives,
//! and on demand; exactly one instance handles each occurrence, at least
//! once, with bounded retries.
//!
//! ```
//! use std::time::Duration;
//! use sessionkit::persist::{hook_fn, PersistOptions, PersistReason, PersistRecord, PersistWorker};
//! use sessionkit::store::ClientInfo;
//! use sessionkit::{MemoryStore, SessionConfig, SessionManager};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> sessionkit::Result<()> {
//! let store = MemoryStore::new();
//! let manager = SessionManager::new(store.clone(), SessionConfig::default())
//!     .with_persistence(store.persist_queue(), Duration::from_secs(300));
//! let (tx, mut written) = tokio::sync::mpsc::unbounded_channel();
//! let worker = PersistWorker::spawn(
//!     &manager,
//!     hook_fn(move |record: PersistRecord| {
//!         let tx = tx.clone();
//!         async move {
//!             // Your database write here: an upsert by record.session.
//!             tx.send(record).map_err(|_| "closed")
//!         }
//!     }),
//!     PersistOptions::default(),
//! )?;
//!
//! // What a request's handler does (outside a web framework, for the example):
//! let session = manager.load(None, ClientInfo::default()).await?;
//! session.login("alice").await?;
//! session.insert("cart", vec!["book"])?;
//! manager.commit(&session).await.map_err(|e| e.error)?;
//! session.logout().await?;
//!
//! let record = written.recv().await.expect("the logout's record");
//! assert_eq!(record.reason, PersistReason::LoggedOut);
//! assert_eq!(record.user.as_deref(), Some("alice"));
//! assert_eq!(record.data.unwrap()["cart"], serde_json::json!(["book"]));
//! worker.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Sources
//!
//! | when | [`PersistReason`] | data |
//! |------|-------------------|------|
//! | a commit wrote a session (changed data, login, rotation) | `Interval`, once `interval` passed since the first change not yet persisted | current, read when the job runs |
//! | [`persist_now(id)`](crate::SessionManager::persist_now) | `OnDemand`, now | current |
//! | [`persist_all()`](crate::SessionManager::persist_all) | every pending `Interval` job, now | current |
//! | [`Session::logout`](crate::Session::logout) | `LoggedOut` | read just before the logout |
//! | [`revoke`](crate::SessionManager::revoke), [`revoke_user`](crate::SessionManager::revoke_user), "log out other devices" | `Revoked` | read just before (the user's sessions listed, then each read) |
//! | a login over the per-user limit ([`MaxSessionsPolicy::EvictOldest`](crate::MaxSessionsPolicy)) | `Evicted` | read just before the login (the user's sessions listed, the least recently used past the limit read); `None` for a session a concurrent login evicted instead |
//! | the idle or absolute timeout | `Expired(reason)` | as it was at expiry, from the store's expiry source |
//!
//! Expiries come from the store, with no request: the memory store's purge,
//! the PostgreSQL purge (the job is inserted in the transaction that
//! deletes the row), and on Redis the expiry watcher of
//! `RedisStoreBuilder::expiry_events(true)` (required: `persist_queue`
//! refuses without it), whose claimant enqueues the job. A live session's
//! job that finds the session ended since does nothing: its ending has a
//! job of its own.
//!
//! # Delivery
//!
//! Jobs live in the store (`PersistQueue`: a map in memory, a sorted set
//! and hashes under one Cluster slot on Redis, a table on PostgreSQL),
//! one per session and kind, so a session changed on every request is
//! persisted once per interval. A [`PersistWorker`] on any instance claims
//! due jobs with a lease (one store step, so one instance gets each), calls
//! the hook, and removes the job; a failure retries after a backoff (1 s,
//! doubling), and after [`max_attempts`](PersistOptions::max_attempts) the
//! job is dropped with an `error` in the log. A worker that dies holding a
//! job leaves it to another once its lease runs out. So: at least once
//! (twice only if a hook outlives its lease or a worker dies after the
//! hook but before settling), by one instance at a time. Make the hook an
//! idempotent upsert.
//!
//! The step between ending a session and enqueuing its job is not atomic
//! with the ending on Redis (the ending's script and the queue are in
//! different Cluster slots) or for manager-side endings: a failure in
//! between is logged at `error` and that job is lost. On PostgreSQL,
//! expiry jobs are inserted in the purge's transaction.
//!
//! [`PersistWorker::shutdown`] stops claiming, finishes the jobs in hand and
//! handles everything due (on the memory store, every pending job, since
//! no other process shares it).
//!
//! # Cost
//!
//! Off (no `with_persistence`): nothing (no command, no key; counted in
//! `tests/redis_persist.rs`). On, per request (measured on Redis):
//!
//! | request | extra round trips |
//! |---------|-------------------|
//! | read | none |
//! | first write, write, login, rotation | 1 (the job's enqueue script) |
//! | logout, revoke | 2 (a read of the session's data, the enqueue) |
//! | `revoke_user` | 1 listing + 1 read per session + 1 enqueue per session |
//! | login with an evicting per-user limit | 1 listing + 1 read per session about to be evicted |
//!
//! A worker polls with one claim per [`poll`](PersistOptions::poll) while
//! idle, and makes two store calls per job (the claim is shared by a
//! batch): the settle, and for a live session the read of its data.
//! Reads for persistence never refresh a session's idle timeout.

mod hook;
pub(crate) mod sources;
mod worker;

pub use self::hook::{hook_fn, HookFn, PersistHook, PersistReason, PersistRecord};
pub use self::worker::{PersistOptions, PersistWorker};
pub use crate::store::persist::{Claimed, Ending, PersistJob, PersistQueue, Settle};

//! Lifecycle events: what happened to which session, seen by every
//! instance on the store.
//!
//! Turn them on with [`SessionManager::with_events`](crate::SessionManager::with_events),
//! giving the store's bus ([`MemoryStore::events`](crate::MemoryStore::events),
//! `RedisStore::events`, `PostgresStore::events`), and read them with
//! [`SessionManager::events`](crate::SessionManager::events):
//!
//! ```
//! use sessionkit::events::EventKind;
//! use sessionkit::store::ClientInfo;
//! use sessionkit::{MemoryStore, SessionConfig, SessionManager};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> sessionkit::Result<()> {
//! let store = MemoryStore::new();
//! let manager = SessionManager::new(store.clone(), SessionConfig::default())
//!     .with_events(store.events());
//! let mut feed = manager.events().await?;
//! // What a request's handler does (outside a web framework, for the example):
//! let session = manager.load(None, ClientInfo::default()).await?;
//! session.login("alice").await?;
//! let event = feed.recv().await.expect("the login's event");
//! assert!(matches!(event.kind, EventKind::LoggedIn { .. }));
//! assert_eq!(event.user.as_deref(), Some("alice"));
//! assert_eq!(event.session, session.id());
//! assert_eq!(manager.revoke_user("alice").await?, 1);
//! let event = feed.recv().await.expect("the revocation's event");
//! assert!(matches!(event.kind, EventKind::Revoked { .. }));
//! # Ok(()) }
//! ```
//!
//! # The events
//!
//! | kind | when | session | user |
//! |------|------|---------|------|
//! | [`Created`](EventKind::Created) | an anonymous session's first write | the new session | — |
//! | [`LoggedIn`](EventKind::LoggedIn) | [`Session::login`](crate::Session::login) | the new session (`previous`: the one it replaced) | the user |
//! | [`Rotated`](EventKind::Rotated) | periodic or explicit rotation | the new id (`previous`: the old) | the user, if logged in |
//! | [`LoggedOut`](EventKind::LoggedOut) | [`Session::logout`](crate::Session::logout) | the ended session | the user, if logged in |
//! | [`Revoked`](EventKind::Revoked) | [`revoke`](crate::SessionManager::revoke), [`revoke_of_user`](crate::SessionManager::revoke_of_user) (scope `One`); [`revoke_user`](crate::SessionManager::revoke_user), [`Session::logout_everywhere`](crate::Session::logout_everywhere) (`AllOfUser`); [`revoke_user_except`](crate::SessionManager::revoke_user_except) (`AllButOne`) | the ended session (`One`), else none | the user (none for `revoke` by id alone) |
//! | [`Evicted`](EventKind::Evicted) | a login over the per-user limit ended an older session | the ended session (`by`: the login's) | the user |
//! | [`Expired`](EventKind::Expired) | the idle or absolute timeout ran out (`reason`), with no request ending it | the expired session (`data`: its data then) | the user, if logged in |
//!
//! Every event carries the session's public id ([`SessionId`](crate::SessionId),
//! never the token) and the store's time. An operation that ended nothing
//! (a revocation of an unknown id, a logout of an expired session) sends
//! no event.
//!
//! # Delivery
//!
//! The manager publishes an event after the store call it describes
//! succeeded, before the request's response, on the same store: a Redis
//! Stream (`<prefix>:events`, one `XADD`), a PostgreSQL table
//! (`<prefix>events`, one function call), or the memory store's broadcast
//! channel. A feed delivers, in recording order, every event recorded
//! while it is subscribed, on every instance, whichever instance caused it;
//! it reconnects by itself after a lost connection and resumes after the
//! last event it delivered, so a subscriber misses nothing the store kept
//! (see `RedisStore::events` for what Redis keeps). A publish that fails
//! (the store went down between the operation and its event) is logged
//! at `warn` and the event is lost: the operation itself stands, and its
//! response is not failed for it. So: at most once per occurrence,
//! exactly once while the store is reachable. Concurrent operations are
//! recorded in the order their events reached the store: a login's
//! `Evicted` may come before the evicted session's own `LoggedIn`.
//!
//! # Expiry
//!
//! An expiry has no request: the store finds it and publishes it, with the
//! session's user and data as they were.
//!
//! - Memory: the purge (every [`purge_interval`](crate::store::memory::MemoryStoreBuilder::purge_interval),
//!   60 s by default) publishes one event per expired session it removes,
//!   while a feed is subscribed.
//! - PostgreSQL: once `PostgresStore::events` was called, the purge
//!   (`PostgresStoreBuilder::purge_interval`) records one event per expired
//!   session in the same transaction as its delete; instances purging
//!   together claim different rows (`SKIP LOCKED`), so each expiry is
//!   recorded once, and only if its row is deleted.
//! - Redis: with `RedisStoreBuilder::expiry_events(true)`, from keyspace
//!   notifications of a shadow key per session, on every primary of a
//!   Cluster; every instance hears the notice, one claims the session (a
//!   script that reads and deletes it) and publishes its event. Pub/Sub
//!   is at most once: an expiry while no instance is subscribed (all down,
//!   or reconnecting) is not reported. See `sessionkit::redis::RedisStore`'s
//!   key layout for the cost.
//!
//! So an expiry is reported within the purge interval (memory,
//! PostgreSQL) or as soon as Redis expires the shadow (Redis samples
//! expired keys ten times a second; under load it can lag), never before
//! the session's deadline. A session that is ended explicitly (logout,
//! revoke) after its deadline but before the store noticed is not reported
//! as expired.
//!
//! # Keyed sessions
//!
//! A [`Tracker`](crate::tracker::Tracker) with
//! [`with_events`](crate::tracker::Tracker::with_events) publishes
//! [`Keyed`](EventKind::Keyed) events on the same bus (started, updated
//! with the version, finished, resumed, removed), with the same delivery,
//! and [`Tracker::events`](crate::tracker::Tracker::events) is a feed of
//! that tracker's. A manager's feed leaves them out. Keyed sessions that
//! expire are not reported yet.
//!
//! # Cost
//!
//! One store command per event: a first write of an anonymous session, a
//! login (and one per session it evicts), a logout, a rotation, a
//! revocation; none for reads and ordinary writes (counted with Redis's
//! `INFO commandstats` in `tests/redis_events.rs`). A feed polls with one
//! `XREAD` (a `SELECT` on PostgreSQL) per poll interval while idle.
//! Without `with_events` nothing is published and nothing is polled:
//! events off cost nothing. Expiry events on Redis add one `SET` (the
//! shadow) wherever a session's expiry moves (its first write, a login, a
//! touch once per touch interval), one key per session, and keep each
//! session hash 5 minutes past its expiry; on memory and PostgreSQL they
//! cost nothing per request.

mod bus;
mod event;

pub use self::bus::{EventBus, EventFeed, FeedError, FeedSender};
pub use self::event::{
    EventKind, ExpiryReason, KeyedChange, NewEvent, RevokeScope, RotationReason, SessionEvent,
};

//! The client-side session cache of a [`RedisStore`](super::RedisStore)
//! built with [`client_cache`](super::RedisStoreBuilder::client_cache). The
//! bookkeeping (`client.rs`, `ticket.rs`) is free of I/O; the batched
//! touches (`touches.rs`) and the heartbeat (`heartbeat.rs`) are the cache's
//! background tasks; the tracked connections that feed it are
//! [`Link`](super::connection::link::Link)s, one per server
//! (`connection/nodes.rs`).
//!
//! # What makes a cached copy trustworthy
//!
//! An entry is inserted only from the reply of a script call made on the
//! tracked connection (RESP3, `CLIENT TRACKING ON NOLOOP`), which read the
//! key and so made Redis promise one invalidation push for the next change
//! of that key by any other client. Three things can make a reply stale by
//! the time its task gets to insert it, and each is checked under one lock:
//!
//! - **an invalidation push** for the key arrived after the call started:
//!   pushes and replies come in over one socket, and redis-rs hands pushes to
//!   our callback from the connection's reader, in order, before it hands
//!   over the replies that follow them; a push processed since the call
//!   started marks the key's *flight* dirty, and the reply is dropped;
//! - **another call of ours on the same key** (NOLOOP silences pushes for our
//!   own writes): every reply carries the session's `(@ver, @seen)` stamp,
//!   which only grows; while calls on a key overlap (a *flight*), a reply
//!   older than one already applied is dropped, and a call that failed or
//!   timed out (its write may still land) marks the flight dirty;
//! - **the connection changed**: each tracked connection has an epoch; a
//!   reply is inserted only if its connection is still the live one, and a
//!   disconnection empties the cache and waits for tracking to be on again
//!   on a new connection (see [`ClientCache::connection_ready`]).
//!
//! Removing an entry is always safe, so every doubt (odd push payload,
//! failed call, unknown effect) ends in a removal or a full reset.
//!
//! # Time
//!
//! Entries are never served at or past the expiry Redis reported for the
//! key. "Now" is the last Redis `TIME` seen in a reply plus the monotonic
//! time elapsed since the call that returned it was *sent* (so it errs
//! late, never early: an entry stops being served up to one round trip
//! early, never late), which keeps app servers' wall clocks out of it.
//!
//! # Why the `lru` crate
//!
//! The cache needs exact least-recently-used eviction with O(1) get, put
//! and remove by key; `lru` is small, widely used, and with default features
//! off has no dependency of its own. A clock (second-chance) ring would save
//! the list links but needs its own index for removal by key; not worth the
//! code here.

mod client;
mod heartbeat;
mod stats;
#[cfg(test)]
mod tests;
mod ticket;
mod touches;

pub(crate) use self::client::{ClientCache, PendingTouch};
pub(crate) use self::heartbeat::spawn_heartbeat;
pub use self::stats::ClientCacheStats;
pub(crate) use self::ticket::Ticket;
pub(crate) use self::touches::{spawn_flusher, BATCH, FLUSH_EVERY};

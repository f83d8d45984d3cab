//! Distributed web sessions for axum and actix-web.
//!
//! `sessionkit` loads the session named by the request's cookie (or token
//! header) when a handler asks for the [`Session`] extractor, before the
//! handler's body runs, and afterwards writes back only the keys that
//! changed. A route that never extracts the session costs no store call. Sessions can be bound to a user:
//! list a user's sessions (one per device), log a user out everywhere or on
//! other devices, allow one login at a time or at most *n*. Login rotates the
//! token; revocation is final even for requests already in flight.
//!
//! # Quick start (axum)
//!
//! ```
//! use axum::{routing::{get, post}, Router};
//! use sessionkit::{axum::SessionLayer, MemoryStore, Session, SessionConfig, SessionManager};
//!
//! async fn counter(session: Session) -> Result<String, sessionkit::Error> {
//!     let n: u64 = session.get("n")?.unwrap_or(0) + 1;
//!     session.insert("n", n)?;
//!     Ok(format!("visit {n}"))
//! }
//!
//! async fn login(session: Session) -> Result<&'static str, sessionkit::Error> {
//!     session.login("alice").await?; // new token, data kept, user bound
//!     Ok("welcome")
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let manager = SessionManager::new(MemoryStore::new(), SessionConfig::default());
//! let app: Router = Router::new()
//!     .route("/", get(counter))
//!     .route("/login", post(login))
//!     .layer(SessionLayer::new(manager));
//! # use tower::ServiceExt;
//! # let res = app.oneshot(http::Request::get("/").body(axum::body::Body::empty()).unwrap()).await.unwrap();
//! # assert!(res.headers().contains_key("set-cookie"));
//! # }
//! ```
//!
//! # What is guaranteed, and what is not
//!
//! - Tokens carry 256 random bits from the OS-seeded CSPRNG; stores only see
//!   a hash ([`SessionId`]), so a copy of the store cannot be replayed.
//! - A bad, expired or unknown cookie gives a fresh anonymous session, never
//!   an error. Nothing is stored, and no cookie is sent, until a key is set.
//! - Unchanged sessions are not written (except a read that refreshes the
//!   idle deadline, at most once per
//!   [`touch_interval`](SessionConfig::touch_interval)). Changed sessions
//!   write only the changed keys: concurrent requests that change *different*
//!   keys both keep their change; for the *same* key the last write wins.
//! - Logout and revocation are final: a request in flight with the session
//!   cannot write it back; its response is kept and clears the cookie.
//! - Parallel requests are safe (see below): a browser is never logged out
//!   by its own concurrent requests, and a write answered 2xx is kept.
//! - For a read-modify-write that must not lose an update, a request takes
//!   the session's lock ([`Session::lock`], or the [`LockedSession`]
//!   extractor): other requests of the session that ask for it wait, and a
//!   fencing token stops a holder whose lease ran out from overwriting a
//!   newer holder's write. The lock is advisory (see [`lock`]).
//! - A handler that only logs in or out can take [`LazySession`] instead of
//!   [`Session`]: it reads nothing first, so its login or logout is one
//!   store call.
//! - Expiry (idle and absolute) is decided by the store's clock.
//! - A store failure or timeout becomes `503 Service Unavailable` for the
//!   requests that use the session (configurable: [`StoreFailure`]); routes
//!   that do not use it are unaffected.
//!
//! # Parallel requests
//!
//! Browsers send requests in parallel (page assets, `fetch` calls, several
//! tabs), and apply each response's `Set-Cookie` in the order the responses
//! complete. sessionkit keeps this rule under any interleaving:
//!
//! **No response tells a client to drop a cookie while that session or its
//! successor is alive; no response replaces a live token with an anonymous
//! one; and a write answered 2xx is in the store afterwards** — except a
//! write made with a token that was
//! - *ended* (logout, revoke, eviction, expiry): dropped, and the client is
//!   told to clear its cookie;
//! - *replaced by a login or [`Session::rotate`]*: dropped, because
//!   following the old token into the new session would undo the session
//!   fixation defence; the client's new cookie is left alone (the request
//!   sees an empty session and sets no cookie).
//!
//! Writes through a token replaced by periodic rotation
//! ([`rotation_interval`](SessionConfig::rotation_interval)) are kept: they
//! reach the new session through the old token's alias, and only the
//! request that rotated sends the new cookie. A login carries over the data
//! other requests saved meanwhile (it reads the old session's latest data
//! in the same store step). A token change is never lost to a later failure
//! in the same request: an error response still carries the new cookie.
//!
//! # Modules
//!
//! - [`axum`], [`actix`]: the middleware and extractors;
//! - [`store`]: [`MemoryStore`], the Redis store (feature `redis`), the
//!   PostgreSQL store (feature `postgres`), and the [`SessionStore`] trait
//!   with a guide to writing your own;
//! - `testing` (feature `testing`): the store conformance suite, for
//!   authors of stores;
//! - [`lock`]: session locks for read-modify-write;
//! - [`http`]: framework-free request and response types, for adapter
//!   authors; [`clock`]: clocks for the memory store and tests.
//!
//! See OWASP's [Session Management Cheat Sheet] for the reasoning behind the
//! defaults.
//!
//! [Session Management Cheat Sheet]: https://cheatsheetseries.owasp.org/cheatsheets/Session_Management_Cheat_Sheet.html
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod clock;
mod config;
mod context;
mod error;
pub mod events;
pub mod http;
mod lazy;
mod manager;
pub mod persist;
mod request;
mod session;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod token;
pub mod tracker;

#[cfg(feature = "actix")]
pub mod actix;
#[cfg(feature = "axum")]
pub mod axum;
#[cfg(feature = "postgres")]
pub use store::postgres;
#[cfg(feature = "redis")]
pub use store::redis;

pub use config::{
    HeaderTransport, Limits, MaxSessionsPolicy, SameSite, SessionConfig, StoreFailure,
    TokenTransport, UserLimit,
};
pub use context::SessionManager;
pub use error::{Error, Result};
pub use lazy::LazySession;
pub use session::lock::{self, LockedSession, SessionLock};
pub use session::{Session, Status};
#[cfg(feature = "memory")]
pub use store::memory::MemoryStore;
pub use store::{SessionInfo, SessionStore};
pub use token::SessionId;

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
//! use axum::{routing::get, Router};
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
//!     .route("/login", get(login))
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
//! - For a read-modify-write that must not lose an update, a request takes
//!   the session's lock ([`Session::lock`], or the [`LockedSession`]
//!   extractor): other requests of the session that ask for it wait, and a
//!   fencing token stops a holder whose lease ran out from overwriting a
//!   newer holder's write. The lock is advisory (see [`lock`]).
//! - Expiry (idle and absolute) is decided by the store's clock.
//! - A store failure or timeout becomes `503 Service Unavailable` for the
//!   requests that use the session (configurable: [`StoreFailure`]); routes
//!   that do not use it are unaffected.
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
mod cookies;
mod error;
mod headers;
pub mod lock;
mod manager;
mod request;
mod session;
pub mod store;
mod token;

#[cfg(feature = "actix")]
pub mod actix;
#[cfg(feature = "axum")]
pub mod axum;
#[cfg(feature = "redis")]
pub use store::redis;

pub use config::{
    HeaderTransport, Limits, MaxSessionsPolicy, SameSite, SessionConfig, StoreFailure,
    TokenTransport, UserLimit,
};
pub use cookies::MAX_COOKIE_HEADER_LEN;
pub use error::{BoxError, Error, Result};
pub use headers::{HeaderSource, ResponseHeaders};
pub use lock::{LockedSession, SessionLock};
pub use manager::SessionManager;
pub use request::RequestSession;
pub use session::{Session, Status};
#[cfg(feature = "memory")]
pub use store::memory::{MemoryStore, MemoryStoreBuilder};
pub use store::{ClientInfo, SessionInfo, SessionStore};
pub use token::{InvalidSessionId, SessionId, Tag, Token};

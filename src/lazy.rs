//! [`LazySession`]: the session of a request, read from the store only when
//! a handler first reads it.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::request::RequestSession;
use crate::{Result, Session};

/// The session of the current request, loaded on first read.
///
/// [`Session`] is loaded by its extractor, before the handler runs, so its
/// accessors are synchronous. `LazySession` defers that: its accessors are
/// `async`, and a handler that only logs in or out costs **one** store
/// round trip instead of two (the store's login reads the old session's
/// latest data itself, and its logout follows rotation aliases itself), the
/// same as with the client-side cache.
///
/// Everything else behaves as with [`Session`] (they are the same session:
/// [`session`](Self::session) returns it, and what is changed through
/// either is committed once after the handler). Use `LazySession` in login,
/// logout and other handlers that may not read the session; use `Session`
/// where a handler reads it anyway.
///
/// ```
/// use axum::{routing::post, Router};
/// use sessionkit::{axum::SessionLayer, LazySession, MemoryStore, SessionConfig, SessionManager};
///
/// async fn login(session: LazySession) -> Result<&'static str, sessionkit::Error> {
///     // Check the credentials first; then, in one store call:
///     session.login("ada").await?;
///     Ok("welcome")
/// }
///
/// async fn logout(session: LazySession) -> Result<&'static str, sessionkit::Error> {
///     session.logout().await?;
///     Ok("bye")
/// }
///
/// let manager = SessionManager::new(MemoryStore::new(), SessionConfig::default());
/// let app: Router = Router::new()
///     .route("/login", post(login))
///     .route("/logout", post(logout))
///     .layer(SessionLayer::new(manager));
/// ```
#[derive(Clone, Debug)]
pub struct LazySession {
    request: RequestSession,
}

impl LazySession {
    /// The lazy handle on a request's session (what the extractors build).
    pub fn new(request: RequestSession) -> Self {
        LazySession { request }
    }

    /// The session, loaded on the first call (or already there after a
    /// login or logout through this handle).
    ///
    /// # Errors
    /// As for [`RequestSession::session`](crate::http::RequestSession::session).
    pub async fn session(&self) -> Result<Session> {
        self.request.session().await
    }

    /// [`Session::get`], after loading.
    ///
    /// # Errors
    /// Load errors, and those of [`Session::get`].
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.session().await?.get(key)
    }

    /// [`Session::insert`], after loading.
    ///
    /// # Errors
    /// Load errors, and those of [`Session::insert`].
    pub async fn insert<T: Serialize>(&self, key: impl Into<String>, value: T) -> Result<()> {
        self.session().await?.insert(key, value)
    }

    /// [`Session::remove`], after loading.
    ///
    /// # Errors
    /// Load errors.
    pub async fn remove(&self, key: &str) -> Result<bool> {
        Ok(self.session().await?.remove(key))
    }

    /// The logged-in user, after loading.
    ///
    /// # Errors
    /// Load errors.
    pub async fn user_id(&self) -> Result<Option<String>> {
        Ok(self.session().await?.user_id())
    }

    /// [`Session::login`], in one store call when the session was not
    /// loaded: the login step itself finds the token's session (through
    /// rotation aliases) and carries its latest data over.
    ///
    /// # Errors
    /// As for [`Session::login`]; after an error the session is loaded
    /// normally if read later.
    pub async fn login(&self, user_id: impl Into<String>) -> Result<()> {
        let user_id = user_id.into();
        self.request
            .unread(|session| {
                let user_id = user_id.clone();
                async move { session.login(user_id).await }
            })
            .await
    }

    /// [`Session::logout`], in one store call when the session was not
    /// loaded: the store ends the session the token leads to, and answers
    /// [`Error::Superseded`](crate::Error::Superseded) (changing nothing)
    /// when another request's login or rotation replaced the token.
    ///
    /// # Errors
    /// As for [`Session::logout`].
    pub async fn logout(&self) -> Result<()> {
        self.request
            .unread(|session| async move { session.logout().await })
            .await
    }

    /// [`Session::logout_everywhere`], after loading (it needs the user).
    ///
    /// # Errors
    /// Load errors, and those of [`Session::logout_everywhere`].
    pub async fn logout_everywhere(&self) -> Result<u64> {
        self.session().await?.logout_everywhere().await
    }

    /// [`Session::token`]: the token issued in this request, if any. Reads
    /// nothing from the store.
    pub fn token(&self) -> Option<String> {
        self.request.loaded().and_then(Session::token)
    }
}

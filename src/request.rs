//! [`RequestSession`]: one request's claim on its session, loaded from the
//! store only when a handler first asks for it.

use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::OnceCell;

use crate::config::StoreFailure;
use crate::http::headers::{self, HeaderSource};
use crate::http::{CommitError, ResponseHeaders};
use crate::store::ClientInfo;
use crate::token::Token;
use crate::{LockedSession, Result, Session, SessionManager};

/// What the middleware attaches to a request: the token and client details
/// read from the headers, and the session once something asked for it.
///
/// Loading is lazy: a request whose handler never extracts the session
/// costs no store call, is not written, gets no cookie, and keeps working
/// while the store is down.
#[derive(Clone, Debug)]
pub struct RequestSession {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    manager: SessionManager,
    token: Option<Token>,
    client: ClientInfo,
    session: OnceCell<Session>,
}

impl RequestSession {
    /// Reads the token (cookie or header, as configured) and the client
    /// details. No store call.
    pub fn new(
        manager: &SessionManager,
        headers: &(impl HeaderSource + ?Sized),
        ip: Option<IpAddr>,
    ) -> Self {
        RequestSession {
            inner: Arc::new(Inner {
                token: headers::token_of(manager.config(), headers),
                client: headers::client_of(headers, ip),
                manager: manager.clone(),
                session: OnceCell::new(),
            }),
        }
    }

    /// The request's session, loaded on first call; later calls return the
    /// same handle.
    ///
    /// # Errors
    /// Store failures and timeouts, unless the config says
    /// [`StoreFailure::Continue`]: then a fresh anonymous session that is
    /// never written is returned instead.
    pub async fn session(&self) -> Result<Session> {
        let inner = &self.inner;
        inner
            .session
            .get_or_try_init(|| async {
                let loaded = inner
                    .manager
                    .load(inner.token.clone(), inner.client.clone())
                    .await;
                match loaded {
                    Err(e) if inner.manager.config().store_failure == StoreFailure::Continue => {
                        tracing::warn!(error = %e, "session store failed; continuing without a session");
                        Ok(inner.manager.stand_in(inner.client.clone()))
                    }
                    other => other,
                }
            })
            .await
            .cloned()
    }

    /// Runs `op` on the request's session without loading it: on the loaded
    /// session if a handler loaded it already, else on one known only by
    /// the token (`State::unread`), which becomes the request's session if
    /// `op` succeeds (and is dropped if it fails, so a later
    /// [`session`](Self::session) loads as usual). For login and logout,
    /// which need nothing read.
    pub(crate) async fn unread<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: Fn(Session) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let inner = &self.inner;
        let out = std::sync::Mutex::new(None);
        let session = inner
            .session
            .get_or_try_init(|| async {
                let session = inner
                    .manager
                    .unread(inner.token.clone(), inner.client.clone());
                let value = op(session.clone()).await?;
                *out.lock().unwrap_or_else(|e| e.into_inner()) = Some(value);
                Ok::<_, crate::Error>(session)
            })
            .await?
            .clone();
        match out.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(value) => Ok(value),
            None => op(session).await,
        }
    }

    /// The session, if a handler loaded it.
    pub(crate) fn loaded(&self) -> Option<&Session> {
        self.inner.session.get()
    }

    /// The request's session (loaded as by [`session`](Self::session)) with
    /// its lock taken: what the `LockedSession` extractors return.
    ///
    /// # Errors
    /// Those of [`session`](Self::session) and of
    /// [`Session::lock`](crate::Session::lock).
    pub async fn locked_session(&self) -> Result<LockedSession> {
        let session = self.session().await?;
        Ok(LockedSession::new(session.lock().await?))
    }

    /// Commits the session if a handler loaded it, and returns the headers
    /// to add to the response (none for an untouched session).
    ///
    /// # Errors
    /// Store failures and timeouts, with the headers the error response must
    /// still carry (see [`CommitError`]), unless the config says
    /// [`StoreFailure::Continue`]: then the write is dropped (and logged),
    /// the response is kept, and it gets those headers.
    pub async fn finish(&self) -> Result<ResponseHeaders, CommitError> {
        let Some(session) = self.inner.session.get() else {
            return Ok(ResponseHeaders::default());
        };
        let manager = &self.inner.manager;
        match manager.commit(session).await {
            Err(e) if manager.config().store_failure == StoreFailure::Continue => {
                tracing::warn!(error = %e.error, "session store failed; the session's changes are lost");
                Ok(e.headers)
            }
            other => other,
        }
    }
}

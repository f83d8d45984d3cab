//! axum integration: [`SessionLayer`] (a tower `Layer`), [`SessionService`],
//! and the [`Session`] and [`LockedSession`] extractors.
//!
//! ```
//! use axum::{routing::get, Router};
//! use sessionkit::{axum::SessionLayer, MemoryStore, Session, SessionConfig, SessionManager};
//!
//! let manager = SessionManager::new(MemoryStore::new(), SessionConfig::default());
//! let app: Router = Router::new()
//!     .route("/", get(|s: Session| async move { format!("{:?}", s.user_id()) }))
//!     .layer(SessionLayer::new(manager));
//! ```
//!
//! The client IP recorded with a session comes from
//! [`ConnectInfo<SocketAddr>`](axum::extract::ConnectInfo) when the server is
//! started with `into_make_service_with_connect_info::<SocketAddr>()`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderName, HeaderValue, Request};
use tower_layer::Layer;
use tower_service::Service;

use crate::http::{RequestSession, ResponseHeaders};
use crate::{Error, LazySession, LockedSession, Session, SessionManager};

/// Adds sessions to every request of the wrapped service.
#[derive(Clone, Debug)]
pub struct SessionLayer {
    manager: SessionManager,
}

impl SessionLayer {
    /// A layer that loads and commits sessions through `manager`.
    pub fn new(manager: SessionManager) -> Self {
        SessionLayer { manager }
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            manager: self.manager.clone(),
        }
    }
}

/// The service [`SessionLayer`] builds: loads the session, runs the inner
/// service, commits and sets the cookie.
#[derive(Clone, Debug)]
pub struct SessionService<S> {
    inner: S,
    manager: SessionManager,
}

/// The future of [`SessionService`].
pub type ResponseFuture<E> = Pin<Box<dyn Future<Output = Result<Response, E>> + Send>>;

impl<S, B> Service<Request<B>> for SessionService<S>
where
    S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The clone that was polled ready is the one that must be called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let manager = self.manager.clone();
        Box::pin(async move {
            let ip = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip());
            let session = RequestSession::new(&manager, req.headers(), ip);
            req.extensions_mut().insert(session.clone());
            let mut res = inner.call(req).await?;
            match session.finish().await {
                Ok(headers) => apply(&headers, res.headers_mut()),
                Err(failed) => {
                    let mut res = failed.error.into_response();
                    apply(&failed.headers, res.headers_mut());
                    return Ok(res);
                }
            }
            Ok(res)
        })
    }
}

fn apply(headers: &ResponseHeaders, out: &mut http::HeaderMap) {
    for (name, value, append) in headers.iter() {
        let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value))
        else {
            tracing::error!(
                header = name,
                "invalid session header; check the cookie and header settings"
            );
            continue;
        };
        if append {
            out.append(name, value);
        } else {
            out.insert(name, value);
        }
    }
}

fn request_session(parts: &Parts) -> Result<RequestSession, Error> {
    parts
        .extensions
        .get::<RequestSession>()
        .cloned()
        .ok_or(Error::MissingLayer)
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        request_session(parts)?.session().await
    }
}

/// Reads nothing before the handler: see [`LazySession`].
impl<S: Send + Sync> FromRequestParts<S> for LazySession {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        request_session(parts).map(LazySession::new)
    }
}

/// Takes the session's lock before the handler runs; rejects with the
/// typed [`Error`] (`423 Locked` on timeout).
impl<S: Send + Sync> FromRequestParts<S> for LockedSession {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        request_session(parts)?.locked_session().await
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "session error");
        }
        (status, self.client_message()).into_response()
    }
}

//! actix-web integration: [`SessionMiddleware`] (an actix `Transform`) and
//! the [`Session`] and [`LockedSession`] extractors. The handle is the same
//! `Send + Sync` [`Session`] as in axum.
//!
//! ```
//! use actix_web::{web, App};
//! use sessionkit::{actix::SessionMiddleware, MemoryStore, Session, SessionConfig, SessionManager};
//!
//! async fn index(session: Session) -> Result<String, sessionkit::Error> {
//!     let n: u64 = session.get("n")?.unwrap_or(0) + 1;
//!     session.insert("n", n)?;
//!     Ok(format!("visit {n}"))
//! }
//!
//! # #[actix_web::main] async fn main() {
//! let manager = SessionManager::new(MemoryStore::new(), SessionConfig::default());
//! let app = App::new()
//!     .wrap(SessionMiddleware::new(manager.clone()))
//!     .route("/", web::get().to(index));
//! # let app = actix_web::test::init_service(app).await;
//! # let res = actix_web::test::call_service(&app, actix_web::test::TestRequest::get().uri("/").to_request()).await;
//! # assert!(res.headers().contains_key("set-cookie"));
//! # }
//! ```

use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::rc::Rc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{forward_ready, Payload, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};

use crate::http::{HeaderSource, RequestSession, ResponseHeaders};
use crate::{Error, LazySession, LockedSession, Session, SessionManager};

/// Adds sessions to every request of the wrapped actix-web service.
#[derive(Clone, Debug)]
pub struct SessionMiddleware {
    manager: SessionManager,
}

impl SessionMiddleware {
    /// A middleware that loads and commits sessions through `manager`.
    pub fn new(manager: SessionManager) -> Self {
        SessionMiddleware { manager }
    }
}

impl<S, B> Transform<S, ServiceRequest> for SessionMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = SessionService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(SessionService {
            service: Rc::new(service),
            manager: self.manager.clone(),
        }))
    }
}

/// The service [`SessionMiddleware`] builds.
#[derive(Debug)]
pub struct SessionService<S> {
    service: Rc<S>,
    manager: SessionManager,
}

type LocalBoxFuture<T> = Pin<Box<dyn Future<Output = T>>>;

impl<S, B> Service<ServiceRequest> for SessionService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let service = Rc::clone(&self.service);
        let manager = self.manager.clone();
        Box::pin(async move {
            let ip = req.peer_addr().map(|a| a.ip());
            let session = RequestSession::new(&manager, &ActixHeaders(req.headers()), ip);
            req.extensions_mut().insert(session.clone());
            let mut res = service.call(req).await?;
            match session.finish().await {
                Ok(headers) => apply(&headers, res.headers_mut()),
                Err(failed) => {
                    let mut res = res.error_response(failed.error);
                    apply(&failed.headers, res.headers_mut());
                    return Ok(res.map_into_right_body());
                }
            }
            Ok(res.map_into_left_body())
        })
    }
}

/// actix-web 4 has its own header map type (on `http` 0.2).
struct ActixHeaders<'a>(&'a HeaderMap);

impl HeaderSource for ActixHeaders<'_> {
    fn header_values(&self, name: &str) -> Vec<&[u8]> {
        self.0.get_all(name).map(HeaderValue::as_bytes).collect()
    }
}

fn apply(headers: &ResponseHeaders, out: &mut HeaderMap) {
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

impl FromRequest for Session {
    type Error = Error;
    type Future = LocalBoxFuture<Result<Session, Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let request = req.extensions().get::<RequestSession>().cloned();
        Box::pin(async move { request.ok_or(Error::MissingLayer)?.session().await })
    }
}

/// Reads nothing before the handler: see [`LazySession`].
impl FromRequest for LazySession {
    type Error = Error;
    type Future = std::future::Ready<Result<LazySession, Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let request = req.extensions().get::<RequestSession>().cloned();
        std::future::ready(request.map(LazySession::new).ok_or(Error::MissingLayer))
    }
}

/// Takes the session's lock before the handler runs; rejects with the
/// typed [`Error`] (`423 Locked` on timeout).
impl FromRequest for LockedSession {
    type Error = Error;
    type Future = LocalBoxFuture<Result<LockedSession, Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let request = req.extensions().get::<RequestSession>().cloned();
        Box::pin(async move { request.ok_or(Error::MissingLayer)?.locked_session().await })
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> actix_web::http::StatusCode {
        // actix-web 4 re-exports `http` 0.2; convert through the number.
        actix_web::http::StatusCode::from_u16(self.status().as_u16())
            .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        if self.status().is_server_error() {
            tracing::error!(error = %self, "session error");
        }
        HttpResponse::build(self.status_code()).body(self.client_message())
    }
}

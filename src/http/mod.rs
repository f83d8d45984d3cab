//! What the middleware reads from requests and writes to responses, free of
//! any web framework: for adapter authors. Applications never need it.
//!
//! An adapter wraps each request in a [`RequestSession`] (built from a
//! [`HeaderSource`] and the peer address), puts it where the extractor
//! finds it, and after the handler copies the [`ResponseHeaders`] that
//! [`RequestSession::finish`] returns onto the response, also when the
//! commit failed ([`CommitError::headers`](crate::http::CommitError)).

pub(crate) mod cookies;
pub(crate) mod headers;

pub use self::cookies::MAX_COOKIE_HEADER_LEN;
pub use self::headers::{CommitError, HeaderSource, ResponseHeaders};
pub use crate::request::RequestSession;

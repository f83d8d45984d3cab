//! What the middleware reads from a request and writes to a response, in
//! terms free of any web framework. Adapters implement [`HeaderSource`] for
//! their header map and copy [`ResponseHeaders`] out; every decision is
//! made here and in the manager, so all frameworks behave the same.

use std::net::IpAddr;

use crate::http::cookies;
use crate::store::ClientInfo;
use crate::token::{Token, TOKEN_LEN};
use crate::{Error, SessionConfig};

/// The most of a `User-Agent` header kept with a session.
const MAX_USER_AGENT_LEN: usize = 256;

/// A request's headers, as raw bytes. Implemented for the header maps of the
/// supported frameworks; implement it to drive a
/// [`SessionManager`](crate::SessionManager) from anything else.
pub trait HeaderSource {
    /// Every value of the header `name` (lowercase), in order.
    fn header_values(&self, name: &str) -> Vec<&[u8]>;
}

impl HeaderSource for http::HeaderMap {
    fn header_values(&self, name: &str) -> Vec<&[u8]> {
        self.get_all(name)
            .iter()
            .map(http::HeaderValue::as_bytes)
            .collect()
    }
}

/// A commit that failed. The response is the error's, but it must still
/// carry `headers`: when the request changed the token (a login or a
/// rotation that the store already made), they hold the new token, without
/// which the client would keep one that no longer works.
#[derive(Debug)]
pub struct CommitError {
    /// What failed.
    pub error: Error,
    /// The headers to add to the error response.
    pub headers: ResponseHeaders,
}

impl std::fmt::Display for CommitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for CommitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// For code that only needs the error (`manager.commit(&s).await?` in a
/// function returning [`crate::Result`]); the headers are dropped.
impl From<CommitError> for Error {
    fn from(e: CommitError) -> Self {
        e.error
    }
}

/// Headers the middleware adds to a response: `Set-Cookie`, the token
/// header of a header transport, and `Cache-Control: no-store` whenever a
/// token is sent or cleared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseHeaders {
    entries: Vec<(String, String)>,
}

impl ResponseHeaders {
    pub(crate) fn push(&mut self, name: &str, value: String) {
        self.entries.push((name.to_owned(), value));
    }

    /// `(lowercase name, value, append)`: `append` is true for headers that
    /// may repeat (`Set-Cookie`), false for those that replace what the
    /// handler set (`Cache-Control`, the token header).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, bool)> {
        self.entries
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str(), n == "set-cookie"))
    }

    /// Whether there is nothing to add.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The token a request carries, by the configured transport (cookie first).
/// Malformed input of any kind is no token, never an error.
pub(crate) fn token_of(
    config: &SessionConfig,
    headers: &(impl HeaderSource + ?Sized),
) -> Option<Token> {
    let transport = &config.transport;
    if transport.cookie() {
        let from_cookie =
            cookies::token_from_cookie_headers(config, headers.header_values("cookie"));
        if from_cookie.is_some() {
            return from_cookie;
        }
    }
    let header = transport.header()?;
    headers
        .header_values(&header.request_header)
        .into_iter()
        .filter(|v| v.len() <= TOKEN_LEN + 64)
        .filter_map(|v| std::str::from_utf8(v).ok())
        .filter_map(|v| header.strip_scheme(v))
        .find_map(Token::parse)
}

/// [`ClientInfo`] from the `User-Agent` header and the peer address.
pub(crate) fn client_of(headers: &(impl HeaderSource + ?Sized), ip: Option<IpAddr>) -> ClientInfo {
    let user_agent = headers.header_values("user-agent").first().map(|ua| {
        let mut s = String::from_utf8_lossy(ua).into_owned();
        if s.len() > MAX_USER_AGENT_LEN {
            let mut cut = MAX_USER_AGENT_LEN;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
        }
        s
    });
    ClientInfo { user_agent, ip }
}

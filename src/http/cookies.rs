//! Reading the token from `Cookie` headers and building `Set-Cookie` values.

use cookie::{Cookie, CookieBuilder};

use crate::token::{Token, TOKEN_LEN};
use crate::SessionConfig;

/// `Cookie` headers longer than this are not parsed at all (browsers cap a
/// cookie at 4 KiB and a header block at 8–16 KiB, so this is already hostile).
pub const MAX_COOKIE_HEADER_LEN: usize = 16 * 1024;

/// What the response must do with the session cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CookieAction {
    /// Leave the client's cookie as it is.
    None,
    /// Send this `Set-Cookie` value (a new token, or a refreshed `Max-Age`).
    Set(String),
    /// Send this `Set-Cookie` value, which clears the cookie. It carries the
    /// same `Path`, `Domain`, `Secure`, `HttpOnly` and `SameSite` as the
    /// session cookie, without which browsers ignore it.
    Remove(String),
}

/// Finds the session token among a request's `Cookie` header values.
/// Non-UTF-8, oversized or malformed headers and values are skipped: a bad
/// cookie makes an anonymous request, never an error.
pub(crate) fn token_from_cookie_headers<'a>(
    config: &SessionConfig,
    headers: impl IntoIterator<Item = &'a [u8]>,
) -> Option<Token> {
    for header in headers {
        if header.len() > MAX_COOKIE_HEADER_LEN {
            continue;
        }
        // `name=value` pairs split by `;`, as browsers send them. Only our
        // cookie's value is looked at, as bytes, so the rest of the header
        // (other apps' cookies, any encoding) costs a scan and nothing else.
        let name = config.cookie_name.as_bytes();
        for pair in header.split(|b| *b == b';') {
            let Some(eq) = pair.iter().position(|b| *b == b'=') else {
                continue;
            };
            let (n, v) = (pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii());
            if n != name || v.len() != TOKEN_LEN {
                continue;
            }
            if let Some(token) = std::str::from_utf8(v).ok().and_then(Token::parse) {
                return Some(token);
            }
        }
    }
    None
}

fn builder(config: &SessionConfig, value: String) -> CookieBuilder<'static> {
    let mut b = Cookie::build((config.cookie_name.clone(), value))
        .path(config.path.clone())
        .secure(config.secure)
        .http_only(config.http_only)
        .same_site(config.same_site);
    if let Some(domain) = &config.domain {
        b = b.domain(domain.clone());
    }
    b
}

/// The `Set-Cookie` value carrying `token`; with `max_age_secs` for a
/// persistent cookie.
pub(crate) fn set_cookie(
    config: &SessionConfig,
    token: &Token,
    max_age_secs: Option<i64>,
) -> String {
    let mut b = builder(config, token.as_str().to_owned());
    if let Some(secs) = max_age_secs {
        b = b.max_age(cookie::time::Duration::seconds(secs.max(0)));
    }
    b.build().to_string()
}

/// The `Set-Cookie` value that clears the session cookie.
pub(crate) fn removal_cookie(config: &SessionConfig) -> String {
    let mut c = builder(config, String::new()).build();
    c.make_removal();
    c.to_string()
}

//! Header token transport (API clients, mobile apps) in axum and actix-web:
//! `TokenTransport::Header` (`Authorization: Bearer <token>` in,
//! `x-session-token` out, no cookie) and `TokenTransport::CookieThenHeader`.
//!
//! Scenarios take a `support::Backend` and a `http_client::Framework`, and
//! run on every store × framework over real HTTP.

mod http_client;
mod support;

use http::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use http::{HeaderName, HeaderValue, StatusCode};
use sessionkit::{Error, HeaderTransport, Session, SessionConfig, TokenTransport};

use http_client::*;
use support::Backend;

scenario_tests!(
    header_transport_sends_the_token_in_a_header_and_no_cookie,
    login_token_in_the_body_matches_the_header_and_the_old_token_dies,
    bad_authorization_headers_give_a_fresh_anonymous_session,
    custom_header_names_are_honoured,
    cookie_then_header_prefers_the_cookie_and_sends_both,
);

/// The default response header of a header transport.
const TOKEN_HEADER: &str = "x-session-token";

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).expect("a valid header value")
}

fn bearer_config() -> SessionConfig {
    SessionConfig::default().token_transport(TokenTransport::Header(HeaderTransport::bearer()))
}

/// The standard routes, plus:
/// - `/login-token/{user}`: logs in, answers `Session::token()` (the JSON
///   login response of an API)
/// - `/rotate-token`: rotates, answers `Session::token()`
/// - `/token`: answers `Session::token()` without changing anything
fn token_routes() -> Routes {
    let token_or_none = |session: &Session| session.token().unwrap_or_else(|| NONE.to_owned());
    routes()
        .route(
            "/login-token/{user}",
            move |session: Session, params: Vec<String>| async move {
                let [user] = <[String; 1]>::try_from(params).expect("one param");
                session.login(user).await?;
                Ok::<_, Error>(token_or_none(&session))
            },
        )
        .route("/rotate-token", move |session: Session, _| async move {
            session.rotate().await?;
            Ok::<_, Error>(token_or_none(&session))
        })
        .route("/token", move |session: Session, _| async move {
            Ok::<_, Error>(token_or_none(&session))
        })
}

/// `GET path` with `Authorization: <value>`.
async fn with_auth(srv: &TestServer, path: &str, value: &str) -> Resp {
    get_with_headers(srv, path, vec![(AUTHORIZATION, hv(value))]).await
}

/// `GET path` with `Authorization: Bearer <token>`.
async fn bearer(srv: &TestServer, path: &str, token: &str) -> Resp {
    with_auth(srv, path, &format!("Bearer {token}")).await
}

/// Like [`bearer`], asserting 200; answers the body.
async fn bearer_body(srv: &TestServer, path: &str, token: &str) -> String {
    let res = bearer(srv, path, token).await;
    assert_eq!(res.status, StatusCode::OK, "GET {path}: {}", res.body);
    res.body
}

impl Resp {
    /// The token in the response header `name`, asserting it is there, has
    /// the token shape, comes with `Cache-Control: no-store`, and that no
    /// cookie is set.
    fn expect_header_token(&self, name: &str) -> String {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        let token = self
            .header(name)
            .unwrap_or_else(|| panic!("expected a {name} header, got {:?}", self.headers))
            .to_owned();
        assert_token_shape(&token);
        assert_eq!(self.cache_control(), Some("no-store"), "with {name}");
        token
    }

    /// Asserts 200, no token header of `name` and no `Set-Cookie`.
    fn assert_ok_without_token(&self, name: &str, what: &str) {
        self.assert_ok_without_cookie(what);
        assert!(
            self.header(name).is_none(),
            "{what}: unexpected {name}: {:?}",
            self.header(name)
        );
    }
}

// ---------------------------------------------------------------- Header

async fn header_transport_sends_the_token_in_a_header_and_no_cookie(
    backend: Backend,
    fw: Framework,
) {
    let srv = with_layer(fw, token_routes(), backend.manager(bearer_config())).await;

    // The first write returns the token in the header, and never a cookie.
    let res = get_with(&srv, "/set/a/1", None).await;
    let token = res.expect_header_token(TOKEN_HEADER);
    assert!(
        res.headers.get(SET_COOKIE).is_none(),
        "header transport sent a cookie: {:?}",
        res.headers
    );
    // Another first write gets another token.
    let other = get_with(&srv, "/set/a/2", None)
        .await
        .expect_header_token(TOKEN_HEADER);
    assert_ne!(other, token);

    // The bearer token reads the session; a read sends no token back.
    let res = bearer(&srv, "/get/a", &token).await;
    assert_eq!(res.body, "1");
    res.assert_ok_without_token(TOKEN_HEADER, "read with the bearer token");
    assert_eq!(bearer_body(&srv, "/get/a", &other).await, "2");
    // The scheme is case-insensitive.
    assert_eq!(
        with_auth(&srv, "/get/a", &format!("bearer {token}"))
            .await
            .body,
        "1"
    );

    // Updates keep the token: no header, no cookie.
    for expected in 1..=3 {
        let res = bearer(&srv, "/incr", &token).await;
        assert_eq!(res.body, expected.to_string());
        res.assert_ok_without_token(TOKEN_HEADER, "update");
    }
    assert_eq!(bearer_body(&srv, "/keys", &token).await, "a,n");
    // A token the client already holds is never shown to handlers.
    assert_eq!(bearer_body(&srv, "/token", &token).await, NONE);

    // The cookie is not a transport here: the same token in a cookie is no token.
    let res = get_with(&srv, "/get/a", Some(&token)).await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, NONE));
    res.assert_ok_without_token(TOKEN_HEADER, "token sent as a cookie");
}

async fn login_token_in_the_body_matches_the_header_and_the_old_token_dies(
    backend: Backend,
    fw: Framework,
) {
    let manager = backend.manager(bearer_config());
    let srv = with_layer(fw, token_routes(), manager.clone()).await;

    let old = get_with(&srv, "/set/cart/apple", None)
        .await
        .expect_header_token(TOKEN_HEADER);

    let res = bearer(&srv, "/login-token/alice", &old).await;
    let new = res.expect_header_token(TOKEN_HEADER);
    assert!(
        res.headers.get(SET_COOKIE).is_none(),
        "login sent a cookie: {:?}",
        res.headers
    );
    assert_eq!(res.body, new, "Session::token() is the token sent");
    assert_ne!(new, old, "login must rotate the token");

    // The new token is logged in and carries the data; the old one is dead.
    assert_eq!(bearer_body(&srv, "/whoami", &new).await, "alice");
    assert_eq!(bearer_body(&srv, "/get/cart", &new).await, "apple");
    assert_eq!(bearer_body(&srv, "/whoami", &old).await, ANONYMOUS);
    assert_eq!(bearer_body(&srv, "/get/cart", &old).await, NONE);
    assert_eq!(bearer_body(&srv, "/keys", &old).await, "");
    assert_eq!(manager.sessions_of("alice").await.unwrap().len(), 1);

    // Logging in without any session also answers the token.
    let res = get_with(&srv, "/login-token/bob", None).await;
    let bob = res.expect_header_token(TOKEN_HEADER);
    assert_eq!(res.body, bob);
    assert_eq!(bearer_body(&srv, "/whoami", &bob).await, "bob");

    // Rotation: the same, and the old token stops working at once.
    let res = bearer(&srv, "/rotate-token", &new).await;
    let rotated = res.expect_header_token(TOKEN_HEADER);
    assert_eq!(res.body, rotated);
    assert_ne!(rotated, new);
    assert_eq!(bearer_body(&srv, "/whoami", &rotated).await, "alice");
    assert_eq!(bearer_body(&srv, "/whoami", &new).await, ANONYMOUS);

    // Logout: no cookie to clear and no token to send; the token is dead.
    let res = bearer(&srv, "/logout", &rotated).await;
    assert_eq!(res.body, "bye");
    res.assert_ok_without_token(TOKEN_HEADER, "logout");
    assert_eq!(bearer_body(&srv, "/whoami", &rotated).await, ANONYMOUS);
    assert!(manager.sessions_of("alice").await.unwrap().is_empty());
}

async fn bad_authorization_headers_give_a_fresh_anonymous_session(backend: Backend, fw: Framework) {
    let srv = with_layer(fw, token_routes(), backend.manager(bearer_config())).await;
    let anonymous = get_with(&srv, "/set/secret/42", None)
        .await
        .expect_header_token(TOKEN_HEADER);
    let token = bearer(&srv, "/login-token/alice", &anonymous)
        .await
        .expect_header_token(TOKEN_HEADER);

    let tampered = {
        let mut t = token.clone().into_bytes();
        let i = t.len() - 10;
        t[i] = if t[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(t).unwrap()
    };
    let mut non_utf8 = b"Bearer \xff\xfe".to_vec();
    non_utf8.extend_from_slice(&token.as_bytes()[2..]);

    let auth = |v: HeaderValue| (AUTHORIZATION, v);
    let cases: Vec<(&str, Vec<(HeaderName, HeaderValue)>)> = vec![
        ("wrong scheme", vec![auth(hv(&format!("Basic {token}")))]),
        ("no scheme", vec![auth(hv(&token))]),
        ("scheme glued on", vec![auth(hv(&format!("Bearer{token}")))]),
        ("garbage", vec![auth(hv("garbage"))]),
        ("bearer garbage", vec![auth(hv("Bearer garbage"))]),
        ("empty bearer", vec![auth(hv("Bearer "))]),
        ("empty header", vec![auth(hv(""))]),
        (
            "over-long header",
            vec![auth(hv(&format!("Bearer {}", "A".repeat(10 * 1024))))],
        ),
        (
            "over-long header holding the token",
            vec![auth(hv(&format!("Bearer {token} {}", "x".repeat(200))))],
        ),
        (
            "token plus a char",
            vec![auth(hv(&format!("Bearer {token}A")))],
        ),
        (
            "tampered token",
            vec![auth(hv(&format!("Bearer {tampered}")))],
        ),
        (
            "non-UTF-8",
            vec![auth(HeaderValue::from_bytes(&non_utf8).unwrap())],
        ),
        (
            "the token in a cookie",
            vec![(COOKIE, hv(&format!("{COOKIE_NAME}={token}")))],
        ),
        (
            "the token in another header",
            vec![(
                HeaderName::from_static("x-session-token"),
                hv(&format!("Bearer {token}")),
            )],
        ),
        (
            "several bad Authorization headers",
            vec![
                auth(hv("garbage")),
                auth(hv(&format!("Basic {token}"))),
                auth(hv(&format!("Bearer {tampered}"))),
            ],
        ),
    ];

    for (what, headers) in cases {
        let with = |path: &'static str| {
            let headers = headers.clone();
            let srv = srv.clone();
            async move { get_with_headers(&srv, path, headers).await }
        };
        let res = with("/keys").await;
        assert_eq!(res.status, StatusCode::OK, "{what}: {}", res.body);
        assert_eq!(res.body, "", "{what}: saw data");
        res.assert_ok_without_token(TOKEN_HEADER, what);
        assert_eq!(with("/whoami").await.body, ANONYMOUS, "{what}");
        assert_eq!(with("/get/secret").await.body, NONE, "{what}");

        // A write gets a brand-new session, never the one named.
        let res = with("/set/fresh/1").await;
        assert_eq!(res.status, StatusCode::OK, "{what}: {}", res.body);
        let fresh = res.expect_header_token(TOKEN_HEADER);
        assert_ne!(fresh, token, "{what}");
        assert_eq!(bearer_body(&srv, "/keys", &fresh).await, "fresh", "{what}");
        assert_eq!(bearer_body(&srv, "/whoami", &fresh).await, ANONYMOUS);
    }

    // The real session was not disturbed, and is found among several headers.
    assert_eq!(bearer_body(&srv, "/whoami", &token).await, "alice");
    let res = get_with_headers(
        &srv,
        "/get/secret",
        vec![
            auth(hv("Basic dXNlcjpwYXNz")),
            auth(hv(&format!("Bearer {token}"))),
        ],
    )
    .await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "42"));
}

// ---------------------------------------------------------------- custom names

async fn custom_header_names_are_honoured(backend: Backend, fw: Framework) {
    let transport = HeaderTransport::bearer()
        .request_header("x-api-session", None)
        .response_header("x-new-session");
    let config = SessionConfig::default().token_transport(TokenTransport::Header(transport));
    let srv = with_layer(fw, token_routes(), backend.manager(config)).await;
    let api = |token: &str| vec![(HeaderName::from_static("x-api-session"), hv(token))];

    let res = get_with(&srv, "/set/a/1", None).await;
    let token = res.expect_header_token("x-new-session");
    assert!(res.header(TOKEN_HEADER).is_none(), "default header sent");
    assert!(res.headers.get(SET_COOKIE).is_none(), "cookie sent");

    // The bare token in the custom header reads the session.
    let res = get_with_headers(&srv, "/get/a", api(&token)).await;
    assert_eq!(res.body, "1");
    res.assert_ok_without_token("x-new-session", "read with the custom header");

    // Neither the default header nor a scheme in the bare header is a token.
    let res = bearer(&srv, "/get/a", &token).await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, NONE));
    let res = get_with_headers(&srv, "/get/a", api(&format!("Bearer {token}"))).await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, NONE));

    // Login answers the new token in the body and the custom header.
    let res = get_with_headers(&srv, "/login-token/dora", api(&token)).await;
    let new = res.expect_header_token("x-new-session");
    assert!(res.header(TOKEN_HEADER).is_none(), "default header sent");
    assert_eq!(res.body, new);
    assert_ne!(new, token);
    let res = get_with_headers(&srv, "/whoami", api(&new)).await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "dora"));
    let res = get_with_headers(&srv, "/whoami", api(&token)).await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, ANONYMOUS));
}

// ---------------------------------------------------------------- CookieThenHeader

async fn cookie_then_header_prefers_the_cookie_and_sends_both(backend: Backend, fw: Framework) {
    let config = SessionConfig::default()
        .token_transport(TokenTransport::CookieThenHeader(HeaderTransport::bearer()));
    let srv = with_layer(fw, token_routes(), backend.manager(config)).await;

    // A new token goes out both ways, with the same value.
    let res = get_with(&srv, "/set/who/a", None).await;
    let a = res.expect_token();
    let cookie = res.session_cookie().unwrap();
    cookie.assert_default_attributes();
    assert_eq!(res.header(TOKEN_HEADER), Some(a.as_str()));
    assert_eq!(res.cache_control(), Some("no-store"));
    assert_token_shape(&a);
    let res = get_with(&srv, "/set/who/b", None).await;
    let b = res.expect_token();
    assert_eq!(res.header(TOKEN_HEADER), Some(b.as_str()));
    assert_ne!(a, b);

    let cookie_a = (COOKIE, hv(&format!("{COOKIE_NAME}={a}")));
    let bearer_b = (AUTHORIZATION, hv(&format!("Bearer {b}")));

    // Both present and valid for different sessions: the cookie wins.
    let res = get_with_headers(&srv, "/get/who", vec![cookie_a.clone(), bearer_b.clone()]).await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "a"));
    res.assert_ok_without_token(TOKEN_HEADER, "read with cookie and header");
    // The order of the headers does not matter.
    let res = get_with_headers(&srv, "/get/who", vec![bearer_b.clone(), cookie_a.clone()]).await;
    assert_eq!(res.body, "a");
    // Only one of them: that one.
    assert_eq!(body_of(&srv, "/get/who", &a).await, "a");
    let res = get_with_headers(&srv, "/get/who", vec![bearer_b.clone()]).await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "b"));
    res.assert_ok_without_token(TOKEN_HEADER, "read with the header only");
    // A cookie that is no token at all does not hide the header.
    let res = get_with_headers(
        &srv,
        "/get/who",
        vec![(COOKIE, hv("id=garbage")), bearer_b.clone()],
    )
    .await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "b"));

    // Writes through either transport keep their session and token.
    let res = get_with_headers(&srv, "/set/via/header", vec![bearer_b.clone()]).await;
    res.assert_ok_without_token(TOKEN_HEADER, "write with the header");
    assert_eq!(bearer_body(&srv, "/keys", &b).await, "via,who");
    assert_eq!(body_of(&srv, "/keys", &a).await, "who");

    // Login through the header: the new token goes out as a cookie, in the
    // header and in the body, all the same.
    let res = get_with_headers(&srv, "/login-token/erin", vec![bearer_b.clone()]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let new = res.expect_token();
    res.session_cookie().unwrap().assert_default_attributes();
    assert_eq!(res.header(TOKEN_HEADER), Some(new.as_str()));
    assert_eq!(res.body, new);
    assert_eq!(res.cache_control(), Some("no-store"));
    assert_ne!(new, b);
    assert_eq!(whoami(&srv, &new).await, "erin");
    assert_eq!(bearer_body(&srv, "/whoami", &new).await, "erin");
    assert_eq!(bearer_body(&srv, "/get/who", &new).await, "b");
    assert_eq!(bearer_body(&srv, "/whoami", &b).await, ANONYMOUS);

    // Logout clears the cookie and sends no token.
    let res = get_with(&srv, "/logout", Some(&new)).await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "bye"));
    let removal = res.session_cookie().expect("logout clears the cookie");
    assert!(removal.is_removal(), "{}", removal.raw);
    assert!(res.header(TOKEN_HEADER).is_none(), "logout sent a token");
    assert_eq!(bearer_body(&srv, "/whoami", &new).await, ANONYMOUS);
}

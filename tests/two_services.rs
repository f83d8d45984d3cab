//! One session, two services: the axum and actix-web apps of
//! `examples/two_services.rs` (included below, not copied), each on a real
//! HTTP server with its own store, both on one `redis-server` of the test's
//! own (module `redis`) or on one PostgreSQL database (module `postgres`,
//! the binary's shared server in a schema of the test's own), with the same
//! configuration. Real HTTP clients (`reqwest`,
//! without redirects or a cookie store: the tests carry cookies and tokens
//! themselves) talk to both.
#![cfg(all(feature = "redis", feature = "axum", feature = "actix"))]

mod support;

#[path = "../examples/two_services/apps.rs"]
mod apps;

use std::time::Duration;

use apps::{ActixServer, AxumServer, ACTIX, AXUM};
use reqwest::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use reqwest::StatusCode;
#[cfg(feature = "postgres")]
use sessionkit::postgres::PostgresStore;
use sessionkit::redis::RedisStore;
use sessionkit::SessionManager;
use support::RedisServer;

/// The session cookie's name (the default of `apps::config()`).
const COOKIE_NAME: &str = "id";

/// The header that returns a new token to API clients.
const TOKEN_HEADER: &str = "x-session-token";

/// The store both services share.
#[derive(Clone, Copy, Debug)]
enum Shared {
    Redis,
    #[cfg(feature = "postgres")]
    Postgres,
}

impl Shared {
    /// Two managers on one store, each with its own connections (two
    /// processes' worth of state), and the Redis server to keep alive.
    async fn managers(self) -> (Option<RedisServer>, SessionManager, SessionManager) {
        match self {
            Shared::Redis => {
                let redis = tokio::task::spawn_blocking(RedisServer::start)
                    .await
                    .expect("start redis-server");
                let manager =
                    || apps::redis_manager(RedisStore::builder().url(redis.url()), "two-services");
                let axum = manager().await.expect("axum's store connects");
                let actix = manager().await.expect("actix's store connects");
                (Some(redis), axum, actix)
            }
            #[cfg(feature = "postgres")]
            Shared::Postgres => {
                let server = support::postgres_server::shared().await;
                let schema = support::postgres_server::unique_schema();
                let manager = || {
                    apps::postgres_manager(
                        PostgresStore::builder()
                            .url(server.url())
                            .schema(schema.clone()),
                    )
                };
                let axum = manager().await.expect("axum's store connects");
                let actix = manager().await.expect("actix's store connects");
                (None, axum, actix)
            }
        }
    }
}

/// Both services, one store.
struct Services {
    _redis: Option<RedisServer>,
    axum: AxumServer,
    actix: ActixServer,
    http: reqwest::Client,
}

/// Which service a request goes to.
#[derive(Clone, Copy, Debug)]
enum To {
    Axum,
    Actix,
}

/// How a client proves its session.
#[derive(Clone, Debug, Default)]
enum Credential {
    /// Nothing yet.
    #[default]
    None,
    /// `Cookie: id=<token>`.
    Cookie(String),
    /// `Authorization: Bearer <token>`.
    Bearer(String),
}

/// A response, read.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    /// The body without the service's name and the newline.
    text: String,
    /// The service that answered (the body's prefix).
    service: String,
    /// `Some("")` for a removal cookie.
    set_cookie: Option<String>,
    token_header: Option<String>,
}

impl Services {
    async fn start(store: Shared) -> Self {
        let (redis, axum_manager, actix_manager) = store.managers().await;
        let axum = AxumServer::start(
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind axum"),
            axum_manager,
        )
        .expect("start axum");
        let actix = ActixServer::start(
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind actix"),
            actix_manager,
        )
        .await
        .expect("start actix");
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("HTTP client");
        Services {
            _redis: redis,
            axum,
            actix,
            http,
        }
    }

    async fn stop(self) {
        self.axum.stop().await.expect("axum stops");
        self.actix.stop(false).await.expect("actix stops");
    }

    /// Sends `method path` to one service with `credential`.
    async fn send(
        &self,
        method: reqwest::Method,
        to: To,
        path: &str,
        credential: &Credential,
    ) -> Reply {
        let addr = match to {
            To::Axum => self.axum.addr(),
            To::Actix => self.actix.addr(),
        };
        let mut req = self.http.request(method, format!("http://{addr}{path}"));
        match credential {
            Credential::None => {}
            Credential::Cookie(token) => req = req.header(COOKIE, format!("{COOKIE_NAME}={token}")),
            Credential::Bearer(token) => req = req.header(AUTHORIZATION, format!("Bearer {token}")),
        }
        let res = req.send().await.expect("request");
        let status = res.status();
        let set_cookie = res
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| {
                let pair = v.split(';').next()?;
                let value = pair.trim().strip_prefix(COOKIE_NAME)?.strip_prefix('=')?;
                Some(value.to_owned())
            });
        let token_header = res
            .headers()
            .get(TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = res.text().await.expect("body");
        let (service, text) = body
            .trim_end()
            .split_once(": ")
            .unwrap_or_else(|| panic!("unexpected body {body:?} for {path} on {to:?}"));
        let expected = match to {
            To::Axum => AXUM,
            To::Actix => ACTIX,
        };
        assert_eq!(service, expected, "{path} answered by the wrong service");
        Reply {
            status,
            text: text.to_owned(),
            service: service.to_owned(),
            set_cookie,
            token_header,
        }
    }

    async fn get(&self, to: To, path: &str, credential: &Credential) -> Reply {
        self.send(reqwest::Method::GET, to, path, credential).await
    }

    async fn post(&self, to: To, path: &str, credential: &Credential) -> Reply {
        self.send(reqwest::Method::POST, to, path, credential).await
    }

    /// Logs in as `user` on `to` with a browser (cookies); returns the cookie.
    async fn login(&self, to: To, user: &str) -> Credential {
        let reply = self
            .post(to, &format!("/login/{user}"), &Credential::None)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(reply.text, format!("logged in as {user}"));
        let token = reply.set_cookie.expect("the login sets the cookie");
        assert!(!token.is_empty(), "the login cookie has a value");
        Credential::Cookie(token)
    }

    async fn whoami(&self, to: To, credential: &Credential) -> String {
        let reply = self.get(to, "/whoami", credential).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        reply.text
    }
}

async fn login_on_one_service_is_seen_on_the_other(store: Shared) {
    let s = Services::start(store).await;

    let on_axum = s.login(To::Axum, "alice").await;
    assert_eq!(s.whoami(To::Actix, &on_axum).await, "alice");
    assert_eq!(s.whoami(To::Axum, &on_axum).await, "alice");

    let on_actix = s.login(To::Actix, "bob").await;
    assert_eq!(s.whoami(To::Axum, &on_actix).await, "bob");

    // A client without the cookie is anonymous on both.
    assert_eq!(s.whoami(To::Axum, &Credential::None).await, "anonymous");
    assert_eq!(s.whoami(To::Actix, &Credential::None).await, "anonymous");
    s.stop().await;
}

async fn a_counter_counts_on_across_both_services(store: Shared) {
    let s = Services::start(store).await;

    // An anonymous session, created by axum's first write.
    let first = s.get(To::Axum, "/incr", &Credential::None).await;
    assert_eq!(first.text, "counter = 1");
    let cookie = Credential::Cookie(first.set_cookie.expect("the first write sets the cookie"));
    for (n, to) in (2..=6).zip([To::Actix, To::Axum, To::Actix, To::Axum, To::Actix]) {
        let reply = s.get(to, "/incr", &cookie).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.text, format!("counter = {n}"), "on {}", reply.service);
        assert_eq!(reply.set_cookie, None, "the token stays the same");
    }

    // The count survives a login on the other service (data carried over).
    let reply = s.post(To::Actix, "/login/carol", &cookie).await;
    assert_eq!(reply.text, "logged in as carol");
    let cookie = Credential::Cookie(reply.set_cookie.expect("login rotates the token"));
    assert_eq!(s.get(To::Axum, "/incr", &cookie).await.text, "counter = 7");
    assert_eq!(s.get(To::Actix, "/incr", &cookie).await.text, "counter = 8");
    s.stop().await;
}

async fn logout_on_either_service_ends_the_session_on_both(store: Shared) {
    let s = Services::start(store).await;

    for (login_on, logout_on) in [(To::Axum, To::Actix), (To::Actix, To::Axum)] {
        let cookie = s.login(login_on, "dave").await;
        assert_eq!(s.get(login_on, "/incr", &cookie).await.text, "counter = 1");

        let reply = s.post(logout_on, "/logout", &cookie).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(reply.text, "logged out");
        assert_eq!(
            reply.set_cookie.as_deref(),
            Some(""),
            "the logout clears the cookie"
        );

        // The same cookie is anonymous on both services now, with no data.
        assert_eq!(s.whoami(login_on, &cookie).await, "anonymous");
        assert_eq!(s.whoami(logout_on, &cookie).await, "anonymous");
        let reply = s.get(login_on, "/incr", &cookie).await;
        assert_eq!(reply.text, "counter = 1", "a fresh session");
    }
    s.stop().await;
}

async fn logout_everywhere_on_one_service_ends_sessions_made_through_the_other(store: Shared) {
    let s = Services::start(store).await;

    for (everywhere_on, other) in [(To::Axum, To::Actix), (To::Actix, To::Axum)] {
        // Two clients of one user, one logged in through each service.
        let here = s.login(everywhere_on, "erin").await;
        let there = s.login(other, "erin").await;
        // And somebody else, who must stay logged in.
        let frank = s.login(other, "frank").await;

        let reply = s.post(everywhere_on, "/logout-everywhere", &here).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(reply.text, "ended 2 sessions of erin");
        assert_eq!(reply.set_cookie.as_deref(), Some(""), "clears this cookie");

        for to in [To::Axum, To::Actix] {
            assert_eq!(s.whoami(to, &there).await, "anonymous", "on {to:?}");
            assert_eq!(s.whoami(to, &here).await, "anonymous", "on {to:?}");
            assert_eq!(s.whoami(to, &frank).await, "frank", "on {to:?}");
        }
        s.post(other, "/logout", &frank).await;
    }

    // Anonymous: nothing to end.
    let reply = s
        .post(To::Actix, "/logout-everywhere", &Credential::None)
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    s.stop().await;
}

async fn a_header_token_from_one_service_works_on_the_other(store: Shared) {
    let s = Services::start(store).await;

    // An API client logs in on axum and reads the token from the header.
    let reply = s.post(To::Axum, "/login/grace", &Credential::None).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let token = reply
        .token_header
        .expect("the login returns the token in x-session-token");
    assert_eq!(
        reply.set_cookie.as_deref(),
        Some(token.as_str()),
        "cookie then header: the same token goes both ways"
    );
    let api = Credential::Bearer(token);

    assert_eq!(s.whoami(To::Actix, &api).await, "grace");
    assert_eq!(s.get(To::Actix, "/incr", &api).await.text, "counter = 1");
    let reply = s.get(To::Axum, "/incr", &api).await;
    assert_eq!(reply.text, "counter = 2");
    assert_eq!(reply.token_header, None, "no new token for a known one");

    // And the other way round: log in on actix, use the token on axum.
    let reply = s.post(To::Actix, "/login/heidi", &Credential::None).await;
    let other = Credential::Bearer(reply.token_header.expect("actix returns the token"));
    assert_eq!(s.whoami(To::Axum, &other).await, "heidi");

    // Logging out with the header on actix ends it on axum.
    let reply = s.post(To::Actix, "/logout", &api).await;
    assert_eq!(reply.text, "logged out");
    assert_eq!(s.whoami(To::Axum, &api).await, "anonymous");
    assert_eq!(s.whoami(To::Axum, &other).await, "heidi");
    s.stop().await;
}

/// One test per scenario and store: modules `redis` and `postgres`.
macro_rules! on_each_store {
    ($($name:ident),* $(,)?) => {
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Shared::Redis).await
                }
            )*
        }
        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Shared::Postgres).await
                }
            )*
        }
    };
}

on_each_store!(
    login_on_one_service_is_seen_on_the_other,
    a_counter_counts_on_across_both_services,
    logout_on_either_service_ends_the_session_on_both,
    logout_everywhere_on_one_service_ends_sessions_made_through_the_other,
    a_header_token_from_one_service_works_on_the_other,
);

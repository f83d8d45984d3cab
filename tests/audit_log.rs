//! The audit log of `examples/audit_log.rs` (its `audit_log/app.rs`,
//! included below, not copied): the service on a real HTTP server with its
//! own store, the auditor with another (two processes' worth of state), on
//! a `redis-server` of the test's own with expiry events on, and on
//! PostgreSQL. The auditor prints the logins, the logout, the revocation,
//! and the expiry of a session that no request touched, with its data.
#![cfg(all(feature = "redis", feature = "axum"))]

mod support;

#[path = "../examples/audit_log/app.rs"]
mod app;

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{COOKIE, SET_COOKIE};
use sessionkit::events::EventBus;
use sessionkit::redis::RedisStore;
use sessionkit::{SessionManager, SessionStore};
use support::RedisServer;

const IDLE: Duration = Duration::from_secs(2);

/// How long a line may take (the expiry: the idle timeout, then Redis's
/// expiry sweep or the purge).
const WAIT: Duration = Duration::from_secs(15);

/// A client that keeps the session cookie, as a browser would.
struct Client {
    http: reqwest::Client,
    base: String,
    cookie: Option<String>,
}

impl Client {
    async fn post(&mut self, path: &str) -> String {
        let mut req = self.http.post(format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header(COOKIE, c.as_str());
        }
        let res = req.send().await.expect("the service answers");
        assert!(res.status().is_success(), "{path}: {}", res.status());
        if let Some(set) = res.headers().get(SET_COOKIE) {
            let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
            self.cookie = (!pair.ends_with('=')).then_some(pair);
        }
        res.text().await.unwrap()
    }
}

async fn serve(manager: SessionManager) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app::router(manager)).await });
    base
}

/// The next line, which must contain every part of `want`.
async fn expect(lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>, want: &[&str]) -> String {
    let line = tokio::time::timeout(WAIT, lines.recv())
        .await
        .unwrap_or_else(|_| panic!("no audit line within {WAIT:?}; expected {want:?}"))
        .expect("the auditor runs");
    for part in want {
        assert!(line.contains(part), "expected {part:?} in {line:?}");
    }
    line
}

type Instance = (Arc<dyn SessionStore>, Arc<dyn EventBus>);

async fn audit(service: Instance, auditor: Instance) {
    let config = app::config(IDLE);
    let service = SessionManager::from_arc(service.0, config.clone()).with_events(service.1);
    let auditor = SessionManager::from_arc(auditor.0, config).with_events(auditor.1);
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    let feed = auditor.events().await.expect("the auditor subscribes");
    tokio::spawn(app::watch(feed, move |line| {
        let _ = tx.send(line);
    }));
    let base = serve(service).await;
    let client = || Client {
        http: reqwest::Client::new(),
        base: base.clone(),
        cookie: None,
    };
    let mut bob = client();
    bob.post("/login/bob").await;
    expect(&mut lines, &[" login user=bob"]).await;
    bob.post("/logout").await;
    expect(&mut lines, &[" logout user=bob"]).await;

    let mut carol = client();
    carol.post("/login/carol").await;
    expect(&mut lines, &[" login user=carol"]).await;
    assert_eq!(
        client().post("/admin/revoke/carol").await,
        "ended 1 sessions of carol\n"
    );
    expect(&mut lines, &[" revoked all (1) user=carol"]).await;

    let mut alice = client();
    alice.post("/login/alice").await;
    alice.post("/note/Hello").await;
    let login = expect(&mut lines, &[" login user=alice session="]).await;
    let alice_session = login.split("session=").nth(1).unwrap().to_owned();

    // Alice sends nothing more: her session expires with no request.
    let expired = expect(
        &mut lines,
        &[
            " expired (idle) data={\"note\":\"Hello\"} user=alice",
            &format!("session={alice_session}"),
        ],
    )
    .await;
    for token in [&alice.cookie, &bob.cookie, &carol.cookie]
        .into_iter()
        .flatten()
    {
        let token = token.split('=').nth(1).unwrap();
        assert!(!expired.contains(token), "a line shows a token: {expired}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auditor_prints_logins_logouts_revocations_and_expiries_on_redis() {
    let server = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .expect("start redis-server");
    let instance = || async {
        let store = RedisStore::builder()
            .url(server.url())
            .expiry_events(true)
            .build()
            .await
            .expect("connect with expiry events");
        let bus: Arc<dyn EventBus> = Arc::new(store.events());
        (Arc::new(store) as Arc<dyn SessionStore>, bus)
    };
    audit(instance().await, instance().await).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auditor_prints_logins_logouts_revocations_and_expiries_on_postgres() {
    use sessionkit::postgres::PostgresStore;
    let server = support::postgres_server::shared().await;
    let schema = support::postgres_server::unique_schema();
    let instance = || async {
        let store = PostgresStore::builder()
            .url(server.url())
            .schema(schema.as_str())
            .purge_interval(Some(Duration::from_millis(200)))
            .build()
            .await
            .expect("connect to the shared PostgreSQL server");
        let bus: Arc<dyn EventBus> = Arc::new(store.events());
        (Arc::new(store) as Arc<dyn SessionStore>, bus)
    };
    audit(instance().await, instance().await).await;
}

//! What only `PostgresStore` has: two instances sharing one database
//! through their local caches (invalidation by `NOTIFY` within 100 ms, a
//! listener killed with `pg_terminate_backend`, a revocation of hundreds of
//! sessions in chunked notifications), the schema options and migrations,
//! expiry on reads before any purge, and the purge in bounded batches. The
//! conformance suite, the HTTP scenarios and the outage test run on
//! PostgreSQL through `support::Backend` and `tests/outage.rs`.
#![cfg(feature = "postgres")]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sessionkit::postgres::{PostgresCacheStats, PostgresStore};
use sessionkit::store::{LoadOutcome, Login, NewSession, Timeouts};
use sessionkit::{MaxSessionsPolicy, SessionId, SessionStore, UserLimit};
use support::outcomes::LoadOutcomeExt;
use support::postgres_server::{self, unique_schema};
use support::records::{anon_id, client, set, user_id_for};
use support::PostgresServer;

fn timeouts() -> Timeouts {
    Timeouts {
        idle: Duration::from_secs(60),
        absolute: Duration::from_secs(600),
        touch_interval: Duration::from_secs(30),
    }
}

/// A store on `server` in `schema`; `name` becomes its connections'
/// `application_name`, so a test can find them in `pg_stat_activity`.
async fn store(
    server: &PostgresServer,
    schema: &str,
    name: &str,
    cache: bool,
    notify: bool,
) -> PostgresStore {
    let mut builder = PostgresStore::builder()
        .url(format!("{}?application_name={name}", server.url()))
        .schema(schema)
        .notify_writes(notify);
    if cache {
        builder = builder.cache(10_000);
    }
    builder
        .build()
        .await
        .expect("connect to the test's PostgreSQL")
}

async fn create(store: &dyn SessionStore) -> SessionId {
    let id = anon_id();
    let c = client();
    store
        .create(
            &id,
            NewSession {
                data: &[("n".to_owned(), json!(1))].into_iter().collect(),
                client: &c,
            },
            &timeouts(),
        )
        .await
        .expect("create");
    id
}

async fn login(store: &dyn SessionStore, user: &str, limit: UserLimit) -> SessionId {
    let new = user_id_for(user);
    let c = client();
    store
        .login(
            Login {
                old: None,
                new: &new,
                user_id: user,
                delta: &set("cart", json!([1])),
                client: &c,
                limit,
                moved_grace: Duration::from_secs(10),
            },
            &timeouts(),
        )
        .await
        .expect("login");
    new
}

async fn live(store: &dyn SessionStore, id: &SessionId) -> bool {
    store.load(id, &timeouts()).await.expect("load").is_live()
}

/// The error of a build that must fail because of `why`.
#[track_caller]
fn refused(built: sessionkit::Result<PostgresStore>, why: &str) -> sessionkit::Error {
    match built {
        Ok(_) => panic!("built despite {why}"),
        Err(e) => e,
    }
}

fn stats(store: &PostgresStore) -> PostgresCacheStats {
    store.cache_stats().expect("the cache is on")
}

/// Loads `id` on `b` until it answers from its cache (the first load after
/// the heartbeat is heard fills it).
async fn cached_on(b: &PostgresStore, id: &SessionId) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let hits = stats(b).hits;
        assert!(live(b, id).await, "the session is live");
        if stats(b).hits > hits {
            return;
        }
        assert!(Instant::now() < deadline, "never cached: {:?}", stats(b));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How long after `since` the load of `id` on `b` first refuses it.
async fn refused_after(b: &PostgresStore, id: &SessionId, since: Instant) -> Duration {
    loop {
        if !live(b, id).await {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "still served 5 s after the revocation"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_on_one_instance_is_refused_by_the_other_within_100ms() {
    let server = postgres_server::shared().await;
    let schema = unique_schema();
    let a = store(server, &schema, "cache_a", true, true).await;
    let b = store(server, &schema, "cache_b", true, true).await;
    let mut lags = Vec::new();
    for _ in 0..20 {
        let id = create(&a).await;
        cached_on(&b, &id).await;
        assert!(a.revoke(&id).await.expect("revoke"), "revoked");
        lags.push(refused_after(&b, &id, Instant::now()).await);
    }
    lags.sort();
    let (p50, max) = (lags[lags.len() / 2], lags[lags.len() - 1]);
    eprintln!("PostgreSQL cache staleness after a revoke on another instance: p50 {p50:?}, max {max:?} (20 trials)");
    assert!(
        max < Duration::from_millis(100),
        "the other instance served a revoked session for {max:?}: {lags:?}"
    );
    assert!(stats(&b).invalidations >= 20, "{:?}", stats(&b));
}

/// `pg_terminate_backend` of the listener connections whose
/// `application_name` is `name`; answers how many there were.
fn kill_listener(server: &PostgresServer, name: &str) -> u32 {
    server
        .psql(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = '{name}' AND query LIKE 'LISTEN%'"
        ))
        .parse()
        .expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_revoked_while_the_listener_was_away_is_not_served() {
    let server = postgres_server::shared().await;
    let schema = unique_schema();
    // A writes without notifications, so that B's cache learns of A's
    // revocations only by what it does about a lost listener connection.
    let a = store(server, &schema, "silent_a", false, false).await;
    // Named after the schema: other tests of this binary run beside it.
    let b_name = format!("{schema}_b");
    let b = store(server, &schema, &b_name, true, true).await;

    // The control: without notifications, B goes on serving its copy.
    let control = create(&a).await;
    cached_on(&b, &control).await;
    assert!(a.revoke(&control).await.expect("revoke"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        live(&b, &control).await,
        "the control: nothing told B of the revocation yet"
    );

    let id = create(&a).await;
    cached_on(&b, &id).await;
    let resets = stats(&b).resets;
    assert_eq!(kill_listener(server, &b_name), 1, "B's listener found");
    let killed = Instant::now();
    assert!(a.revoke(&id).await.expect("revoke"));

    // B notices the lost connection (or stops trusting a cache whose
    // heartbeat stopped) within two heartbeat intervals.
    let lag = refused_after(&b, &id, killed).await;
    eprintln!("refused {lag:?} after the listener was killed");
    assert!(lag < Duration::from_millis(700), "served for {lag:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats(&b).resets == resets {
        assert!(Instant::now() < deadline, "no reset: {:?}", stats(&b));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!live(&b, &control).await, "the reset dropped every copy");

    // The listener is back and the cache serves again, but never the
    // sessions revoked meanwhile.
    let fresh = create(&a).await;
    cached_on(&b, &fresh).await;
    for _ in 0..5 {
        assert!(!live(&b, &id).await);
        assert!(!live(&b, &control).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_hundreds_of_sessions_notifies_in_chunks_under_8000_bytes() {
    let server = postgres_server::shared().await;
    let schema = unique_schema();
    let a = store(server, &schema, "bulk_a", true, true).await;
    let b = Arc::new(store(server, &schema, "bulk_b", true, true).await);
    let mut ids = Vec::new();
    for _ in 0..600 {
        ids.push(login(&a, "ada", UserLimit::Unlimited).await);
    }
    for id in &ids {
        cached_on(&b, id).await;
    }
    let invalidations = stats(&b).invalidations;
    let since = Instant::now();
    // 600 ids are over 26 kB: one payload would fail the whole revocation.
    assert_eq!(a.revoke_user("ada", None).await.expect("revoke_user"), 600);
    let mut slowest = Duration::ZERO;
    for id in &ids {
        slowest = slowest.max(refused_after(&b, id, since).await);
    }
    eprintln!(
        "600 revoked sessions all refused by the other instance {slowest:?} after revoke_user"
    );
    assert!(slowest < Duration::from_millis(1000), "{slowest:?}");
    assert!(
        stats(&b).invalidations >= invalidations + 600,
        "every id was named: {:?}",
        stats(&b)
    );
    assert!(a
        .sessions_of("ada", &timeouts())
        .await
        .expect("list")
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_single_logins_on_two_instances_leave_exactly_one() {
    let server = postgres_server::shared().await;
    let schema = unique_schema();
    let stores: Vec<Arc<PostgresStore>> = vec![
        Arc::new(store(server, &schema, "login_a", true, true).await),
        Arc::new(store(server, &schema, "login_b", false, true).await),
    ];
    let single = UserLimit::Max {
        max: 1,
        policy: MaxSessionsPolicy::EvictOldest,
    };
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = Arc::clone(&stores[i % 2]);
            tokio::spawn(async move { login(&*store, "grace", single).await })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.expect("login task"));
    }
    let mut alive = 0;
    for id in &ids {
        if live(&*stores[0], id).await {
            alive += 1;
        }
    }
    assert_eq!(alive, 1, "exactly one of 50 concurrent single logins lives");
    let listed = stores[1]
        .sessions_of("grace", &timeouts())
        .await
        .expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    let rows = server.psql(&format!(
        "SELECT count(*) FROM {schema}.sessionkit_sessions WHERE user_id = 'grace'"
    ));
    assert_eq!(rows, "1", "one row left for the user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_and_prefix_options_name_the_tables_and_migrations_are_versioned() {
    let server = postgres_server::shared().await;
    let schema = unique_schema();
    let build = |create_schema: bool| {
        PostgresStore::builder()
            .url(server.url())
            .schema(schema.clone())
            .table_prefix("app_")
            .create_schema(create_schema)
            .build()
    };

    let missing = refused(build(false).await, "the schema is missing");
    assert!(
        missing.to_string().contains(&schema),
        "names the schema: {missing}"
    );

    // Two instances starting at once on a fresh schema: both migrate.
    let (first, second) = tokio::join!(build(true), build(true));
    let store = first.expect("first build");
    second.expect("second build");
    let tables = server.psql(&format!(
        "SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables \
         WHERE table_schema = '{schema}'"
    ));
    assert_eq!(
        tables,
        "app_data,app_events,app_keyed,app_markers,app_persist_jobs,app_schema_version,app_sessions"
    );
    let id = create(&store).await;
    drop(store);

    // Built again: nothing is re-created, the data stays.
    let again = build(false).await.expect("an existing schema");
    assert!(live(&again, &id).await, "the data survived a second start");
    assert_eq!(again.schema(), schema);
    assert_eq!(again.table_prefix(), "app_");

    // A database migrated by a newer sessionkit is refused, not downgraded.
    server.psql(&format!(
        "UPDATE {schema}.app_schema_version SET version = 99"
    ));
    let newer = refused(build(true).await, "a newer schema version");
    assert!(
        newer.to_string().contains("99"),
        "names the version: {newer}"
    );

    for bad in ["Bad", "1x", "a-b", "x; DROP TABLE y"] {
        let built = PostgresStore::builder()
            .url(server.url())
            .schema(bad)
            .build()
            .await;
        let err = refused(built, "an invalid schema name");
        assert!(
            err.to_string().contains("a-z"),
            "says what is allowed: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_is_checked_on_reads_and_the_purge_runs_in_batches() {
    let server = postgres_server::shared().await;
    let schema = unique_schema();
    let store = PostgresStore::builder()
        .url(server.url())
        .schema(schema.clone())
        .purge_interval(None)
        .build()
        .await
        .expect("build");
    let short = Timeouts {
        idle: Duration::from_millis(500),
        absolute: Duration::from_secs(60),
        touch_interval: Duration::from_secs(30),
    };
    let c = client();
    let data = [("k".to_owned(), json!("v"))].into_iter().collect();
    let mut ids = Vec::new();
    for _ in 0..25 {
        let id = anon_id();
        store
            .create(
                &id,
                NewSession {
                    data: &data,
                    client: &c,
                },
                &short,
            )
            .await
            .expect("create");
        ids.push(id);
    }
    let keep = create(&store).await;
    tokio::time::sleep(Duration::from_millis(700)).await;

    // Expired by the database clock: not served, though no purge ran.
    let count =
        |table: &str| server.psql(&format!("SELECT count(*) FROM {schema}.sessionkit_{table}"));
    assert_eq!(count("sessions"), "26");
    for id in &ids {
        let out = store.load(id, &short).await.expect("load");
        assert!(matches!(out, LoadOutcome::Missing), "{out:?}");
    }

    // One call of the purge function deletes one bounded batch.
    let batches: Vec<String> = (0..3)
        .map(|_| server.psql(&format!("SELECT {schema}.sessionkit_purge(10)")))
        .collect();
    assert_eq!(batches, ["10", "10", "5"], "bounded batches");
    assert_eq!(store.purge_expired(10).await.expect("purge"), 0);
    assert_eq!(count("sessions"), "1");
    assert_eq!(count("data"), "1", "the data rows went with their sessions");
    assert!(live(&store, &keep).await, "a live session is not purged");
}

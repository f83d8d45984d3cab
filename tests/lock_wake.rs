//! Lock waiters are woken by the holder's release, not by polling: counted
//! in `lock` attempts (a polling waiter makes one every 5–50 ms), on the
//! memory store, on Redis, and across two Redis store instances. The
//! `measure_*` tests (ignored) print throughput and latency figures.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sessionkit::store::{ClientInfo, LockOutcome, Timeouts, Token};
use sessionkit::{MemoryStore, Session, SessionConfig, SessionManager, SessionStore};

use support::failing_store::FailingStore;

/// How many requests wait for one session's lock.
const WAITERS: usize = 16;

async fn stored(manager: &SessionManager) -> Token {
    let s = manager.load(None, ClientInfo::default()).await.unwrap();
    s.insert("n", 0).unwrap();
    manager.commit(&s).await.unwrap();
    Token::parse(&s.token().expect("a new token")).expect("a valid token")
}

async fn open(manager: &SessionManager, token: &Token) -> Session {
    manager
        .load(Some(token.clone()), ClientInfo::default())
        .await
        .unwrap()
}

/// Waits until `store` sends release notices (a Redis store subscribes in
/// the background once built).
async fn notices_on(store: &dyn SessionStore, token: &Token) {
    let started = Instant::now();
    while store.release_notice(&token.id()).is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "never subscribed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `WAITERS` requests wait for a lock held 400 ms, then each takes it in
/// turn, increments `n` and commits. Answers the `lock` attempts made.
async fn attempts_of_a_queue(store: Arc<dyn SessionStore>, notices: bool) -> u64 {
    let counting = Arc::new(FailingStore::with_notices(store, notices));
    let manager = SessionManager::from_arc(counting.clone(), SessionConfig::default());
    let token = stored(&manager).await;
    if notices {
        notices_on(&*counting, &token).await;
    }
    let holder = open(&manager, &token).await;
    let guard = holder.lock().await.unwrap();
    let before = counting.locks();
    let tasks: Vec<_> = (0..WAITERS)
        .map(|_| {
            let (manager, token) = (manager.clone(), token.clone());
            tokio::spawn(async move {
                let s = open(&manager, &token).await;
                let _lock = s.lock().await.expect("the lock, in turn");
                let n: i64 = s.get("n").unwrap().unwrap_or(0);
                s.insert("n", n + 1).unwrap();
                manager.commit(&s).await.unwrap();
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(400)).await;
    drop(guard);
    manager.commit(&holder).await.unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let n: i64 = open(&manager, &token).await.get("n").unwrap().unwrap();
    assert_eq!(n, WAITERS as i64, "every locked increment counted");
    counting.locks() - before
}

/// With notices a waiter tries once, then once per wake; polling would
/// make about 400 ms / 35 ms attempts each while the lock is held.
async fn woken_not_polled(store: Arc<dyn SessionStore>) {
    let woken = attempts_of_a_queue(store.clone(), true).await;
    let polled = attempts_of_a_queue(store, false).await;
    eprintln!("lock attempts, {WAITERS} waiters: woken {woken}, polling {polled}");
    assert!(
        woken <= 3 * WAITERS as u64,
        "{woken} lock attempts for {WAITERS} waiters: polled, not woken"
    );
    assert!(
        polled > 2 * woken,
        "the count tells polling apart ({polled} vs {woken})"
    );
}

/// A request cancelled after the store granted its lock, before the answer
/// came back (a client that hung up mid-request), must not keep the
/// session locked for the whole lease.
async fn a_cancelled_acquisition_releases(store: Arc<dyn SessionStore>) {
    let counting = Arc::new(FailingStore::with_notices(store, true));
    let config = SessionConfig::default().lock_timeout(Duration::from_secs(2));
    let manager = SessionManager::from_arc(counting.clone(), config);
    let token = stored(&manager).await;
    counting.delay_lock_answers(Duration::from_millis(300));
    let (m, t) = (manager.clone(), token.clone());
    let cancelled = tokio::spawn(async move {
        let s = open(&m, &t).await;
        let _guard = s.lock().await;
    });
    // The store has granted the lock; its answer is on the way.
    tokio::time::sleep(Duration::from_millis(150)).await;
    cancelled.abort();
    counting.delay_lock_answers(Duration::ZERO);
    let s = open(&manager, &token).await;
    let started = Instant::now();
    let guard = s.lock().await;
    assert!(
        guard.is_ok(),
        "the lease (10 s) of a cancelled request blocked the session: {:?}",
        guard.err()
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_a_cancelled_acquisition_releases() {
    a_cancelled_acquisition_releases(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_waiters_are_woken_not_polled() {
    woken_not_polled(Arc::new(MemoryStore::new())).await;
}

#[cfg(feature = "redis")]
mod redis {
    use sessionkit::redis::RedisStore;
    use support::RedisServer;

    use super::*;

    async fn server() -> RedisServer {
        tokio::task::spawn_blocking(RedisServer::start)
            .await
            .expect("start redis-server")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn redis_waiters_are_woken_not_polled() {
        let server = server().await;
        let store = RedisStore::connect(&server.url()).await.unwrap();
        woken_not_polled(Arc::new(store)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_a_cancelled_acquisition_releases() {
        let server = server().await;
        let store = RedisStore::connect(&server.url()).await.unwrap();
        a_cancelled_acquisition_releases(Arc::new(store)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn redis_cached_waiters_are_woken_not_polled() {
        let server = server().await;
        let store = RedisStore::builder()
            .url(server.url())
            .client_cache(1000)
            .build()
            .await
            .unwrap();
        woken_not_polled(Arc::new(store)).await;
    }

    /// The holder is another app instance (its own store on the same
    /// Redis): its unlock reaches this instance's waiter by Pub/Sub, well
    /// before the 10 s lease or the waiter's 500 ms recheck.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn an_unlock_on_another_instance_wakes_the_waiter() {
        let server = server().await;
        let other = RedisStore::connect(&server.url()).await.unwrap();
        let here = RedisStore::connect(&server.url()).await.unwrap();
        let counting = Arc::new(FailingStore::with_notices(Arc::new(here), true));
        let manager = SessionManager::from_arc(counting.clone(), SessionConfig::default());
        let token = stored(&manager).await;
        notices_on(&*counting, &token).await;
        let t = Timeouts {
            idle: Duration::from_secs(60),
            absolute: Duration::from_secs(600),
            touch_interval: Duration::from_secs(60),
        };
        let lease = Duration::from_secs(10);
        let LockOutcome::Acquired { fence, .. } = other.lock(&token.id(), lease, &t).await.unwrap()
        else {
            panic!("a free lock");
        };
        let waiter = {
            let (manager, token) = (manager.clone(), token.clone());
            tokio::spawn(async move {
                let s = open(&manager, &token).await;
                let _lock = s.lock().await.expect("the lock");
                Instant::now()
            })
        };
        tokio::time::sleep(Duration::from_millis(250)).await;
        let released = Instant::now();
        other.unlock(&token.id(), fence).await.unwrap();
        let taken = waiter.await.unwrap();
        let after = taken.duration_since(released);
        assert!(
            after < Duration::from_millis(200),
            "taken {after:?} after the release: not woken by its notice"
        );
        assert!(
            counting.locks() <= 3,
            "{} lock attempts: polled, not woken",
            counting.locks()
        );
    }
}

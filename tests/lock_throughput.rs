//! Figures, not assertions (every test is `#[ignore]`): 16 tasks writing
//! one session for 3 s, under the session lock and without it, on the
//! memory store and on Redis, with release notices and with them hidden
//! (the waiters then poll, as before notices). Run with
//! `cargo test --release --all-features --test lock_throughput -- --ignored --nocapture --test-threads 1`.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sessionkit::store::{ClientInfo, Token};
use sessionkit::{MemoryStore, SessionConfig, SessionManager, SessionStore};

use support::failing_store::FailingStore;

const TASKS: usize = 16;
const RUN: Duration = Duration::from_secs(3);

/// Runs `TASKS` writers for `RUN`; answers (writes per second, p99, max).
async fn run(manager: &SessionManager, token: &Token, locked: bool) -> (f64, Duration, Duration) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (manager, token) = (manager.clone(), token.clone());
            tokio::spawn(async move {
                let mut took = Vec::new();
                while started.elapsed() < RUN {
                    let t = Instant::now();
                    let s = manager
                        .load(Some(token.clone()), ClientInfo::default())
                        .await
                        .unwrap();
                    let lock = if locked {
                        Some(s.lock().await.unwrap())
                    } else {
                        None
                    };
                    let n: i64 = s.get("n").unwrap().unwrap_or(0);
                    s.insert("n", n + 1).unwrap();
                    drop(lock);
                    manager.commit(&s).await.unwrap();
                    took.push(t.elapsed());
                }
                took
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let p99 = all[(all.len() * 99 / 100).min(all.len() - 1)];
    (all.len() as f64 / elapsed, p99, *all.last().unwrap())
}

async fn measure(name: &str, store: Arc<dyn SessionStore>) {
    for notices in [false, true] {
        let counting = Arc::new(FailingStore::with_notices(store.clone(), notices));
        let manager = SessionManager::from_arc(counting.clone(), SessionConfig::default());
        let s = manager.load(None, ClientInfo::default()).await.unwrap();
        s.insert("n", 0).unwrap();
        manager.commit(&s).await.unwrap();
        let token = Token::parse(&s.token().unwrap()).unwrap();
        if notices {
            while counting.release_notice(&token.id()).is_none() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let (free, free_p99, free_max) = run(&manager, &token, false).await;
        let before = counting.locks();
        let (locked, p99, max) = run(&manager, &token, true).await;
        let attempts = counting.locks() - before;
        let mode = if notices { "notices" } else { "polling" };
        eprintln!(
            "{name} {mode}: unlocked {free:.0}/s (p99 {free_p99:?}, max {free_max:?}); \
             locked {locked:.0}/s (p99 {p99:?}, max {max:?}), ratio {:.2}, {:.1} lock attempts per locked write",
            locked / free,
            attempts as f64 / (locked * RUN.as_secs_f64()),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "prints figures"]
async fn measure_memory() {
    measure("memory", Arc::new(MemoryStore::new())).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "prints figures"]
async fn measure_redis() {
    let server = tokio::task::spawn_blocking(support::RedisServer::start)
        .await
        .unwrap();
    let store = sessionkit::redis::RedisStore::connect(&server.url())
        .await
        .unwrap();
    measure("redis", Arc::new(store)).await;
}

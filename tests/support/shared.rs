//! One Redis Cluster and one Sentinel setup per test binary, started on
//! first use and shared by every test of the binary that asks for one
//! ([`cluster`], [`sentinel`]); each test keeps to its own keys with a key
//! prefix of its own ([`unique_prefix`]).
//!
//! Starting a 6-node cluster per test would cost seconds per test on CI; one
//! per binary costs them once. A `static` is never dropped, so the shared
//! processes would outlive the test binary: each topology gets a watchdog
//! process, started before its first node, that waits for the test process
//! to exit and then SIGKILLs every process whose command line names the
//! topology's directory (`sessionkit-shared-<kind>-<pid>-<n>`: every node
//! and sentinel runs with `--set-proc-title no` so that its command line
//! keeps the directory) and removes the directory.
//!
//! Tests must not kill, fail over or reshard a shared topology: those that
//! do start their own (`RedisCluster::start`, `RedisSentinel::start`).

use std::process::Child;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use super::redis_cluster::RedisCluster;
use super::redis_sentinel::RedisSentinel;
use super::watchdog::watchdog;

/// A topology and the watchdog that kills it once the test process is gone.
struct Shared<T> {
    topology: T,
    /// Kept so that the child is owned (it outlives this process on
    /// purpose, and is reaped by init).
    _watchdog: Child,
}

static CLUSTER: OnceLock<Shared<RedisCluster>> = OnceLock::new();
static SENTINEL: OnceLock<Shared<RedisSentinel>> = OnceLock::new();

/// The binary's shared 6-node Redis Cluster, started by the first caller
/// (the others wait for it).
pub async fn cluster() -> &'static RedisCluster {
    blocking(|| {
        &CLUSTER
            .get_or_init(|| start("cluster", RedisCluster::start_named))
            .topology
    })
    .await
}

/// The binary's shared Sentinel setup (master, replica, 3 sentinels),
/// started by the first caller (the others wait for it).
pub async fn sentinel() -> &'static RedisSentinel {
    blocking(|| {
        &SENTINEL
            .get_or_init(|| start("sentinel", RedisSentinel::start_named))
            .topology
    })
    .await
}

/// A key prefix no other test of any process uses: `t<n>-<pid>`.
pub fn unique_prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("t{n}-{}", std::process::id())
}

/// Runs `f` on the blocking pool (starting a topology polls and sleeps),
/// passing its panic on as is.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("starting the shared topology: {e}"),
        },
    }
}

/// Starts the watchdog, then the topology with `start("shared-<kind>")`.
fn start<T>(kind: &str, start: impl FnOnce(&str) -> T) -> Shared<T> {
    let kind = format!("shared-{kind}");
    let watchdog = watchdog(&kind);
    Shared {
        topology: start(&kind),
        _watchdog: watchdog,
    }
}

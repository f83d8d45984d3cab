//! The main table: each variant's server under wrk on `/login`, `/read`
//! and `/write`, its Redis commands and Redis time per request, and the
//! sequential `MONITOR` probes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::http;
use crate::options::{Options, Route};
use crate::procs::{RedisServer, ServerProc};
use crate::resp::{self, Monitor, Resp};
use crate::servers::Variant;
use crate::wrk::{self, Load, WrkResult};

/// Redis commands seen by `MONITOR` during a few sequential requests.
#[derive(Debug, Default)]
pub struct Probe {
    pub requests: usize,
    /// Commands the server sent to Redis (round trips, unless pipelined).
    pub sent: BTreeMap<String, u64>,
    /// Commands Redis ran inside the scripts it was sent.
    pub in_script: BTreeMap<String, u64>,
}

impl Probe {
    pub fn sent_per_request(&self) -> f64 {
        self.sent.values().sum::<u64>() as f64 / self.requests.max(1) as f64
    }
}

/// One variant and route under load.
pub struct Cell {
    pub route: Route,
    pub outcome: Result<Measured, String>,
}

pub struct Measured {
    pub wrk: WrkResult,
    /// CPU time of the server process per request, in microseconds.
    pub server_cpu_us: Option<f64>,
    /// CPU time of redis-server per request, in microseconds.
    pub redis_cpu_us: f64,
    /// `INFO commandstats` usec per request, summed over every command (a
    /// script's time, and its inner commands' again).
    pub redis_usec: f64,
    /// `INFO commandstats` deltas over the measured run (INFO excluded).
    pub commands: BTreeMap<String, u64>,
    pub probe: Option<Probe>,
}

impl Measured {
    pub fn commands_per_request(&self) -> f64 {
        self.commands.values().sum::<u64>() as f64 / self.wrk.requests.max(1) as f64
    }
}

/// Everything measured for one variant.
pub struct VariantRun {
    pub variant: Variant,
    /// Why the variant did not run at all.
    pub skipped: Option<String>,
    pub cells: Vec<Cell>,
    pub logout: Option<Result<Probe, String>>,
}

/// Runs every selected variant of the main table.
pub fn run_all(
    opts: &Options,
    redis: &RedisServer,
    stats: &mut Resp,
    lua: &LuaScript,
) -> Vec<VariantRun> {
    let variants: Vec<Variant> = Variant::ALL
        .into_iter()
        .filter(|v| opts.wants(*v))
        .collect();
    let total_cells = variants
        .iter()
        .filter(|v| v.unavailable().is_none())
        .count()
        * opts.routes.len();
    eprintln!(
        "main table: {} variants x {} routes, {} s + {} s warm-up each: about {} s",
        variants.len(),
        opts.routes.len(),
        opts.duration,
        opts.warmup,
        total_cells as u64 * (opts.duration + opts.warmup + 1) + 3 * variants.len() as u64
    );
    let mut runs = Vec::new();
    for variant in variants {
        if let Some(why) = variant.unavailable() {
            eprintln!("== {}: skipped ({why})", variant.name());
            runs.push(VariantRun {
                variant,
                skipped: Some(why.to_owned()),
                cells: Vec::new(),
                logout: None,
            });
            continue;
        }
        eprintln!("== {}", variant.name());
        runs.push(run_variant(variant, opts, &redis.url(), redis, stats, lua));
    }
    runs
}

/// The wrk script for `POST` routes, in a temporary file removed on drop.
pub struct LuaScript(pub PathBuf);

impl LuaScript {
    pub fn write() -> Result<Self, String> {
        let path =
            std::env::temp_dir().join(format!("sessionkit-bench-post-{}.lua", std::process::id()));
        std::fs::write(
            &path,
            "wrk.method = \"POST\"\nwrk.body = \"\"\n-- wrk.format adds Content-Length: 0\n",
        )
        .map_err(|e| format!("write {}: {e}", path.display()))?;
        Ok(LuaScript(path))
    }
}

impl Drop for LuaScript {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Starts `variant`'s server on the store at `store_url` (Redis's, or
/// PostgreSQL's) and loads each route of `opts`; `redis` is watched for
/// its costs whichever store the variant uses.
pub fn run_variant(
    variant: Variant,
    opts: &Options,
    store_url: &str,
    redis: &RedisServer,
    stats: &mut Resp,
    lua: &LuaScript,
) -> VariantRun {
    let mut run = VariantRun {
        variant,
        skipped: None,
        cells: Vec::new(),
        logout: None,
    };
    // Each variant starts from an empty Redis.
    if let Err(e) = stats.simple(&["FLUSHALL"]) {
        run.skipped = Some(format!("FLUSHALL: {e}"));
        return run;
    }
    let mut server = match ServerProc::start(variant, store_url, opts.server_threads) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("   {e}");
            run.skipped = Some(e);
            return run;
        }
    };
    let cookie = match establish(variant, server.port) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("   {e}");
            run.skipped = Some(e);
            return run;
        }
    };
    for &route in &opts.routes {
        let outcome = measure_cell(
            variant,
            route,
            opts,
            redis,
            stats,
            lua,
            &mut server,
            cookie.as_deref(),
        );
        match &outcome {
            Ok(m) => eprintln!(
                "   {:<6} {:>9.0} req/s  p50 {:>8.0} us  p99 {:>8.0} us  {:.2} cmds/req{}",
                route.name(),
                m.wrk.rps,
                m.wrk.p50_us,
                m.wrk.p99_us,
                m.commands_per_request(),
                m.probe
                    .as_ref()
                    .map(|p| format!(", {:.2} sent/req", p.sent_per_request()))
                    .unwrap_or_default()
            ),
            Err(e) => eprintln!("   {:<6} FAILED: {e}", route.name()),
        }
        run.cells.push(Cell { route, outcome });
    }
    if variant.uses_redis() && opts.probe > 0 {
        run.logout = Some(logout_probe(redis, stats, server.port, opts.probe));
    }
    run
}

/// Logs in, checks that a read sees the login, and returns the cookie to
/// load `/read` and `/write` with (none for the bare variants).
pub fn establish(variant: Variant, port: u16) -> Result<Option<String>, String> {
    let login = http::request(port, "POST", "/login", None)?;
    if login.status != 200 {
        return Err(format!(
            "POST /login: status {} {:?}",
            login.status, login.body
        ));
    }
    let cookie = login.cookie_header();
    if !variant.is_bare() && cookie.is_none() {
        return Err("POST /login set no cookie".into());
    }
    let read = http::request(port, "GET", "/read", cookie.as_deref())?;
    if read.status != 200 || (!variant.is_bare() && read.body != login.body) {
        return Err(format!(
            "GET /read after login: status {}, body {:?}, expected {:?}",
            read.status, read.body, login.body
        ));
    }
    for expected in ["1", "2"] {
        let write = http::request(port, "GET", "/write", cookie.as_deref())?;
        if write.status != 200 || (!variant.is_bare() && write.body != expected) {
            return Err(format!(
                "GET /write: status {}, body {:?}, expected {expected:?}",
                write.status, write.body
            ));
        }
    }
    Ok(if variant.is_bare() { None } else { cookie })
}

#[allow(clippy::too_many_arguments)]
pub fn measure_cell(
    variant: Variant,
    route: Route,
    opts: &Options,
    redis: &RedisServer,
    stats: &mut Resp,
    lua: &LuaScript,
    server: &mut ServerProc,
    cookie: Option<&str>,
) -> Result<Measured, String> {
    let cookie = match route {
        Route::Login | Route::Logout => None,
        Route::Read | Route::Write => cookie,
    };
    let mut load = Load {
        port: server.port,
        path: route.path(),
        script: (route.method() == "POST").then_some(lua.0.as_path()),
        cookie,
        duration_secs: opts.warmup,
        connections: opts.connections,
        threads: opts.threads,
    };
    if opts.warmup > 0 {
        wrk::run(&load).map_err(|e| format!("warm-up: {e}"))?;
    }
    load.duration_secs = opts.duration;
    let before = stats.command_times()?;
    let (server_cpu0, redis_cpu0) = (server.cpu_seconds(), stats.cpu_seconds()?);
    let result = wrk::run(&load)?;
    let (server_cpu1, redis_cpu1) = (server.cpu_seconds(), stats.cpu_seconds()?);
    let after = stats.command_times()?;
    server.check_alive()?;
    let requests = result.requests.max(1) as f64;
    let per_request = |seconds: f64| seconds * 1e6 / requests;
    let probe = if variant.uses_redis() && opts.probe > 0 {
        Some(probe(redis, stats, server.port, route, cookie, opts.probe)?)
    } else {
        None
    };
    Ok(Measured {
        server_cpu_us: server_cpu0
            .zip(server_cpu1)
            .map(|(a, b)| per_request(b - a)),
        redis_cpu_us: per_request(redis_cpu1 - redis_cpu0),
        wrk: result,
        redis_usec: resp::usec_delta(&before, &after) as f64 / requests,
        commands: resp::stats_delta(&calls(&before), &calls(&after)),
        probe,
    })
}

fn calls(stats: &BTreeMap<String, resp::CmdStat>) -> BTreeMap<String, u64> {
    stats.iter().map(|(k, s)| (k.clone(), s.calls)).collect()
}

/// Sends `n` sequential requests while `MONITOR` watches Redis.
fn probe(
    redis: &RedisServer,
    stats: &mut Resp,
    port: u16,
    route: Route,
    cookie: Option<&str>,
    n: usize,
) -> Result<Probe, String> {
    watch(redis, stats, n, || {
        for _ in 0..n {
            let r = http::request(port, route.method(), route.path(), cookie)?;
            if !(200..300).contains(&r.status) {
                return Err(format!(
                    "probe {} {}: status {}",
                    route.method(),
                    route.path(),
                    r.status
                ));
            }
        }
        Ok(())
    })
}

/// `n` logouts, each of a session logged in and read once just before (not
/// watched): a session in use, as a cache would have seen it.
fn logout_probe(
    redis: &RedisServer,
    stats: &mut Resp,
    port: u16,
    n: usize,
) -> Result<Probe, String> {
    let cookies = (0..n)
        .map(|_| {
            let cookie = http::request(port, "POST", "/login", None)?
                .cookie_header()
                .ok_or_else(|| "login for the logout probe set no cookie".to_owned())?;
            http::request(port, "GET", "/read", Some(&cookie))?;
            Ok(cookie)
        })
        .collect::<Result<Vec<_>, String>>()?;
    watch(redis, stats, n, || {
        for c in &cookies {
            let (method, path) = (Route::Logout.method(), Route::Logout.path());
            let r = http::request(port, method, path, Some(c))?;
            if !(200..300).contains(&r.status) {
                return Err(format!("probe {method} {path}: status {}", r.status));
            }
        }
        Ok(())
    })
}

fn watch(
    redis: &RedisServer,
    stats: &mut Resp,
    requests: usize,
    traffic: impl FnOnce() -> Result<(), String>,
) -> Result<Probe, String> {
    let monitor = Monitor::start(redis.port)?;
    traffic()?;
    // Let work a server does after responding (if any) reach Redis.
    std::thread::sleep(Duration::from_millis(100));
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let sentinel = format!("sessionkit-bench-sentinel-{}-{nonce}", std::process::id());
    stats.simple(&["ECHO", &sentinel])?;
    let seen = monitor.until(&sentinel, Instant::now() + Duration::from_secs(10))?;
    let mut probe = Probe {
        requests,
        ..Probe::default()
    };
    for s in seen {
        if s.client == stats.local_addr() {
            continue;
        }
        let map = if s.in_script {
            &mut probe.in_script
        } else {
            &mut probe.sent
        };
        *map.entry(s.command).or_default() += 1;
    }
    Ok(probe)
}

//! The full benchmark: Redis, each variant's server, wrk, command counts,
//! then the report.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::http;
use crate::micro::{self, MicroResult};
use crate::procs::{self, RedisServer, ServerProc};
use crate::report;
use crate::resp::{self, Monitor, Resp};
use crate::servers::Variant;
use crate::wrk::{self, Load, WrkResult};
use crate::{flag_value, USAGE};

pub struct Options {
    pub duration: u64,
    pub warmup: u64,
    pub connections: usize,
    pub threads: usize,
    pub server_threads: usize,
    pub probe: usize,
    pub only: Vec<String>,
    pub routes: Vec<Route>,
    pub micro: bool,
    pub micro_secs: u64,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut o = Options {
            duration: 5,
            warmup: 1,
            connections: 32,
            threads: 2,
            server_threads: 2,
            probe: 20,
            only: Vec::new(),
            routes: Route::LOADED.to_vec(),
            micro: true,
            micro_secs: 3,
        };
        let mut i = 0;
        while i < args.len() {
            match args[i].as_str() {
                "--duration" => o.duration = flag_value(args, &mut i)?,
                "--warmup" => o.warmup = flag_value(args, &mut i)?,
                "--connections" => o.connections = flag_value(args, &mut i)?,
                "--threads" => o.threads = flag_value(args, &mut i)?,
                "--server-threads" => o.server_threads = flag_value(args, &mut i)?,
                "--probe" => o.probe = flag_value(args, &mut i)?,
                "--micro-secs" => o.micro_secs = flag_value(args, &mut i)?,
                "--no-micro" => o.micro = false,
                "--only" => {
                    let list: String = flag_value(args, &mut i)?;
                    o.only = list.split(',').map(str::to_owned).collect();
                }
                "--routes" => {
                    let list: String = flag_value(args, &mut i)?;
                    o.routes = list
                        .split(',')
                        .map(|r| {
                            Route::LOADED
                                .into_iter()
                                .find(|x| x.name() == r)
                                .ok_or_else(|| format!("unknown route {r:?}\n\n{USAGE}"))
                        })
                        .collect::<Result<_, _>>()?;
                }
                other => return Err(format!("unknown argument {other:?}\n\n{USAGE}")),
            }
            i += 1;
        }
        if o.duration == 0 || o.connections == 0 {
            return Err("--duration and --connections must be at least 1".into());
        }
        Ok(o)
    }

    fn wants(&self, v: Variant) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| v.name().contains(o.as_str()))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Login,
    Read,
    Write,
    /// Only probed (its Redis cost), never loaded.
    Logout,
}

impl Route {
    pub const LOADED: [Route; 3] = [Route::Login, Route::Read, Route::Write];

    pub fn name(self) -> &'static str {
        match self {
            Route::Login => "login",
            Route::Read => "read",
            Route::Write => "write",
            Route::Logout => "logout",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Route::Login => "/login",
            Route::Read => "/read",
            Route::Write => "/write",
            Route::Logout => "/logout",
        }
    }

    fn method(self) -> &'static str {
        match self {
            Route::Login | Route::Logout => "POST",
            Route::Read | Route::Write => "GET",
        }
    }
}

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

pub struct Setup {
    pub interference: String,
    pub wrk_version: String,
    pub redis_version: String,
    pub opts_line: String,
}

pub fn main(args: &[String]) -> Result<(), String> {
    let opts = Options::parse(args)?;
    if !procs::installed("wrk", "-v") {
        return Err(
            "wrk not found: install it with `apt-get install wrk` (Debian/Ubuntu), then run again"
                .into(),
        );
    }
    if !procs::installed("redis-server", "--version") {
        return Err(
            "redis-server not found: install it with `apt-get install redis-server`, then run again"
                .into(),
        );
    }
    let started = Instant::now();
    let cpu_start = crate::machine::CpuTimes::now();
    let machine = crate::machine::describe();
    eprintln!("machine: {machine}");

    let redis = RedisServer::start()?;
    let mut stats = Resp::connect(redis.port)?;
    let redis_version = stats.version()?;
    let wrk_version = crate::machine::first_line("wrk", &["-v"])
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .unwrap_or_else(|| "?".into());
    let lua = LuaScript::write()?;

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
        "{} variants x {} routes, {} s + {} s warm-up each: about {} s",
        variants.len(),
        opts.routes.len(),
        opts.duration,
        opts.warmup,
        total_cells as u64 * (opts.duration + opts.warmup + 1) + 10 * variants.len() as u64
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
        runs.push(run_variant(variant, &opts, &redis, &mut stats, &lua));
    }

    let micro = if opts.micro {
        eprintln!("== micro-benchmark (in-process, {} s)", opts.micro_secs);
        Some(micro::measure(Duration::from_secs(opts.micro_secs), 2000))
    } else {
        None
    };
    drop(redis);
    let (others, steal) = crate::machine::CpuTimes::now().others_since(&cpu_start);

    let setup = Setup {
        interference: format!(
            "other processes used {others:.0}% of the machine's CPU time during the run \
             (hypervisor steal {steal:.0}%){}",
            if others > 10.0 {
                ": the machine was busy, expect noisy numbers"
            } else {
                ""
            }
        ),
        wrk_version,
        redis_version,
        opts_line: format!(
            "wrk {{wrk}}, {} threads, {} connections, {} s per cell after a {} s warm-up; \
             each server {} worker threads; Redis {{redis}}; load generator, server and Redis \
             are separate processes on one machine, over 127.0.0.1",
            opts.threads, opts.connections, opts.duration, opts.warmup, opts.server_threads
        ),
    };
    let micro: Option<Result<MicroResult, String>> = micro;
    print!(
        "{}",
        report::render(&machine, &setup, &runs, micro.as_ref(), opts.probe)
    );
    eprintln!("done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The wrk script for `POST` routes, in a temporary file removed on drop.
struct LuaScript(PathBuf);

impl LuaScript {
    fn write() -> Result<Self, String> {
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

fn run_variant(
    variant: Variant,
    opts: &Options,
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
    let mut server = match ServerProc::start(variant, &redis.url(), opts.server_threads) {
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
fn establish(variant: Variant, port: u16) -> Result<Option<String>, String> {
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
fn measure_cell(
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
    let before = stats.command_stats()?;
    let (server_cpu0, redis_cpu0) = (server.cpu_seconds(), stats.cpu_seconds()?);
    let result = wrk::run(&load)?;
    let (server_cpu1, redis_cpu1) = (server.cpu_seconds(), stats.cpu_seconds()?);
    let after = stats.command_stats()?;
    server.check_alive()?;
    let per_request = |seconds: f64| seconds * 1e6 / result.requests.max(1) as f64;
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
        commands: resp::stats_delta(&before, &after),
        probe,
    })
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

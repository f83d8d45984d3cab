//! The full benchmark: Redis, the selected cell groups, then the report
//! (printed, and written as Markdown beside an SVG chart of the ratios).

use std::time::{Duration, Instant};

use crate::cells::{self, table::LuaScript, Group};
use crate::micro;
use crate::options::Options;
use crate::procs::{self, RedisServer};
use crate::report::{self, Results};
use crate::resp::Resp;

pub struct Setup {
    pub interference: String,
    pub wrk_version: String,
    pub redis_version: String,
    pub opts_line: String,
}

pub fn main(args: &[String]) -> Result<(), String> {
    let opts = Options::parse(args)?;
    let needs_wrk = [
        Group::Table,
        Group::CachedRead,
        Group::Postgres,
        Group::LockedWrite,
    ]
    .iter()
    .any(|g| opts.runs(*g));
    if needs_wrk && !procs::installed("wrk", "-v") {
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
    if opts.runs(Group::Postgres) {
        crate::pg_server::check_installed()?;
    }
    let started = Instant::now();
    let cpu_start = crate::machine::CpuTimes::now();
    let machine = crate::machine::describe();
    eprintln!("machine: {machine}");
    eprintln!(
        "cell groups: {}",
        opts.cells
            .iter()
            .map(|g| g.name())
            .collect::<Vec<_>>()
            .join(", ")
    );

    let redis = RedisServer::start()?;
    let mut stats = Resp::connect(redis.port)?;
    let redis_version = stats.version()?;
    let wrk_version = crate::machine::first_line("wrk", &["-v"])
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .unwrap_or_else(|| "?".into());
    let lua = LuaScript::write()?;

    let mut res = Results::default();
    if opts.runs(Group::Table) {
        res.table = cells::table::run_all(&opts, &redis, &mut stats, &lua);
    }
    if opts.runs(Group::CachedRead) {
        res.cached = Some(cells::cached::run(&opts, &redis, &mut stats, &lua));
    }
    if opts.runs(Group::Postgres) {
        res.postgres = Some(cells::postgres::run(&opts, &redis, &mut stats, &lua));
    }
    if opts.runs(Group::LoginScaling) {
        eprintln!("== login scaling");
        res.login = Some(cells::login_scaling::run(&redis.url(), &mut stats));
    }
    if opts.runs(Group::UserOps) {
        eprintln!("== per-user ops scaling");
        res.user_ops = Some(cells::user_ops::run(
            &redis.url(),
            &mut stats,
            opts.ops_users,
        ));
    }
    if opts.runs(Group::LockedWrite) {
        res.locked = Some(cells::locked::run(&opts, &redis, &mut stats));
    }
    if opts.runs(Group::Memory) {
        eprintln!("== Redis memory per session");
        res.memory = Some(cells::memory::run(&opts, &redis, &mut stats));
    }
    if opts.runs(Group::Tracker) {
        eprintln!("== keyed sessions (Tracker)");
        res.tracker = Some(cells::tracker::run(
            &redis.url(),
            &mut stats,
            opts.short_secs,
        ));
    }
    if opts.runs(Group::Micro) {
        eprintln!("== micro-benchmark (in-process, {} s)", opts.micro_secs);
        res.micro = Some(micro::measure(Duration::from_secs(opts.micro_secs), 2000));
        eprintln!(
            "== memory store growing to {} sessions",
            cells::growth::TOTAL
        );
        res.growth = Some(cells::growth::run());
    }
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
    let text = report::render(&machine, &setup, &res, &opts);
    print!("{text}");
    write_file(&opts.markdown, text.as_bytes());
    if !res.table.is_empty() {
        match crate::chart::draw(&res.table, &opts.chart, &machine) {
            Ok(()) => eprintln!("chart: {}", opts.chart.display()),
            Err(e) => eprintln!("chart not written: {e}"),
        }
    }
    eprintln!("done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn write_file(path: &std::path::Path, bytes: &[u8]) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::write(path, bytes) {
        Ok(()) => eprintln!("report: {}", path.display()),
        Err(e) => eprintln!("report not written to {}: {e}", path.display()),
    }
}

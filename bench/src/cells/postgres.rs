//! The PostgreSQL store beside the Redis store: `/read`, `/write` and
//! `/login` on axum with sessionkit on Redis, Redis with the client cache,
//! PostgreSQL and PostgreSQL with its local cache (`.cache(10_000)`), under
//! the main table's wrk load, on a PostgreSQL server of our own started for
//! this group. Each variant runs through the main table's machinery
//! ([`table::run_variant`]); ratios are within this one run.

use std::fmt::Write;

use super::table::{self, LuaScript, VariantRun};
use crate::options::{Options, Route};
use crate::pg_server::PostgresServer;
use crate::procs::RedisServer;
use crate::report::{latency, thousands, Lookup};
use crate::resp::Resp;
use crate::servers::{Store, Variant};

pub const VARIANTS: [Variant; 4] = [
    Variant::SkAxum(Store::Redis),
    Variant::SkAxum(Store::RedisCache),
    Variant::SkAxum(Store::Postgres),
    Variant::SkAxum(Store::PostgresCache),
];

/// The ratios of the group: each PostgreSQL variant over its Redis
/// counterpart, and the PostgreSQL cache's gain.
const RATIOS: [(&str, Store, Store); 3] = [
    ("PostgreSQL / Redis", Store::Postgres, Store::Redis),
    (
        "PostgreSQL + cache / Redis + client cache",
        Store::PostgresCache,
        Store::RedisCache,
    ),
    (
        "PostgreSQL + cache / PostgreSQL",
        Store::PostgresCache,
        Store::Postgres,
    ),
];

pub struct PostgresCells {
    /// `postgres --version` of the server we started.
    pub version: String,
    pub runs: Vec<VariantRun>,
}

pub fn run(
    opts: &Options,
    redis: &RedisServer,
    stats: &mut Resp,
    lua: &LuaScript,
) -> Result<PostgresCells, String> {
    eprintln!("== PostgreSQL server (initdb + pg_ctl start)");
    let pg = PostgresServer::start()?;
    eprintln!("   PostgreSQL {} on 127.0.0.1:{}", pg.version, pg.port);
    let mut runs = Vec::new();
    for variant in VARIANTS.into_iter().filter(|v| opts.wants(*v)) {
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
        let url = if variant.uses_postgres() {
            pg.url()
        } else {
            redis.url()
        };
        eprintln!("== {}", variant.name());
        runs.push(table::run_variant(variant, opts, &url, redis, stats, lua));
    }
    let cells = PostgresCells {
        version: pg.version.clone(),
        runs,
    };
    eprint!("{}", ratio_lines(&cells, opts));
    Ok(cells)
}

/// The store of one of [`VARIANTS`], by store.
fn variant(store: Store) -> Variant {
    Variant::SkAxum(store)
}

/// `a`'s req/s over `b`'s on `route`.
fn ratio(at: &Lookup, a: Store, b: Store, route: Route) -> Option<f64> {
    let (a, b) = (
        at.cell(variant(a), route)?.wrk.rps,
        at.cell(variant(b), route)?.wrk.rps,
    );
    Some(a / b.max(1e-9))
}

/// One line per ratio, with a figure per route.
fn ratio_lines(c: &PostgresCells, opts: &Options) -> String {
    let at = Lookup(&c.runs);
    let mut o = String::new();
    for (label, a, b) in RATIOS {
        let figures: Vec<String> = opts
            .routes
            .iter()
            .map(|&r| {
                let x = ratio(&at, a, b, r).map_or("–".into(), |x| format!("{x:.2}x"));
                format!("{} {x}", r.name())
            })
            .collect();
        let _ = writeln!(o, "   {label} (req/s): {}", figures.join(", "));
    }
    o
}

pub fn render(c: &PostgresCells, opts: &Options) -> String {
    let at = Lookup(&c.runs);
    let mut o = String::new();
    let _ = writeln!(o, "#### PostgreSQL store\n");
    let _ = writeln!(
        o,
        "- sessionkit on axum, the main table's load (wrk {} threads, {} connections, {} s per \
         cell after a {} s warm-up; server {} worker threads); `vs Redis`: req/s over the same \
         route on Redis (PostgreSQL) or on Redis + client cache (PostgreSQL + cache)",
        opts.threads, opts.connections, opts.duration, opts.warmup, opts.server_threads
    );
    let _ = writeln!(
        o,
        "- PostgreSQL {}: a cluster of the benchmark's own (initdb into a temp dir, 127.0.0.1, \
         `max_connections=300`, other settings default: **fsync and synchronous_commit on**, \
         every committed write waits for its WAL flush); `PostgresStore` defaults (pool of 10 \
         connections, purge every 60 s), `.cache(10_000)` for the cached variant; a schema \
         per variant",
        c.version
    );
    let _ = writeln!(
        o,
        "- Redis: the benchmark's redis-server, started with `--save \"\" --appendonly no`: \
         **no persistence at all** (an acknowledged write is in memory only); the two \
         sides do not have the same durability"
    );
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "| route | store | req/s | p50 | p99 | server CPU/req | vs Redis |"
    );
    let _ = writeln!(o, "|---|---|---:|---:|---:|---:|---:|");
    for &route in &opts.routes {
        for run in &c.runs {
            let store = run.variant.store().map_or("?", Store::label);
            let name = route.name();
            if let Some(why) = &run.skipped {
                let _ = writeln!(o, "| {name} | {store} | skipped: {why} | | | | |");
                continue;
            }
            let Some(cell) = run.cells.iter().find(|c| c.route == route) else {
                continue;
            };
            let m = match &cell.outcome {
                Ok(m) => m,
                Err(e) => {
                    let _ = writeln!(o, "| {name} | {store} | failed: {e} | | | | |");
                    continue;
                }
            };
            let mut rps = thousands(m.wrk.rps);
            if m.wrk.non_2xx > 0 || m.wrk.socket_errors > 0 {
                let _ = write!(
                    rps,
                    " ⚠ {} non-2xx, {} socket errors",
                    m.wrk.non_2xx, m.wrk.socket_errors
                );
            }
            let vs = match run.variant.store() {
                Some(s @ Store::Postgres) => ratio(&at, s, Store::Redis, route),
                Some(s @ Store::PostgresCache) => ratio(&at, s, Store::RedisCache, route),
                _ => None,
            }
            .map_or("–".into(), |x| format!("{x:.2}x"));
            let cpu = m
                .server_cpu_us
                .map_or("?".into(), |us| format!("{us:.1} µs"));
            let _ = writeln!(
                o,
                "| {name} | {store} | {rps} | {} | {} | {cpu} | {vs} |",
                latency(m.wrk.p50_us),
                latency(m.wrk.p99_us),
            );
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "| req/s ratio | {} |", route_names(opts, " | "));
    let _ = writeln!(o, "|---|{}", "---:|".repeat(opts.routes.len()));
    for (label, a, b) in RATIOS {
        let figures: Vec<String> = opts
            .routes
            .iter()
            .map(|&r| ratio(&at, a, b, r).map_or("–".into(), |x| format!("{x:.2}x")))
            .collect();
        let _ = writeln!(o, "| {label} | {} |", figures.join(" | "));
    }
    let _ = writeln!(o);
    o
}

fn route_names(opts: &Options, sep: &str) -> String {
    opts.routes
        .iter()
        .map(|r| r.name())
        .collect::<Vec<_>>()
        .join(sep)
}

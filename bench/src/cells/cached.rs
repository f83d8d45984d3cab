//! Cached read with a 2-thread load generator: sessionkit on Redis with the
//! client cache vs the bare framework, `/read` only.

use std::fmt::Write;

use super::table::{self, LuaScript, VariantRun};
use crate::options::{Options, Route};
use crate::procs::RedisServer;
use crate::resp::Resp;
use crate::servers::{Family, Store, Variant};

pub const THREADS: usize = 2;

pub struct CachedRead {
    pub runs: Vec<VariantRun>,
}

impl CachedRead {
    fn rps(&self, v: Variant) -> Option<f64> {
        let run = self.runs.iter().find(|r| r.variant == v)?;
        let cell = run.cells.iter().find(|c| c.route == Route::Read)?;
        Some(cell.outcome.as_ref().ok()?.wrk.rps)
    }

    /// Cached read req/s over bare, with the two figures.
    pub fn ratio(&self, family: Family) -> Option<(f64, f64, f64)> {
        let sk = match family {
            Family::Axum => Variant::SkAxum(Store::RedisCache),
            Family::Actix => Variant::SkActix(Store::RedisCache),
        };
        let (s, b) = (self.rps(sk)?, self.rps(family.bare())?);
        Some((s / b, s, b))
    }
}

pub fn run(opts: &Options, redis: &RedisServer, stats: &mut Resp, lua: &LuaScript) -> CachedRead {
    let mut o = opts.clone();
    o.threads = THREADS;
    o.routes = vec![Route::Read];
    o.probe = 0;
    let runs = [
        Variant::AxumBare,
        Variant::SkAxum(Store::RedisCache),
        Variant::ActixBare,
        Variant::SkActix(Store::RedisCache),
    ]
    .into_iter()
    .filter(|v| v.unavailable().is_none())
    .map(|v| {
        eprintln!("== {} (read, {THREADS} wrk threads)", v.name());
        table::run_variant(v, &o, &redis.url(), redis, stats, lua)
    })
    .collect();
    CachedRead { runs }
}

pub fn render(c: &CachedRead, opts: &Options) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "#### Cached read vs bare, wrk with {THREADS} threads ({} connections, {} s)\n",
        opts.connections, opts.duration
    );
    for family in [Family::Axum, Family::Actix] {
        match c.ratio(family) {
            Some((x, s, b)) => {
                let _ = writeln!(
                    o,
                    "- {}: sessionkit Redis + client cache {s:.0} req/s, bare {b:.0} req/s: {x:.2}x",
                    family.name()
                );
            }
            None => {
                let _ = writeln!(o, "- {}: not measured (failed)", family.name());
            }
        }
    }
    for run in &c.runs {
        if let Some(why) = &run.skipped {
            let _ = writeln!(o, "- {} skipped: {why}", run.variant.name());
        }
    }
    let _ = writeln!(o);
    o
}

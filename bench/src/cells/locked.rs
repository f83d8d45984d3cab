//! Locked writes: 16 clients hammering one session on `/locked-write` (the
//! `LockedSession` extractor) vs on `/write` (no lock), per framework and
//! store.

use std::fmt::Write;

use super::{latency, table};
use crate::options::Options;
use crate::procs::{RedisServer, ServerProc};
use crate::resp::Resp;
use crate::servers::{Store, Variant};
use crate::wrk::{self, Load, WrkResult};

pub const CLIENTS: usize = 16;
pub const VARIANTS: [Variant; 4] = [
    Variant::SkAxum(Store::Memory),
    Variant::SkAxum(Store::Redis),
    Variant::SkActix(Store::Memory),
    Variant::SkActix(Store::Redis),
];

pub struct Row {
    pub variant: Variant,
    pub outcome: Result<(WrkResult, WrkResult), String>,
}

impl Row {
    /// Locked over unlocked requests/s, and the locked p99 in µs.
    pub fn figures(&self) -> Option<(f64, f64)> {
        let (unlocked, locked) = self.outcome.as_ref().ok()?;
        Some((locked.rps / unlocked.rps.max(1e-9), locked.p99_us))
    }
}

pub fn run(opts: &Options, redis: &RedisServer, stats: &mut Resp) -> Vec<Row> {
    VARIANTS
        .into_iter()
        .map(|variant| {
            eprintln!("== {} (locked vs unlocked write)", variant.name());
            let outcome = measure(variant, opts, redis, stats);
            match &outcome {
                Ok((u, l)) => eprintln!(
                    "   write {:.0} req/s, locked-write {:.0} req/s (p99 {})",
                    u.rps,
                    l.rps,
                    latency(l.p99_us)
                ),
                Err(e) => eprintln!("   FAILED: {e}"),
            }
            Row { variant, outcome }
        })
        .collect()
}

fn measure(
    variant: Variant,
    opts: &Options,
    redis: &RedisServer,
    stats: &mut Resp,
) -> Result<(WrkResult, WrkResult), String> {
    stats.simple(&["FLUSHALL"])?;
    let mut server = ServerProc::start(variant, &redis.url(), opts.server_threads)?;
    let cookie = table::establish(variant, server.port)?;
    let mut results = Vec::new();
    for path in ["/write", "/locked-write"] {
        let mut load = Load {
            port: server.port,
            path,
            script: None,
            cookie: cookie.as_deref(),
            duration_secs: opts.warmup.max(1),
            connections: CLIENTS,
            threads: 1,
        };
        wrk::run(&load).map_err(|e| format!("{path} warm-up: {e}"))?;
        load.duration_secs = opts.short_secs;
        let r = wrk::run(&load).map_err(|e| format!("{path}: {e}"))?;
        server.check_alive()?;
        results.push(r);
    }
    let locked = results.pop().ok_or("no locked result")?;
    let unlocked = results.pop().ok_or("no unlocked result")?;
    Ok((unlocked, locked))
}

fn cell(r: &WrkResult) -> String {
    let mut s = format!(
        "{:.0} req/s, p50 {}, p99 {}",
        r.rps,
        latency(r.p50_us),
        latency(r.p99_us)
    );
    if r.non_2xx > 0 || r.socket_errors > 0 {
        let _ = write!(
            s,
            " ⚠ {} non-2xx, {} socket errors",
            r.non_2xx, r.socket_errors
        );
    }
    s
}

pub fn render(rows: &[Row], secs: u64) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "#### Locked writes ({CLIENTS} wrk connections, 1 thread, on one session, {secs} s each)\n"
    );
    let _ = writeln!(
        o,
        "| variant | `/write` (no lock) | `/locked-write` | locked / unlocked |"
    );
    let _ = writeln!(o, "|---|---|---|---:|");
    for row in rows {
        match (&row.outcome, row.figures()) {
            (Ok((u, l)), Some((x, _))) => {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {x:.2}x |",
                    row.variant.name(),
                    cell(u),
                    cell(l)
                );
            }
            (Err(e), _) => {
                let _ = writeln!(o, "| {} | failed: {e} | | |", row.variant.name());
            }
            _ => {}
        }
    }
    let _ = writeln!(o);
    o
}

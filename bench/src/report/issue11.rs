//! One line per issue-11 target, `MET` / `NOT MET` with the figure.

use std::fmt::Write;

use super::{Lookup, Results};
use crate::cells::{latency, verdict};
use crate::options::Route;
use crate::servers::{Family, Store, Variant};

/// The memory-store micro target of issue 11, in ns per request over bare.
const MICRO_TARGET_NS: f64 = 600.0;

fn sk(family: Family, store: Store) -> Variant {
    match family {
        Family::Axum => Variant::SkAxum(store),
        Family::Actix => Variant::SkActix(store),
    }
}

fn not_run(title: &str, why: &str) -> String {
    format!("{title}: NOT MET — not measured ({why})")
}

pub fn render(res: &Results) -> String {
    let mut lines = Vec::new();
    let at = Lookup(&res.table);
    let peer_targets = [
        (
            "uncached read >= 1.3x the better peer",
            Store::Redis,
            Route::Read,
            1.3,
        ),
        (
            "write (default config) >= 1.2x the better peer",
            Store::Redis,
            Route::Write,
            1.2,
        ),
        (
            "write with the client cache >= 1.5x the better peer",
            Store::RedisCache,
            Route::Write,
            1.5,
        ),
    ];
    for (title, store, route, target) in peer_targets {
        for family in [Family::Axum, Family::Actix] {
            let v = sk(family, store);
            let title = format!("{title} ({})", family.name());
            match (at.cell(v, route), at.better_peer(route)) {
                (Some(m), Some((peer, rps))) => {
                    let x = m.wrk.rps / rps;
                    lines.push(format!(
                        "{title}: {} — {} {:.0} req/s / {} {:.0} req/s = {x:.2}x",
                        verdict(x >= target),
                        v.name(),
                        m.wrk.rps,
                        peer.name(),
                        rps
                    ));
                }
                _ => lines.push(not_run(&title, "main table cell missing")),
            }
        }
    }
    for family in [Family::Axum, Family::Actix] {
        let title = format!(
            "cached read >= 0.9x bare with a 2-thread load generator ({})",
            family.name()
        );
        match res.cached.as_ref().and_then(|c| c.ratio(family)) {
            Some((x, s, b)) => lines.push(format!(
                "{title}: {} — {s:.0} / {b:.0} req/s = {x:.2}x",
                verdict(x >= 0.9)
            )),
            None => lines.push(not_run(&title, "cached-read cells missing")),
        }
    }
    match &res.login {
        Some(Ok(l)) => {
            for s in l.series.iter().filter(|s| s.rows.len() > 1) {
                let title = format!(
                    "login Redis CPU at 10,000 sessions / at 10 <= 2x ({})",
                    s.label
                );
                match s.ratio() {
                    Some(x) => lines.push(format!(
                        "{title}: {} — {x:.2}x ({:.1} vs {:.1} µs/login, INFO commandstats usec \
                         of every command)",
                        verdict(x <= 2.0),
                        s.rows.last().map_or(0.0, |r| r.cost.usec_all),
                        s.rows.first().map_or(0.0, |r| r.cost.usec_all),
                    )),
                    None => lines.push(not_run(&title, "no rows")),
                }
            }
        }
        Some(Err(e)) => lines.push(not_run("login CPU 10k/10 <= 2x", e)),
        None => lines.push(not_run("login CPU 10k/10 <= 2x", "group not run")),
    }
    match &res.user_ops {
        Some(Ok(u)) => {
            for (op, x) in u.ratios() {
                lines.push(format!(
                    "per-user ops, {op}: Redis µs/call with {} sessions / with {} <= 2x: {} — {x:.2}x",
                    u.big.sessions,
                    u.small.sessions,
                    verdict(x <= 2.0)
                ));
            }
        }
        Some(Err(e)) => lines.push(not_run("per-user ops 1M/1k <= 2x", e)),
        None => lines.push(not_run("per-user ops 1M/1k <= 2x", "group not run")),
    }
    match &res.locked {
        Some(rows) => {
            for row in rows {
                let title = format!(
                    "locked / unlocked write >= 0.5x and locked p99 <= 50 ms ({})",
                    row.variant.name()
                );
                match (row.figures(), &row.outcome) {
                    (Some((x, p99)), Ok((_, l))) => lines.push(format!(
                        "{title}: {} — {x:.2}x, p99 {}{}",
                        verdict(x >= 0.5 && p99 <= 50_000.0 && l.non_2xx == 0),
                        latency(p99),
                        if l.non_2xx > 0 {
                            format!(", {} non-2xx responses", l.non_2xx)
                        } else {
                            String::new()
                        }
                    )),
                    (_, Err(e)) => lines.push(not_run(&title, e)),
                    _ => lines.push(not_run(&title, "no figures")),
                }
            }
        }
        None => lines.push(not_run(
            "locked/unlocked >= 0.5x, p99 <= 50 ms",
            "group not run",
        )),
    }
    let title = "Redis memory <= 300 bytes per logged-in session";
    match &res.memory {
        Some(Ok(m)) => lines.push(format!(
            "{title}: {} — {:.0} bytes/session (INFO used_memory delta over {} logins)",
            verdict(m.bytes_per_session <= 300.0),
            m.bytes_per_session,
            m.sessions
        )),
        Some(Err(e)) => lines.push(not_run(title, e)),
        None => lines.push(not_run(title, "group not run")),
    }
    let title = "memory-store middleware overhead <= 0.6 µs/request over bare axum (micro)";
    match &res.micro {
        Some(Ok(m)) => lines.push(format!(
            "{title}: {} — {:.0} ns/request",
            verdict(m.overhead_ns <= MICRO_TARGET_NS),
            m.overhead_ns
        )),
        Some(Err(e)) => lines.push(not_run(title, e)),
        None => {}
    }
    let title = "memory store: no p99 stall growing past 1,000,000 sessions (last step's p99 <= 2x the first's)";
    match &res.growth {
        Some(Ok(g)) => {
            let max = g.steps.iter().map(|s| s.create_max_us).fold(0.0, f64::max);
            let ratio = g.p99_ratio();
            lines.push(format!(
                "{title}: {} — {ratio:.2}x, slowest create {max:.0} µs",
                verdict(ratio <= 2.0)
            ));
        }
        Some(Err(e)) => lines.push(not_run(title, e)),
        None => {}
    }
    let mut o = String::from("Targets (issue 11):\n");
    for l in lines {
        let _ = writeln!(o, "- {l}");
    }
    o
}

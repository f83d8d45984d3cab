//! One line per issue-5 target.

use crate::cells::table::Probe;
use crate::micro::{self, MicroResult};
use crate::options::Route;
use crate::servers::{Family, Store, Variant};

use super::{thousands, Lookup};

/// Round trips counted over a few sequential requests are compared with
/// this slack: one cache miss in the 20 requests of a probe adds 0.05.
const SLACK: f64 = 0.051;

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

fn sk(family: Family, store: Store) -> Variant {
    match family {
        Family::Axum => Variant::SkAxum(store),
        Family::Actix => Variant::SkActix(store),
    }
}

pub fn targets(at: &Lookup, micro: Option<&Result<MicroResult, String>>) -> Vec<String> {
    let mut out = Vec::new();
    let missing = |v: Variant, r: &str| {
        let why = v
            .unavailable()
            .map_or("not measured (failed or filtered out)".to_owned(), |w| {
                format!("not measured ({w})")
            });
        format!("{r} ({}): NOT met — {} {why}", v.family().name(), v.name())
    };
    for family in [Family::Axum, Family::Actix] {
        let bare = family.bare();

        // read, cache warm: >= 0.85x bare, 0 commands.
        let v = sk(family, Store::RedisCache);
        let title = "read, cache warm: >= 0.85x bare and 0 Redis commands";
        match (at.cell(v, Route::Read), at.ratio(v, Route::Read)) {
            (Some(m), Some(ratio)) => {
                let cmds = m.commands_per_request();
                out.push(format!(
                    "{title} ({}): {} — {} {} req/s = {ratio:.2}x {} (>= 0.85x); \
                     {cmds:.3} Redis commands/request under load (0)",
                    family.name(),
                    verdict(ratio >= 0.85 && cmds < 0.005),
                    v.name(),
                    thousands(m.wrk.rps),
                    bare.name(),
                ));
            }
            _ => out.push(missing(v, title)),
        }

        // read, cache off: >= 1.3x the better peer, 1 command.
        let v = sk(family, Store::Redis);
        let title =
            "read, cache off: >= 1.3x the better peer's read throughput and 1 Redis command";
        match (at.cell(v, Route::Read), at.better_peer(Route::Read)) {
            (Some(m), Some((peer, peer_rps))) => {
                let x = m.wrk.rps / peer_rps;
                let sent = m.probe.as_ref().map_or(f64::NAN, Probe::sent_per_request);
                out.push(format!(
                    "{title} ({}): {} — {} {} req/s = {x:.2}x {} {} req/s (>= 1.3x); \
                     {sent:.2} commands sent/request (1; {:.2} counting those inside the script)",
                    family.name(),
                    verdict(x >= 1.3 && (sent - 1.0).abs() <= SLACK),
                    v.name(),
                    thousands(m.wrk.rps),
                    peer.name(),
                    thousands(peer_rps),
                    m.commands_per_request(),
                ));
            }
            _ => out.push(missing(v, title)),
        }

        // write, cache warm: >= 1.5x the better peer, 1 round trip.
        let v = sk(family, Store::RedisCache);
        let title =
            "write, cache warm: >= 1.5x the better peer's write throughput and 1 round trip";
        match (at.cell(v, Route::Write), at.better_peer(Route::Write)) {
            (Some(m), Some((peer, peer_rps))) => {
                let x = m.wrk.rps / peer_rps;
                let sent = m.probe.as_ref().map_or(f64::NAN, Probe::sent_per_request);
                out.push(format!(
                    "{title} ({}): {} — {} {} req/s = {x:.2}x {} {} req/s (>= 1.5x); \
                     {sent:.2} commands sent/request (1)",
                    family.name(),
                    verdict(x >= 1.5 && sent <= 1.0 + SLACK),
                    v.name(),
                    thousands(m.wrk.rps),
                    peer.name(),
                    thousands(peer_rps),
                ));
            }
            _ => out.push(missing(v, title)),
        }

        // login / logout: 1 round trip each.
        let title = "login / logout: 1 round trip each";
        for store in [Store::Redis, Store::RedisCache] {
            let v = sk(family, store);
            let login = at
                .cell(v, Route::Login)
                .and_then(|m| m.probe.as_ref())
                .map(Probe::sent_per_request);
            let logout = at.logout(v).map(Probe::sent_per_request);
            match (login, logout) {
                (Some(li), Some(lo)) => out.push(format!(
                    "{title} ({}, {}): {} — login {li:.2}, logout {lo:.2} commands sent/request \
                     (1 each; command count used as the round-trip proxy)",
                    family.name(),
                    v.name(),
                    verdict(li <= 1.0 + SLACK && lo <= 1.0 + SLACK),
                )),
                _ => out.push(missing(v, title)),
            }
        }
    }
    let title = "memory-store middleware overhead: <= 1 µs/request over bare axum, in-process";
    match micro {
        Some(Ok(m)) => out.push(format!(
            "{title}: {} — {:.0} ns/request ({:.0} vs {:.0} ns)",
            verdict(m.overhead_ns <= micro::TARGET_NS),
            m.overhead_ns,
            m.session_ns,
            m.bare_ns
        )),
        Some(Err(e)) => out.push(format!("{title}: NOT met — micro-benchmark failed: {e}")),
        None => out.push(format!(
            "{title}: not measured here (run `cargo run --release -p sessionkit-bench -- micro`)"
        )),
    }
    out
}

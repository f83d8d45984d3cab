//! The printed report: a Markdown table, one line per issue-5 target, and
//! the per-command details.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::micro::{self, MicroResult};
use crate::run::{Measured, Probe, Route, Setup, VariantRun};
use crate::servers::{Family, Store, Variant};

fn latency(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

/// `12,345`.
fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

struct Lookup<'a>(&'a [VariantRun]);

impl<'a> Lookup<'a> {
    fn cell(&self, v: Variant, r: Route) -> Option<&'a Measured> {
        self.0
            .iter()
            .find(|run| run.variant == v)?
            .cells
            .iter()
            .find(|c| c.route == r)?
            .outcome
            .as_ref()
            .ok()
    }

    fn logout(&self, v: Variant) -> Option<&'a Probe> {
        self.0
            .iter()
            .find(|run| run.variant == v)?
            .logout
            .as_ref()?
            .as_ref()
            .ok()
    }

    /// Requests/s relative to the bare variant of the same family.
    fn ratio(&self, v: Variant, r: Route) -> Option<f64> {
        let bare = self.cell(v.family().bare(), r)?.wrk.rps;
        Some(self.cell(v, r)?.wrk.rps / bare)
    }

    /// The peer with the most requests/s on this route.
    fn better_peer(&self, r: Route) -> Option<(Variant, f64)> {
        [Variant::TowerSessionsRedis, Variant::ActixSessionRedis]
            .into_iter()
            .filter_map(|p| Some((p, self.cell(p, r)?.wrk.rps)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }
}

pub fn render(
    machine: &str,
    setup: &Setup,
    runs: &[VariantRun],
    micro: Option<&Result<MicroResult, String>>,
    probe_n: usize,
) -> String {
    let mut o = String::new();
    let at = Lookup(runs);
    let _ = writeln!(o);
    let _ = writeln!(o, "### sessionkit-bench results");
    let _ = writeln!(o);
    let _ = writeln!(o, "- machine: {machine}");
    let _ = writeln!(
        o,
        "- load: {}",
        setup
            .opts_line
            .replace("{wrk}", &setup.wrk_version)
            .replace("{redis}", &setup.redis_version)
    );
    let _ = writeln!(o, "- interference: {}", setup.interference);
    let _ = writeln!(
        o,
        "- peers: tower-sessions {} + tower-sessions-redis-store {} (fred {}, pool of 6, axum {}); \
         actix-session {} with RedisSessionStore (actix-web {})",
        env!("PEER_TOWER_SESSIONS"),
        env!("PEER_TOWER_SESSIONS_REDIS_STORE"),
        env!("PEER_FRED"),
        env!("PEER_AXUM"),
        env!("PEER_ACTIX_SESSION"),
        env!("PEER_ACTIX_WEB"),
    );
    let _ = writeln!(
        o,
        "- routes: `POST /login` (no cookie; a new user id per request), `GET /read` (returns \
         one session key), `GET /write` (increments a session counter); read and write reuse \
         one session logged in before the run"
    );
    let _ = writeln!(
        o,
        "- `server CPU/req`: the server process's CPU time (user + system, /proc) over the run / \
         requests; `Redis CPU/req`: redis-server's (`INFO cpu`). Less sensitive to a busy \
         machine than req/s"
    );
    let _ = writeln!(
        o,
        "- `cmds/req`: Redis `INFO commandstats` delta over the run (INFO itself excluded) / \
         wrk's request count; it includes the commands Redis runs *inside* Lua scripts. \
         `sent/req`: commands the server sent to Redis (= round trips unless pipelined), \
         counted with `MONITOR` over {probe_n} sequential requests after the run"
    );
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "| variant | route | req/s | p50 | p99 | vs bare | server CPU/req | Redis CPU/req | cmds/req | sent/req |"
    );
    let _ = writeln!(o, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for run in runs {
        if let Some(why) = &run.skipped {
            let _ = writeln!(
                o,
                "| {} | – | skipped: {why} | | | | | | | |",
                run.variant.name()
            );
            continue;
        }
        for cell in &run.cells {
            let name = run.variant.name();
            let route = cell.route.name();
            match &cell.outcome {
                Err(e) => {
                    let _ = writeln!(o, "| {name} | {route} | failed: {e} | | | | | | | |");
                }
                Ok(m) => {
                    let mut rps = thousands(m.wrk.rps);
                    if m.wrk.non_2xx > 0 || m.wrk.socket_errors > 0 {
                        let _ = write!(
                            rps,
                            " ⚠ {} non-2xx, {} socket errors",
                            m.wrk.non_2xx, m.wrk.socket_errors
                        );
                    }
                    let ratio = at
                        .ratio(run.variant, cell.route)
                        .map_or("–".into(), |r| format!("{r:.2}x"));
                    let sent = match &m.probe {
                        Some(p) => format!("{:.2}", p.sent_per_request()),
                        None if run.variant.uses_redis() => "–".into(),
                        None => "0".into(),
                    };
                    let server_cpu = m
                        .server_cpu_us
                        .map_or("?".into(), |us| format!("{us:.1} µs"));
                    let _ = writeln!(
                        o,
                        "| {name} | {route} | {rps} | {} | {} | {ratio} | {server_cpu} | {:.1} µs | {:.2} | {sent} |",
                        latency(m.wrk.p50_us),
                        latency(m.wrk.p99_us),
                        m.redis_cpu_us,
                        m.commands_per_request()
                    );
                }
            }
        }
    }
    let _ = writeln!(o);

    let logouts: Vec<String> = runs
        .iter()
        .filter_map(|r| {
            let p = at.logout(r.variant)?;
            Some(format!("{} {:.2}", r.variant.name(), p.sent_per_request()))
        })
        .collect();
    if !logouts.is_empty() {
        let _ = writeln!(
            o,
            "logout, commands sent per request (MONITOR, {probe_n} sequential logouts of \
             sessions just logged in and read once; not load-tested): {}",
            logouts.join(", ")
        );
        let _ = writeln!(o);
    }

    if let Some(m) = micro {
        match m {
            Ok(m) => o.push_str(&micro::render(m)),
            Err(e) => {
                let _ = writeln!(o, "micro-benchmark failed: {e}");
            }
        }
        let _ = writeln!(o);
    }

    let _ = writeln!(o, "Targets (issue 5):");
    for line in targets(&at, micro) {
        let _ = writeln!(o, "- {line}");
    }
    let _ = writeln!(
        o,
        "  (round trips are counted as the Redis commands the server sent, from MONITOR over \
         sequential requests: a proxy that would over-count pipelined commands; up to 0.05 \
         over the target is allowed for one cache miss or background command per probe)"
    );
    let _ = writeln!(o);

    let _ = writeln!(o, "Redis commands per request, by command:");
    for run in runs {
        for cell in &run.cells {
            let Ok(m) = &cell.outcome else { continue };
            if m.commands.is_empty() && m.probe.is_none() {
                continue;
            }
            let _ = write!(
                o,
                "- {} {}: under load {}",
                run.variant.name(),
                cell.route.name(),
                per_request(&m.commands, m.wrk.requests as usize)
            );
            if let Some(p) = &m.probe {
                let _ = write!(
                    o,
                    "; sequential: sent {}, inside scripts {}",
                    per_request(&p.sent, p.requests),
                    per_request(&p.in_script, p.requests)
                );
            }
            let _ = writeln!(o);
        }
        if let Some(p) = at.logout(run.variant) {
            let _ = writeln!(
                o,
                "- {} logout: sequential: sent {}, inside scripts {}",
                run.variant.name(),
                per_request(&p.sent, p.requests),
                per_request(&p.in_script, p.requests)
            );
        }
    }
    o
}

fn per_request(counts: &BTreeMap<String, u64>, requests: usize) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    counts
        .iter()
        .map(|(k, v)| format!("{k} {:.2}", *v as f64 / requests.max(1) as f64))
        .collect::<Vec<_>>()
        .join(", ")
}

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

fn targets(at: &Lookup, micro: Option<&Result<MicroResult, String>>) -> Vec<String> {
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

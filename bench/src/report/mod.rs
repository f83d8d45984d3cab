//! The printed report: a Markdown table, one line per issue-5 target, and
//! the per-command details.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::cells::cached::{self, CachedRead};
use crate::cells::locked;
use crate::cells::login_scaling::{self, LoginScaling};
use crate::cells::memory::{self, MemoryCell};
use crate::cells::postgres::{self, PostgresCells};
use crate::cells::table::{Measured, Probe, VariantRun};
use crate::cells::user_ops::{self, UserOps};
use crate::micro::{self, MicroResult};
use crate::options::{Options, Route};
use crate::run::Setup;
use crate::servers::Variant;

mod issue11;
mod issue5;

/// Everything one run measured; `None` for a group not run.
#[derive(Default)]
pub struct Results {
    pub table: Vec<VariantRun>,
    pub cached: Option<CachedRead>,
    pub postgres: Option<Result<PostgresCells, String>>,
    pub login: Option<Result<LoginScaling, String>>,
    pub user_ops: Option<Result<UserOps, String>>,
    pub locked: Option<Vec<locked::Row>>,
    pub memory: Option<Result<MemoryCell, String>>,
    pub tracker: Option<Result<crate::cells::tracker::TrackerCells, String>>,
    pub micro: Option<Result<MicroResult, String>>,
    pub growth: Option<Result<crate::cells::growth::Growth, String>>,
}

pub(crate) fn latency(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

/// `12,345`.
pub(crate) fn thousands(v: f64) -> String {
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

pub(crate) struct Lookup<'a>(pub &'a [VariantRun]);

impl<'a> Lookup<'a> {
    pub fn cell(&self, v: Variant, r: Route) -> Option<&'a Measured> {
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

    pub fn logout(&self, v: Variant) -> Option<&'a Probe> {
        self.0
            .iter()
            .find(|run| run.variant == v)?
            .logout
            .as_ref()?
            .as_ref()
            .ok()
    }

    /// Requests/s relative to the bare variant of the same family.
    pub fn ratio(&self, v: Variant, r: Route) -> Option<f64> {
        let bare = self.cell(v.family().bare(), r)?.wrk.rps;
        Some(self.cell(v, r)?.wrk.rps / bare)
    }

    /// Requests/s relative to the better peer on this route.
    pub fn peer_ratio(&self, v: Variant, r: Route) -> Option<f64> {
        Some(self.cell(v, r)?.wrk.rps / self.better_peer(r)?.1)
    }

    /// The peer with the most requests/s on this route, of both frameworks.
    pub fn better_peer(&self, r: Route) -> Option<(Variant, f64)> {
        [Variant::TowerSessionsRedis, Variant::ActixSessionRedis]
            .into_iter()
            .filter_map(|p| Some((p, self.cell(p, r)?.wrk.rps)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }
}

pub fn render(machine: &str, setup: &Setup, res: &Results, opts: &Options) -> String {
    let probe_n = opts.probe;
    let runs = res.table.as_slice();
    let micro = res.micro.as_ref();
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
         counted with `MONITOR` over {probe_n} sequential requests after the run. \
         `Redis µs/req`: `INFO commandstats` usec delta summed over every command / requests \
         (a script's usec includes its inner commands, which are counted again under their \
         own names). `vs peer`: req/s over the better of tower-sessions-redis and \
         actix-session-redis on the same route"
    );
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "| variant | route | req/s | p50 | p99 | vs bare | vs peer | server CPU/req | Redis µs/req | Redis CPU/req | cmds/req | sent/req |"
    );
    let _ = writeln!(
        o,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for run in runs {
        if let Some(why) = &run.skipped {
            let _ = writeln!(
                o,
                "| {} | – | skipped: {why} | | | | | | | | | |",
                run.variant.name()
            );
            continue;
        }
        for cell in &run.cells {
            let name = run.variant.name();
            let route = cell.route.name();
            match &cell.outcome {
                Err(e) => {
                    let _ = writeln!(o, "| {name} | {route} | failed: {e} | | | | | | | | | |");
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
                    let vs_peer = if run.variant.is_peer() || run.variant.is_bare() {
                        "–".into()
                    } else {
                        at.peer_ratio(run.variant, cell.route)
                            .map_or("–".into(), |r| format!("{r:.2}x"))
                    };
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
                        "| {name} | {route} | {rps} | {} | {} | {ratio} | {vs_peer} | {server_cpu} | {:.1} µs | {:.1} µs | {:.2} | {sent} |",
                        latency(m.wrk.p50_us),
                        latency(m.wrk.p99_us),
                        m.redis_usec,
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

    if let Some(c) = &res.cached {
        o.push_str(&cached::render(c, opts));
    }
    match &res.postgres {
        Some(Ok(p)) => o.push_str(&postgres::render(p, opts)),
        Some(Err(e)) => {
            let _ = writeln!(o, "#### PostgreSQL store\n\nnot measured: {e}\n");
        }
        None => {}
    }
    match &res.login {
        Some(Ok(l)) => o.push_str(&login_scaling::render(l)),
        Some(Err(e)) => {
            let _ = writeln!(o, "login scaling failed: {e}\n");
        }
        None => {}
    }
    match &res.user_ops {
        Some(Ok(u)) => o.push_str(&user_ops::render(u)),
        Some(Err(e)) => {
            let _ = writeln!(o, "per-user ops scaling failed: {e}\n");
        }
        None => {}
    }
    if let Some(rows) = &res.locked {
        o.push_str(&locked::render(rows, opts.short_secs));
    }
    match &res.memory {
        Some(Ok(m)) => o.push_str(&memory::render(m)),
        Some(Err(e)) => {
            let _ = writeln!(o, "memory cell failed: {e}\n");
        }
        None => {}
    }
    match &res.tracker {
        Some(Ok(t)) => o.push_str(&crate::cells::tracker::render(t)),
        Some(Err(e)) => {
            let _ = writeln!(o, "tracker cells failed: {e}\n");
        }
        None => {}
    }
    match &res.growth {
        Some(Ok(g)) => o.push_str(&crate::cells::growth::render(g)),
        Some(Err(e)) => {
            let _ = writeln!(o, "memory-store growth cell failed: {e}\n");
        }
        None => {}
    }
    if runs.is_empty() {
        o.push_str(&issue11::render(res));
        return o;
    }

    let _ = writeln!(o, "Targets (issue 5):");
    for line in issue5::targets(&at, micro) {
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
    o.push_str(&issue11::render(res));
    o
}

pub(crate) fn per_request(counts: &BTreeMap<String, u64>, requests: usize) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    counts
        .iter()
        .map(|(k, v)| format!("{k} {:.2}", *v as f64 / requests.max(1) as f64))
        .collect::<Vec<_>>()
        .join(", ")
}

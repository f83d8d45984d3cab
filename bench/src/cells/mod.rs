//! The cell groups of the full benchmark (issue 11), one module each, and
//! what they share: Redis cost snapshots and latency summaries.

pub mod cached;
pub mod growth;
pub mod locked;
pub mod login_scaling;
pub mod memory;
pub mod populate;
pub mod postgres;
pub mod sk;
pub mod table;
pub mod tracker;
pub mod user_ops;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::resp::{CmdStat, Resp};

/// A group of cells, selected with `--cells NAME[,NAME..]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// Variant x route under wrk: the main table.
    Table,
    /// Cached read vs bare with a 2-thread load generator.
    CachedRead,
    /// Read, write and login on axum with the Redis and PostgreSQL stores,
    /// each with and without its cache, on a PostgreSQL server of our own.
    Postgres,
    /// One user logging in while holding 10 / 1,000 / 10,000 sessions.
    LoginScaling,
    /// `sessions_of` / `revoke_user` / `revoke_user_except` in a small and
    /// a big store.
    UserOps,
    /// 16 clients on one session, locked vs unlocked writes.
    LockedWrite,
    /// Redis memory per logged-in session.
    Memory,
    /// Keyed sessions (`Tracker`): get, update and locked update beside
    /// the cookie-session store calls, and one contended key.
    Tracker,
    /// The in-process memory-store micro-benchmark, and the memory store
    /// growing past a million sessions.
    Micro,
}

impl Group {
    pub const ALL: [Group; 9] = [
        Group::Table,
        Group::CachedRead,
        Group::Postgres,
        Group::LoginScaling,
        Group::UserOps,
        Group::LockedWrite,
        Group::Memory,
        Group::Tracker,
        Group::Micro,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Group::Table => "table",
            Group::CachedRead => "cached-read",
            Group::Postgres => "postgres",
            Group::LoginScaling => "login-scaling",
            Group::UserOps => "user-ops",
            Group::LockedWrite => "locked-write",
            Group::Memory => "memory",
            Group::Tracker => "tracker",
            Group::Micro => "micro",
        }
    }

    pub fn from_name(name: &str) -> Option<Group> {
        Group::ALL.into_iter().find(|g| g.name() == name)
    }
}

/// Redis's counters at one instant.
pub struct Snapshot {
    commands: BTreeMap<String, CmdStat>,
    cpu_s: f64,
}

impl Snapshot {
    pub fn take(stats: &mut Resp) -> Result<Snapshot, String> {
        Ok(Snapshot {
            commands: stats.command_times()?,
            cpu_s: stats.cpu_seconds()?,
        })
    }

    /// What Redis did since `self`, divided over `ops` operations.
    pub fn cost_until(&self, stats: &mut Resp, ops: usize) -> Result<Cost, String> {
        let cpu_s = stats.cpu_seconds()?;
        let after = stats.command_times()?;
        let n = ops.max(1) as f64;
        let mut cost = Cost {
            redis_cpu_us: (cpu_s - self.cpu_s) * 1e6 / n,
            ..Cost::default()
        };
        for (name, a) in &after {
            if name == "info" {
                continue;
            }
            let b = self.commands.get(name).copied().unwrap_or_default();
            let (calls, usec) = (
                a.calls.saturating_sub(b.calls),
                a.usec.saturating_sub(b.usec),
            );
            cost.commands += calls as f64 / n;
            cost.usec_all += usec as f64 / n;
            if SCRIPT_COMMANDS.contains(&name.as_str()) {
                cost.usec_scripts += usec as f64 / n;
            }
            if calls > 0 {
                cost.by_command.insert(name.clone(), calls as f64 / n);
            }
        }
        Ok(cost)
    }
}

/// Commands whose `usec` includes the commands they run.
const SCRIPT_COMMANDS: [&str; 6] = [
    "eval",
    "evalsha",
    "eval_ro",
    "evalsha_ro",
    "fcall",
    "fcall_ro",
];

/// Redis's work per operation.
#[derive(Debug, Clone, Default)]
pub struct Cost {
    /// `INFO commandstats` calls, scripts' inner commands included.
    pub commands: f64,
    /// `INFO commandstats` usec summed over every command: a script's time
    /// and its inner commands' time again (the figure).
    pub usec_all: f64,
    /// usec of the script calls alone (their inner commands included once).
    pub usec_scripts: f64,
    /// redis-server's CPU time (`INFO cpu`), networking included.
    pub redis_cpu_us: f64,
    pub by_command: BTreeMap<String, f64>,
}

impl Cost {
    pub fn by_command_line(&self) -> String {
        self.by_command
            .iter()
            .map(|(k, v)| format!("{k} {v:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Latency percentiles of sequential operations.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    pub p50_us: f64,
    pub p99_us: f64,
}

impl Latency {
    pub fn of(mut samples: Vec<Duration>) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort();
        let at = |q: f64| {
            let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i].as_secs_f64() * 1e6
        };
        Latency {
            p50_us: at(0.5),
            p99_us: at(0.99),
        }
    }
}

/// `812 µs`, `1.52 ms`.
pub fn latency(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else if us >= 10.0 {
        format!("{us:.0} µs")
    } else {
        format!("{us:.1} µs")
    }
}

/// `MET` / `NOT MET`.
pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "MET"
    } else {
        "NOT MET"
    }
}

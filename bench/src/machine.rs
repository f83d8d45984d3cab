//! What the numbers were measured on.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// Cores available to this process (`nproc`).
pub fn nproc() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The first `model name` of /proc/cpuinfo.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

/// The first line a command prints (stdout, else stderr), if it runs.
pub fn first_line(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .next()
        .map(|l| l.trim().to_owned())
}

/// Now, UTC, as `YYYY-MM-DD HH:MM UTC`.
pub fn now_utc() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// One line describing the machine, for the README.
pub fn describe() -> String {
    let kernel = first_line("uname", &["-r"]).unwrap_or_else(|| "?".into());
    format!(
        "{} cores (nproc), {}, Linux {kernel}, {}",
        nproc(),
        cpu_model(),
        now_utc()
    )
}

/// CPU time counters, to tell how much of the machine other processes took
/// while the benchmark ran.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuTimes {
    /// All CPUs' ticks since boot, busy and idle.
    total: u64,
    /// Busy ticks (user, nice, system, irq, softirq, steal).
    busy: u64,
    /// Ticks the hypervisor gave to others.
    steal: u64,
    /// This process's and its reaped descendants' ticks.
    own: u64,
}

impl CpuTimes {
    /// Now, from /proc/stat and /proc/self/stat (zeros where unreadable).
    pub fn now() -> CpuTimes {
        let mut t = CpuTimes::default();
        if let Ok(stat) = std::fs::read_to_string("/proc/stat") {
            if let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) {
                let v: Vec<u64> = line
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|x| x.parse().ok())
                    .collect();
                // user nice system idle iowait irq softirq steal [guest..]
                let get = |i: usize| v.get(i).copied().unwrap_or(0);
                t.busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
                t.total = t.busy + get(3) + get(4);
                t.steal = get(7);
            }
        }
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            // Fields after the `(comm)`: utime, stime, cutime, cstime are
            // the 14th to 17th fields of the whole line.
            if let Some((_, rest)) = stat.rsplit_once(')') {
                let v: Vec<u64> = rest
                    .split_whitespace()
                    .skip(11)
                    .take(4)
                    .filter_map(|x| x.parse().ok())
                    .collect();
                t.own = v.iter().sum();
            }
        }
        t
    }

    /// The share of all CPU time since `start` that processes other than
    /// this one and its children used, and the share stolen by the
    /// hypervisor, in percent. Children count only once reaped.
    pub fn others_since(&self, start: &CpuTimes) -> (f64, f64) {
        let total = self.total.saturating_sub(start.total).max(1) as f64;
        let busy = self.busy.saturating_sub(start.busy);
        let own = self.own.saturating_sub(start.own);
        let steal = self.steal.saturating_sub(start.steal);
        (
            100.0 * busy.saturating_sub(own).saturating_sub(steal) as f64 / total,
            100.0 * steal as f64 / total,
        )
    }
}

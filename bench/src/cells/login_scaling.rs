//! Login scaling: one user logs in again and again while holding 10, 1,000
//! and 10,000 live sessions, with no per-user limit and with a limit above
//! what the user holds (so the limit check runs on every login); and, apart,
//! with a limit of 5 and eviction of the oldest. Store calls from this
//! process, sequential, each login from the previous login's session (it
//! retires that one, so the user keeps holding the same number). The
//! sessions held are copies of a real login's keys ([`populate`]), checked
//! by sessionkit's own listing.

use std::fmt::Write;
use std::time::{Duration, Instant};

use sessionkit::redis::RedisStore;
use sessionkit::store::ClientInfo;
use sessionkit::{MaxSessionsPolicy, UserLimit};

use super::populate::{self, Template};
use super::{latency, sk, Cost, Latency, Snapshot};
use crate::resp::Resp;

/// Sessions the user holds while its logins are measured.
pub const SIZES: [usize; 3] = [10, 1_000, 10_000];
/// Logins measured per row: at most this many...
const LOGINS: usize = 300;
/// ... within about this long (a login costs O(sessions held) today)...
const BUDGET: Duration = Duration::from_secs(3);
/// ... but at least this many.
const MIN_LOGINS: usize = 20;

pub struct Row {
    pub held: usize,
    pub logins: usize,
    pub cost: Cost,
    pub latency: Latency,
}

pub struct Series {
    pub label: &'static str,
    pub rows: Vec<Row>,
}

impl Series {
    /// Redis usec per login (every command summed) at the largest size
    /// over the smallest.
    pub fn ratio(&self) -> Option<f64> {
        let (first, last) = (self.rows.first()?, self.rows.last()?);
        (last.held > first.held).then(|| last.cost.usec_all / first.cost.usec_all.max(1e-9))
    }
}

pub struct LoginScaling {
    pub series: Vec<Series>,
}

pub fn run(redis_url: &str, stats: &mut Resp) -> Result<LoginScaling, String> {
    stats.simple(&["FLUSHALL"])?;
    let rt = sk::runtime()?;
    let store = rt.block_on(sk::connect(redis_url))?;
    let big = UserLimit::Max {
        max: 20_000,
        policy: MaxSessionsPolicy::EvictOldest,
    };
    let five = UserLimit::Max {
        max: 5,
        policy: MaxSessionsPolicy::EvictOldest,
    };
    let mut series = Vec::new();
    for (label, user, limit) in [
        ("no limit", "ls-unlimited", UserLimit::Unlimited),
        ("limit 20,000, evict oldest", "ls-limit-20k", big),
    ] {
        let mut rows = Vec::new();
        let template = Template::take(&rt, &store, stats, user)?;
        for n in SIZES {
            let held = held(stats, &store, user)?;
            // One less than `n`: the first login of the chain adds one.
            let missing = n.saturating_sub(1).saturating_sub(held);
            let mut queue = Vec::new();
            populate::queue(&store, &template, user, missing, &mut queue);
            populate::flush(stats, &mut queue, true)?;
            populate::verify(&rt, &store, user, held + missing)?;
            let row = measure(&rt, &store, stats, user, limit, true)?;
            eprintln!(
                "   {label}, {} sessions: {:.1} µs Redis/login (all commands), {:.1} cmds, p50 {}",
                row.held,
                row.cost.usec_all,
                row.cost.commands,
                latency(row.latency.p50_us)
            );
            rows.push(row);
        }
        series.push(Series { label, rows });
    }
    // Limit 5: every login (none from an old session) evicts the oldest.
    let user = "ls-limit-5";
    let u = user.to_owned();
    rt.block_on(sk::login_many(&store, 10, 1, five, move |_| u.clone()))?;
    let row = measure(&rt, &store, stats, user, five, false)?;
    series.push(Series {
        label: "limit 5, evict oldest (each login evicts one)",
        rows: vec![row],
    });
    stats.simple(&["FLUSHALL"])?;
    Ok(LoginScaling { series })
}

/// Sessions in the user's index.
fn held(stats: &mut Resp, store: &RedisStore, user: &str) -> Result<usize, String> {
    Ok(stats.int(&["ZCARD", &store.user_index_key(user)])?.max(0) as usize)
}

fn measure(
    rt: &tokio::runtime::Runtime,
    store: &RedisStore,
    stats: &mut Resp,
    user: &str,
    limit: UserLimit,
    chain: bool,
) -> Result<Row, String> {
    let client = ClientInfo {
        user_agent: Some("sessionkit-bench".to_owned()),
        ip: None,
    };
    let mut old = if chain {
        Some(rt.block_on(sk::login(store, user, None, limit, &client))?)
    } else {
        None
    };
    let held = held(stats, store, user)?;
    let snap = Snapshot::take(stats)?;
    let samples = rt.block_on(async {
        let mut samples = Vec::with_capacity(LOGINS);
        let start = Instant::now();
        while samples.len() < LOGINS && (samples.len() < MIN_LOGINS || start.elapsed() < BUDGET) {
            let t = Instant::now();
            let id = sk::login(store, user, old.as_ref(), limit, &client).await?;
            samples.push(t.elapsed());
            if chain {
                old = Some(id);
            }
        }
        Ok::<_, String>(samples)
    })?;
    let logins = samples.len();
    let cost = snap.cost_until(stats, logins)?;
    Ok(Row {
        held,
        logins,
        cost,
        latency: Latency::of(samples),
    })
}

pub fn render(r: &LoginScaling) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "#### Login scaling (one user, `RedisStore::login` called from the bench process, \
         sequential; each login from the previous one's session)\n"
    );
    let _ = writeln!(
        o,
        "| policy | sessions held | logins | Redis µs/login (all cmds) | script µs/login | Redis CPU/login | cmds/login | p50 | p99 |"
    );
    let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for s in &r.series {
        for row in &s.rows {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {:.1} | {:.1} | {:.1} µs | {:.2} | {} | {} |",
                s.label,
                row.held,
                row.logins,
                row.cost.usec_all,
                row.cost.usec_scripts,
                row.cost.redis_cpu_us,
                row.cost.commands,
                latency(row.latency.p50_us),
                latency(row.latency.p99_us),
            );
        }
    }
    let _ = writeln!(o);
    for s in &r.series {
        if let Some(x) = s.ratio() {
            let _ = writeln!(
                o,
                "- {}: Redis µs/login at {} sessions / at {} = {x:.2}x",
                s.label,
                s.rows.last().map_or(0, |r| r.held),
                s.rows.first().map_or(0, |r| r.held),
            );
        }
        if let Some(row) = s.rows.last() {
            let _ = writeln!(
                o,
                "  - commands per login at {}: {}",
                row.held,
                row.cost.by_command_line()
            );
        }
    }
    let _ = writeln!(o);
    o
}

//! The memory store as it grows past a million sessions (issue 11: "no p99
//! stall"): sessions are created in steps of [`STEP`] up to [`TOTAL`], every
//! create timed, then [`PROBES`] loads of random stored sessions timed after
//! each step. A map that rehashed as one table would show a stall (a max in
//! the hundreds of milliseconds, a p99 that climbs); the sharded map should
//! keep every step's figures level.

use std::fmt::Write;
use std::time::{Duration, Instant};

use sessionkit::store::{ClientInfo, Data, LoadOutcome, NewSession, Tag, Timeouts, Token};
use sessionkit::{MemoryStore, SessionStore};

use super::Latency;

/// Sessions added per step.
pub const STEP: usize = 100_000;
/// Sessions in the store at the end.
pub const TOTAL: usize = 1_200_000;
/// Loads timed after each step.
const PROBES: usize = 20_000;

/// One step's figures.
pub struct Step {
    /// Sessions stored after the step.
    pub sessions: usize,
    /// The creates of the step.
    pub create: Latency,
    /// The slowest create of the step, µs.
    pub create_max_us: f64,
    /// Loads of random stored sessions after the step.
    pub load: Latency,
}

/// Every step, in order.
pub struct Growth {
    pub steps: Vec<Step>,
}

impl Growth {
    /// The last step's p99 (create and load, the worse) over the first's.
    pub fn p99_ratio(&self) -> f64 {
        let worst = |s: &Step| s.create.p99_us.max(s.load.p99_us);
        match (self.steps.first(), self.steps.last()) {
            (Some(a), Some(b)) if worst(a) > 0.0 => worst(b) / worst(a),
            _ => f64::NAN,
        }
    }
}

pub fn run() -> Result<Growth, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(grow())
}

async fn grow() -> Result<Growth, String> {
    let store = MemoryStore::new();
    let timeouts = Timeouts {
        idle: Duration::from_secs(1800),
        absolute: Duration::from_secs(12 * 3600),
        touch_interval: Duration::from_secs(60),
    };
    let mut data = Data::new();
    data.insert("user".to_owned(), serde_json::Value::from("someone"));
    let client = ClientInfo {
        user_agent: Some("bench/1.0".to_owned()),
        ip: None,
    };
    let mut ids = Vec::with_capacity(TOTAL);
    let mut steps = Vec::new();
    let mut next = 0u64;
    while ids.len() < TOTAL {
        let mut creates = Vec::with_capacity(STEP);
        for _ in 0..STEP {
            let id = Token::generate(&Tag::random()).id();
            let new = NewSession {
                data: &data,
                client: &client,
            };
            let at = Instant::now();
            store
                .create(&id, new, &timeouts)
                .await
                .map_err(|e| format!("create: {e}"))?;
            creates.push(at.elapsed());
            ids.push(id);
        }
        let mut loads = Vec::with_capacity(PROBES);
        for _ in 0..PROBES {
            // A cheap spread over every stored id (no rand dependency).
            next = next
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let id = &ids[(next >> 33) as usize % ids.len()];
            let at = Instant::now();
            let out = store
                .load(id, &timeouts)
                .await
                .map_err(|e| format!("load: {e}"))?;
            loads.push(at.elapsed());
            if !matches!(out, LoadOutcome::Live(_)) {
                return Err(format!("a stored session did not load: {out:?}"));
            }
        }
        let create_max_us = creates.iter().max().map_or(0.0, |d| d.as_secs_f64() * 1e6);
        steps.push(Step {
            sessions: ids.len(),
            create: Latency::of(creates),
            create_max_us,
            load: Latency::of(loads),
        });
    }
    Ok(Growth { steps })
}

/// The cell's section of the report.
pub fn render(g: &Growth) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "#### Memory store growing to {} sessions (in-process `MemoryStore::create` / `load`, \
         steps of {STEP}; {PROBES} loads of random stored sessions after each step)\n",
        TOTAL
    );
    let _ = writeln!(
        o,
        "| sessions | create p50 | create p99 | create max | load p50 | load p99 |"
    );
    let _ = writeln!(o, "|---:|---:|---:|---:|---:|---:|");
    for s in &g.steps {
        let _ = writeln!(
            o,
            "| {} | {:.2} µs | {:.2} µs | {:.0} µs | {:.2} µs | {:.2} µs |",
            s.sessions,
            s.create.p50_us,
            s.create.p99_us,
            s.create_max_us,
            s.load.p50_us,
            s.load.p99_us
        );
    }
    let _ = writeln!(o);
    o
}

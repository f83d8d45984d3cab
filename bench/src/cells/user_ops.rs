//! Per-user operations: `sessions_of`, `revoke_user` and
//! `revoke_user_except` (through `SessionManager`) for users with 10
//! sessions, in a store of 1,000 sessions (100 users) and in one of
//! 1,000,000 (100,000 users). Each revocation is of a user not touched
//! before. The measured users (the first 100) log in for real
//! (`RedisStore::login`, concurrent) in both stores; the big store's other
//! users are copies of a real login's keys ([`populate`]), checked by
//! sessionkit's own listing.

use std::fmt::Write;
use std::time::Instant;

use sessionkit::{SessionConfig, SessionManager, UserLimit};

use super::populate::{self, Template};
use super::{latency, sk, Cost, Latency, Snapshot};
use crate::resp::Resp;

const PER_USER: usize = 10;
/// Users measured per operation.
const SAMPLE: usize = 30;
/// `sessions_of` calls per sampled user.
const LIST_REPEAT: usize = 10;
pub const SMALL_USERS: usize = 100;

pub const OPS: [&str; 3] = ["sessions_of", "revoke_user", "revoke_user_except"];

pub struct Measured {
    pub sessions: usize,
    pub populate_secs: f64,
    /// Per operation of [`OPS`]: calls, Redis cost and latency per call.
    pub ops: Vec<(usize, Cost, Latency)>,
}

pub struct UserOps {
    pub small: Measured,
    pub big: Measured,
}

impl UserOps {
    /// Redis usec per call, big store over small, per operation.
    pub fn ratios(&self) -> Vec<(&'static str, f64)> {
        OPS.iter()
            .zip(self.small.ops.iter().zip(&self.big.ops))
            .map(|(op, (s, b))| (*op, b.1.usec_all / s.1.usec_all.max(1e-9)))
            .collect()
    }
}

pub fn run(redis_url: &str, stats: &mut Resp, big_users: usize) -> Result<UserOps, String> {
    let rt = sk::runtime()?;
    let store = rt.block_on(sk::connect(redis_url))?;
    let manager = SessionManager::new(store.clone(), SessionConfig::default());
    let mut measure = |users: usize| -> Result<Measured, String> {
        stats.simple(&["FLUSHALL"])?;
        let t = Instant::now();
        rt.block_on(sk::login_many(
            &store,
            SMALL_USERS * PER_USER,
            64,
            UserLimit::Unlimited,
            |i| user(i / PER_USER),
        ))?;
        if users > SMALL_USERS {
            // The template user's own sessions are removed after.
            let filler = "ou-template";
            let template = Template::take(&rt, &store, stats, filler)?;
            let mut queue = Vec::new();
            for u in SMALL_USERS..users {
                populate::queue(&store, &template, &user(u), PER_USER, &mut queue);
                populate::flush(stats, &mut queue, false)?;
            }
            populate::flush(stats, &mut queue, true)?;
            rt.block_on(manager.revoke_user(filler))
                .map_err(|e| e.to_string())?;
            for u in [SMALL_USERS, users / 2, users - 1] {
                populate::verify(&rt, &store, &user(u), PER_USER)?;
            }
        }
        let populate_secs = t.elapsed().as_secs_f64();
        // Growing to 1M keys leaves Redis's main and expires tables
        // rehashing incrementally: each command pays a step until the cron's
        // active rehash (1 ms per 100 ms) finishes, a few seconds. Measured
        // during that, the big store is charged for its own growth, not for
        // its size.
        std::thread::sleep(std::time::Duration::from_secs(6));
        let sessions = users * PER_USER;
        let keys = stats.int(&["DBSIZE"])?;
        eprintln!(
            "   {users} users x {PER_USER} sessions logged in in {populate_secs:.1} s ({keys} keys)"
        );
        let mut ops = Vec::new();
        // sessions_of: users 0..SAMPLE, each LIST_REPEAT times.
        let snap = Snapshot::take(stats)?;
        let samples = rt.block_on(async {
            let mut samples = Vec::new();
            for _ in 0..LIST_REPEAT {
                for u in 0..SAMPLE {
                    let t = Instant::now();
                    let n = manager
                        .sessions_of(&user(u))
                        .await
                        .map_err(|e| e.to_string())?;
                    samples.push(t.elapsed());
                    if n.len() != PER_USER {
                        return Err(format!(
                            "{} has {} sessions, not {PER_USER}",
                            user(u),
                            n.len()
                        ));
                    }
                }
            }
            Ok::<_, String>(samples)
        })?;
        let calls = samples.len();
        ops.push((calls, snap.cost_until(stats, calls)?, Latency::of(samples)));
        // revoke_user: users SAMPLE..2*SAMPLE, once each.
        let snap = Snapshot::take(stats)?;
        let samples = rt.block_on(async {
            let mut samples = Vec::new();
            for u in SAMPLE..2 * SAMPLE {
                let t = Instant::now();
                let n = manager
                    .revoke_user(&user(u))
                    .await
                    .map_err(|e| e.to_string())?;
                samples.push(t.elapsed());
                if n != PER_USER as u64 {
                    return Err(format!("revoke_user({}) ended {n}", user(u)));
                }
            }
            Ok::<_, String>(samples)
        })?;
        ops.push((
            SAMPLE,
            snap.cost_until(stats, SAMPLE)?,
            Latency::of(samples),
        ));
        // revoke_user_except: users 2*SAMPLE..3*SAMPLE, keeping one session
        // each (its id listed before, not measured).
        let keep = rt.block_on(async {
            let mut keep = Vec::new();
            for u in 2 * SAMPLE..3 * SAMPLE {
                let ids = sk::ids_of(&store, &user(u)).await?;
                keep.push(ids.into_iter().next().ok_or("a user without sessions")?);
            }
            Ok::<_, String>(keep)
        })?;
        let snap = Snapshot::take(stats)?;
        let samples = rt.block_on(async {
            let mut samples = Vec::new();
            for (k, id) in keep.iter().enumerate() {
                let u = user(2 * SAMPLE + k);
                let t = Instant::now();
                let n = manager
                    .revoke_user_except(&u, id)
                    .await
                    .map_err(|e| e.to_string())?;
                samples.push(t.elapsed());
                if n != PER_USER as u64 - 1 {
                    return Err(format!("revoke_user_except({u}) ended {n}"));
                }
            }
            Ok::<_, String>(samples)
        })?;
        ops.push((
            SAMPLE,
            snap.cost_until(stats, SAMPLE)?,
            Latency::of(samples),
        ));
        Ok(Measured {
            sessions,
            populate_secs,
            ops,
        })
    };
    let small = measure(SMALL_USERS)?;
    let big = measure(big_users.max(SMALL_USERS))?;
    stats.simple(&["FLUSHALL"])?;
    Ok(UserOps { small, big })
}

fn user(i: usize) -> String {
    format!("ou-{i}")
}

pub fn render(r: &UserOps) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "#### Per-user operations (users with {PER_USER} sessions; `SessionManager` calls from \
         the bench process, sequential; revocations each of a fresh user)\n"
    );
    let _ = writeln!(
        o,
        "| operation | store | calls | Redis µs/call (all cmds) | script µs/call | cmds/call | p50 | p99 |"
    );
    let _ = writeln!(o, "|---|---|---:|---:|---:|---:|---:|---:|");
    for (i, op) in OPS.iter().enumerate() {
        for m in [&r.small, &r.big] {
            let Some((calls, cost, lat)) = m.ops.get(i) else {
                continue;
            };
            let _ = writeln!(
                o,
                "| {op} | {} sessions | {calls} | {:.1} | {:.1} | {:.2} | {} | {} |",
                m.sessions,
                cost.usec_all,
                cost.usec_scripts,
                cost.commands,
                latency(lat.p50_us),
                latency(lat.p99_us)
            );
        }
    }
    let _ = writeln!(o);
    for (op, x) in r.ratios() {
        let _ = writeln!(
            o,
            "- {op}: Redis µs/call with {} sessions / with {} = {x:.2}x",
            r.big.sessions, r.small.sessions
        );
    }
    let _ = writeln!(
        o,
        "- populating: {:.1} s for the small store, {:.1} s for the big one\n",
        r.small.populate_secs, r.big.populate_secs
    );
    o
}

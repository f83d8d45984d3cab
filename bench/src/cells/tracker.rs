//! Keyed sessions ([`Tracker`]) on Redis, beside the cookie-session store
//! calls that do the same work: tracker `get` vs `SessionStore::load`,
//! tracker `update` (compare-and-set) vs `save`, and a locked update
//! (`get_locked` + fenced `update` + `release`) vs `lock` + fenced `save` +
//! `unlock`; each by 32 tasks on keys of their own, for the same time, in
//! one run (in-process, no HTTP). Then 32 tasks on *one* key: locked
//! updates vs optimistic ones (read, compare-and-set, retry on conflict).

use std::fmt::Write;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sessionkit::redis::RedisStore;
use sessionkit::store::{
    ClientInfo, Data, Delta, LoadOutcome, LockOutcome, NewSession, Tag, Token,
};
use sessionkit::tracker::{Tracker, TrackerError};
use sessionkit::{SessionId, SessionStore};

use super::{latency, sk, Cost, Latency, Snapshot};
use crate::resp::Resp;

const TASKS: usize = 32;

/// One workload's figures.
pub struct Figures {
    pub ops_per_s: f64,
    pub lat: Latency,
    pub cost: Cost,
    /// Conflicts per successful update (optimistic, one key).
    pub conflicts_per_op: f64,
}

pub struct TrackerCells {
    pub secs: u64,
    /// (what, tracker, cookie-session baseline).
    pub pairs: Vec<(&'static str, Figures, Figures)>,
    /// One key, 32 tasks: locked, optimistic.
    pub contended: (Figures, Figures),
}

type Value = Vec<u64>;

/// Runs `op(task)` on [`TASKS`] tasks for `secs`; each op answers how many
/// conflicts it met.
fn measure<F, Fut>(
    rt: &tokio::runtime::Runtime,
    stats: &mut Resp,
    secs: u64,
    op: F,
) -> Result<Figures, String>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<u64, String>> + Send,
{
    let snap = Snapshot::take(stats)?;
    let op = Arc::new(op);
    let conflicts = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let samples = rt.block_on(async {
        let mut handles = Vec::new();
        for task in 0..TASKS {
            let (op, conflicts) = (Arc::clone(&op), Arc::clone(&conflicts));
            handles.push(tokio::spawn(async move {
                let mut samples = Vec::new();
                while Instant::now() < until {
                    let t = Instant::now();
                    conflicts.fetch_add(op(task).await?, Ordering::Relaxed);
                    samples.push(t.elapsed());
                }
                Ok::<_, String>(samples)
            }));
        }
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.await.map_err(|e| format!("task: {e}"))??);
        }
        Ok::<_, String>(all)
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let n = samples.len();
    Ok(Figures {
        ops_per_s: n as f64 / elapsed,
        cost: snap.cost_until(stats, n)?,
        conflicts_per_op: conflicts.load(Ordering::Relaxed) as f64 / n.max(1) as f64,
        lat: Latency::of(samples),
    })
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

async fn sessions(store: &RedisStore) -> Result<Vec<SessionId>, String> {
    let data = Data::from([("n".to_owned(), serde_json::json!(0))]);
    let mut ids = Vec::new();
    for _ in 0..TASKS {
        let id = Token::generate(&Tag::random()).id();
        let new = NewSession {
            data: &data,
            client: &ClientInfo::default(),
        };
        store.create(&id, new, &sk::timeouts()).await.map_err(err)?;
        ids.push(id);
    }
    Ok(ids)
}

pub fn run(redis_url: &str, stats: &mut Resp, secs: u64) -> Result<TrackerCells, String> {
    let rt = sk::runtime()?;
    let store = rt.block_on(sk::connect(redis_url))?;
    let tracker: Tracker<Value> = Tracker::new(store.clone(), "bench");
    let ids = Arc::new(rt.block_on(sessions(&store))?);
    let versions: Arc<Vec<AtomicU64>> = Arc::new(rt.block_on(async {
        let mut v = Vec::new();
        for task in 0..TASKS {
            let started = tracker.start(&key(task), &vec![0; 8]).await.map_err(err)?;
            v.push(AtomicU64::new(started.version));
        }
        Ok::<_, String>(v)
    })?);
    let mut pairs = Vec::new();

    let t = tracker.clone();
    let get = measure(&rt, stats, secs, move |task| {
        let t = t.clone();
        async move { t.get(&key(task)).await.map(|_| 0).map_err(err) }
    })?;
    let (s, i) = (store.clone(), Arc::clone(&ids));
    let load = measure(&rt, stats, secs, move |task| {
        let (s, i) = (s.clone(), Arc::clone(&i));
        async move {
            match s.load(&i[task], &sk::timeouts()).await.map_err(err)? {
                LoadOutcome::Live(_) => Ok(0),
                other => Err(format!("load: {other:?}")),
            }
        }
    })?;
    pairs.push(("read (`get` / `load`)", get, load));

    let (t, v) = (tracker.clone(), Arc::clone(&versions));
    let update = measure(&rt, stats, secs, move |task| {
        let (t, v) = (t.clone(), Arc::clone(&v));
        async move {
            let at = v[task].load(Ordering::Relaxed);
            let next = t.update(&key(task), &vec![at; 8], at).await.map_err(err)?;
            v[task].store(next, Ordering::Relaxed);
            Ok(0)
        }
    })?;
    let (s, i) = (store.clone(), Arc::clone(&ids));
    let save = measure(&rt, stats, secs, move |task| {
        let (s, i) = (s.clone(), Arc::clone(&i));
        async move {
            let delta = Delta {
                set: vec![("n".to_owned(), serde_json::json!(task))],
                ..Delta::default()
            };
            s.save(&i[task], &delta, &sk::timeouts())
                .await
                .map_err(err)?;
            Ok(0)
        }
    })?;
    pairs.push(("write (`update` / `save`)", update, save));

    let t = tracker.clone();
    let locked = measure(&rt, stats, secs, move |task| {
        let t = t.clone();
        async move { locked_update(&t, &key(task)).await }
    })?;
    let (s, i) = (store.clone(), Arc::clone(&ids));
    let session_locked = measure(&rt, stats, secs, move |task| {
        let (s, i) = (s.clone(), Arc::clone(&i));
        async move {
            let lease = Duration::from_secs(10);
            let LockOutcome::Acquired { fence, .. } = s
                .lock(&i[task], lease, &sk::timeouts())
                .await
                .map_err(err)?
            else {
                return Err("session lock not acquired".into());
            };
            let delta = Delta {
                set: vec![("n".to_owned(), serde_json::json!(fence))],
                fence: Some(fence),
                ..Delta::default()
            };
            s.save(&i[task], &delta, &sk::timeouts())
                .await
                .map_err(err)?;
            s.unlock(&i[task], fence).await.map_err(err)?;
            Ok(0)
        }
    })?;
    pairs.push(("locked write", locked, session_locked));

    // One key, every task.
    let t = tracker.clone();
    let one_locked = measure(&rt, stats, secs, move |_| {
        let t = t.clone();
        async move { locked_update(&t, &key(0)).await }
    })?;
    let t = tracker.clone();
    let one_optimistic = measure(&rt, stats, secs, move |_| {
        let t = t.clone();
        async move {
            let mut conflicts = 0;
            loop {
                let mut read = t.get(&key(0)).await.map_err(err)?;
                read.value[0] += 1;
                match t.update(&key(0), &read.value, read.version).await {
                    Ok(_) => return Ok(conflicts),
                    Err(TrackerError::Conflict { .. }) => conflicts += 1,
                    Err(e) => return Err(e.to_string()),
                }
            }
        }
    })?;
    rt.block_on(async {
        for task in 0..TASKS {
            tracker.remove(&key(task)).await.map_err(err)?;
        }
        Ok::<_, String>(())
    })?;
    Ok(TrackerCells {
        secs,
        pairs,
        contended: (one_locked, one_optimistic),
    })
}

fn key(task: usize) -> String {
    format!("conversation-{task}")
}

async fn locked_update(t: &Tracker<Value>, key: &str) -> Result<u64, String> {
    let (mut read, mut lock) = t.get_locked(key).await.map_err(err)?;
    read.value[0] += 1;
    lock.update(&read.value).await.map_err(err)?;
    lock.release().await.map_err(err)?;
    Ok(0)
}

fn cell(f: &Figures) -> String {
    format!(
        "{:.0} ops/s, p50 {} p99 {}, {:.1} Redis cmds, {:.0} µs Redis",
        f.ops_per_s,
        latency(f.lat.p50_us),
        latency(f.lat.p99_us),
        f.cost.commands,
        f.cost.usec_all
    )
}

pub fn render(c: &TrackerCells) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "#### Keyed sessions (`Tracker`) on Redis ({TASKS} tasks in-process, {} s each)\n",
        c.secs
    );
    let _ = writeln!(
        o,
        "| operation | tracker | cookie-session store call | tracker / store |"
    );
    let _ = writeln!(o, "|---|---|---|---:|");
    for (what, t, s) in &c.pairs {
        let _ = writeln!(
            o,
            "| {what} | {} | {} | {:.2}x |",
            cell(t),
            cell(s),
            t.ops_per_s / s.ops_per_s.max(1e-9)
        );
    }
    let (l, p) = &c.contended;
    let _ = writeln!(
        o,
        "\nOne key, {TASKS} tasks: locked updates {} · optimistic updates {} \
         ({:.2} conflicts per update); optimistic / locked {:.2}x\n",
        cell(l),
        cell(p),
        p.conflicts_per_op,
        p.ops_per_s / l.ops_per_s.max(1e-9)
    );
    o
}

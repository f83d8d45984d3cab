//! In-process micro-benchmark: what `SessionLayer` + `MemoryStore` add to a
//! request over bare axum (issue 5 target: at most 1 µs).
//!
//! One thread, one current-thread runtime, no sockets: batches of requests
//! go through `Router::oneshot` on a bare router and on the same router
//! with the session layer, alternately (bare first on even rounds, session
//! first on odd ones), for a time budget. Each request carries a valid
//! session cookie and the handler reads one key. The overhead is the median
//! of the per-round differences, which cancels most of the machine's drift.
//!
//! With `--callgrind`, each variant also runs under `valgrind
//! --tool=callgrind` at two request counts; the difference of the
//! instruction totals divided by the difference of the counts is the
//! instructions per request, free of setup costs and of timing noise.

use std::process::Command;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use sessionkit::axum::SessionLayer;
use sessionkit::{MemoryStore, SessionConfig, SessionManager};
use tower::ServiceExt;

use crate::flag_value;
use crate::servers::handlers::{bare_read, sk_login, sk_read};

/// The overhead target of issue 5, in nanoseconds per request.
pub const TARGET_NS: f64 = 1000.0;

#[derive(Debug, Clone)]
pub struct MicroResult {
    pub batch: usize,
    pub rounds: usize,
    pub bare_ns: f64,
    pub session_ns: f64,
    /// Median of the per-round differences (session - bare).
    pub overhead_ns: f64,
    pub overhead_p10_ns: f64,
    pub overhead_p90_ns: f64,
}

pub struct Callgrind {
    pub bare_ir: f64,
    pub session_ir: f64,
    pub profile: String,
}

/// The two routers, and the cookie of a logged-in session.
async fn routers() -> Result<(Router, Router, HeaderValue), String> {
    let manager = SessionManager::new(MemoryStore::new(), SessionConfig::default());
    let bare = Router::new().route("/read", get(bare_read));
    let session = Router::new()
        .route("/read", get(sk_read))
        .route("/login", post(sk_login))
        .layer(SessionLayer::new(manager));
    let res = session
        .clone()
        .oneshot(
            Request::post("/login")
                .body(Body::empty())
                .map_err(|e| e.to_string())?,
        )
        .await
        .map_err(never)?;
    let set_cookie = res
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .ok_or("login set no cookie")?;
    let pair = set_cookie.split(';').next().unwrap_or_default();
    let cookie = HeaderValue::from_str(pair).map_err(|e| e.to_string())?;
    Ok((bare, session, cookie))
}

/// Sends `n` reads through `router`; nanoseconds per request.
async fn batch(router: &Router, cookie: &HeaderValue, n: usize) -> Result<f64, String> {
    let start = Instant::now();
    for _ in 0..n {
        let req = Request::get("/read")
            .header(header::COOKIE, cookie.clone())
            .body(Body::empty())
            .map_err(|e| e.to_string())?;
        let res = router.clone().oneshot(req).await.map_err(never)?;
        if res.status() != StatusCode::OK {
            return Err(format!("GET /read: {}", res.status()));
        }
        std::hint::black_box(res);
    }
    Ok(start.elapsed().as_nanos() as f64 / n as f64)
}

fn never(e: std::convert::Infallible) -> String {
    match e {}
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

fn median(v: &mut [f64]) -> f64 {
    quantile(v, 0.5)
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Interleaved batches for `budget` (at least 4 rounds, at most 100,000).
pub fn measure(budget: Duration, batch_size: usize) -> Result<MicroResult, String> {
    let batch_size = batch_size.max(1);
    runtime()?.block_on(async {
        let (bare, session, cookie) = routers().await?;
        // Check the session router really reads the session.
        let res = session
            .clone()
            .oneshot(
                Request::get("/read")
                    .header(header::COOKIE, cookie.clone())
                    .body(Body::empty())
                    .map_err(|e| e.to_string())?,
            )
            .await
            .map_err(never)?;
        if res.status() != StatusCode::OK || res.headers().contains_key(header::SET_COOKIE) {
            return Err("the session router does not read the logged-in session".into());
        }
        // Warm-up.
        batch(&bare, &cookie, batch_size).await?;
        batch(&session, &cookie, batch_size).await?;
        let (mut bare_t, mut session_t, mut diffs) = (Vec::new(), Vec::new(), Vec::new());
        let deadline = Instant::now() + budget;
        let mut round = 0usize;
        while round < 4 || (Instant::now() < deadline && round < 100_000) {
            let (b, s) = if round & 1 == 0 {
                let b = batch(&bare, &cookie, batch_size).await?;
                (b, batch(&session, &cookie, batch_size).await?)
            } else {
                let s = batch(&session, &cookie, batch_size).await?;
                (batch(&bare, &cookie, batch_size).await?, s)
            };
            bare_t.push(b);
            session_t.push(s);
            diffs.push(s - b);
            round += 1;
        }
        Ok(MicroResult {
            batch: batch_size,
            rounds: round,
            bare_ns: median(&mut bare_t),
            session_ns: median(&mut session_t),
            overhead_ns: median(&mut diffs),
            overhead_p10_ns: quantile(&mut diffs, 0.1),
            overhead_p90_ns: quantile(&mut diffs, 0.9),
        })
    })
}

/// `micro-child <bare|session> <n>`: `n` reads, for callgrind to count.
pub fn child(args: &[String]) -> Result<(), String> {
    let [which, n] = args else {
        return Err("usage: micro-child <bare|session> <requests>".into());
    };
    let n: usize = n.parse().map_err(|_| format!("bad count {n:?}"))?;
    runtime()?.block_on(async {
        let (bare, session, cookie) = routers().await?;
        let router = match which.as_str() {
            "bare" => bare,
            "session" => session,
            other => return Err(format!("unknown micro variant {other:?}")),
        };
        batch(&router, &cookie, n).await.map(|_| ())
    })
}

/// Total instructions (`Collected :`) of `micro-child <which> <n>` under
/// callgrind; the profile is kept in `out`.
fn callgrind_total(which: &str, n: usize, out: &str) -> Result<f64, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let output = Command::new("valgrind")
        .args(["--tool=callgrind", &format!("--callgrind-out-file={out}")])
        .arg(&exe)
        .args(["micro-child", which, &n.to_string()])
        .output()
        .map_err(|e| format!("valgrind: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!("valgrind {which} {n} failed: {stderr}"));
    }
    stderr
        .lines()
        .find_map(|l| {
            l.split_once("Collected :")
                .map(|(_, n)| n.trim().to_owned())
        })
        .and_then(|n| n.parse::<f64>().ok())
        .ok_or_else(|| format!("no `Collected :` line in callgrind's output: {stderr}"))
}

pub fn callgrind(small: usize, large: usize) -> Result<Callgrind, String> {
    let dir = std::env::temp_dir();
    let per_request = |which: &str| -> Result<(f64, String), String> {
        let out_small = dir.join(format!("sessionkit-bench.callgrind.{which}.{small}"));
        let out_large = dir.join(format!("sessionkit-bench.callgrind.{which}.{large}"));
        let a = callgrind_total(which, small, &out_small.to_string_lossy())?;
        let b = callgrind_total(which, large, &out_large.to_string_lossy())?;
        let _ = std::fs::remove_file(&out_small);
        Ok((
            (b - a) / (large - small) as f64,
            out_large.to_string_lossy().into_owned(),
        ))
    };
    let (bare_ir, _) = per_request("bare")?;
    let (session_ir, profile) = per_request("session")?;
    Ok(Callgrind {
        bare_ir,
        session_ir,
        profile,
    })
}

pub fn render(m: &MicroResult) -> String {
    format!(
        "memory-store middleware overhead (in-process, axum Router::oneshot, GET /read with a \
         valid cookie, handler reads one key; {} interleaved rounds of {} requests):\n  \
         bare axum {:.0} ns/request, SessionLayer+MemoryStore {:.0} ns/request, \
         overhead {:.0} ns/request (median; p10 {:.0}, p90 {:.0})\n",
        m.rounds,
        m.batch,
        m.bare_ns,
        m.session_ns,
        m.overhead_ns,
        m.overhead_p10_ns,
        m.overhead_p90_ns
    )
}

/// `micro [--secs S] [--batch N] [--callgrind]`.
pub fn main(args: &[String]) -> Result<(), String> {
    let (mut secs, mut batch_size, mut with_callgrind) = (5u64, 2000usize, false);
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--secs" => secs = flag_value(args, &mut i)?,
            "--batch" => batch_size = flag_value(args, &mut i)?,
            "--callgrind" => with_callgrind = true,
            other => return Err(format!("unknown micro argument {other:?}")),
        }
        i += 1;
    }
    println!("machine: {}", crate::machine::describe());
    let m = measure(Duration::from_secs(secs), batch_size)?;
    print!("{}", render(&m));
    let verdict = if m.overhead_ns <= TARGET_NS {
        "met"
    } else {
        "NOT met"
    };
    println!(
        "target memory-store overhead <= 1 µs/request over bare axum: {verdict} ({:.0} ns)",
        m.overhead_ns
    );
    if with_callgrind {
        if !crate::procs::installed("valgrind", "--version") {
            return Err("valgrind not found: install it with `apt-get install valgrind`".into());
        }
        let (small, large) = (1000, 6000);
        eprintln!("callgrind: {small} and {large} requests per variant (about a minute)...");
        let c = callgrind(small, large)?;
        println!(
            "instructions per request (callgrind, ({large} - {small} requests) difference): \
             bare axum {:.0}, SessionLayer+MemoryStore {:.0}, overhead {:.0}",
            c.bare_ir,
            c.session_ir,
            c.session_ir - c.bare_ir
        );
        println!(
            "profile of the session variant ({large} requests): callgrind_annotate {}",
            c.profile
        );
    } else {
        println!(
            "(instruction counts: add --callgrind; needs valgrind, `apt-get install valgrind`)"
        );
    }
    Ok(())
}

//! Runs `wrk --latency` and reads its report.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How wrk loads one route.
pub struct Load<'a> {
    pub port: u16,
    pub path: &'a str,
    /// A Lua script (for `POST`), if any.
    pub script: Option<&'a Path>,
    pub cookie: Option<&'a str>,
    pub duration_secs: u64,
    pub connections: usize,
    pub threads: usize,
}

#[derive(Debug, Clone, Default)]
pub struct WrkResult {
    pub requests: u64,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub non_2xx: u64,
    pub socket_errors: u64,
}

pub fn run(load: &Load) -> Result<WrkResult, String> {
    let mut cmd = Command::new("wrk");
    cmd.arg(format!("-t{}", load.threads.min(load.connections).max(1)))
        .arg(format!("-c{}", load.connections))
        .arg(format!("-d{}s", load.duration_secs))
        .args(["--timeout", "5s", "--latency"]);
    if let Some(script) = load.script {
        cmd.arg("-s").arg(script);
    }
    if let Some(cookie) = load.cookie {
        cmd.arg("-H").arg(format!("Cookie: {cookie}"));
    }
    cmd.arg(format!("http://127.0.0.1:{}{}", load.port, load.path))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            "wrk not found: install it with `apt-get install wrk`".to_owned()
        } else {
            format!("wrk: {e}")
        }
    })?;
    // wrk stops by itself after the duration; never wait much longer.
    let deadline = Instant::now() + Duration::from_secs(load.duration_secs + 30);
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("wrk did not finish in time; killed".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    if !status.success() {
        return Err(format!(
            "wrk failed ({status}): {}{}",
            out.trim(),
            err.trim()
        ));
    }
    parse(&out).ok_or_else(|| format!("cannot read wrk's output:\n{out}{err}"))
}

/// A wrk latency (`812.00us`, `1.52ms`, `2.00s`) in microseconds.
fn latency_us(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = s.strip_suffix("m") {
        (n, 60e6)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e6)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|v| v * scale)
}

fn parse(out: &str) -> Option<WrkResult> {
    let mut r = WrkResult::default();
    let (mut got_requests, mut got_rps) = (false, false);
    for line in out.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("50%") {
            r.p50_us = latency_us(rest)?;
        } else if let Some(rest) = t.strip_prefix("99%") {
            r.p99_us = latency_us(rest)?;
        } else if let Some(rest) = t.strip_prefix("Requests/sec:") {
            r.rps = rest.trim().parse().ok()?;
            got_rps = true;
        } else if t.contains(" requests in ") {
            r.requests = t.split_whitespace().next()?.parse().ok()?;
            got_requests = true;
        } else if let Some(rest) = t.strip_prefix("Non-2xx or 3xx responses:") {
            r.non_2xx = rest.trim().parse().ok()?;
        } else if let Some(rest) = t.strip_prefix("Socket errors:") {
            r.socket_errors = rest
                .split(',')
                .filter_map(|f| f.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
        }
    }
    (got_requests && got_rps).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_output() {
        let out = "Running 5s test @ http://127.0.0.1:1/read
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   420.51us  300.10us  10.11ms   90.00%
    Req/Sec    38.01k     2.10k   41.00k    70.00%
  Latency Distribution
     50%  380.00us
     75%  450.00us
     90%  600.00us
     99%    1.52ms
  378245 requests in 5.00s, 45.09MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:  75633.58
Transfer/sec:      9.02MB
";
        let r = parse(out).unwrap();
        assert_eq!(r.requests, 378_245);
        assert!((r.rps - 75_633.58).abs() < 1e-6);
        assert!((r.p50_us - 380.0).abs() < 1e-9);
        assert!((r.p99_us - 1520.0).abs() < 1e-9);
        assert_eq!(r.non_2xx, 7);
        assert_eq!(r.socket_errors, 3);
        assert_eq!(latency_us("2.00s"), Some(2e6));
    }
}

//! Redis memory per logged-in session: N users log in over HTTP (`POST
//! /login` of the sk-axum-redis server) with a 120-byte browser
//! `User-Agent`; `INFO memory` before and after, and `MEMORY USAGE` of
//! every key by kind.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::http;
use crate::options::Options;
use crate::procs::{RedisServer, ServerProc};
use crate::resp::Resp;
use crate::servers::{Store, Variant};

/// A real Chrome `User-Agent`, padded to [`UA_BYTES`] by [`user_agent`].
const CHROME_UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                         (KHTML, like Gecko) Chrome/124.0.6367.207 Safari/537.36";
pub const UA_BYTES: usize = 120;
/// Parallel HTTP clients logging in.
const CLIENTS: usize = 4;

pub fn user_agent() -> String {
    let mut ua = CHROME_UA.to_owned();
    ua.push_str(" Edg/124.0.2478.80");
    ua.truncate(UA_BYTES);
    while ua.len() < UA_BYTES {
        ua.push('0');
    }
    ua
}

pub struct MemoryCell {
    pub sessions: usize,
    /// `used_memory` after - before, per session.
    pub bytes_per_session: f64,
    /// Per key kind: keys, `MEMORY USAGE` bytes summed.
    pub kinds: BTreeMap<String, (usize, u64)>,
}

pub fn run(opts: &Options, redis: &RedisServer, stats: &mut Resp) -> Result<MemoryCell, String> {
    let variant = Variant::SkAxum(Store::Redis);
    stats.simple(&["FLUSHALL"])?;
    let server = ServerProc::start(variant, &redis.url(), opts.server_threads)?;
    let port = server.port;
    // One login first, so that the server's connections and scripts are in
    // place before the baseline.
    http::request(port, "POST", "/login", None)?;
    stats.simple(&["FLUSHALL"])?;
    let before = stats.info_int("memory", "used_memory")?;
    let ua = user_agent();
    let n = opts.memory_users;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let ua = ua.as_str();
                s.spawn(move || -> Result<(), String> {
                    for _ in (c..n).step_by(CLIENTS) {
                        let r = http::request_with(
                            port,
                            "POST",
                            "/login",
                            None,
                            &[("User-Agent", ua)],
                        )?;
                        if r.status != 200 || r.cookies.is_empty() {
                            return Err(format!("POST /login: status {}", r.status));
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().map_err(|_| "login thread panicked".to_owned())?)
    })?;
    let after = stats.info_int("memory", "used_memory")?;
    let mut kinds: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for key in stats.all_keys()? {
        let bytes = stats
            .int(&["MEMORY", "USAGE", &key, "SAMPLES", "0"])?
            .max(0) as u64;
        let e = kinds.entry(kind(&key)).or_default();
        e.0 += 1;
        e.1 += bytes;
    }
    drop(server);
    stats.simple(&["FLUSHALL"])?;
    Ok(MemoryCell {
        sessions: n,
        bytes_per_session: (after - before) as f64 / n as f64,
        kinds,
    })
}

/// `prefix:{tag}:s:hash` → `s`; `prefix:{tag}:idx` → `idx`.
fn kind(key: &str) -> String {
    let rest = key.split_once("}:").map_or(key, |(_, r)| r);
    rest.split(':').next().unwrap_or(rest).to_owned()
}

fn kind_name(k: &str) -> &str {
    match k {
        "s" => "session hash (`s`)",
        "idx" => "user index zset (`idx`)",
        "l" => "lock (`l`)",
        other => other,
    }
}

pub fn render(m: &MemoryCell) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "#### Redis memory per logged-in session ({} users logged in over HTTP, `User-Agent` of \
         {UA_BYTES} bytes, one `user` key each)\n",
        m.sessions
    );
    let _ = writeln!(
        o,
        "- `INFO memory` used_memory delta: {:.0} bytes per session",
        m.bytes_per_session
    );
    let _ = writeln!(
        o,
        "\n| key kind | keys | MEMORY USAGE total | bytes per session |"
    );
    let _ = writeln!(o, "|---|---:|---:|---:|");
    for (k, (keys, bytes)) in &m.kinds {
        let _ = writeln!(
            o,
            "| {} | {keys} | {bytes} | {:.0} |",
            kind_name(k),
            *bytes as f64 / m.sessions.max(1) as f64
        );
    }
    let total: u64 = m.kinds.values().map(|v| v.1).sum();
    let _ = writeln!(
        o,
        "| all | {} | {total} | {:.0} |\n",
        m.kinds.values().map(|v| v.0).sum::<usize>(),
        total as f64 / m.sessions.max(1) as f64
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agent_is_120_bytes() {
        assert_eq!(user_agent().len(), UA_BYTES);
        assert!(user_agent().starts_with("Mozilla/5.0"));
    }

    #[test]
    fn key_kinds() {
        assert_eq!(kind("sessionkit:{abcdefgh}:s:xyz"), "s");
        assert_eq!(kind("sessionkit:{abcdefgh}:idx"), "idx");
    }
}

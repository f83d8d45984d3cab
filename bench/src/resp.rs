//! A minimal blocking Redis client for the benchmark's own bookkeeping
//! (`INFO commandstats`, `FLUSHALL`, `MONITOR`), so that it adds no
//! connection pool or driver task of its own to what is measured.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A reply; the payloads of the kinds the benchmark does not expect are only
/// shown (through `Debug`) in error messages.
#[derive(Debug)]
#[allow(dead_code)]
pub enum Reply {
    Simple(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

pub struct Resp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    local: String,
}

impl Resp {
    pub fn connect(port: u16) -> Result<Self, String> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .map_err(|e| format!("connect to redis at 127.0.0.1:{port}: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let local = stream.local_addr().map_err(|e| e.to_string())?.to_string();
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        Ok(Resp {
            reader: BufReader::new(stream),
            writer,
            local,
        })
    }

    /// This connection's address as Redis sees the client (`ip:port`).
    pub fn local_addr(&self) -> &str {
        &self.local
    }

    fn send(&mut self, args: &[&str]) -> Result<(), String> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        self.writer
            .write_all(&out)
            .map_err(|e| format!("redis write: {e}"))
    }

    fn line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err("redis closed the connection".into()),
            Ok(_) => Ok(line.trim_end_matches(['\r', '\n']).to_owned()),
            Err(e) => Err(format!("redis read: {e}")),
        }
    }

    fn reply(&mut self) -> Result<Reply, String> {
        let line = self.line()?;
        let (kind, rest) = line.split_at(line.len().min(1));
        let int = |s: &str| {
            s.parse::<i64>()
                .map_err(|_| format!("bad RESP line {line:?}"))
        };
        match kind {
            "+" => Ok(Reply::Simple(rest.to_owned())),
            "-" => Err(format!("redis error: {rest}")),
            ":" => Ok(Reply::Int(int(rest)?)),
            "$" => {
                let n = int(rest)?;
                if n < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let mut buf = vec![0u8; n as usize + 2];
                std::io::Read::read_exact(&mut self.reader, &mut buf)
                    .map_err(|e| format!("redis read: {e}"))?;
                buf.truncate(n as usize);
                Ok(Reply::Bulk(Some(buf)))
            }
            "*" => {
                let n = int(rest)?;
                if n < 0 {
                    return Ok(Reply::Array(None));
                }
                let items = (0..n).map(|_| self.reply()).collect::<Result<_, _>>()?;
                Ok(Reply::Array(Some(items)))
            }
            _ => Err(format!("unexpected RESP line {line:?}")),
        }
    }

    pub fn cmd(&mut self, args: &[&str]) -> Result<Reply, String> {
        self.send(args)?;
        self.reply()
    }

    /// A command whose reply is a simple or bulk string.
    pub fn simple(&mut self, args: &[&str]) -> Result<String, String> {
        match self.cmd(args)? {
            Reply::Simple(s) => Ok(s),
            Reply::Bulk(Some(b)) => Ok(String::from_utf8_lossy(&b).into_owned()),
            other => Err(format!("{}: unexpected reply {other:?}", args[0])),
        }
    }

    /// Calls per command (`calls` + `rejected_calls`) from `INFO
    /// commandstats`. Commands run inside Lua scripts are counted too.
    pub fn command_stats(&mut self) -> Result<BTreeMap<String, u64>, String> {
        let info = self.simple(&["INFO", "commandstats"])?;
        let mut out = BTreeMap::new();
        for line in info.lines() {
            let Some((name, stats)) = line
                .strip_prefix("cmdstat_")
                .and_then(|l| l.split_once(':'))
            else {
                continue;
            };
            let mut calls = 0;
            for field in stats.split(',') {
                if let Some(("calls" | "rejected_calls", n)) = field.split_once('=') {
                    calls += n.trim().parse::<u64>().unwrap_or(0);
                }
            }
            out.insert(name.to_owned(), calls);
        }
        Ok(out)
    }

    /// CPU seconds the server has used (`used_cpu_sys` + `used_cpu_user`
    /// from `INFO cpu`).
    pub fn cpu_seconds(&mut self) -> Result<f64, String> {
        let info = self.simple(&["INFO", "cpu"])?;
        Ok(info
            .lines()
            .filter_map(|l| {
                l.strip_prefix("used_cpu_sys:")
                    .or_else(|| l.strip_prefix("used_cpu_user:"))
            })
            .filter_map(|v| v.trim().parse::<f64>().ok())
            .sum())
    }

    /// `redis_version` from `INFO server`.
    pub fn version(&mut self) -> Result<String, String> {
        let info = self.simple(&["INFO", "server"])?;
        Ok(info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("?")
            .trim()
            .to_owned())
    }
}

/// `after - before` per command, without `INFO` (the benchmark's own).
pub fn stats_delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter(|(name, _)| name.as_str() != "info")
        .filter_map(|(name, &n)| {
            let d = n.saturating_sub(before.get(name).copied().unwrap_or(0));
            (d > 0).then(|| (name.clone(), d))
        })
        .collect()
}

/// One command seen by `MONITOR`.
#[derive(Debug)]
pub struct Seen {
    /// Run from inside a Lua script (`[0 lua]`), not sent by a client.
    pub in_script: bool,
    /// The client's `ip:port` (empty inside scripts).
    pub client: String,
    pub command: String,
}

/// A `MONITOR` connection: what every client sends, in order.
pub struct Monitor {
    conn: Resp,
}

impl Monitor {
    pub fn start(port: u16) -> Result<Self, String> {
        let mut conn = Resp::connect(port)?;
        conn.simple(&["MONITOR"])?;
        Ok(Monitor { conn })
    }

    /// Reads what was seen until a command containing `sentinel` (which the
    /// caller sends after the traffic to watch), at most until `deadline`.
    pub fn until(mut self, sentinel: &str, deadline: Instant) -> Result<Vec<Seen>, String> {
        let mut seen = Vec::new();
        loop {
            if Instant::now() > deadline {
                return Err("MONITOR: the sentinel never arrived".into());
            }
            let line = self.conn.line()?;
            let Some(line) = line.strip_prefix('+') else {
                continue;
            };
            if line.contains(sentinel) {
                return Ok(seen);
            }
            // `1700000000.123456 [0 127.0.0.1:51234] "evalsha" "..." ...`
            let (Some(open), Some(close)) = (line.find('['), line.find(']')) else {
                continue;
            };
            let client = line[open + 1..close]
                .split_once(' ')
                .map_or("", |(_, c)| c)
                .to_owned();
            let command = line[close + 1..]
                .trim_start()
                .trim_start_matches('"')
                .split('"')
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            seen.push(Seen {
                in_script: client == "lua",
                client,
                command,
            });
        }
    }
}

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

    /// Calls and microseconds per command from `INFO commandstats`. A
    /// script's `usec` (`evalsha`, `fcall`) includes the commands it ran,
    /// which are also listed under their own names.
    pub fn command_times(&mut self) -> Result<BTreeMap<String, CmdStat>, String> {
        let info = self.simple(&["INFO", "commandstats"])?;
        let mut out = BTreeMap::new();
        for line in info.lines() {
            let Some((name, stats)) = line
                .strip_prefix("cmdstat_")
                .and_then(|l| l.split_once(':'))
            else {
                continue;
            };
            let mut s = CmdStat::default();
            for field in stats.split(',') {
                match field.split_once('=') {
                    Some(("calls" | "rejected_calls", n)) => {
                        s.calls += n.trim().parse::<u64>().unwrap_or(0);
                    }
                    Some(("usec", n)) => s.usec = n.trim().parse::<u64>().unwrap_or(0),
                    _ => {}
                }
            }
            out.insert(name.to_owned(), s);
        }
        Ok(out)
    }

    /// Sends every command, then reads every reply; fails on the first
    /// error reply.
    pub fn pipeline(&mut self, cmds: &[Vec<String>]) -> Result<(), String> {
        let mut out = Vec::new();
        for args in cmds {
            out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
            for a in args {
                out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
                out.extend_from_slice(a.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        self.writer
            .write_all(&out)
            .map_err(|e| format!("redis write: {e}"))?;
        let mut first_err = None;
        for _ in cmds {
            if let Err(e) = self.reply() {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// A reply's strings (an array of bulk strings, `HGETALL`).
    pub fn strings(&mut self, args: &[&str]) -> Result<Vec<String>, String> {
        match self.cmd(args)? {
            Reply::Array(Some(items)) => Ok(items
                .into_iter()
                .map(|i| match i {
                    Reply::Bulk(Some(b)) => String::from_utf8_lossy(&b).into_owned(),
                    Reply::Simple(s) => s,
                    Reply::Int(n) => n.to_string(),
                    _ => String::new(),
                })
                .collect()),
            other => Err(format!("{}: unexpected reply {other:?}", args[0])),
        }
    }

    /// An integer field of an `INFO` section (`used_memory` of `memory`).
    pub fn info_int(&mut self, section: &str, field: &str) -> Result<i64, String> {
        let info = self.simple(&["INFO", section])?;
        info.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("INFO {section}: no {field}"))
    }

    /// An integer reply.
    pub fn int(&mut self, args: &[&str]) -> Result<i64, String> {
        match self.cmd(args)? {
            Reply::Int(n) => Ok(n),
            other => Err(format!("{}: unexpected reply {other:?}", args[0])),
        }
    }

    /// Every key, by `SCAN`.
    pub fn all_keys(&mut self) -> Result<Vec<String>, String> {
        let mut keys = Vec::new();
        let mut cursor = "0".to_owned();
        loop {
            let reply = self.cmd(&["SCAN", &cursor, "COUNT", "1000"])?;
            let Reply::Array(Some(mut parts)) = reply else {
                return Err(format!("SCAN: unexpected reply {reply:?}"));
            };
            let (Some(Reply::Array(Some(batch))), Some(Reply::Bulk(Some(next)))) =
                (parts.pop(), parts.pop())
            else {
                return Err("SCAN: unexpected reply shape".into());
            };
            for k in batch {
                if let Reply::Bulk(Some(b)) = k {
                    keys.push(String::from_utf8_lossy(&b).into_owned());
                }
            }
            cursor = String::from_utf8_lossy(&next).into_owned();
            if cursor == "0" {
                return Ok(keys);
            }
        }
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

/// One command's line of `INFO commandstats`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CmdStat {
    pub calls: u64,
    pub usec: u64,
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

/// `INFO commandstats` usec of every command (`INFO` excluded) between two
/// snapshots.
pub fn usec_delta(before: &BTreeMap<String, CmdStat>, after: &BTreeMap<String, CmdStat>) -> u64 {
    after
        .iter()
        .filter(|(name, _)| name.as_str() != "info")
        .map(|(name, s)| {
            s.usec
                .saturating_sub(before.get(name).map_or(0, |b| b.usec))
        })
        .sum()
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

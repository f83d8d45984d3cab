//! A Redis Sentinel setup of the test's own: a primary, one replica and 3
//! sentinels (quorum 2) on free loopback ports, killed (and their files
//! removed) on drop.
//!
//! Every wait is a poll with a deadline, and every failure panics with what
//! was seen last: nothing here skips silently.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ::redis::Value;

use super::redis_cluster::{
    distinct_free_ports, info_field, poll, query, query_text, role, unique_dir, url, RedisProcess,
};
use super::redis_server::text;

const MASTER_NAME: &str = "mymaster";

/// A running primary + replica watched by 3 sentinels.
pub struct RedisSentinel {
    dir: PathBuf,
    /// The data nodes, the first started as primary, the second as replica.
    data: Vec<RedisProcess>,
    sentinels: Vec<RedisProcess>,
    killed_master: Option<u16>,
}

impl RedisSentinel {
    /// Starts the primary and its replica, waits for the replica to be in
    /// sync, then starts 3 sentinels (`down-after-milliseconds 1000`,
    /// `failover-timeout 3000`, `parallel-syncs 1`) and waits until each of
    /// them sees the primary, the replica and the 2 other sentinels.
    pub fn start() -> Self {
        Self::start_named("sentinel")
    }

    /// [`start`](Self::start), its files (and so every process's command
    /// line) under `sessionkit-<kind>-<pid>-<n>` ([`unique_dir`]).
    pub fn start_named(kind: &str) -> Self {
        // Owned from the start, so that a panic halfway kills what started.
        let mut setup = RedisSentinel {
            dir: unique_dir(kind),
            data: Vec::new(),
            sentinels: Vec::new(),
            killed_master: None,
        };
        let mut taken = BTreeSet::new();
        let master = spawn_data_node(&setup.dir, &mut taken, None);
        let m = master.port;
        setup.data.push(master);
        let replica = spawn_data_node(&setup.dir, &mut taken, Some(m));
        let r = replica.port;
        setup.data.push(replica);
        poll(Duration::from_secs(20), "the replica to sync", || {
            let repl = query_text(r, &["INFO", "replication"])?;
            match info_field(&repl, "master_link_status") {
                Some("up") => {}
                other => return Err(format!("replica master_link_status: {other:?}")),
            }
            let repl = query_text(m, &["INFO", "replication"])?;
            match info_field(&repl, "connected_slaves") {
                Some("1") => Ok(()),
                other => Err(format!("primary connected_slaves: {other:?}")),
            }
        });
        for _ in 0..3 {
            let sentinel = spawn_sentinel(&setup.dir, &mut taken, m);
            setup.sentinels.push(sentinel);
        }
        poll(
            Duration::from_secs(30),
            "every sentinel to see the primary, the replica and the other sentinels",
            || {
                for s in setup.sentinel_ports() {
                    setup.check_sentinel(s, m, r)?;
                }
                Ok(())
            },
        );
        setup
    }

    /// What one sentinel must see before a failover can work.
    fn check_sentinel(&self, sentinel: u16, master: u16, replica: u16) -> Result<(), String> {
        let at = format!("sentinel 127.0.0.1:{sentinel}");
        let addr = self.master_addr_from(sentinel)?;
        if addr != master {
            return Err(format!("{at} reports the master on port {addr}"));
        }
        let m = pairs(&query(sentinel, &["SENTINEL", "MASTER", MASTER_NAME])?);
        let field = |k: &str| m.get(k).map(String::as_str);
        if field("flags") != Some("master")
            || field("num-slaves") != Some("1")
            || field("num-other-sentinels") != Some("2")
        {
            return Err(format!("{at}: SENTINEL MASTER {m:?}"));
        }
        let replicas = list(&query(sentinel, &["SENTINEL", "REPLICAS", MASTER_NAME])?);
        let replica_ok = replicas.iter().map(pairs).any(|p| {
            p.get("port").map(String::as_str) == Some(replica.to_string().as_str())
                && p.get("flags").map(String::as_str) == Some("slave")
                && p.get("master-link-status").map(String::as_str) == Some("ok")
        });
        if !replica_ok {
            return Err(format!("{at}: SENTINEL REPLICAS {replicas:?}"));
        }
        let others = list(&query(sentinel, &["SENTINEL", "SENTINELS", MASTER_NAME])?);
        let healthy = others
            .iter()
            .map(pairs)
            .filter(|p| p.get("flags").map(String::as_str) == Some("sentinel"))
            .count();
        if healthy != 2 {
            return Err(format!("{at}: SENTINEL SENTINELS {others:?}"));
        }
        Ok(())
    }

    /// `mymaster`.
    pub fn master_name(&self) -> &str {
        MASTER_NAME
    }

    /// `redis://127.0.0.1:<port>` of each sentinel.
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels.iter().map(|s| url(s.port)).collect()
    }

    /// Ports of the running sentinels.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels
            .iter()
            .filter(|s| s.is_running())
            .map(|s| s.port)
            .collect()
    }

    /// Ports of the data nodes (the initial primary first), running or not.
    pub fn data_ports(&self) -> Vec<u16> {
        self.data.iter().map(|d| d.port).collect()
    }

    /// The master's port, as a sentinel reports it
    /// (`SENTINEL get-master-addr-by-name`).
    pub fn master_port(&self) -> u16 {
        poll(
            Duration::from_secs(10),
            "a sentinel to name the master",
            || {
                let mut last = String::from("no sentinel is running");
                for s in self.sentinel_ports() {
                    match self.master_addr_from(s) {
                        Ok(port) => return Ok(port),
                        Err(e) => last = e,
                    }
                }
                Err(last)
            },
        )
    }

    /// `redis://127.0.0.1:<master_port()>`.
    pub fn master_url(&self) -> String {
        url(self.master_port())
    }

    /// SIGKILLs the current master (as a crash would). Returns its port.
    pub fn kill_master(&mut self) -> u16 {
        let port = self.master_port();
        self.data
            .iter_mut()
            .find(|d| d.port == port)
            .unwrap_or_else(|| panic!("the sentinels report an unknown master on port {port}"))
            .kill();
        self.killed_master = Some(port);
        port
    }

    /// Waits until every running sentinel reports the same new master (not
    /// the one [`kill_master`](Self::kill_master) killed) and that node
    /// reports role master; returns its port. Panics after `timeout`.
    pub fn wait_for_new_master(&self, timeout: Duration) -> u16 {
        let old = self
            .killed_master
            .expect("wait_for_new_master without kill_master");
        poll(timeout, "a new master reported by every sentinel", || {
            let mut seen = BTreeMap::new();
            for s in self.sentinel_ports() {
                seen.insert(s, self.master_addr_from(s)?);
            }
            let ports: BTreeSet<u16> = seen.values().copied().collect();
            let [port] = ports.iter().copied().collect::<Vec<_>>()[..] else {
                return Err(format!("the sentinels disagree: {seen:?}"));
            };
            if port == old {
                return Err(format!("the sentinels still report {old}"));
            }
            if !self.data.iter().any(|d| d.port == port && d.is_running()) {
                return Err(format!("the sentinels report {port}, which is not running"));
            }
            match role(port)?.as_str() {
                "master" => Ok(port),
                other => Err(format!("127.0.0.1:{port} reports role {other}")),
            }
        })
    }

    /// Starts the killed data node on `port` again, empty (the sentinels
    /// then turn it into a replica of the current master).
    pub fn restart(&mut self, port: u16) {
        let node = self
            .data
            .iter_mut()
            .find(|d| d.port == port)
            .unwrap_or_else(|| panic!("no data node on port {port}"));
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match node.start() {
                Ok(()) => return,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("RedisSentinel::restart(127.0.0.1:{port}): {e}; retrying");
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(e) => panic!("127.0.0.1:{port} did not restart: {e}"),
            }
        }
    }

    fn master_addr_from(&self, sentinel: u16) -> Result<u16, String> {
        let reply = query(
            sentinel,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME],
        )?;
        let items = list(&reply);
        match &items[..] {
            [host, port] if text(host) == "127.0.0.1" => text(port)
                .parse()
                .map_err(|_| format!("bad port in {reply:?}")),
            _ => Err(format!(
                "sentinel 127.0.0.1:{sentinel}: get-master-addr-by-name: {reply:?}"
            )),
        }
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        for p in self.sentinels.iter_mut().chain(self.data.iter_mut()) {
            p.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A plain data node (a replica of `replica_of` if given), retried on other
/// ports if its port was taken.
fn spawn_data_node(dir: &Path, taken: &mut BTreeSet<u16>, replica_of: Option<u16>) -> RedisProcess {
    let mut last_error = String::new();
    for _ in 0..10 {
        let [port] = distinct_free_ports(taken);
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--dir",
            &dir.display().to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
            // A full resync starts at once, not after the default 5 s.
            "--repl-diskless-sync-delay",
            "0",
            // Keeps the command line (and so the dir in it) as started, for
            // the watchdog of a shared setup (`support::shared`).
            "--set-proc-title",
            "no",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        if let Some(master) = replica_of {
            args.extend([
                "--replicaof".to_owned(),
                "127.0.0.1".to_owned(),
                master.to_string(),
            ]);
        }
        let log = dir.join(format!("data-{port}.log"));
        match RedisProcess::spawn(port, args, log) {
            Ok(p) => return p,
            Err(e) => last_error = e,
        }
    }
    panic!("redis-server did not start: {last_error}");
}

/// A sentinel (`redis-server <conf> --sentinel`, the conf writable: the
/// sentinel rewrites it) watching the master on `master`, retried on other
/// ports if its port was taken.
fn spawn_sentinel(dir: &Path, taken: &mut BTreeSet<u16>, master: u16) -> RedisProcess {
    let mut last_error = String::new();
    for _ in 0..10 {
        let [port] = distinct_free_ports(taken);
        let conf = dir.join(format!("sentinel-{port}.conf"));
        let body = format!(
            "port {port}\n\
             bind 127.0.0.1\n\
             dir {dir}\n\
             sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 2\n\
             sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
             sentinel failover-timeout {MASTER_NAME} 3000\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n\
             set-proc-title no\n",
            dir = dir.display(),
        );
        std::fs::write(&conf, body).unwrap_or_else(|e| panic!("write {}: {e}", conf.display()));
        let args = vec![conf.display().to_string(), "--sentinel".to_owned()];
        let log = dir.join(format!("sentinel-{port}.log"));
        match RedisProcess::spawn(port, args, log) {
            Ok(p) => return p,
            Err(e) => last_error = e,
        }
    }
    panic!("redis-server --sentinel did not start: {last_error}");
}

/// The elements of an array reply.
fn list(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(items) | Value::Set(items) => items.clone(),
        Value::Nil => Vec::new(),
        other => vec![other.clone()],
    }
}

/// A flat `[key, value, key, value, ...]` reply (or a map) as a map.
fn pairs(v: &Value) -> BTreeMap<String, String> {
    match v {
        Value::Map(entries) => entries.iter().map(|(k, v)| (text(k), text(v))).collect(),
        other => list(other)
            .chunks(2)
            .filter_map(|kv| match kv {
                [k, v] => Some((text(k), text(v))),
                _ => None,
            })
            .collect(),
    }
}

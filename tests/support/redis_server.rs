//! A `redis-server` process of the test's own, on a free port, killed on drop.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server` that only this test talks to.
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: PathBuf,
    args: Vec<String>,
}

impl RedisServer {
    /// Starts a plain server (`--save "" --appendonly no`).
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a single-node Redis Cluster that serves all 16384 slots, so any
    /// script touching keys of two slots fails with a cross-slot error.
    pub fn start_cluster_node() -> Self {
        let server = Self::start_with(&["--cluster-enabled", "yes"]);
        server.command(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !server
            .command(&["CLUSTER", "INFO"])
            .contains("cluster_state:ok")
        {
            assert!(
                Instant::now() < deadline,
                "the cluster node never became ok"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// Starts a server with extra arguments, retrying on another port if the
    /// one picked was taken meanwhile.
    pub fn start_with(extra: &[&str]) -> Self {
        let mut last_error = String::new();
        for _ in 0..10 {
            let port = free_port();
            let dir = std::env::temp_dir()
                .join(format!("sessionkit-redis-{}-{port}", std::process::id()));
            let _ = std::fs::create_dir_all(&dir);
            let args: Vec<String> = extra.iter().map(|a| (*a).to_owned()).collect();
            let child = spawn(port, &dir, &args);
            let mut server = RedisServer {
                child,
                port,
                dir,
                args,
            };
            match server.wait_ready() {
                Ok(()) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("redis-server did not start: {last_error}");
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A client for this server (for setup, dumps and stats).
    pub fn client(&self) -> ::redis::Client {
        ::redis::Client::open(self.url()).expect("redis client")
    }

    /// Runs one command on a fresh blocking connection and returns its reply
    /// as text (arrays joined by newlines). For setup only.
    pub fn command(&self, args: &[&str]) -> String {
        let mut con = self.client().get_connection().expect("connect");
        let mut cmd = ::redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        let value: ::redis::Value = cmd.query(&mut con).expect("command");
        text(&value)
    }

    /// The process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `SIGSTOP`s the server: it keeps its connections and its port (the
    /// kernel still accepts connections) but answers nothing, as a network
    /// partition that drops packets without a reset would look.
    pub fn pause(&self) {
        signal(self.pid(), "STOP");
    }

    /// `SIGCONT`s a [`pause`](Self::pause)d server.
    pub fn resume(&self) {
        signal(self.pid(), "CONT");
    }

    /// Kills the server (as a crash would); [`restart`](Self::restart)
    /// brings an empty one back on the same port.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port, empty.
    pub fn restart(&mut self) {
        self.stop();
        self.child = spawn(self.port, &self.dir, &self.args);
        if let Err(e) = self.wait_ready() {
            panic!("redis-server did not restart: {e}");
        }
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("redis-server exited with {status}"));
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 16];
                if s.write_all(b"PING\r\n").is_ok()
                    && matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
                {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err("no PONG within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn spawn(port: u16, dir: &std::path::Path, extra: &[String]) -> Child {
    let spawned = Command::new("redis-server")
        .args(["--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("redis-server not found: install it with `apt-get install redis-server`")
        }
        Err(e) => panic!("could not start redis-server: {e}"),
    }
}

/// Sends `SIG<name>` (`STOP`, `CONT`) to process `pid` with `kill(1)`.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("could not run kill -{name} {pid}: {e}"));
    assert!(status.success(), "kill -{name} {pid} exited with {status}");
}

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

pub fn text(v: &::redis::Value) -> String {
    use ::redis::Value;
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Okay => "OK".into(),
        Value::Int(n) => n.to_string(),
        Value::VerbatimString { text, .. } => text.clone(),
        Value::Array(items) | Value::Set(items) => {
            items.iter().map(text).collect::<Vec<_>>().join("\n")
        }
        Value::Nil => String::new(),
        other => format!("{other:?}"),
    }
}

/// Per-command call counts from `INFO commandstats`.
pub async fn command_stats(
    con: &mut redis::aio::MultiplexedConnection,
) -> std::collections::BTreeMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(con)
        .await
        .unwrap();
    let mut out = std::collections::BTreeMap::new();
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
                calls += n.parse::<u64>().unwrap();
            }
        }
        out.insert(name.to_owned(), calls);
    }
    out
}

/// Commands the server ran during `step`, by name; commands run inside
/// scripts count too. The `INFO` that counts them, and the lock-release
/// subscriber's heartbeat (`PING`, on its own clock), are left out.
pub async fn counted<F: std::future::Future<Output = ()>>(
    con: &mut redis::aio::MultiplexedConnection,
    step: F,
) -> std::collections::BTreeMap<String, u64> {
    let before = command_stats(con).await;
    step.await;
    let after = command_stats(con).await;
    after
        .into_iter()
        .filter(|(name, _)| !matches!(name.as_str(), "info" | "ping"))
        .filter_map(|(name, n)| {
            let d = n - before.get(&name).copied().unwrap_or(0);
            (d > 0).then_some((name, d))
        })
        .collect()
}

/// A `redis-server` of the test's own, a `RedisStore` on it (with key
/// prefix `prefix`, or the default), and a plain connection for looking at
/// what the store wrote.
pub async fn store_on_own_server(
    prefix: Option<&str>,
) -> (
    RedisServer,
    sessionkit::redis::RedisStore,
    ::redis::aio::MultiplexedConnection,
) {
    let server = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .expect("start redis-server");
    let mut builder = sessionkit::redis::RedisStore::builder().url(server.url());
    if let Some(prefix) = prefix {
        builder = builder.key_prefix(prefix);
    }
    let store = builder.build().await.expect("connect");
    let con = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .expect("test connection");
    (server, store, con)
}

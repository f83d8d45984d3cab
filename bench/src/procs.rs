//! Child processes: the private `redis-server` and the variant servers,
//! each killed when its guard is dropped (also on error or panic); the
//! private PostgreSQL server is in [`crate::pg_server`].

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::resp::Resp;
use crate::servers::Variant;

/// A free loopback port (bound, then released).
pub fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind a free port: {e}"))?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

/// Whether `program` can be started (`NotFound` means it is not installed).
pub fn installed(program: &str, arg: &str) -> bool {
    !matches!(
        Command::new(program)
            .arg(arg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound
    )
}

/// A child process whose stdin is a pipe we hold. On drop the pipe is
/// closed first (our children exit on EOF: the variant servers, and the
/// `watch` wrapper around redis-server), then the child is killed if it is
/// still there after a moment, and reaped. If this process dies without
/// dropping it, the pipe closes all the same.
pub(crate) struct Guard {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Guard {
    pub(crate) fn new(mut child: Child) -> Self {
        let stdin = child.stdin.take();
        Guard { child, stdin }
    }

    fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if self.try_wait().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `watch <program> [args..]`: runs the program and kills it when our stdin
/// closes (the benchmark ended or died) or after `MAX_LIFETIME`, so a
/// redis-server never outlives the benchmark.
pub fn watch(args: &[String]) -> Result<(), String> {
    let (program, rest) = args
        .split_first()
        .ok_or("usage: watch <program> [args..]")?;
    let mut child = Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!("{program} not found: install it with `apt-get install {program}`")
            } else {
                format!("could not start {program}: {e}")
            }
        })?;
    let closed = stdin_closed();
    let deadline = Instant::now() + crate::servers::MAX_LIFETIME;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("{program} exited with {status}"));
        }
        if closed.load(Ordering::SeqCst) || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Set once our stdin reaches EOF: the process holding its other end (the
/// benchmark) dropped us or died.
pub fn stdin_closed() -> Arc<AtomicBool> {
    let closed = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&closed);
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        flag.store(true, Ordering::SeqCst);
    });
    closed
}

/// Our own `redis-server` on a free loopback port, no persistence.
pub struct RedisServer {
    child: Guard,
    pub port: u16,
    dir: PathBuf,
}

impl RedisServer {
    pub fn start() -> Result<Self, String> {
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            let dir = std::env::temp_dir().join(format!(
                "sessionkit-bench-redis-{}-{port}",
                std::process::id()
            ));
            let _ = std::fs::create_dir_all(&dir);
            let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
            let child = Command::new(exe)
                .args(["watch", "redis-server"])
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&dir)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| format!("could not start redis-server: {e}"))?;
            let mut server = RedisServer {
                child: Guard::new(child),
                port,
                dir,
            };
            match server.wait_ready() {
                Ok(()) => return Ok(server),
                Err(e) => last = e,
            }
        }
        Err(format!("redis-server did not start: {last}"))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait() {
                return Err(format!("redis-server exited with {status}"));
            }
            if let Ok(mut r) = Resp::connect(self.port) {
                if r.simple(&["PING"]).is_ok() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err("no PONG within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // The guard (dropped after this) stops the server; it writes no
        // files (`--save ""`, no AOF), so the directory can go first.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One variant's server process: this binary re-executed with `serve`.
/// Its stdin is a pipe we hold: when we exit, however, it sees EOF and
/// exits too.
pub struct ServerProc {
    child: Guard,
    pub port: u16,
}

impl ServerProc {
    /// `variant`'s server on the store at `store_url`.
    pub fn start(variant: Variant, store_url: &str, threads: usize) -> Result<Self, String> {
        Self::spawn(variant.name(), |port| {
            vec![
                "serve".to_owned(),
                variant.name().to_owned(),
                port.to_string(),
                store_url.to_owned(),
                threads.to_string(),
            ]
        })
    }

    /// This binary re-executed with `args(port)` (a free port), until it
    /// listens on that port; `label` names it in errors.
    pub fn spawn(label: &str, args: impl Fn(u16) -> Vec<String>) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port()?;
            let child = Command::new(&exe)
                .args(args(port))
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| format!("spawn {}: {e}", exe.display()))?;
            let mut proc = ServerProc {
                child: Guard::new(child),
                port,
            };
            match proc.wait_ready() {
                Ok(()) => return Ok(proc),
                Err(e) => last = e,
            }
        }
        Err(format!("{label} did not start: {last}"))
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait() {
                return Err(format!("server exited with {status}"));
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("not listening within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// CPU time (user + system) the server process has used so far, in
    /// seconds (from /proc, at the kernel's 100 Hz tick).
    pub fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.child.id())).ok()?;
        let (_, rest) = stat.rsplit_once(')')?;
        // utime and stime are the 14th and 15th fields of the whole line.
        let ticks: Vec<u64> = rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|x| x.parse().ok())
            .collect();
        (ticks.len() == 2).then(|| (ticks[0] + ticks[1]) as f64 / 100.0)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.child.id()
    }

    /// A `kB` field of the server's `/proc/<pid>/status` (`VmRSS`,
    /// `VmHWM`), in KiB.
    pub fn status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status.lines().find_map(|l| {
            let rest = l.strip_prefix(field)?.strip_prefix(':')?;
            rest.trim().trim_end_matches("kB").trim().parse().ok()
        })
    }

    /// Fails if the server process has exited.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Some(status) => Err(format!("server exited with {status}")),
            None => Ok(()),
        }
    }
}

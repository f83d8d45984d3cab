//! Our own PostgreSQL server for the `postgres` cells, never the machine's
//! service: `initdb` into a temporary directory and `pg_ctl start` on a
//! free loopback port; stopped (`pg_ctl stop -m immediate`) and removed on
//! drop, also on error or panic. A reaper process (this binary re-executed
//! as `pg-reaper <bin> <dir>`, its stdin a pipe we hold) does the same if
//! this process dies without dropping the server, as the `watch` wrapper
//! does for redis-server.
//!
//! The binaries are Debian's (`/usr/lib/postgresql/<version>/bin`, newest
//! first) or those `pg_config --bindir` names. As root, every PostgreSQL
//! command runs as the `postgres` user (`initdb` and `postgres` refuse
//! root), which Debian's `postgresql` package creates.
//!
//! Durability is PostgreSQL's default: `fsync` and `synchronous_commit`
//! on, so every committed write waits for its WAL flush.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use crate::procs::{self, Guard};

pub const INSTALL_HINT: &str = "PostgreSQL server binaries (initdb, pg_ctl) not found: install \
     them with `apt-get install postgresql` (Debian/Ubuntu), then run again";

/// `max_connections` of the server: room for every pool the cells open.
const MAX_CONNECTIONS: u32 = 300;

pub struct PostgresServer {
    bin: PathBuf,
    dir: PathBuf,
    pub port: u16,
    /// `postgres --version`, e.g. `15.14 (Debian 15.14-0+deb12u1)`.
    pub version: String,
    stopped: bool,
    /// Dropped after [`Drop::drop`] has stopped the server: the reaper then
    /// finds nothing left to do.
    _reaper: Guard,
}

impl PostgresServer {
    pub fn start() -> Result<Self, String> {
        let bin = bin_dir()?;
        let dir = std::env::temp_dir().join(format!("sessionkit-bench-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        // The reaper first: from here on, whatever happens, the directory
        // (and the server, once started) goes when we do.
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let reaper = Command::new(exe)
            .arg("pg-reaper")
            .args([&bin, &dir])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("could not start the PostgreSQL reaper: {e}"))?;
        let mut server = PostgresServer {
            version: String::new(),
            bin,
            dir,
            port: 0,
            stopped: true,
            _reaper: Guard::new(reaper),
        };
        server.init()?;
        let mut last = String::new();
        for _ in 0..5 {
            server.port = procs::free_port()?;
            match server.pg_ctl_start() {
                Ok(()) => return Ok(server),
                Err(e) => last = e,
            }
        }
        Err(format!("PostgreSQL did not start: {last}"))
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres` (trust auth).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn init(&mut self) -> Result<(), String> {
        if as_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&self.dir)
                .status()
                .map_err(|e| format!("chown: {e}"))?;
            if !status.success() {
                return Err(format!(
                    "chown of {} to postgres failed: is there a `postgres` user? ({INSTALL_HINT})",
                    self.dir.display()
                ));
            }
        }
        let data = data_dir(&self.dir).to_string_lossy().into_owned();
        let out = run(
            &self.bin,
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let out = run(&self.bin, "postgres", &["--version"])?;
        let version = String::from_utf8_lossy(&out.stdout);
        self.version = version
            .trim()
            .strip_prefix("postgres (PostgreSQL) ")
            .unwrap_or(version.trim())
            .to_owned();
        Ok(())
    }

    fn pg_ctl_start(&mut self) -> Result<(), String> {
        // fsync and synchronous_commit stay at their defaults (on).
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='{}' \
             -c max_connections={MAX_CONNECTIONS}",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log").to_string_lossy().into_owned();
        let out = pg_ctl(
            &self.bin,
            &self.dir,
            &["start", "-w", "-t", "60", "-l", &log, "-o", &options],
        )?;
        if out.status.success() {
            self.stopped = false;
            return Ok(());
        }
        let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        Err(format!(
            "pg_ctl start: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            lines[lines.len().saturating_sub(20)..].join("\n")
        ))
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if !self.stopped {
            stop(&self.bin, &self.dir);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `pg-reaper <bin> <dir>`: waits until our stdin closes (the benchmark
/// ended or died) or [`crate::servers::MAX_LIFETIME`] has passed, then
/// stops the server of `dir` and removes `dir`.
pub fn reaper(args: &[String]) -> Result<(), String> {
    let [bin, dir] = args else {
        return Err("usage: pg-reaper <bin> <dir>".into());
    };
    let closed = procs::stdin_closed();
    let deadline = Instant::now() + crate::servers::MAX_LIFETIME;
    while !closed.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let dir = Path::new(dir);
    if data_dir(dir).join("postmaster.pid").exists() {
        stop(Path::new(bin), dir);
    }
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

/// Checks that the server binaries are there, before a long run starts.
pub fn check_installed() -> Result<(), String> {
    bin_dir().map(drop)
}

fn stop(bin: &Path, dir: &Path) {
    let _ = pg_ctl(bin, dir, &["stop", "-m", "immediate", "-w"]);
}

fn pg_ctl(bin: &Path, dir: &Path, args: &[&str]) -> Result<Output, String> {
    let data = data_dir(dir).to_string_lossy().into_owned();
    let mut all = vec!["-D", data.as_str()];
    all.extend_from_slice(args);
    run(bin, "pg_ctl", &all)
}

fn data_dir(dir: &Path) -> PathBuf {
    dir.join("data")
}

fn as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Runs `bin/<tool>` (as the `postgres` user when root).
fn run(bin: &Path, tool: &str, args: &[&str]) -> Result<Output, String> {
    let program = bin.join(tool);
    let mut cmd = if as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&program);
        c
    } else {
        Command::new(&program)
    };
    cmd.args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not run {}: {e} ({INSTALL_HINT})", program.display()))
}

/// The directory holding `initdb` and `pg_ctl`: Debian's newest version,
/// else `pg_config --bindir`.
fn bin_dir() -> Result<PathBuf, String> {
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_tools(&bin).then_some((version, bin))
        })
        .collect();
    debian.sort();
    if let Some((_, bin)) = debian.pop() {
        return Ok(bin);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_tools(&bin) {
            return Ok(bin);
        }
    }
    Err(INSTALL_HINT.into())
}

fn has_tools(bin: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"]
        .iter()
        .all(|t| bin.join(t).exists())
}

//! A PostgreSQL server of the test's own: `initdb` into a temp dir and
//! `pg_ctl start` on a free port, stopped and removed on drop; and one
//! shared server per test binary ([`shared`]) for the many tests that only
//! need a schema of their own ([`unique_schema`]).
//!
//! The binaries are Debian's (`/usr/lib/postgresql/<version>/bin`, newest
//! version first), or whatever `pg_config --bindir` or `PATH` names. As
//! root, every PostgreSQL command runs as the `postgres` user (`initdb`
//! refuses root), which Debian's `postgresql` package creates.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

const INSTALL_HINT: &str = "PostgreSQL server binaries (initdb, pg_ctl) not found: install them \
     with `apt-get install postgresql` (Debian/Ubuntu), or put its bin directory on PATH";

/// A running PostgreSQL server that only this test (or this test binary,
/// for [`shared`]) talks to.
pub struct PostgresServer {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    stopped: bool,
}

impl PostgresServer {
    /// Creates a cluster with `initdb` and starts it on a free port
    /// (retrying on another port if the one picked was taken meanwhile).
    pub fn start() -> Self {
        Self::start_in(&format!("sessionkit-pg-{}", std::process::id()))
    }

    fn start_in(kind: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let bin = bin_dir();
        let dir =
            std::env::temp_dir().join(format!("{kind}-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the PostgreSQL test dir");
        if as_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .expect("run chown");
            assert!(
                status.success(),
                "chown of {} to postgres failed: is there a `postgres` user? ({INSTALL_HINT})",
                dir.display()
            );
        }
        let out = run(
            &bin,
            "initdb",
            &[
                "-D",
                &data_dir(&dir).to_string_lossy(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut server = PostgresServer {
            bin,
            dir,
            port: 0,
            stopped: true,
        };
        let mut last = String::new();
        for _ in 0..10 {
            server.port = free_port();
            match server.pg_ctl_start() {
                Ok(()) => return server,
                Err(e) => last = e,
            }
        }
        panic!("PostgreSQL did not start: {last}");
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's directory (data directory under `data/`, log `log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last lines of the server log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Stops the server as a crash would (`pg_ctl stop -m immediate`): the
    /// data stays; [`start_again`](Self::start_again) brings it back on the
    /// same port.
    pub fn stop_immediate(&mut self) {
        let out = self.pg_ctl(&["stop", "-m", "immediate", "-w"]);
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.stopped = true;
    }

    /// Starts a stopped server again on the same port, with its data.
    pub fn start_again(&mut self) {
        if let Err(e) = self.pg_ctl_start() {
            panic!("PostgreSQL did not restart: {e}");
        }
    }

    /// Runs SQL with `psql` and returns its unaligned, tuples-only output.
    #[track_caller]
    pub fn psql(&self, sql: &str) -> String {
        match self.try_psql(sql) {
            Ok(out) => out,
            Err(e) => panic!("psql failed on {sql:?}: {e}"),
        }
    }

    /// [`psql`](Self::psql) that hands the error back.
    pub fn try_psql(&self, sql: &str) -> Result<String, String> {
        let port = self.port.to_string();
        let out = run(
            &self.bin,
            "psql",
            &[
                "-X",
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                sql,
            ],
        );
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    fn pg_ctl_start(&mut self) -> Result<(), String> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='{}' \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c max_connections=300 -c shared_buffers=64MB",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log").to_string_lossy().into_owned();
        let out = self.pg_ctl(&["start", "-w", "-t", "60", "-l", &log, "-o", &options]);
        if out.status.success() {
            self.stopped = false;
            Ok(())
        } else {
            Err(format!(
                "{}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log_tail()
            ))
        }
    }

    fn pg_ctl(&self, args: &[&str]) -> Output {
        let data = data_dir(&self.dir).to_string_lossy().into_owned();
        let mut all = vec!["-D", data.as_str()];
        all.extend_from_slice(args);
        run(&self.bin, "pg_ctl", &all)
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w"]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

static SHARED: OnceLock<(PostgresServer, Child)> = OnceLock::new();

/// The binary's shared server, started by the first caller. A `static` is
/// never dropped, so a watchdog process kills the server and removes its
/// directory once this process has exited. Tests must not stop it: those
/// that do start their own.
pub async fn shared() -> &'static PostgresServer {
    let started = tokio::task::spawn_blocking(|| {
        &SHARED
            .get_or_init(|| {
                // The watchdog kills what runs in `sessionkit-shared-pg-<pid>-*`.
                let watchdog = super::watchdog::watchdog("shared-pg");
                let kind = format!("sessionkit-shared-pg-{}", std::process::id());
                (PostgresServer::start_in(&kind), watchdog)
            })
            .0
    })
    .await;
    match started {
        Ok(server) => server,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("starting the shared PostgreSQL: {e}"),
        },
    }
}

/// A schema name no other test of any process uses: `t<n>_<pid>`.
pub fn unique_schema() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "t{}_{}",
        NEXT.fetch_add(1, Ordering::Relaxed),
        std::process::id()
    )
}

fn data_dir(dir: &Path) -> PathBuf {
    dir.join("data")
}

fn as_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false)
    })
}

/// Runs `bin/<tool>` (as the `postgres` user when root).
fn run(bin: &Path, tool: &str, args: &[&str]) -> Output {
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
        .unwrap_or_else(|e| panic!("could not run {}: {e} ({INSTALL_HINT})", program.display()))
}

/// The directory holding `initdb` and `pg_ctl`.
fn bin_dir() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
                let bin = e.path().join("bin");
                bin.join("initdb").exists().then_some((v, bin))
            })
            .collect();
        debian.sort();
        if let Some((_, bin)) = debian.pop() {
            return bin;
        }
        if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
            let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if bin.join("initdb").exists() {
                return bin;
            }
        }
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .find(|p| p.join("initdb").exists() && p.join("pg_ctl").exists())
            .unwrap_or_else(|| panic!("{INSTALL_HINT}"))
    })
    .clone()
}

/// A port nobody listens on now (the suite's own copy: the Redis harness,
/// which has one too, is built only with the `redis` feature).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

//! Options of the full benchmark, and the routes it loads.

use std::path::PathBuf;

use crate::cells::Group;
use crate::servers::Variant;
use crate::{flag_value, USAGE};

#[derive(Clone)]
pub struct Options {
    pub duration: u64,
    pub warmup: u64,
    pub connections: usize,
    pub threads: usize,
    pub server_threads: usize,
    pub probe: usize,
    pub only: Vec<String>,
    pub routes: Vec<Route>,
    /// The cell groups to run (default all).
    pub cells: Vec<Group>,
    pub micro_secs: u64,
    /// Per-run seconds of the locked-write cells (and the 2-thread cached
    /// read), shorter than the main table's.
    pub short_secs: u64,
    /// Users (10 sessions each) of the big store of the per-user ops cell.
    pub ops_users: usize,
    /// Users logged in by the memory cell.
    pub memory_users: usize,
    pub chart: PathBuf,
    pub markdown: PathBuf,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let results = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/results"));
        let mut o = Options {
            duration: 5,
            warmup: 1,
            connections: 32,
            threads: 1,
            server_threads: 2,
            probe: 20,
            only: Vec::new(),
            routes: Route::LOADED.to_vec(),
            cells: Group::ALL.to_vec(),
            micro_secs: 3,
            short_secs: 3,
            ops_users: 100_000,
            memory_users: 10_000,
            chart: results.join("ratios.svg"),
            markdown: results.join("latest.md"),
        };
        let mut i = 0;
        while i < args.len() {
            match args[i].as_str() {
                "--duration" => o.duration = flag_value(args, &mut i)?,
                "--warmup" => o.warmup = flag_value(args, &mut i)?,
                "--connections" => o.connections = flag_value(args, &mut i)?,
                "--threads" => o.threads = flag_value(args, &mut i)?,
                "--server-threads" => o.server_threads = flag_value(args, &mut i)?,
                "--probe" => o.probe = flag_value(args, &mut i)?,
                "--micro-secs" => o.micro_secs = flag_value(args, &mut i)?,
                "--short-secs" => o.short_secs = flag_value(args, &mut i)?,
                "--ops-users" => o.ops_users = flag_value(args, &mut i)?,
                "--memory-users" => o.memory_users = flag_value(args, &mut i)?,
                "--chart" => o.chart = flag_value::<String>(args, &mut i)?.into(),
                "--markdown" => o.markdown = flag_value::<String>(args, &mut i)?.into(),
                "--no-micro" => o.cells.retain(|g| *g != Group::Micro),
                "--cells" => {
                    let list: String = flag_value(args, &mut i)?;
                    o.cells = list
                        .split(',')
                        .map(|c| {
                            Group::from_name(c)
                                .ok_or_else(|| format!("unknown cell group {c:?}\n\n{USAGE}"))
                        })
                        .collect::<Result<_, _>>()?;
                }
                "--only" => {
                    let list: String = flag_value(args, &mut i)?;
                    o.only = list.split(',').map(str::to_owned).collect();
                }
                "--routes" => {
                    let list: String = flag_value(args, &mut i)?;
                    o.routes = list
                        .split(',')
                        .map(|r| {
                            Route::LOADED
                                .into_iter()
                                .find(|x| x.name() == r)
                                .ok_or_else(|| format!("unknown route {r:?}\n\n{USAGE}"))
                        })
                        .collect::<Result<_, _>>()?;
                }
                other => return Err(format!("unknown argument {other:?}\n\n{USAGE}")),
            }
            i += 1;
        }
        if o.duration == 0 || o.connections == 0 || o.short_secs == 0 {
            return Err("--duration, --short-secs and --connections must be at least 1".into());
        }
        if o.ops_users < 100 || o.memory_users == 0 {
            return Err("--ops-users must be at least 100, --memory-users at least 1".into());
        }
        Ok(o)
    }

    pub fn wants(&self, v: Variant) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| v.name().contains(o.as_str()))
    }

    pub fn runs(&self, g: Group) -> bool {
        self.cells.contains(&g)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Login,
    Read,
    Write,
    /// Only probed (its Redis cost), never loaded.
    Logout,
}

impl Route {
    pub const LOADED: [Route; 3] = [Route::Login, Route::Read, Route::Write];

    pub fn name(self) -> &'static str {
        match self {
            Route::Login => "login",
            Route::Read => "read",
            Route::Write => "write",
            Route::Logout => "logout",
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Route::Login => "/login",
            Route::Read => "/read",
            Route::Write => "/write",
            Route::Logout => "/logout",
        }
    }

    pub fn method(self) -> &'static str {
        match self {
            Route::Login | Route::Logout => "POST",
            Route::Read | Route::Write => "GET",
        }
    }
}

//! `sessionkit-bench`: the side-by-side benchmark of issue 5.
//!
//! ```text
//! cargo run --release -p sessionkit-bench                      # everything, ~8 min on 2 cores
//! cargo run --release -p sessionkit-bench -- --cells login-scaling   # one group
//! cargo run --release -p sessionkit-bench -- --cells postgres  # PostgresStore vs RedisStore (needs postgresql)
//! cargo run --release -p sessionkit-bench -- --cells tracker   # keyed sessions vs cookie-session store calls
//! cargo run --release -p sessionkit-bench -- --duration 10 --connections 64
//! cargo run --release -p sessionkit-bench -- micro             # in-process memory-store overhead
//! cargo run --release -p sessionkit-bench -- micro --callgrind # + instruction counts (valgrind)
//! cargo run --release -p sessionkit-bench -- soak              # 60 s mixed-traffic soak on Redis
//! cargo run --release -p sessionkit-bench --no-default-features   # without the client-cache variants
//! ```
//!
//! The full run spawns its own `redis-server`, then each variant as a
//! separate server process (this binary re-executed as `serve <variant>
//! <port> <store-url> <threads>`), loads `/login`, `/read` and `/write` of
//! each with `wrk`, counts Redis commands per request, runs the `postgres`
//! cells (`PostgresStore` beside `RedisStore` on axum, on a PostgreSQL
//! server of its own: `initdb` + `pg_ctl`, see `pg_server.rs`), the
//! scaling, locking and memory cells of issue 11, and prints a Markdown report
//! (also written to `bench/results/latest.md`, with an SVG chart of the
//! ratios) ending with one line per issue-11 target.

mod cells;
mod chart;
mod http;
mod machine;
mod micro;
mod options;
mod pg_server;
mod procs;
mod report;
mod resp;
mod run;
mod servers;
mod soak;
mod soak_service;
mod wrk;

use std::process::ExitCode;

const USAGE: &str = "\
usage:
  sessionkit-bench [OPTIONS]              full benchmark (needs wrk and redis-server)
  sessionkit-bench micro [MICRO OPTIONS]  in-process memory-store middleware overhead
  sessionkit-bench soak [SOAK OPTIONS]    mixed-traffic soak test of one service on Redis
  sessionkit-bench serve <variant> <port> <store-url> <threads>   (internal)
  sessionkit-bench soak-serve <store> <port> <redis-url> <threads> <grace-ms> <rotation-ms>  (internal)
  sessionkit-bench watch <program> [args..]                       (internal)
  sessionkit-bench pg-reaper <bin> <dir>                          (internal)

OPTIONS (full benchmark):
  --duration SECS        wrk run per variant and route (default 5)
  --warmup SECS          wrk warm-up before each measured run (default 1)
  --connections N        wrk connections (default 32)
  --threads N            wrk threads of the main table (default 1)
  --server-threads N     worker threads of each server (default 2)
  --probe N              sequential requests watched with MONITOR per cell (default 20)
  --only NAME[,NAME..]   only variants whose name contains one of these
  --routes R[,R..]       routes to load, of login,read,write (default all)
  --cells G[,G..]        cell groups to run (default all): table, cached-read,
                         postgres, login-scaling, user-ops, locked-write, memory,
                         tracker, micro (postgres also needs PostgreSQL's initdb/pg_ctl)
  --no-micro             skip the in-process micro-benchmark at the end
  --micro-secs SECS      time budget of that micro-benchmark (default 3)
  --short-secs SECS      wrk run of each locked-write cell (default 3)
  --ops-users N          users (10 sessions each) of the big store of user-ops
                         (default 100000: 1,000,000 sessions)
  --memory-users N       users logged in by the memory cell (default 10000)
  --chart PATH           SVG chart of the ratios (default bench/results/ratios.svg)
  --markdown PATH        the report as Markdown (default bench/results/latest.md)

MICRO OPTIONS:
  --secs SECS            time budget (default 5)
  --batch N              requests per timed batch (default 2000)
  --callgrind            also count instructions with valgrind --tool=callgrind

SOAK OPTIONS (needs redis-server; exits 1 on a lost session, a 5xx or a key left):
  --duration SECS        length of the mixed traffic (default 60)
  --connections N        simulated clients, one keep-alive connection each (default 64)
  --store S              redis or redis-cache (RedisStore with the client cache) (default redis)
  --users N              users the clients log in as (default 300)
  --admin-every MS       an admin revoke-all of a random user this often (default 2000)
  --grace MS             the service's rotation_grace (default 3000)
  --rotation-interval MS the service's rotation_interval, 0 for off (default 25)
  --server-threads N     worker threads of the service (default 2)
  --seed N               seed of the traffic mix (default: from the clock)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") => servers::serve(&args[1..]),
        Some("micro") => micro::main(&args[1..]),
        Some("micro-child") => micro::child(&args[1..]),
        Some("soak") => soak::main(&args[1..]),
        Some("soak-serve") => soak_service::serve(&args[1..]),
        Some("watch") => procs::watch(&args[1..]),
        Some("pg-reaper") => pg_server::reaper(&args[1..]),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            Ok(())
        }
        _ => run::main(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sessionkit-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Parses the value after a flag.
fn flag_value<T: std::str::FromStr>(args: &[String], i: &mut usize) -> Result<T, String> {
    let name = &args[*i];
    *i += 1;
    let raw = args
        .get(*i)
        .ok_or_else(|| format!("{name} needs a value\n\n{USAGE}"))?;
    raw.parse()
        .map_err(|_| format!("{name}: cannot parse {raw:?}\n\n{USAGE}"))
}

//! `soak`: 60 s of mixed traffic against one sessionkit service on Redis
//! (issue 6, "Soak"), then a check that nothing was lost or left behind.
//!
//! ```text
//! cargo run --release -p sessionkit-bench -- soak [--duration 60] [--connections 64] [--store redis|redis-cache]
//! ```
//!
//! It starts its own `redis-server` and the service of
//! [`crate::soak_service`] as a separate process, then drives it from this
//! process: `--connections` simulated clients, each on one keep-alive
//! connection with its own cookie and counter, log in as one of `--users`
//! users and loop over a weighted mix (read 65 %, write 25 %, rotate 7 %,
//! logout 3 %, then log in again), while an admin task calls
//! `revoke-all` for a random user every `--admin-every` ms and records
//! which user it revoked and when. When the time is up, every client logs
//! out; the report then gives the responses by route and status, the
//! sessions lost, the lost counter increments, the service's RSS and
//! Redis's `used_memory` and keys before, at the end of the load, right
//! after the logouts and after the rotation grace.
//!
//! A client's session counts as **lost** when a request finds it logged
//! out (an `anon` answer, a `401`, or a cookie removal on anything but its
//! own logout) although the client did not log out and no `revoke-all` of
//! its user could have ended it: one that was sent before that request's
//! answer arrived and had not finished before the client's login was sent
//! (in-flight races are excused, conservatively). The run fails (exit
//! status 1) on any lost session, any 5xx, any key left after the grace,
//! and also on a transport error, an answer naming another user, a
//! revoked session still served after its revoke-all finished, a lost
//! counter increment, or Redis's client-tracking table (the client-side
//! cache's invalidation state) still holding more keys than a tenth of the
//! logins and rotations once every session has ended (entries that outlive
//! their keys: a leak that grows with traffic).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::procs::{self, RedisServer, ServerProc};
use crate::resp::{Reply, Resp};
use crate::{flag_value, USAGE};

/// The service's cookie name (`SessionConfig::default()`).
const COOKIE: &str = "id";
/// sessionkit's default Redis key prefix.
const PREFIX: &str = "sessionkit";
/// The longest one request may take before it counts as a transport error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StoreKind {
    Redis,
    RedisCache,
}

impl StoreKind {
    fn name(self) -> &'static str {
        match self {
            StoreKind::Redis => "redis",
            StoreKind::RedisCache => "redis-cache",
        }
    }
}

struct Options {
    duration: u64,
    connections: usize,
    store: StoreKind,
    users: u64,
    admin_every_ms: u64,
    grace_ms: u64,
    rotation_ms: u64,
    server_threads: usize,
    seed: u64,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut o = Options {
            duration: 60,
            connections: 64,
            store: StoreKind::Redis,
            users: 300,
            admin_every_ms: 2000,
            grace_ms: 3000,
            rotation_ms: 25,
            server_threads: 2,
            seed: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64),
        };
        let mut i = 0;
        while i < args.len() {
            match args[i].as_str() {
                "--duration" => o.duration = flag_value(args, &mut i)?,
                "--connections" => o.connections = flag_value(args, &mut i)?,
                "--users" => o.users = flag_value(args, &mut i)?,
                "--admin-every" => o.admin_every_ms = flag_value(args, &mut i)?,
                "--grace" => o.grace_ms = flag_value(args, &mut i)?,
                "--rotation-interval" => o.rotation_ms = flag_value(args, &mut i)?,
                "--server-threads" => o.server_threads = flag_value(args, &mut i)?,
                "--seed" => o.seed = flag_value(args, &mut i)?,
                "--store" => {
                    let s: String = flag_value(args, &mut i)?;
                    o.store = match s.as_str() {
                        "redis" => StoreKind::Redis,
                        "redis-cache" => StoreKind::RedisCache,
                        _ => return Err(format!("--store: redis or redis-cache, not {s:?}")),
                    };
                }
                other => return Err(format!("unknown soak argument {other:?}\n\n{USAGE}")),
            }
            i += 1;
        }
        if o.duration == 0 || o.connections == 0 || o.users == 0 || o.admin_every_ms == 0 {
            return Err(
                "--duration, --connections, --users and --admin-every must be at least 1".into(),
            );
        }
        if o.store == StoreKind::RedisCache && !cfg!(feature = "client-cache") {
            return Err("--store redis-cache: the bench's `client-cache` feature is off".into());
        }
        Ok(o)
    }
}

// ------------------------------------------------------------------ routes

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Login,
    Read,
    Write,
    Rotate,
    Logout,
    Admin,
}

impl Route {
    const ALL: [Route; 6] = [
        Route::Login,
        Route::Read,
        Route::Write,
        Route::Rotate,
        Route::Logout,
        Route::Admin,
    ];

    fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            Route::Login => "login",
            Route::Read => "read",
            Route::Write => "write",
            Route::Rotate => "rotate",
            Route::Logout => "logout",
            Route::Admin => "revoke-all",
        }
    }

    fn method(self) -> &'static str {
        match self {
            Route::Read | Route::Write => "GET",
            _ => "POST",
        }
    }
}

// ------------------------------------------------------------ HTTP client

/// One answer, with what it did to the session cookie.
struct Answer {
    status: u16,
    body: String,
    /// A new token set by `Set-Cookie`.
    token: Option<String>,
    /// The cookie was cleared.
    removed: bool,
    /// The server will close the connection.
    close: bool,
}

/// An HTTP/1.1 connection to the service, opened on first use and again
/// after any error.
struct Conn {
    port: u16,
    keep_alive: bool,
    stream: Option<BufReader<TcpStream>>,
}

impl Conn {
    fn new(port: u16, keep_alive: bool) -> Self {
        Conn {
            port,
            keep_alive,
            stream: None,
        }
    }

    async fn request(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
    ) -> Result<Answer, String> {
        let result =
            tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(method, path, token)).await;
        match result {
            Ok(Ok(answer)) => {
                if answer.close || !self.keep_alive {
                    self.stream = None;
                }
                Ok(answer)
            }
            Ok(Err(e)) => {
                self.stream = None;
                Err(format!("{method} {path}: {e}"))
            }
            Err(_) => {
                self.stream = None;
                Err(format!(
                    "{method} {path}: no answer within {REQUEST_TIMEOUT:?}"
                ))
            }
        }
    }

    async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
    ) -> Result<Answer, String> {
        if self.stream.is_none() {
            let s = TcpStream::connect(("127.0.0.1", self.port))
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let _ = s.set_nodelay(true);
            self.stream = Some(BufReader::new(s));
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err("no connection".into());
        };
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n",
            self.port
        );
        if !self.keep_alive {
            req.push_str("Connection: close\r\n");
        }
        if let Some(t) = token {
            let _ = write!(req, "Cookie: {COOKIE}={t}\r\n");
        }
        req.push_str("\r\n");
        stream
            .get_mut()
            .write_all(req.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;

        let mut line = String::new();
        read_line(stream, &mut line).await?;
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {line:?}"))?;
        let mut answer = Answer {
            status,
            body: String::new(),
            token: None,
            removed: false,
            close: false,
        };
        let (mut length, mut chunked) = (0usize, false);
        loop {
            read_line(stream, &mut line).await?;
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            match name.as_str() {
                "content-length" => {
                    length = value
                        .parse()
                        .map_err(|_| format!("bad content-length {value:?}"))?;
                }
                "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
                "connection" => answer.close = value.eq_ignore_ascii_case("close"),
                "set-cookie" => {
                    let mut attrs = value.split(';');
                    let pair = attrs.next().unwrap_or("");
                    if let Some((n, v)) = pair.split_once('=') {
                        if n.trim() == COOKIE {
                            let v = v.trim();
                            let zero_age = attrs.any(|a| {
                                a.trim().to_ascii_lowercase().replace(' ', "") == "max-age=0"
                            });
                            if v.is_empty() || zero_age {
                                answer.removed = true;
                                answer.token = None;
                            } else {
                                answer.token = Some(v.to_owned());
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                read_line(stream, &mut line).await?;
                let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                    .map_err(|_| format!("bad chunk size {line:?}"))?;
                if size == 0 {
                    // Trailers, up to the empty line.
                    loop {
                        read_line(stream, &mut line).await?;
                        if line.is_empty() {
                            break;
                        }
                    }
                    break;
                }
                let start = body.len();
                body.resize(start + size, 0);
                stream
                    .read_exact(&mut body[start..])
                    .await
                    .map_err(|e| format!("read: {e}"))?;
                read_line(stream, &mut line).await?;
            }
        } else {
            body.resize(length, 0);
            stream
                .read_exact(&mut body)
                .await
                .map_err(|e| format!("read: {e}"))?;
        }
        answer.body = String::from_utf8_lossy(&body).trim().to_owned();
        Ok(answer)
    }
}

/// One line without its `\r\n`; an error at end of stream.
async fn read_line(stream: &mut BufReader<TcpStream>, line: &mut String) -> Result<(), String> {
    line.clear();
    match stream.read_line(line).await {
        Ok(0) => Err("connection closed".into()),
        Ok(_) => {
            let trimmed = line.trim_end_matches(['\r', '\n']).len();
            line.truncate(trimmed);
            Ok(())
        }
        Err(e) => Err(format!("read: {e}")),
    }
}

/// `ok <user> <n>` → `(user, n)`.
fn parse_ok(body: &str) -> Option<(&str, u64)> {
    let mut parts = body.split(' ');
    (parts.next()? == "ok").then_some(())?;
    let user = parts.next()?;
    let n = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((user, n))
}

// ------------------------------------------------------------ shared state

/// A small deterministic PRNG (xorshift64*), one per task.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        // splitmix64 of the seed, never 0.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One admin `revoke-all` call, as the clients judge by it.
#[derive(Clone, Copy)]
struct Revoke {
    sent: Instant,
    /// When its answer arrived; `None` while in flight (or never).
    done: Option<Instant>,
    /// Answered 200.
    ok: bool,
}

struct Shared {
    port: u16,
    t0: Instant,
    stop_at: Instant,
    /// Every revoke-all issued, by user.
    revokes: Mutex<HashMap<String, Vec<Revoke>>>,
    /// The user each client is logged in as, for the admin to pick from.
    current: Mutex<Vec<Option<String>>>,
}

impl Shared {
    /// Whether a revoke-all of `user` may have ended a session whose login
    /// was sent at `login_sent`, as seen by an answer that arrived at
    /// `seen`: one sent before `seen` that had not finished before
    /// `login_sent`.
    fn revoke_excuses(&self, user: &str, login_sent: Instant, seen: Instant) -> bool {
        let revokes = self.revokes.lock().unwrap_or_else(|e| e.into_inner());
        revokes.get(user).is_some_and(|list| {
            list.iter()
                .any(|r| r.sent <= seen && r.done.is_none_or(|d| d >= login_sent))
        })
    }

    /// Whether a revoke-all of `user`, sent after the login's answer
    /// arrived (`login_done`), had succeeded before `sent`: a request sent
    /// then must not find the session logged in.
    fn revoked_before(&self, user: &str, login_done: Instant, sent: Instant) -> bool {
        let revokes = self.revokes.lock().unwrap_or_else(|e| e.into_inner());
        revokes.get(user).is_some_and(|list| {
            list.iter()
                .any(|r| r.ok && r.sent >= login_done && r.done.is_some_and(|d| d <= sent))
        })
    }

    fn last_revoke_ms(&self, user: &str) -> Option<u64> {
        let revokes = self.revokes.lock().unwrap_or_else(|e| e.into_inner());
        revokes
            .get(user)?
            .last()
            .map(|r| r.sent.duration_since(self.t0).as_millis() as u64)
    }

    fn set_current(&self, client: usize, user: Option<&str>) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current[client] = user.map(str::to_owned);
    }

    fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.t0).as_millis() as u64
    }
}

// ------------------------------------------------------------------ stats

/// A session found logged out that nothing explains.
struct Lost {
    client: usize,
    user: String,
    route: Route,
    status: u16,
    body: String,
    removed: bool,
    at_ms: u64,
    login_ms: u64,
    last_revoke_ms: Option<u64>,
}

#[derive(Default)]
struct Stats {
    by_status: BTreeMap<(usize, u16), u64>,
    latency_us: [Vec<u32>; Route::ALL.len()],
    transport_errors: u64,
    errors: Vec<String>,
    logins: u64,
    logouts: u64,
    final_logouts: u64,
    rotations: u64,
    /// New tokens on reads and writes: the periodic rotation.
    periodic_rotations: u64,
    ended_by_revoke: u64,
    lost: Vec<Lost>,
    wrong_user: u64,
    revoked_but_served: u64,
    odd: Vec<String>,
    odd_count: u64,
    writes_acked: u64,
    lost_increments: u64,
    sessions_with_lost_increments: u64,
    increments_ahead: u64,
}

impl Stats {
    fn merge(&mut self, o: Stats) {
        for (k, v) in o.by_status {
            *self.by_status.entry(k).or_default() += v;
        }
        for (mine, theirs) in self.latency_us.iter_mut().zip(o.latency_us) {
            mine.extend(theirs);
        }
        self.transport_errors += o.transport_errors;
        self.errors.extend(o.errors);
        self.logins += o.logins;
        self.logouts += o.logouts;
        self.final_logouts += o.final_logouts;
        self.rotations += o.rotations;
        self.periodic_rotations += o.periodic_rotations;
        self.ended_by_revoke += o.ended_by_revoke;
        self.lost.extend(o.lost);
        self.wrong_user += o.wrong_user;
        self.revoked_but_served += o.revoked_but_served;
        self.odd.extend(o.odd);
        self.odd_count += o.odd_count;
        self.writes_acked += o.writes_acked;
        self.lost_increments += o.lost_increments;
        self.sessions_with_lost_increments += o.sessions_with_lost_increments;
        self.increments_ahead += o.increments_ahead;
    }

    fn oddity(&mut self, what: String) {
        self.odd_count += 1;
        if self.odd.len() < 5 {
            self.odd.push(what);
        }
    }

    fn requests(&self) -> u64 {
        self.by_status.values().sum()
    }
}

// ----------------------------------------------------------------- client

/// One simulated client: a browser with one cookie and one counter.
struct Client {
    idx: usize,
    conn: Conn,
    token: Option<String>,
    user: String,
    logged_in: bool,
    login_sent: Instant,
    login_done: Instant,
    /// The counter as last acknowledged in this session; `None` when
    /// unknown (after an error).
    count: Option<u64>,
    /// This session had a lost increment already (counted once).
    lost_here: bool,
    /// A request failed without an answer: the session's state is unknown
    /// until the next login, so its end is not judged.
    unsure: bool,
}

/// What one request gave.
struct Outcome {
    answer: Answer,
    sent: Instant,
    done: Instant,
    new_token: bool,
}

impl Client {
    fn new(idx: usize, port: u16) -> Self {
        let now = Instant::now();
        Client {
            idx,
            conn: Conn::new(port, true),
            token: None,
            user: String::new(),
            logged_in: false,
            login_sent: now,
            login_done: now,
            count: None,
            lost_here: false,
            unsure: false,
        }
    }

    async fn call(&mut self, route: Route, path: &str, stats: &mut Stats) -> Option<Outcome> {
        let sent = Instant::now();
        let result = self
            .conn
            .request(route.method(), path, self.token.as_deref())
            .await;
        let done = Instant::now();
        match result {
            Ok(answer) => {
                *stats
                    .by_status
                    .entry((route.index(), answer.status))
                    .or_default() += 1;
                let us = done.duration_since(sent).as_micros().min(u32::MAX as u128) as u32;
                stats.latency_us[route.index()].push(us);
                let mut new_token = false;
                if let Some(t) = &answer.token {
                    new_token = self.token.as_ref() != Some(t);
                    self.token = Some(t.clone());
                }
                if answer.removed {
                    self.token = None;
                }
                Some(Outcome {
                    answer,
                    sent,
                    done,
                    new_token,
                })
            }
            Err(e) => {
                stats.transport_errors += 1;
                if stats.errors.len() < 5 {
                    stats.errors.push(e);
                }
                self.unsure = true;
                self.count = None;
                tokio::time::sleep(Duration::from_millis(50)).await;
                None
            }
        }
    }

    async fn login(&mut self, user: String, shared: &Shared, stats: &mut Stats) {
        let Some(out) = self
            .call(Route::Login, &format!("/login/{user}"), stats)
            .await
        else {
            return;
        };
        if out.answer.status != 200 {
            return;
        }
        match parse_ok(&out.answer.body) {
            Some((u, n)) => {
                if u != user {
                    stats.wrong_user += 1;
                    stats.oddity(format!("login as {user} answered {:?}", out.answer.body));
                }
                if n != 0 {
                    stats.oddity(format!(
                        "login as {user} from no live session carried n = {n}"
                    ));
                }
                if !out.new_token {
                    stats.oddity(format!("login as {user} set no new cookie"));
                }
                self.user = user;
                self.logged_in = true;
                self.login_sent = out.sent;
                self.login_done = out.done;
                self.count = Some(n);
                self.lost_here = false;
                self.unsure = false;
                stats.logins += 1;
                shared.set_current(self.idx, Some(&self.user));
            }
            None => stats.oddity(format!("login answered {:?}", out.answer.body)),
        }
    }

    /// A request of a logged-in client: `Read`, `Write`, `Rotate` or
    /// `Logout`.
    async fn act(&mut self, route: Route, shared: &Shared, stats: &mut Stats, last: bool) {
        let path = match route {
            Route::Read => "/read",
            Route::Write => "/write",
            Route::Rotate => "/rotate",
            _ => "/logout",
        };
        let Some(out) = self.call(route, path, stats).await else {
            return;
        };
        let a = &out.answer;
        if route == Route::Logout && a.status == 200 && a.body == "bye" {
            if !a.removed {
                stats.oddity("a logout did not clear the cookie".into());
            }
            if last {
                stats.final_logouts += 1;
            } else {
                stats.logouts += 1;
            }
            self.logged_out(shared);
            return;
        }
        let ended = a.body == "anon" || a.status == 401 || a.removed;
        if ended {
            if self.logged_in && !self.unsure {
                if shared.revoke_excuses(&self.user, self.login_sent, out.done) {
                    stats.ended_by_revoke += 1;
                } else {
                    stats.lost.push(Lost {
                        client: self.idx,
                        user: self.user.clone(),
                        route,
                        status: a.status,
                        body: a.body.chars().take(60).collect(),
                        removed: a.removed,
                        at_ms: shared.ms(out.done),
                        login_ms: shared.ms(self.login_sent),
                        last_revoke_ms: shared.last_revoke_ms(&self.user),
                    });
                }
            }
            self.logged_out(shared);
            return;
        }
        if a.status != 200 {
            // e.g. a 503: whether a write happened is unknown.
            self.count = None;
            return;
        }
        let Some((u, n)) = parse_ok(&a.body) else {
            stats.oddity(format!("{} answered {:?}", route.name(), a.body));
            self.count = None;
            return;
        };
        if u != self.user {
            stats.wrong_user += 1;
            stats.oddity(format!(
                "client of {} got {:?} from {}",
                self.user,
                a.body,
                route.name()
            ));
        }
        if shared.revoked_before(&self.user, self.login_done, out.sent) {
            stats.revoked_but_served += 1;
            stats.oddity(format!(
                "{} of {} served after a revoke-all of the user had finished",
                route.name(),
                self.user
            ));
        }
        let expected = match route {
            Route::Write => {
                stats.writes_acked += 1;
                self.count.map(|c| c + 1)
            }
            _ => self.count,
        };
        if let Some(e) = expected {
            if n < e {
                stats.lost_increments += e - n;
                if !self.lost_here {
                    self.lost_here = true;
                    stats.sessions_with_lost_increments += 1;
                }
                stats.oddity(format!(
                    "{} of {} saw n = {n}, expected {e}",
                    route.name(),
                    self.user
                ));
            } else if n > e {
                stats.increments_ahead += n - e;
            }
        }
        self.count = Some(n);
        match route {
            Route::Rotate if out.new_token => stats.rotations += 1,
            Route::Rotate => stats.oddity("a rotate set no new cookie".into()),
            _ if out.new_token => stats.periodic_rotations += 1,
            _ => {}
        }
    }

    fn logged_out(&mut self, shared: &Shared) {
        self.logged_in = false;
        self.count = None;
        shared.set_current(self.idx, None);
    }
}

/// A client's loop until the deadline. Returns the client (its final
/// state) and what it saw.
async fn run_client(
    mut client: Client,
    shared: Arc<Shared>,
    mut rng: Rng,
    users: u64,
) -> (Client, Stats) {
    let mut stats = Stats::default();
    while Instant::now() < shared.stop_at {
        if !client.logged_in {
            let user = format!("user-{:03}", rng.below(users));
            client.login(user, &shared, &mut stats).await;
            continue;
        }
        let route = match rng.below(100) {
            0..=64 => Route::Read,
            65..=89 => Route::Write,
            90..=96 => Route::Rotate,
            _ => Route::Logout,
        };
        client.act(route, &shared, &mut stats, false).await;
    }
    (client, stats)
}

/// Logs the client out if it may still hold a live session.
async fn final_logout(mut client: Client, shared: Arc<Shared>) -> Stats {
    let mut stats = Stats::default();
    if client.token.is_some() && (client.logged_in || client.unsure) {
        client.act(Route::Logout, &shared, &mut stats, true).await;
    }
    stats
}

/// One admin call as reported.
struct AdminCall {
    status: Option<u16>,
    ended: u64,
}

/// Every `every`, `revoke-all` of a user: three times in four a user some
/// client is logged in as, else any user of the pool.
async fn run_admin(
    shared: Arc<Shared>,
    mut rng: Rng,
    users: u64,
    every: Duration,
) -> (Vec<AdminCall>, Stats) {
    let mut stats = Stats::default();
    let mut calls = Vec::new();
    let mut conn = Conn::new(shared.port, false);
    let mut next = shared.t0 + every;
    while next < shared.stop_at {
        tokio::time::sleep_until(next.into()).await;
        next += every;
        let logged: Vec<String> = {
            let current = shared.current.lock().unwrap_or_else(|e| e.into_inner());
            current.iter().flatten().cloned().collect()
        };
        let user = if !logged.is_empty() && rng.below(4) != 0 {
            logged[rng.below(logged.len() as u64) as usize].clone()
        } else {
            format!("user-{:03}", rng.below(users))
        };
        let sent = Instant::now();
        let slot = {
            let mut revokes = shared.revokes.lock().unwrap_or_else(|e| e.into_inner());
            let list = revokes.entry(user.clone()).or_default();
            list.push(Revoke {
                sent,
                done: None,
                ok: false,
            });
            list.len() - 1
        };
        let path = format!("/admin/revoke-all/{user}");
        let result = conn.request("POST", &path, None).await;
        let done = Instant::now();
        let (status, ended) = match &result {
            Ok(a) => (Some(a.status), a.body.parse().unwrap_or(0)),
            Err(_) => (None, 0),
        };
        {
            let mut revokes = shared.revokes.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(r) = revokes.get_mut(&user).and_then(|l| l.get_mut(slot)) {
                r.done = result.is_ok().then_some(done);
                r.ok = status == Some(200);
            }
        }
        match result {
            Ok(a) => {
                *stats
                    .by_status
                    .entry((Route::Admin.index(), a.status))
                    .or_default() += 1;
                stats.latency_us[Route::Admin.index()]
                    .push(done.duration_since(sent).as_micros().min(u32::MAX as u128) as u32);
            }
            Err(e) => {
                stats.transport_errors += 1;
                stats.errors.push(e);
            }
        }
        calls.push(AdminCall { status, ended });
    }
    (calls, stats)
}

// ----------------------------------------------------------- Redis checks

/// The keys under the prefix, by kind.
#[derive(Default)]
struct KeyCensus {
    dbsize: u64,
    sessions: u64,
    moved: u64,
    alias: u64,
    index: u64,
    lock: u64,
    other: u64,
    /// Keys without a TTL.
    persistent: u64,
    examples: Vec<String>,
}

impl KeyCensus {
    fn total(&self) -> u64 {
        self.sessions + self.moved + self.alias + self.index + self.lock + self.other
    }

    fn take(redis: &mut Resp) -> Result<Self, String> {
        let mut c = KeyCensus {
            dbsize: int(redis.cmd(&["DBSIZE"])?)?.max(0) as u64,
            ..KeyCensus::default()
        };
        let pattern = format!("{PREFIX}:*");
        let mut keys = Vec::new();
        let mut cursor = "0".to_owned();
        loop {
            let reply = redis.cmd(&["SCAN", &cursor, "MATCH", &pattern, "COUNT", "1000"])?;
            let Reply::Array(Some(mut parts)) = reply else {
                return Err(format!("SCAN: unexpected reply {reply:?}"));
            };
            let (Some(Reply::Array(Some(batch))), Some(Reply::Bulk(Some(next)))) =
                (parts.pop(), parts.pop())
            else {
                return Err("SCAN: unexpected reply".into());
            };
            keys.extend(batch.into_iter().filter_map(|k| match k {
                Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(&b).into_owned()),
                _ => None,
            }));
            cursor = String::from_utf8_lossy(&next).into_owned();
            if cursor == "0" {
                break;
            }
        }
        keys.sort();
        keys.dedup();
        for key in keys {
            let pttl = int(redis.cmd(&["PTTL", &key])?)?;
            if pttl == -2 {
                continue; // expired or deleted meanwhile
            }
            if pttl == -1 {
                c.persistent += 1;
            }
            let kind = if key.ends_with(":idx") {
                c.index += 1;
                "index"
            } else if key.contains(":l:") {
                c.lock += 1;
                "lock"
            } else if key.contains(":s:") {
                let marks = redis
                    .cmd(&["HMGET", &key, "@moved", "@alias"])
                    .unwrap_or(Reply::Array(None));
                let set = |i: usize| match &marks {
                    Reply::Array(Some(v)) => matches!(v.get(i), Some(Reply::Bulk(Some(_)))),
                    _ => false,
                };
                if set(0) {
                    c.moved += 1;
                    "moved marker"
                } else if set(1) {
                    c.alias += 1;
                    "alias marker"
                } else if int(redis.cmd(&["EXISTS", &key])?)? == 0 {
                    continue; // a marker that expired since SCAN
                } else {
                    c.sessions += 1;
                    "session"
                }
            } else {
                c.other += 1;
                "other"
            };
            if c.examples.len() < 5 {
                let fields = match redis.cmd(&["HKEYS", &key]) {
                    Ok(Reply::Array(Some(f))) => f
                        .into_iter()
                        .filter_map(|f| match f {
                            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(&b).into_owned()),
                            _ => None,
                        })
                        .collect::<Vec<_>>()
                        .join(","),
                    _ => String::new(),
                };
                c.examples.push(format!(
                    "{key} ({kind}, pttl {pttl} ms{})",
                    if fields.is_empty() {
                        String::new()
                    } else {
                        format!(", fields {fields}")
                    }
                ));
            }
        }
        Ok(c)
    }

    fn summary(&self) -> String {
        let mut parts = Vec::new();
        for (n, what) in [
            (self.sessions, "sessions"),
            (self.moved, "moved"),
            (self.alias, "alias"),
            (self.index, "index"),
            (self.lock, "lock"),
            (self.other, "other"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        if self.persistent > 0 {
            parts.push(format!("{} WITHOUT TTL", self.persistent));
        }
        if parts.is_empty() {
            format!("{}", self.total())
        } else {
            format!("{} ({})", self.total(), parts.join(", "))
        }
    }
}

fn int(reply: Reply) -> Result<i64, String> {
    match reply {
        Reply::Int(n) => Ok(n),
        other => Err(format!("expected an integer, got {other:?}")),
    }
}

/// Numeric fields of `INFO <section>`.
fn info_fields(redis: &mut Resp, section: &str) -> Result<HashMap<String, u64>, String> {
    let info = redis.simple(&["INFO", section])?;
    Ok(info
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect())
}

/// One column of the memory and keys table.
struct Snapshot {
    rss_kib: Option<u64>,
    redis_bytes: u64,
    /// `INFO memory` and `INFO stats` fields.
    info: HashMap<String, u64>,
    keys: KeyCensus,
}

impl Snapshot {
    fn take(server: &ServerProc, redis: &mut Resp) -> Result<Self, String> {
        let mut info = info_fields(redis, "memory")?;
        info.extend(info_fields(redis, "stats")?);
        Ok(Snapshot {
            rss_kib: server.status_kib("VmRSS"),
            redis_bytes: info.get("used_memory").copied().unwrap_or(0),
            info,
            keys: KeyCensus::take(redis)?,
        })
    }

    fn field(&self, name: &str) -> String {
        self.info
            .get(name)
            .map_or("?".to_owned(), |n| thousands(*n))
    }
}

// ------------------------------------------------------------------- main

pub fn main(args: &[String]) -> Result<(), String> {
    let opts = Options::parse(args)?;
    if !procs::installed("redis-server", "--version") {
        return Err(
            "redis-server not found: install it with `apt-get install redis-server`, then run again"
                .into(),
        );
    }
    let machine = crate::machine::describe();
    eprintln!("machine: {machine}");
    eprintln!("seed: {}", opts.seed);

    let redis = RedisServer::start()?;
    let mut rc = Resp::connect(redis.port)?;
    let redis_version = rc.version()?;
    let url = redis.url();
    let mut server = ServerProc::spawn("soak service", |port| {
        vec![
            "soak-serve".to_owned(),
            opts.store.name().to_owned(),
            port.to_string(),
            url.clone(),
            opts.server_threads.to_string(),
            opts.grace_ms.to_string(),
            opts.rotation_ms.to_string(),
        ]
    })?;
    // Let the service settle (connections, cache tracking) before "before".
    std::thread::sleep(Duration::from_millis(500));
    let before = Snapshot::take(&server, &mut rc)?;
    eprintln!(
        "service pid {} on 127.0.0.1:{}, redis-server on port {}, store {}; {} clients for {} s",
        server.pid(),
        server.port,
        redis.port,
        opts.store.name(),
        opts.connections,
        opts.duration
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let shared = Arc::new(Shared {
        port: server.port,
        t0,
        stop_at: t0 + Duration::from_secs(opts.duration),
        revokes: Mutex::new(HashMap::new()),
        current: Mutex::new(vec![None; opts.connections]),
    });

    // Load.
    let pid_rss = {
        let pid = server.pid();
        move || {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                })
        }
    };
    let (clients, mut stats, admin_calls, peak_rss_kib) = rt.block_on(async {
        let sampler = {
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                let mut peak = 0u64;
                while Instant::now() < shared.stop_at {
                    if let Some(kib) = pid_rss() {
                        peak = peak.max(kib);
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                peak
            })
        };
        let admin = tokio::spawn(run_admin(
            Arc::clone(&shared),
            Rng::new(opts.seed ^ 0xAD),
            opts.users,
            Duration::from_millis(opts.admin_every_ms),
        ));
        let tasks: Vec<_> = (0..opts.connections)
            .map(|i| {
                tokio::spawn(run_client(
                    Client::new(i, shared.port),
                    Arc::clone(&shared),
                    Rng::new(opts.seed.wrapping_add(i as u64 + 1)),
                    opts.users,
                ))
            })
            .collect();
        let mut stats = Stats::default();
        let mut clients = Vec::new();
        for t in tasks {
            let (client, s) = t.await.map_err(|e| format!("client task: {e}"))?;
            stats.merge(s);
            clients.push(client);
        }
        let (calls, admin_stats) = admin.await.map_err(|e| format!("admin task: {e}"))?;
        stats.merge(admin_stats);
        let peak = sampler.await.map_err(|e| format!("sampler: {e}"))?;
        Ok::<_, String>((clients, stats, calls, peak))
    })?;
    let load_secs = t0.elapsed().as_secs_f64();
    let end = Snapshot::take(&server, &mut rc)?;

    // Every client logs out.
    let final_stats = rt.block_on(async {
        let tasks: Vec<_> = clients
            .into_iter()
            .map(|c| tokio::spawn(final_logout(c, Arc::clone(&shared))))
            .collect();
        let mut stats = Stats::default();
        for t in tasks {
            stats.merge(t.await.map_err(|e| format!("logout task: {e}"))?);
        }
        Ok::<_, String>(stats)
    })?;
    stats.merge(final_stats);
    let after_logout = Snapshot::take(&server, &mut rc)?;
    let wait = Duration::from_millis(opts.grace_ms) + Duration::from_millis(1500);
    std::thread::sleep(wait);
    let after_grace = Snapshot::take(&server, &mut rc)?;
    let hwm_kib = server.status_kib("VmHWM");
    let alive = server.check_alive();

    let (report, failures) = render(
        &opts,
        &machine,
        &redis_version,
        load_secs,
        &stats,
        &admin_calls,
        [&before, &end, &after_logout, &after_grace],
        peak_rss_kib,
        hwm_kib,
        wait,
        alive.err(),
    );
    print!("{report}");
    drop(server);
    drop(redis);
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("soak FAILED: {}", failures.join("; ")))
    }
}

// ----------------------------------------------------------------- report

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("?".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

fn percentile(sorted: &[u32], p: f64) -> String {
    if sorted.is_empty() {
        return "-".into();
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    let us = sorted[i.min(sorted.len() - 1)] as f64;
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

#[allow(clippy::too_many_arguments)]
fn render(
    opts: &Options,
    machine: &str,
    redis_version: &str,
    load_secs: f64,
    stats: &Stats,
    admin: &[AdminCall],
    snaps: [&Snapshot; 4],
    peak_rss_kib: u64,
    hwm_kib: Option<u64>,
    waited: Duration,
    died: Option<String>,
) -> (String, Vec<String>) {
    let mut o = String::new();
    let secs = |ms: u64| {
        if ms < 1000 {
            format!("{ms} ms")
        } else if ms.is_multiple_of(1000) {
            format!("{} s", ms / 1000)
        } else {
            format!("{:.1} s", ms as f64 / 1000.0)
        }
    };
    let _ = writeln!(
        o,
        "== sessionkit soak: axum + RedisStore{}",
        if opts.store == StoreKind::RedisCache {
            " with the client-side cache"
        } else {
            ""
        }
    );
    let _ = writeln!(o, "machine: {machine}");
    let _ = writeln!(
        o,
        "setup: {} s, {} clients (one keep-alive connection each), {} users, revoke-all every {}; \
         service: {} worker threads, rotation_grace {}, rotation_interval {}, touch_interval 5 s; \
         Redis {redis_version}; all over 127.0.0.1; seed {}",
        opts.duration,
        opts.connections,
        opts.users,
        secs(opts.admin_every_ms),
        opts.server_threads,
        secs(opts.grace_ms),
        if opts.rotation_ms == 0 {
            "off".to_owned()
        } else {
            secs(opts.rotation_ms)
        },
        opts.seed
    );
    let total = stats.requests();
    let _ = writeln!(
        o,
        "requests: {} in {load_secs:.1} s of load ({}/s) + {} final logouts; transport errors {}",
        thousands(total.saturating_sub(stats.final_logouts)),
        thousands((total.saturating_sub(stats.final_logouts) as f64 / load_secs.max(0.001)) as u64),
        stats.final_logouts,
        stats.transport_errors
    );
    for e in &stats.errors {
        let _ = writeln!(o, "  error: {e}");
    }

    // Responses by route and status.
    let statuses: BTreeSet<u16> = stats.by_status.keys().map(|&(_, s)| s).collect();
    let _ = write!(o, "\n{:<11} {:>10}", "route", "requests");
    for s in &statuses {
        let _ = write!(o, " {:>10}", s);
    }
    let _ = writeln!(o, " {:>9} {:>9}", "p50", "p99");
    let mut fives = 0;
    for route in Route::ALL {
        let n: u64 = stats
            .by_status
            .iter()
            .filter(|((r, _), _)| *r == route.index())
            .map(|(_, n)| n)
            .sum();
        let _ = write!(o, "{:<11} {:>10}", route.name(), thousands(n));
        for s in &statuses {
            let c = stats
                .by_status
                .get(&(route.index(), *s))
                .copied()
                .unwrap_or(0);
            let _ = write!(o, " {:>10}", thousands(c));
            if *s >= 500 {
                fives += c;
            }
        }
        let mut lat = stats.latency_us[route.index()].clone();
        lat.sort_unstable();
        let _ = writeln!(
            o,
            " {:>9} {:>9}",
            percentile(&lat, 0.5),
            percentile(&lat, 0.99)
        );
    }
    let _ = write!(o, "{:<11} {:>10}", "all", thousands(total));
    for s in &statuses {
        let c: u64 = stats
            .by_status
            .iter()
            .filter(|((_, st), _)| st == s)
            .map(|(_, n)| n)
            .sum();
        let _ = write!(o, " {:>10}", thousands(c));
    }
    let _ = writeln!(o);

    // What the clients saw.
    let _ = writeln!(
        o,
        "\nclients: {} logins, {} logouts (+{} at the end), {} rotations, {} periodic token rotations",
        thousands(stats.logins),
        thousands(stats.logouts),
        stats.final_logouts,
        thousands(stats.rotations),
        thousands(stats.periodic_rotations)
    );
    let ended_by_admin: u64 = admin.iter().map(|a| a.ended).sum();
    let admin_ok = admin.iter().filter(|a| a.status == Some(200)).count();
    let _ = writeln!(
        o,
        "admin: {} revoke-all calls ({} answered 200), sessions ended by them: {}; clients that found themselves logged out by them: {}",
        admin.len(),
        admin_ok,
        ended_by_admin,
        stats.ended_by_revoke
    );
    let _ = writeln!(
        o,
        "sessions lost: {}; answers naming another user: {}; revoked sessions still served: {}",
        stats.lost.len(),
        stats.wrong_user,
        stats.revoked_but_served
    );
    for l in stats.lost.iter().take(5) {
        let _ = writeln!(
            o,
            "  lost: client {} ({}) logged in at {} ms, {} at {} ms: {} {:?}{}; last revoke-all of {}: {}",
            l.client,
            l.user,
            l.login_ms,
            l.route.name(),
            l.at_ms,
            l.status,
            l.body,
            if l.removed { ", cookie cleared" } else { "" },
            l.user,
            l.last_revoke_ms
                .map_or("never".to_owned(), |ms| format!("{ms} ms"))
        );
    }
    let _ = writeln!(
        o,
        "counter: {} writes acknowledged; lost increments {} (in {} sessions); increments from nowhere {}",
        thousands(stats.writes_acked),
        stats.lost_increments,
        stats.sessions_with_lost_increments,
        stats.increments_ahead
    );
    if stats.odd_count > 0 {
        let _ = writeln!(o, "oddities: {}", stats.odd_count);
        for x in &stats.odd {
            let _ = writeln!(o, "  {x}");
        }
    }

    // Memory and keys.
    let [before, end, logout, grace] = snaps;
    let _ = writeln!(
        o,
        "\n{:<22} {:>14} {:>14} {:>14} {:>14}",
        "",
        "before load",
        "end of load",
        "after logout",
        format!("+{:.1} s", waited.as_secs_f64())
    );
    let _ = writeln!(
        o,
        "{:<22} {:>14} {:>14} {:>14} {:>14}",
        "service RSS",
        mib(before.rss_kib),
        mib(end.rss_kib),
        mib(logout.rss_kib),
        mib(grace.rss_kib)
    );
    let _ = writeln!(
        o,
        "{:<22} {:>14} {:>14} {:>14} {:>14}",
        "redis used_memory",
        mib(Some(before.redis_bytes / 1024)),
        mib(Some(end.redis_bytes / 1024)),
        mib(Some(logout.redis_bytes / 1024)),
        mib(Some(grace.redis_bytes / 1024))
    );
    for (label, field) in [
        ("  of which overhead", "used_memory_overhead"),
        ("  of which clients", "mem_clients_normal"),
        ("redis tracked keys", "tracking_total_keys"),
    ] {
        let _ = writeln!(
            o,
            "{:<22} {:>14} {:>14} {:>14} {:>14}",
            label,
            before.field(field),
            end.field(field),
            logout.field(field),
            grace.field(field)
        );
    }
    let _ = writeln!(
        o,
        "{:<22} {:>14} {:>14} {:>14} {:>14}",
        "redis keys (DBSIZE)",
        before.keys.dbsize,
        end.keys.dbsize,
        logout.keys.dbsize,
        grace.keys.dbsize
    );
    let _ = writeln!(
        o,
        "service RSS peak: {} sampled every 250 ms during the load, {} VmHWM",
        mib(Some(peak_rss_kib)),
        mib(hwm_kib)
    );
    let _ = writeln!(
        o,
        "keys under {PREFIX}:* (SCAN): end of load {}; right after logout {}; after the grace {}",
        end.keys.summary(),
        logout.keys.summary(),
        grace.keys.summary()
    );
    for e in &grace.keys.examples {
        let _ = writeln!(o, "  left: {e}");
    }

    let mut failures = Vec::new();
    if !stats.lost.is_empty() {
        failures.push(format!("{} sessions lost", stats.lost.len()));
    }
    if fives > 0 {
        failures.push(format!("{fives} responses 5xx"));
    }
    if grace.keys.total() > 0 {
        failures.push(format!("{} keys left after the grace", grace.keys.total()));
    }
    if stats.transport_errors > 0 {
        failures.push(format!("{} transport errors", stats.transport_errors));
    }
    if stats.wrong_user > 0 {
        failures.push(format!("{} answers naming another user", stats.wrong_user));
    }
    if stats.revoked_but_served > 0 {
        failures.push(format!(
            "{} requests served a session after its revoke-all",
            stats.revoked_but_served
        ));
    }
    if stats.lost_increments > 0 {
        failures.push(format!("{} counter increments lost", stats.lost_increments));
    }
    // Redis's tracking table (`CLIENT TRACKING`, the client-side cache)
    // should hold about nothing once every session is gone; entries that
    // outlive their keys grow with traffic.
    let tracked = grace.info.get("tracking_total_keys").copied().unwrap_or(0);
    if tracked > (stats.logins + stats.rotations + stats.periodic_rotations) / 10 {
        failures.push(format!(
            "Redis still tracks {tracked} keys for the client cache after every session ended"
        ));
    }
    if let Some(d) = died {
        failures.push(format!("the service died: {d}"));
    }
    let _ = writeln!(
        o,
        "result: {}",
        if failures.is_empty() {
            "PASS".to_owned()
        } else {
            format!("FAIL ({})", failures.join("; "))
        }
    );
    (o, failures)
}

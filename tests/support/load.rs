//! Steady HTTP load for the topology suites (`topology_failover.rs`,
//! `topology_reshard.rs`): a few looping clients against an app on a real
//! HTTP server, each working sessions of its own that were made before the
//! load started, every response recorded. Then the figures drawn from the
//! records: statuses counted, the 503 window, the recovery time, lost
//! sessions and lost writes.
//!
//! The app must serve the standard routes of `tests/http_client`
//! (`/get/{key}`, `/incr`) and [`ME`], which answers the user id of a
//! logged-in session and `401` otherwise.
//!
//! Every loop is bounded: each request by [`REQUEST_TIMEOUT`] (a request
//! that takes longer counts as a failure, never a hang), the whole load by
//! [`MAX_LOAD`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{COOKIE, SET_COOKIE};

/// The route that answers the user id of a logged-in session, `401` for an
/// anonymous (or revoked) one.
pub const ME: &str = "/me";

/// The client-side limit of one request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest a load runs, whatever the test does.
pub const MAX_LOAD: Duration = Duration::from_secs(60);

/// What one request was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    /// `/get/n` on a live session: answers its counter.
    Read,
    /// `/incr` on a live session: increments its counter.
    Incr,
    /// [`ME`] with the token of a session revoked before the failover.
    Revoked,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Read => "read",
            Op::Incr => "incr",
            Op::Revoked => "revoked",
        })
    }
}

/// A live session the load works on: its token and the counter `n` it
/// holds (acknowledged by a 2xx, and replicated, before the load starts).
#[derive(Debug, Clone)]
pub struct LiveSession {
    pub token: String,
    pub n: u64,
}

/// One request as a client saw it.
#[derive(Debug, Clone)]
pub struct Sample {
    pub client: usize,
    /// Index into the client's live sessions (or the revoked list).
    pub session: usize,
    pub op: Op,
    pub started: Instant,
    pub ended: Instant,
    /// The status code, or the client error (a timeout, a dropped
    /// connection).
    pub status: Result<u16, String>,
    pub body: String,
    /// For a live session: the highest counter a 2xx had acknowledged
    /// before this request started.
    pub floor: u64,
    /// The response replaced or removed the session cookie.
    pub cookie_changed: bool,
}

impl Sample {
    pub fn is(&self, status: u16) -> bool {
        self.status.as_ref().ok() == Some(&status)
    }

    pub fn is_2xx(&self) -> bool {
        matches!(self.status, Ok(s) if (200..300).contains(&s))
    }

    /// Not a sign of health: a 503 or anything that is neither the healthy
    /// answer of its op nor a 503.
    pub fn is_unhealthy(&self) -> bool {
        match self.op {
            Op::Read | Op::Incr => !self.is(200),
            Op::Revoked => !self.is(401),
        }
    }

    /// The counter a 2xx read or incr answered.
    pub fn value(&self) -> Option<u64> {
        match self.op {
            Op::Read | Op::Incr if self.is(200) => self.body.parse().ok(),
            _ => None,
        }
    }

    fn label(&self) -> String {
        match &self.status {
            Ok(s) => format!("{} {s}", self.op),
            Err(_) => format!("{} client error", self.op),
        }
    }
}

/// Looping clients; see the [module docs](self).
pub struct Load {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    revoked: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub started: Instant,
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("HTTP client")
}

/// `id=<token>` from a `Set-Cookie` for the session cookie (empty for a
/// removal).
fn set_cookie(res: &reqwest::Response) -> Option<String> {
    res.headers().get_all(SET_COOKIE).iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let rest = v.strip_prefix("id=")?;
        let value = rest.split(';').next().unwrap_or_default();
        let removal = value.is_empty() || v.contains("Max-Age=0");
        Some(if removal {
            String::new()
        } else {
            value.to_owned()
        })
    })
}

/// One `GET` with the session cookie; the status (or client error), the
/// body, and the session cookie the response sets, if any.
pub async fn get(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    token: &str,
) -> (Result<u16, String>, String, Option<String>) {
    let sent = http
        .get(format!("{base}{path}"))
        .header(COOKIE, format!("id={token}"))
        .send()
        .await;
    match sent {
        Ok(res) => {
            let cookie = set_cookie(&res);
            let status = res.status().as_u16();
            match res.text().await {
                Ok(body) => (Ok(status), body, cookie),
                Err(e) => (Err(format!("reading the body: {e}")), String::new(), cookie),
            }
        }
        Err(e) => (Err(e.to_string()), String::new(), None),
    }
}

impl Load {
    /// Starts one client per entry of `sessions`; each loops over its own
    /// sessions (a read, then an incr, of each in turn), and probes one of
    /// the [`revoked`](Self::revoke) tokens (if any) after each round trip.
    pub fn start(base: &str, sessions: Vec<Vec<LiveSession>>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let revoked: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let tasks = sessions
            .into_iter()
            .enumerate()
            .map(|(client, mut mine)| {
                let (stop, samples, revoked) = (
                    Arc::clone(&stop),
                    Arc::clone(&samples),
                    Arc::clone(&revoked),
                );
                let base = base.to_owned();
                tokio::spawn(async move {
                    let http = http_client();
                    let mut round = client;
                    while !stop.load(Ordering::SeqCst) && started.elapsed() < MAX_LOAD {
                        let i = round % mine.len();
                        for op in [Op::Read, Op::Incr] {
                            let s = &mut mine[i];
                            let path = if op == Op::Read { "/get/n" } else { "/incr" };
                            let floor = s.n;
                            let t0 = Instant::now();
                            let (status, body, cookie) = get(&http, &base, path, &s.token).await;
                            let sample = Sample {
                                client,
                                session: i,
                                op,
                                started: t0,
                                ended: Instant::now(),
                                status,
                                body,
                                floor,
                                cookie_changed: cookie.is_some_and(|c| c != s.token),
                            };
                            if let Some(v) = sample.value() {
                                s.n = s.n.max(v);
                            }
                            samples.lock().unwrap().push(sample);
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        let probe = {
                            let r = revoked.lock().unwrap();
                            (!r.is_empty()).then(|| (round % r.len(), r[round % r.len()].clone()))
                        };
                        if let Some((j, token)) = probe {
                            let t0 = Instant::now();
                            let (status, body, cookie) = get(&http, &base, ME, &token).await;
                            samples.lock().unwrap().push(Sample {
                                client,
                                session: j,
                                op: Op::Revoked,
                                started: t0,
                                ended: Instant::now(),
                                status,
                                body,
                                floor: 0,
                                cookie_changed: cookie.is_some_and(|c| !c.is_empty()),
                            });
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        round += 1;
                    }
                })
            })
            .collect();
        Load {
            stop,
            samples,
            revoked,
            tasks,
            started,
        }
    }

    /// From now on the clients also probe `token` (of a session just
    /// revoked) with [`ME`].
    pub fn revoke(&self, token: String) {
        self.revoked.lock().unwrap().push(token);
    }

    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap().clone()
    }

    /// Waits until every request that started after `since` was healthy
    /// for `stretch` (and each client completed at least 3 healthy
    /// requests in it), and answers when that stretch began: the end of the
    /// last unhealthy response, or `since` if there was none after it.
    /// Panics if no such stretch began within `limit` of `since`.
    pub async fn until_stable(
        &self,
        since: Instant,
        stretch: Duration,
        limit: Duration,
    ) -> Instant {
        let clients = self.tasks.len();
        loop {
            let samples = self.samples();
            let from = samples
                .iter()
                .filter(|s| s.is_unhealthy())
                .map(|s| s.ended)
                .max()
                .map_or(since, |t| t.max(since));
            assert!(
                from <= since + limit,
                "an unhealthy response {:?} after the new primary took over (limit {limit:?}): {}",
                from - since,
                counts_line(&samples)
            );
            let now = Instant::now();
            let healthy_per_client = (0..clients)
                .map(|c| {
                    samples
                        .iter()
                        .filter(|s| s.client == c && s.started > from)
                        .count()
                })
                .min()
                .unwrap_or(0);
            if now >= from + stretch && healthy_per_client >= 3 {
                return from;
            }
            assert!(
                now < since + limit + stretch + Duration::from_secs(5),
                "the service did not stay up for {stretch:?} within {limit:?} of the new primary \
                 taking over: {}",
                counts_line(&samples)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the clients, waits for them, and answers every sample.
    pub async fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            task.await.expect("a load client panicked");
        }
        let samples = self.samples.lock().unwrap().clone();
        samples
    }
}

/// Responses counted by op and status (`"read 200"`, `"incr 503"`,
/// `"revoked 401"`, `"read client error"`).
pub fn counts(samples: &[Sample]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for s in samples {
        *out.entry(s.label()).or_insert(0) += 1;
    }
    out
}

/// [`counts`] on one line.
pub fn counts_line(samples: &[Sample]) -> String {
    let all: Vec<String> = counts(samples)
        .into_iter()
        .map(|(k, n)| format!("{k}: {n}"))
        .collect();
    format!("{} requests ({})", samples.len(), all.join(", "))
}

/// The first 503's start and the last 503's end, if any.
pub fn window_503(samples: &[Sample]) -> Option<(Instant, Instant)> {
    let first = samples
        .iter()
        .filter(|s| s.is(503))
        .map(|s| s.started)
        .min()?;
    let last = samples
        .iter()
        .filter(|s| s.is(503))
        .map(|s| s.ended)
        .max()?;
    Some((first, last))
}

/// [`window_503`] in ms (0 without a 503).
pub fn window_503_ms(samples: &[Sample]) -> u128 {
    window_503(samples).map_or(0, |(a, b)| (b - a).as_millis())
}

/// The responses that break the rules of every topology suite: a live
/// session answered with neither 200 nor 503 (a 5xx other than 503, a
/// client error or timeout, anything else), a revoked one with neither 401
/// nor 503 (a 2xx would be a revoked session back alive), a live session
/// read as missing, or a cookie replaced or removed (the session was lost
/// and a new one made, or the app ended it).
pub fn violations(samples: &[Sample]) -> Vec<String> {
    let mut out = Vec::new();
    for s in samples {
        let ok = match s.op {
            Op::Read | Op::Incr => s.is(200) || s.is(503),
            Op::Revoked => s.is(401) || s.is(503),
        };
        if !ok {
            out.push(format!("unexpected status: {s:?}"));
            continue;
        }
        if matches!(s.op, Op::Read | Op::Incr) && s.is(200) && s.value().is_none() {
            out.push(format!("a live session read as missing: {s:?}"));
        }
        if s.cookie_changed {
            out.push(format!("the session cookie was replaced or removed: {s:?}"));
        }
    }
    out
}

/// 2xx reads and incrs that answered a counter below what a 2xx had
/// acknowledged for that session before they started: acknowledged writes
/// lost (which a failover after `kill -9` may do; see the suites).
pub fn regressions(samples: &[Sample]) -> Vec<&Sample> {
    samples
        .iter()
        .filter(|s| match (s.op, s.value()) {
            (Op::Read, Some(v)) => v < s.floor,
            (Op::Incr, Some(v)) => v <= s.floor,
            _ => false,
        })
        .collect()
}

/// 503s that [`read_back`] met and retried, for the figures.
#[derive(Debug, Default)]
pub struct ReadBack {
    http: Option<reqwest::Client>,
    /// `(path, how long after the load stopped)` of each retried 503.
    pub retried_503: Vec<(String, Duration)>,
}

/// How often [`read_back`] retries a 503, [`READ_BACK_PAUSE`] apart.
pub const READ_BACK_TRIES: usize = 5;

/// The pause between two tries of [`read_back`].
pub const READ_BACK_PAUSE: Duration = Duration::from_millis(500);

impl ReadBack {
    pub fn new() -> Self {
        ReadBack {
            http: Some(http_client()),
            retried_503: Vec::new(),
        }
    }

    /// `GET path` with `token` after the load: the status and body of the
    /// first answer that is not a 503. A 503 (a store call over its timeout
    /// on a busy machine) is retried up to [`READ_BACK_TRIES`] times and
    /// recorded; any other answer, wrong data included, is returned at once
    /// for the caller to judge, so a lost session is never retried away.
    pub async fn get(&mut self, base: &str, path: &str, token: &str) -> (u16, String) {
        let http = self.http.get_or_insert_with(http_client).clone();
        let t0 = Instant::now();
        for _ in 0..READ_BACK_TRIES {
            match get(&http, base, path, token).await {
                (Ok(503), _, _) => {
                    self.retried_503.push((path.to_owned(), t0.elapsed()));
                    tokio::time::sleep(READ_BACK_PAUSE).await;
                }
                (Ok(status), body, _) => return (status, body),
                (Err(e), _, _) => panic!("GET {path} after the load: {e}"),
            }
        }
        panic!(
            "GET {path} after the load: still 503 after {READ_BACK_TRIES} tries over {:?}",
            t0.elapsed()
        );
    }
}

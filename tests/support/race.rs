//! Instruments for repeated race trials: failure counts ([`Tally`]) and a
//! count of handlers in flight ([`InFlight`]).
//!
//! A race fails in some trials only, so one failing assertion says little.
//! A [`Tally`] counts every failure by kind over all trials, prints one
//! line per scenario (`lifecycle: scenario=a backend=redis fw=axum
//! trials=100 logged_out=89 ...`) and only then asserts, so a run shows how
//! often each race hits, not just that one did.

use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use sessionkit::Error;

/// The rotation interval of the race suites: short, so that Redis trials
/// (whose clock is real) cost little sleep.
pub const ROTATE_EVERY: Duration = Duration::from_millis(100);

/// The spread of request starts in the login and rotate races: wide enough
/// that some writers load before the token changes and some after.
pub const STAGGER: Duration = Duration::from_millis(20);

/// Writers racing a login, a logout or a rotation.
pub const WRITERS: usize = 5;

/// The most a [`busy`] handler awaits before its work.
pub const BUSY: Duration = Duration::from_millis(5);

/// `f` as a route handler (for any session extractor `S`) that counts in
/// `in_flight` and awaits 0..=[`BUSY`] before its work, as real handlers
/// await a database or a password hash: without an await, an in-memory
/// store runs a whole request without yielding and requests never
/// interleave.
pub fn busy<S, F, Fut>(
    in_flight: &InFlight,
    f: F,
) -> impl Fn(S, Vec<String>) -> BoxFuture<'static, Result<String, Error>> + Send + Sync
where
    F: Fn(S, Vec<String>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<String, Error>> + Send + 'static,
{
    let in_flight = in_flight.clone();
    move |session, params| {
        let entered = in_flight.enter();
        let work = f(session, params);
        let max_us = u64::try_from(BUSY.as_micros()).unwrap_or(u64::MAX);
        let pause = Duration::from_micros(rand::random_range(0..=max_us));
        Box::pin(async move {
            let _entered = entered;
            tokio::time::sleep(pause).await;
            work.await
        })
    }
}

/// How many trials each race scenario runs: `SESSIONKIT_RACE_TRIALS`, default 100.
pub fn trials() -> usize {
    match std::env::var("SESSIONKIT_RACE_TRIALS") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("SESSIONKIT_RACE_TRIALS={v:?} is not a count")),
        Err(_) => 100,
    }
}

/// How many failure descriptions a tally keeps, for the report.
const SAMPLES: usize = 3;

/// Failure counts of one scenario on one backend × framework.
#[derive(Debug)]
pub struct Tally {
    label: String,
    trials: usize,
    /// Counted failures: the scenario fails unless all are zero.
    failures: Vec<(&'static str, usize)>,
    /// Counted for the report only (e.g. how often the requests overlapped).
    notes: Vec<(&'static str, usize)>,
    samples: Vec<String>,
}

impl Tally {
    /// A tally whose failure kinds are `kinds` (reported in this order, zeros
    /// included, so every line of a run has the same columns).
    pub fn new(
        scenario: &str,
        backend: &str,
        fw: impl std::fmt::Debug,
        trials: usize,
        kinds: &[&'static str],
    ) -> Self {
        Tally {
            label: format!(
                "scenario={scenario} backend={backend} fw={}",
                format!("{fw:?}").to_lowercase()
            ),
            trials,
            failures: kinds.iter().map(|k| (*k, 0)).collect(),
            notes: Vec::new(),
            samples: Vec::new(),
        }
    }

    /// Counts `n` failures of `kind`, keeping `why` as a sample.
    pub fn fail(&mut self, kind: &'static str, n: usize, why: impl FnOnce() -> String) {
        if n == 0 {
            return;
        }
        let slot = self
            .failures
            .iter_mut()
            .find(|(k, _)| *k == kind)
            .unwrap_or_else(|| panic!("failure kind {kind:?} not declared"));
        slot.1 += n;
        if self.samples.len() < SAMPLES {
            self.samples.push(format!("{kind}: {}", why()));
        }
    }

    /// Counts one failure of `kind` when `failed`.
    pub fn check(&mut self, kind: &'static str, failed: bool, why: impl FnOnce() -> String) {
        self.fail(kind, usize::from(failed), why);
    }

    /// Adds `n` to an informational count (not a failure).
    pub fn note(&mut self, kind: &'static str, n: usize) {
        match self.notes.iter_mut().find(|(k, _)| *k == kind) {
            Some(slot) => slot.1 += n,
            None => self.notes.push((kind, n)),
        }
    }

    /// The report line.
    pub fn line(&self) -> String {
        let mut s = format!("lifecycle: {} trials={}", self.label, self.trials);
        for (k, n) in self.failures.iter().chain(&self.notes) {
            let _ = write!(s, " {k}={n}");
        }
        s
    }

    /// Whether no failure was counted.
    pub fn clean(&self) -> bool {
        self.failures.iter().all(|(_, n)| *n == 0)
    }
}

/// Prints every tally's line (and samples of its failures), then asserts
/// that none counted a failure.
pub fn report(tallies: &[Tally]) {
    for t in tallies {
        println!("{}", t.line());
        for s in &t.samples {
            println!("lifecycle:   e.g. {s}");
        }
    }
    let dirty: Vec<String> = tallies
        .iter()
        .filter(|t| !t.clean())
        .map(Tally::line)
        .collect();
    assert!(
        dirty.is_empty(),
        "races hit in {} of {} runs (lines above)",
        dirty.len(),
        tallies.len()
    );
}

/// How many handlers are between their session's load and its commit.
///
/// Two handlers in flight together means both loaded the session before
/// either committed: the window every race here needs. Counting it on the
/// server tells whether a passing trial raced at all, which client-side
/// timing cannot.
#[derive(Debug, Clone, Default)]
pub struct InFlight {
    inner: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    now: AtomicUsize,
    peak: AtomicUsize,
}

/// Leaves the count when dropped (also when the handler is cancelled).
#[derive(Debug)]
pub struct Entered(Arc<Counts>);

impl Drop for Entered {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

impl InFlight {
    /// A handler starts; it counts until the guard is dropped.
    pub fn enter(&self) -> Entered {
        let now = self.inner.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.peak.fetch_max(now, Ordering::SeqCst);
        Entered(self.inner.clone())
    }

    /// The most handlers in flight at once since the last call; starts a
    /// new measurement.
    pub fn take_peak(&self) -> usize {
        self.inner.peak.swap(0, Ordering::SeqCst)
    }
}

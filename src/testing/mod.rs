//! The store conformance suite, for authors of stores (feature `testing`).
//!
//! Every store in this crate runs these scenarios, on every backend and
//! topology; a third-party store (SQLite, DynamoDB, ...) runs the same ones
//! to check that it keeps the rules of [`SessionStore`] (see the
//! [`store`](crate::store) module docs, "Implementing a custom store" and
//! "Write your own store"). The scenarios go through the trait alone: they
//! need a fresh, empty store per scenario and a way to move its clock,
//! which a [`StoreHarness`] gives.
//!
//! This module is test code shipped in the library: it **panics** (with
//! `assert!`, `assert_eq!` and messages naming the store call or the rule
//! that failed) instead of returning errors, because a failed assertion is
//! what it is for. Enable it only in your dev-dependencies:
//!
//! ```toml
//! [dev-dependencies]
//! sessionkit = { version = "0.1", features = ["testing"] }
//! tokio = { version = "1", features = ["macros", "rt-multi-thread", "time"] }
//! ```
//!
//! # Running the suite
//!
//! Either one test per scenario with [`store_conformance_tests!`](crate::store_conformance_tests) (failures
//! are reported per test, and the test harness runs them in parallel):
//!
//! ```
//! # #[cfg(feature = "memory")] mod demo {
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use sessionkit::clock::ManualClock;
//! use sessionkit::testing::StoreHarness;
//! use sessionkit::{MemoryStore, SessionStore};
//!
//! struct Harness {
//!     store: MemoryStore,
//!     clock: ManualClock,
//! }
//!
//! #[async_trait::async_trait]
//! impl StoreHarness for Harness {
//!     fn store(&self) -> Arc<dyn SessionStore> {
//!         Arc::new(self.store.clone())
//!     }
//!
//!     async fn advance(&self, by: Duration) {
//!         self.clock.advance(by);
//!     }
//! }
//!
//! /// A fresh, empty store for each scenario.
//! async fn harness() -> Harness {
//!     let clock = ManualClock::starting_now();
//!     let store = MemoryStore::builder()
//!         .clock(clock.clone())
//!         .purge_interval(None)
//!         .build();
//!     Harness { store, clock }
//! }
//!
//! // In `tests/conformance.rs`: one `#[tokio::test]` per scenario, named
//! // after it (`create_then_load`, `revocation_is_final`, ...).
//! sessionkit::store_conformance_tests!(harness);
//! # }
//! # fn main() {}
//! ```
//!
//! or every scenario in one call with [`run_all`], which runs them one
//! after the other, each on a fresh harness, and panics at the end with the
//! list of the scenarios that failed and why:
//!
//! ```
//! # #[cfg(feature = "memory")] {
//! # use std::sync::Arc;
//! # use std::time::Duration;
//! # use sessionkit::clock::ManualClock;
//! # use sessionkit::testing::StoreHarness;
//! # use sessionkit::{MemoryStore, SessionStore};
//! # struct Harness { store: MemoryStore, clock: ManualClock }
//! # #[async_trait::async_trait]
//! # impl StoreHarness for Harness {
//! #     fn store(&self) -> Arc<dyn SessionStore> { Arc::new(self.store.clone()) }
//! #     async fn advance(&self, by: Duration) { self.clock.advance(by); }
//! # }
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! sessionkit::testing::run_all(|| async {
//!     let clock = ManualClock::starting_now();
//!     let store = MemoryStore::builder()
//!         .clock(clock.clone())
//!         .purge_interval(None)
//!         .build();
//!     Harness { store, clock }
//! })
//! .await;
//! # });
//! # }
//! ```
//!
//! [`run_scenario`] runs one scenario by name, and [`scenarios`] lists them
//! all, for a harness of your own.
//!
//! # Time
//!
//! The scenarios move the store's clock only through
//! [`StoreHarness::advance`], by a few seconds at most (idle timeouts of 2
//! to 4 s, leases under 1 s). A store whose clock you control (like
//! [`MemoryStore`](crate::MemoryStore) on a
//! [`ManualClock`](crate::clock::ManualClock)) moves it at once; a store
//! on a real clock (a database server's) sleeps, so the suite takes a few
//! minutes, and a store whose clock runs coarser than about 100 ms may fail
//! the tighter scenarios.
//!
//! # Reading a failure
//!
//! A failed scenario names the rule it checks (the scenario's name, such as
//! `login_moves_data_indexes_user_and_retires_old`) and panics at the
//! assertion that did not hold, with a message saying what was expected: an
//! outcome (`expected a live session, got Superseded`), the data, the
//! session list or a lock state. A store error is a failure too: the
//! message names the store call that returned it. The scenarios' code, in
//! this module's source, is the executable form of the rules in the
//! [`store`](crate::store) docs.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::SessionStore;

mod conformance;
mod lifecycle;
mod logout;
mod records;
pub mod tracker;

/// A store under test, and a way to move its clock.
///
/// [`run_all`] and [`store_conformance_tests!`](crate::store_conformance_tests) ask for a fresh harness per
/// scenario: its store must start empty (or at least share no session, user
/// or key with another scenario's: a key prefix of its own will do), since
/// the scenarios count a user's sessions.
#[async_trait]
pub trait StoreHarness: Send + Sync {
    /// The store, as the manager sees it. Called once per scenario, and
    /// again by scenarios that share it between tasks.
    fn store(&self) -> Arc<dyn SessionStore>;

    /// Moves the store's clock forward by `by`.
    ///
    /// On a clock you control, move it and return. A store on a real clock
    /// (a server's `now()`) sleeps for `by` instead (for example
    /// `tokio::time::sleep(by).await`): the scenarios then take as long as
    /// the time they move, a few seconds each.
    async fn advance(&self, by: Duration);
}

/// The future a [`Scenario`] runs.
pub type ScenarioFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// One scenario of the suite: a rule of [`SessionStore`], checked through
/// the trait alone. It panics when the store breaks the rule.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct Scenario {
    /// The scenario's name, which says the rule it checks (also the name
    /// of the test [`store_conformance_tests!`](crate::store_conformance_tests) makes for it).
    pub name: &'static str,
    /// The part of the suite it belongs to: `"conformance"` (sessions,
    /// users, rotation, revocation, locks), `"logout"` or `"lifecycle"`
    /// (rotation aliases, moved markers, what a login carries).
    pub suite: &'static str,
    /// Runs the scenario on a harness's store.
    pub run: for<'a> fn(&'a dyn StoreHarness) -> ScenarioFuture<'a>,
}

impl std::fmt::Debug for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scenario")
            .field("name", &self.name)
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

/// Every scenario of the suite, in the order [`run_all`] runs them.
pub fn scenarios() -> &'static [Scenario] {
    ALL
}

/// Runs the scenario named `name` on `harness`'s store.
///
/// # Panics
///
/// When the store breaks the scenario's rule, and when no scenario is named
/// `name`.
pub async fn run_scenario(name: &str, harness: &dyn StoreHarness) {
    let Some(scenario) = scenarios().iter().find(|s| s.name == name) else {
        let names: Vec<_> = scenarios().iter().map(|s| s.name).collect();
        panic!("no conformance scenario is named `{name}`; the scenarios: {names:?}");
    };
    (scenario.run)(harness).await;
}

/// Runs every scenario, one after the other, each on a fresh harness from
/// `make`, and panics at the end if any failed, listing each failed
/// scenario with its panic message. Every scenario runs, whatever fails
/// before it.
///
/// Each scenario runs in its own [`tokio::spawn`]ed task (a panic in it is
/// caught as that task's failure), so call this inside a tokio runtime;
/// some scenarios spawn concurrent store calls, which a multi-threaded
/// runtime runs in parallel.
///
/// # Panics
///
/// When one or more scenarios failed (after running them all).
pub async fn run_all<F, Fut, H>(mut make: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = H>,
    H: StoreHarness + 'static,
{
    let mut failed = Vec::new();
    for scenario in scenarios() {
        let harness = make().await;
        let run = scenario.run;
        let outcome = tokio::spawn(async move { run(&harness).await }).await;
        if let Err(e) = outcome {
            let why = if e.is_panic() {
                panic_message(e.into_panic())
            } else {
                e.to_string()
            };
            failed.push(format!("{} ({}): {why}", scenario.name, scenario.suite));
        }
    }
    if !failed.is_empty() {
        panic!(
            "{} of {} conformance scenarios failed:\n- {}",
            failed.len(),
            scenarios().len(),
            failed.join("\n- ")
        );
    }
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(s) => (*s).to_owned(),
            Err(_) => "(a panic without a message)".to_owned(),
        },
    }
}

/// Calls `$crate::$callback!` with every scenario, as
/// `(suite, name)` pairs: the one list [`scenarios`] and
/// [`store_conformance_tests!`](crate::store_conformance_tests) are built from.
#[doc(hidden)]
#[macro_export]
macro_rules! __sessionkit_scenarios {
    ($callback:ident! { $($args:tt)* }) => {
        $crate::$callback! { $($args)* ;
            (conformance, create_then_load)
            (conformance, save_applies_delta_and_never_creates)
            (conformance, concurrent_saves_of_different_keys_merge)
            (conformance, idle_expiry_and_rate_limited_touch)
            (conformance, absolute_deadline_is_never_extended)
            (conformance, data_round_trips_every_json_shape)
            (conformance, login_moves_data_indexes_user_and_retires_old)
            (conformance, login_switching_user_leaves_the_old_users_index)
            (conformance, single_login_evicts_every_other_session)
            (conformance, max_sessions_evicts_least_recently_used)
            (conformance, reject_new_changes_nothing)
            (conformance, concurrent_single_logins_leave_exactly_one)
            (conformance, concurrent_logins_respect_max_sessions)
            (conformance, revocation_is_final)
            (conformance, listing_drops_expired_and_orders_by_use)
            (conformance, rotation_alias_keeps_old_token_working_for_the_grace)
            (conformance, explicit_rotation_stops_the_old_token_at_once)
            (conformance, lock_is_exclusive_and_starts_from_the_latest_data)
            (conformance, lock_lease_runs_out_unless_renewed)
            (conformance, stale_fence_is_fenced_and_writes_nothing)
            (conformance, ending_a_session_removes_its_lock)
            (conformance, lock_moves_with_rotation)
            (conformance, concurrent_lockers_get_one_lock)
            (logout, logout_ends_a_live_session_once)
            (logout, logout_follows_a_rotation_alias)
            (logout, logout_leaves_a_token_replaced_by_login_alone)
            (logout, logout_leaves_a_token_replaced_by_explicit_rotation_alone)
            (lifecycle, a_moved_id_is_superseded_not_gone)
            (lifecycle, an_alias_chain_leads_to_the_latest_session)
            (lifecycle, an_alias_chain_is_followed_up_to_the_hop_limit)
            (lifecycle, an_alias_that_leads_to_a_moved_marker_is_superseded)
            (lifecycle, login_carries_what_other_requests_saved_meanwhile)
            (lifecycle, login_from_a_session_that_is_not_live_carries_only_its_delta)
            (lifecycle, login_through_an_alias_retires_the_successor)
            (lifecycle, saves_racing_a_login_are_carried_or_superseded)
            (lifecycle, saves_racing_a_rotation_are_all_kept)
        }
    };
}

/// The table behind [`scenarios`].
#[doc(hidden)]
#[macro_export]
macro_rules! __sessionkit_scenario_table {
    (; $(($suite:ident, $name:ident))*) => {
        const ALL: &[Scenario] = &[$(
            Scenario {
                name: stringify!($name),
                suite: stringify!($suite),
                run: {
                    fn run(harness: &dyn StoreHarness) -> ScenarioFuture<'_> {
                        Box::pin($suite::$name(harness))
                    }
                    run
                },
            },
        )*];
    };
}

crate::__sessionkit_scenarios!(__sessionkit_scenario_table! {});

/// One test per conformance scenario, each on a fresh harness.
///
/// `store_conformance_tests!(factory)` expands, where it is called, to one
/// `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]` function
/// per [scenario](scenarios), named after the scenario, that awaits
/// `factory()` (a path to an `async fn() -> H`, `H` a [`StoreHarness`]:
/// a fresh, empty store per call) and runs the scenario on it with
/// [`run_scenario`]. Call it in an integration test file, or in a module of
/// its own to keep the names apart (`mod sqlite {
/// sessionkit::store_conformance_tests!(super::harness); }`).
///
/// The calling crate needs `tokio` with the `macros` and `rt-multi-thread`
/// features (the generated code names `::tokio::test`).
///
/// See the [module docs](crate::testing) for a full example.
#[macro_export]
macro_rules! store_conformance_tests {
    ($factory:path $(,)?) => {
        $crate::__sessionkit_scenarios!(__sessionkit_conformance_tests! { $factory });
    };
}

/// The expansion of [`store_conformance_tests!`](crate::store_conformance_tests).
#[doc(hidden)]
#[macro_export]
macro_rules! __sessionkit_conformance_tests {
    ($factory:path ; $(($suite:ident, $name:ident))*) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let harness = $factory().await;
                $crate::testing::run_scenario(stringify!($name), &harness).await;
            }
        )*
    };
}

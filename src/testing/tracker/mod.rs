//! The tracker conformance suite: the rules of
//! [`KeyedStore`] (see its module docs),
//! checked through [`Tracker`](crate::tracker::Tracker) on a store of yours,
//! as every store in this crate runs them (`tests/tracker.rs`).
//!
//! Implement [`KeyedHarness`] (a fresh store, a second instance on the
//! same data, a way to move the store's clock), then, in an integration
//! test, `sessionkit::tracker_conformance_tests!(harness);` gives one test
//! per scenario. Like the rest of [`crate::testing`], the scenarios panic
//! on a broken rule. Time moves only through [`KeyedHarness::advance`], by
//! under 2 s per scenario, with margins of 100 ms or more.
//!
//! ```
//! # #[cfg(feature = "memory")] mod demo {
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use sessionkit::clock::TokioClock;
//! use sessionkit::testing::tracker::KeyedHarness;
//! use sessionkit::tracker::KeyedStore;
//! use sessionkit::MemoryStore;
//!
//! struct Harness(MemoryStore);
//!
//! #[async_trait::async_trait]
//! impl KeyedHarness for Harness {
//!     fn store(&self) -> Arc<dyn KeyedStore> {
//!         Arc::new(self.0.clone())
//!     }
//!     async fn second_store(&self) -> Arc<dyn KeyedStore> {
//!         // One process has one memory store; a networked store opens
//!         // new connections here.
//!         Arc::new(self.0.clone())
//!     }
//!     async fn advance(&self, by: Duration) {
//!         tokio::time::sleep(by).await // paused time: instant
//!     }
//! }
//!
//! async fn harness() -> Harness {
//!     Harness(MemoryStore::builder().clock(TokioClock::new()).build())
//! }
//!
//! // `@paused`: each test on a current-thread runtime with paused time
//! // (tokio's `test-util` feature); without it, multi-threaded, real time.
//! sessionkit::tracker_conformance_tests!(@paused harness);
//! # }
//! # fn main() {}
//! ```

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::ScenarioFuture;
use crate::store::keyed::KeyedStore;

mod scenarios;

/// A keyed store under test: a fresh, empty store, a second instance on the
/// same data, and a way to move the store's clock.
#[async_trait]
pub trait KeyedHarness: Send + Sync {
    /// The store.
    fn store(&self) -> Arc<dyn KeyedStore>;

    /// Another instance on the same data, with connections of its own (as
    /// another replica of the app would have); in-process stores answer
    /// the same store.
    async fn second_store(&self) -> Arc<dyn KeyedStore>;

    /// Moves the store's clock forward by `by` (sleeps, for a store on a
    /// real clock).
    async fn advance(&self, by: Duration);
}

/// One tracker scenario: its name (the rule it checks) and its body.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct TrackerScenario {
    /// The scenario's name, also the name of its generated test.
    pub name: &'static str,
    /// Runs the scenario on a harness.
    pub run: for<'a> fn(&'a dyn KeyedHarness) -> ScenarioFuture<'a>,
}

impl std::fmt::Debug for TrackerScenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackerScenario")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Every tracker scenario.
pub fn scenarios() -> &'static [TrackerScenario] {
    ALL
}

/// Runs the tracker scenario named `name` on `harness`.
///
/// # Panics
///
/// When the store breaks the scenario's rule, and when no scenario is named
/// `name`.
pub async fn run_scenario(name: &str, harness: &dyn KeyedHarness) {
    let Some(scenario) = scenarios().iter().find(|s| s.name == name) else {
        let names: Vec<_> = scenarios().iter().map(|s| s.name).collect();
        panic!("no tracker scenario is named `{name}`; the scenarios: {names:?}");
    };
    (scenario.run)(harness).await;
}

/// Calls `$crate::$callback!` with every tracker scenario's name.
#[doc(hidden)]
#[macro_export]
macro_rules! __sessionkit_tracker_scenarios {
    ($callback:ident! { $($args:tt)* }) => {
        $crate::$callback! { $($args)* ;
            start_get_update_remove
            finish_and_resume
            oversized_values_write_nothing
            names_keep_keys_apart
            restarted_keys_do_not_take_old_versions
            active_expiry_follows_active_settings
            finished_expiry_follows_finished_settings
            lock_excludes_and_fences
            lost_lease_is_fenced
            locked_updates_from_32_tasks_count_to_32
            optimistic_updates_from_32_tasks_lose_nothing
            two_instances_race_to_finish_and_resume
            dropped_lock_is_released
        }
    };
}

/// The table behind [`scenarios`].
#[doc(hidden)]
#[macro_export]
macro_rules! __sessionkit_tracker_table {
    (; $($name:ident)*) => {
        const ALL: &[TrackerScenario] = &[$(
            TrackerScenario {
                name: stringify!($name),
                run: {
                    fn run(harness: &dyn KeyedHarness) -> ScenarioFuture<'_> {
                        Box::pin(scenarios::$name(harness))
                    }
                    run
                },
            },
        )*];
    };
}

crate::__sessionkit_tracker_scenarios!(__sessionkit_tracker_table! {});

/// One test per [tracker scenario](scenarios), each on a fresh harness
/// from `factory` (a path to an `async fn() -> H`, `H` a [`KeyedHarness`]).
/// `tracker_conformance_tests!(factory)` makes multi-threaded tests on
/// real time; `tracker_conformance_tests!(@paused factory)` makes
/// current-thread tests with paused Tokio time (tokio's `test-util`
/// feature), for a store on [`TokioClock`](crate::clock::TokioClock).
#[macro_export]
macro_rules! tracker_conformance_tests {
    (@paused $factory:path $(,)?) => {
        $crate::__sessionkit_tracker_scenarios!(__sessionkit_tracker_tests! {
            (flavor = "current_thread", start_paused = true) $factory
        });
    };
    ($factory:path $(,)?) => {
        $crate::__sessionkit_tracker_scenarios!(__sessionkit_tracker_tests! {
            (flavor = "multi_thread", worker_threads = 2) $factory
        });
    };
}

/// The expansion of [`tracker_conformance_tests!`](crate::tracker_conformance_tests).
#[doc(hidden)]
#[macro_export]
macro_rules! __sessionkit_tracker_tests {
    ($flavor:tt $factory:path ; $($name:ident)*) => {
        $(
            #[::tokio::test $flavor]
            async fn $name() {
                let harness = $factory().await;
                $crate::testing::tracker::run_scenario(stringify!($name), &harness).await;
            }
        )*
    };
}

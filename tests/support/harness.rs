//! [`Backend`] as a [`StoreHarness`]: the in-crate run of the conformance
//! suite exported by `sessionkit::testing`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sessionkit::testing::StoreHarness;
use sessionkit::SessionStore;

use super::Backend;

#[async_trait]
impl StoreHarness for Backend {
    fn store(&self) -> Arc<dyn SessionStore> {
        Backend::store(self)
    }

    async fn advance(&self, by: Duration) {
        Backend::advance(self, by).await
    }
}

/// Checks that a test file lists exactly the scenarios of `suite`: a
/// scenario added to `sessionkit::testing` and not to the file's
/// `backend_tests!` list would otherwise run nowhere in this crate.
pub fn assert_lists_suite(suite: &str, listed: &[&str]) {
    let mut expected: Vec<_> = sessionkit::testing::scenarios()
        .iter()
        .filter(|s| s.suite == suite)
        .map(|s| s.name)
        .collect();
    let mut listed = listed.to_vec();
    expected.sort_unstable();
    listed.sort_unstable();
    assert_eq!(listed, expected, "the scenarios of suite `{suite}`");
}

/// Defines `async fn name(b: Backend)` running the `sessionkit::testing`
/// scenario of that name for each name, one `#[tokio::test]` per scenario
/// and backend ([`backend_tests!`](crate::backend_tests) `@topologies`),
/// and a test that the list is the whole of `suite`.
#[macro_export]
macro_rules! suite_tests {
    ($suite:literal; $($name:ident),* $(,)?) => {
        $(
            async fn $name(b: support::Backend) {
                sessionkit::testing::run_scenario(stringify!($name), &b).await
            }
        )*

        #[test]
        fn every_scenario_of_the_suite_is_listed() {
            support::harness::assert_lists_suite($suite, &[$(stringify!($name)),*]);
        }

        $crate::backend_tests!(@topologies $($name),*);
    };
}

//! Short forms for store outcomes in assertions.

use sessionkit::store::{LoadOutcome, Loaded};

/// Assertions on a [`LoadOutcome`].
pub trait LoadOutcomeExt {
    /// The live session; panics with the outcome otherwise.
    fn live(self) -> Loaded;
    /// Whether the outcome is a live session.
    fn is_live(&self) -> bool;
}

impl LoadOutcomeExt for LoadOutcome {
    #[track_caller]
    fn live(self) -> Loaded {
        match self {
            LoadOutcome::Live(loaded) => loaded,
            other => panic!("expected a live session, got {other:?}"),
        }
    }

    fn is_live(&self) -> bool {
        matches!(self, LoadOutcome::Live(_))
    }
}

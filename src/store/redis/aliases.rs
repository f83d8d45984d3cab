//! Following rotation aliases: the one walk every operation on a session id
//! uses. A periodic rotation leaves `@alias = <new hash part>` under the old
//! key for the grace period; a script that finds it answers `alias`, and the
//! operation is repeated on the successor (same tag, so the same slot), up
//! to [`MAX_ALIAS_HOPS`] times (a chain forms when the successor was rotated
//! again within the grace period).
//!
//! ```text
//! let mut chain = Chain::new(id);
//! while let Some(asked) = chain.next() {
//!     match call(asked) { alias(t) => if !chain.follow(t) { corrupt }, other => return other }
//! }
//! // longer than MAX_ALIAS_HOPS: superseded
//! ```

use super::args::{id_in_tag, warn_corrupt};
use crate::store::MAX_ALIAS_HOPS;
use crate::SessionId;

/// A walk along a chain of aliases.
pub(super) struct Chain {
    target: SessionId,
    /// Calls made so far.
    calls: usize,
}

impl Chain {
    /// A walk starting at `id`.
    pub(super) fn new(id: &SessionId) -> Self {
        Chain {
            target: id.clone(),
            calls: 0,
        }
    }

    /// The id to call next; `None` once [`MAX_ALIAS_HOPS`] aliases were
    /// followed (the token was replaced, and its successor may be alive).
    pub(super) fn next(&mut self) -> Option<SessionId> {
        if self.calls > MAX_ALIAS_HOPS {
            return None;
        }
        self.calls += 1;
        Some(self.target.clone())
    }

    /// Moves on to the alias target a reply named; `false` (logged) when it
    /// names no session (corrupt data: treated as no session).
    pub(super) fn follow(&mut self, target: Option<String>) -> bool {
        match target.and_then(|h| id_in_tag(self.target.tag(), &h)) {
            Some(next) => {
                self.target = next;
                true
            }
            None => {
                warn_corrupt(&self.target, "the alias does not name a session");
                false
            }
        }
    }

    /// Whether an alias was followed (the answer came from a successor).
    pub(super) fn moved_on(&self) -> bool {
        self.calls > 1
    }
}

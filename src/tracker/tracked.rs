//! A keyed session as the tracker hands it out.

use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use super::TrackerError;
use crate::store::keyed::{KeyedRecord, KeyedState};
use crate::store::ms_to_datetime;

/// A keyed session's value and bookkeeping, read from the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracked<T> {
    /// The value.
    pub value: T,
    /// Bumped by every write; pass it to
    /// [`update`](crate::tracker::Tracker::update) to write only if nothing
    /// came in between. Opaque: it starts from the store's clock, not 1.
    pub version: u64,
    /// Active or finished.
    pub state: KeyedState,
    /// When it was started.
    pub started_at: OffsetDateTime,
    /// When it entered its state (started, finished or resumed).
    pub since: OffsetDateTime,
    /// When it expires unless used again (store's clock).
    pub expires_at: OffsetDateTime,
}

impl<T: DeserializeOwned> Tracked<T> {
    pub(super) fn decode(r: KeyedRecord) -> Result<Tracked<T>, TrackerError> {
        Ok(Tracked {
            value: serde_json::from_str(&r.value).map_err(TrackerError::Deserialize)?,
            version: r.version,
            state: r.state,
            started_at: ms_to_datetime(r.started_ms),
            since: ms_to_datetime(r.since_ms),
            expires_at: ms_to_datetime(r.expires_ms),
        })
    }
}

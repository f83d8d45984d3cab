//! The settings of one kind of keyed session.

use std::time::Duration;

use crate::store::keyed::{Expiry, KeyedTimeouts};

/// How one kind of keyed session expires and locks. One [`Tracker`]
/// per kind, each with its own settings.
///
/// | setting | default |
/// |---------|---------|
/// | `active.absolute` | 24 hours from [`start`](crate::tracker::Tracker::start) (or resume) |
/// | `active.sliding` | 30 minutes from the last read, lock or update |
/// | `finished.absolute` | 7 days from [`finish`](crate::tracker::Tracker::finish) |
/// | `finished.sliding` | none: only the absolute limit |
/// | `lock_lease` | 10 s, renewable with [`TrackerLock::renew`](crate::tracker::TrackerLock::renew) |
/// | `lock_wait` | 5 s, then [`TrackerError::LockTimeout`](crate::tracker::TrackerError::LockTimeout) |
/// | `max_value_bytes` | 256 KiB of JSON (as [`Limits::max_session_bytes`](crate::Limits)) |
///
/// ```
/// use std::time::Duration;
/// use sessionkit::tracker::{Expiry, TrackerSettings};
///
/// let wizard = TrackerSettings {
///     active: Expiry { absolute: Some(Duration::from_secs(3600)), sliding: Some(Duration::from_secs(300)) },
///     lock_lease: Duration::from_secs(2),
///     ..TrackerSettings::default()
/// };
/// assert_eq!(wizard.finished, TrackerSettings::default().finished);
/// ```
///
/// [`Tracker`]: crate::tracker::Tracker
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackerSettings {
    /// Expiry while active (after start or resume).
    pub active: Expiry,
    /// Expiry once finished.
    pub finished: Expiry,
    /// How long a lock is held unless renewed or released.
    pub lock_lease: Duration,
    /// How long [`lock`](crate::tracker::Tracker::lock) and
    /// [`get_locked`](crate::tracker::Tracker::get_locked) wait for another
    /// holder.
    pub lock_wait: Duration,
    /// The largest value, as JSON bytes.
    pub max_value_bytes: usize,
}

impl Default for TrackerSettings {
    fn default() -> Self {
        TrackerSettings {
            active: Expiry {
                absolute: Some(Duration::from_secs(24 * 3600)),
                sliding: Some(Duration::from_secs(30 * 60)),
            },
            finished: Expiry {
                absolute: Some(Duration::from_secs(7 * 24 * 3600)),
                sliding: None,
            },
            lock_lease: Duration::from_secs(10),
            lock_wait: Duration::from_secs(5),
            max_value_bytes: crate::Limits::default().max_session_bytes,
        }
    }
}

impl TrackerSettings {
    pub(super) fn timeouts(&self) -> KeyedTimeouts {
        KeyedTimeouts {
            active: self.active,
            finished: self.finished,
        }
    }
}

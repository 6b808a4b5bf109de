//! Time as the core sees it: [`Timestamp`] (milliseconds since the Unix
//! epoch) and the [`Clock`] the shell reads it from.
//!
//! **Architecture invariant:** only `server/` reads a clock; `ota/`,
//! `store/` and `coap/` take `now` as an argument. The server's clock
//! (`server::clock::ServerClock`) is the wall clock at start-up plus
//! monotonic elapsed time, so deadlines never jump with the wall clock.
//! [`ManualClock`] moves only when a test says so.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A point in time: milliseconds since the Unix epoch. Persisted as a
/// plain integer (`serde(transparent)`), so records written before this
/// type existed read back unchanged.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(u64);

impl Timestamp {
    pub const ZERO: Timestamp = Timestamp(0);
    pub const MAX: Timestamp = Timestamp(u64::MAX);

    pub const fn from_millis(ms: u64) -> Timestamp {
        Timestamp(ms)
    }

    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// `self + d`, saturating at [`Timestamp::MAX`].
    pub fn saturating_add(self, d: Duration) -> Timestamp {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }

    /// `self + ms`, saturating.
    pub fn add_millis(self, ms: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms))
    }

    /// How long after `earlier` this is (zero if it is not after).
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// RFC 3339 with milliseconds, UTC (`2026-01-02T03:04:05.678Z`).
    pub fn rfc3339(self) -> String {
        let t = UNIX_EPOCH + Duration::from_millis(self.0);
        humantime::format_rfc3339_millis(t).to_string()
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.rfc3339())
    }
}

/// Where the shell reads `now` from.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;

    /// Unix time in milliseconds (the older spelling of [`Clock::now`]).
    fn now_ms(&self) -> u64 {
        self.now().as_millis()
    }

    /// Never report less than `floor` from now on (the last time the
    /// server persisted, read at start-up). Clocks that cannot be moved
    /// ignore it.
    fn raise_floor(&self, _floor: Timestamp) {}

    /// For clocks that move by jumps rather than with real time (tests): a
    /// signal notified after every jump, so a shell sleeping in real time
    /// until a deadline re-reads the clock. Real clocks return `None`.
    fn jumps(&self) -> Option<Arc<tokio::sync::Notify>> {
        None
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicU64,
    jumped: Arc<tokio::sync::Notify>,
}

impl ManualClock {
    pub fn new(start_ms: u64) -> ManualClock {
        ManualClock {
            now: AtomicU64::new(start_ms),
            jumped: Arc::new(tokio::sync::Notify::new()),
        }
    }

    pub fn advance_ms(&self, ms: u64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
        // notify_one keeps a permit when nobody waits yet: no lost wake-up.
        self.jumped.notify_one();
    }

    pub fn advance(&self, by: Duration) {
        self.advance_ms(u64::try_from(by.as_millis()).unwrap_or(u64::MAX));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.now.load(Ordering::SeqCst))
    }

    fn jumps(&self) -> Option<Arc<tokio::sync::Notify>> {
        Some(self.jumped.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rfc3339_and_saturates() {
        assert_eq!(
            Timestamp::from_millis(1_800_000_000_123).rfc3339(),
            "2027-01-15T08:00:00.123Z"
        );
        assert_eq!(Timestamp::MAX.add_millis(5), Timestamp::MAX);
        assert_eq!(
            Timestamp::from_millis(10).saturating_since(Timestamp::from_millis(20)),
            Duration::ZERO
        );
    }
}

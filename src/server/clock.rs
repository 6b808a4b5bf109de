//! The server's clock: the wall clock read once at start-up, plus
//! monotonic time elapsed since. Deadlines persist as wall time (they must
//! survive restarts), but a wall clock stepped forward while running (NTP,
//! an operator) no longer makes every in-flight task look overdue at once,
//! and a wall clock stepped back across a restart cannot make time run
//! backwards: the start is `max(wall now, last persisted time)`
//! ([`Clock::raise_floor`], fed from the store's clock floor).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::time::{Clock, Timestamp};

/// Wall clock at start + monotonic elapsed time, with a floor.
pub struct MonotonicClock<F> {
    /// Wall time (ms) that `elapsed() == 0` stands for.
    base: AtomicU64,
    elapsed: F,
}

impl<F: Fn() -> Duration + Send + Sync + 'static> MonotonicClock<F> {
    /// A clock at `wall_now` when `elapsed()` returns zero.
    pub fn new(wall_now: Timestamp, elapsed: F) -> MonotonicClock<F> {
        MonotonicClock {
            base: AtomicU64::new(wall_now.as_millis()),
            elapsed,
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from((self.elapsed)().as_millis()).unwrap_or(u64::MAX)
    }
}

impl<F: Fn() -> Duration + Send + Sync + 'static> Clock for MonotonicClock<F> {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(
            self.base
                .load(Ordering::SeqCst)
                .saturating_add(self.elapsed_ms()),
        )
    }

    fn raise_floor(&self, floor: Timestamp) {
        let base = floor.as_millis().saturating_sub(self.elapsed_ms());
        self.base.fetch_max(base, Ordering::SeqCst);
    }
}

/// The clock `lwota serve` runs on.
pub struct SystemClock(MonotonicClock<Box<dyn Fn() -> Duration + Send + Sync>>);

impl SystemClock {
    pub fn new() -> SystemClock {
        let start = Instant::now();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        SystemClock(MonotonicClock::new(
            Timestamp::from_millis(wall),
            Box::new(move || start.elapsed()),
        ))
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        self.0.now()
    }

    fn raise_floor(&self, floor: Timestamp) {
        self.0.raise_floor(floor)
    }
}

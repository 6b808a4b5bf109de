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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::model::TaskState;
    use crate::ota::campaign::{self, Target};
    use crate::ota::poll::{self, PollRequest};
    use crate::ota::{scheduler, OtaSettings};
    use crate::store::memory::MemoryStore;
    use crate::store::{StoreOptions, SyncStore};

    /// A fake monotonic source the test moves.
    fn fake_elapsed() -> (
        Arc<AtomicU64>,
        impl Fn() -> Duration + Send + Sync + 'static,
    ) {
        let ms = Arc::new(AtomicU64::new(0));
        let source = ms.clone();
        (ms, move || {
            Duration::from_millis(source.load(Ordering::SeqCst))
        })
    }

    const START: Timestamp = Timestamp::from_millis(1_800_000_000_000);

    #[test]
    fn a_wall_clock_jump_while_running_fails_no_in_flight_task() {
        let (elapsed, source) = fake_elapsed();
        let clock = MonotonicClock::new(START, source);
        let settings = OtaSettings {
            auto_register: true,
            timeout_ms: 15 * 60_000,
        };
        let store = MemoryStore::new(StoreOptions::default());
        let request = PollRequest {
            product: "p".into(),
            version: "1".into(),
            battery: None,
            block: None,
            software_version: None,
        };
        store
            .write_sync(|tx| poll::poll(tx, clock.now(), settings, "d", None, &request))
            .unwrap()
            .unwrap();
        let fw = crate::model::FirmwareRecord {
            id: 0,
            product: "p".into(),
            name: "p".into(),
            version: "2".into(),
            kind: "firmware".into(),
            filename: "f".into(),
            size: 1,
            sha256: vec![0; 32],
            md5: vec![0; 16],
            signature: "sha256".into(),
            description: String::new(),
            created_at: START,
            verified: false,
        };
        let id = store
            .write_sync(|tx| {
                let mut fw = fw.clone();
                fw.id = tx.next_firmware_id()?;
                tx.put_firmware(&fw)?;
                campaign::create(tx, clock.now(), fw.id, &Target::All)
            })
            .unwrap()
            .unwrap()
            .campaign
            .id;
        store
            .write_sync(|tx| poll::poll(tx, clock.now(), settings, "d", None, &request))
            .unwrap()
            .unwrap();

        // The wall clock is stepped a day forward; one real minute passes.
        // The server clock only sees the minute.
        elapsed.store(60_000, Ordering::SeqCst);
        assert_eq!(clock.now(), START.add_millis(60_000));
        let handled = store
            .write_sync(|tx| scheduler::handle_due(tx, clock.now(), settings, 100))
            .unwrap();
        assert_eq!(handled.timed_out, 0);
        let task = store.read_sync(|tx| tx.task(id, "d")).unwrap().unwrap();
        assert_eq!(task.state, TaskState::Initiated);

        // Real silence for the whole timeout still fails it.
        elapsed.store(16 * 60_000, Ordering::SeqCst);
        let handled = store
            .write_sync(|tx| scheduler::handle_due(tx, clock.now(), settings, 100))
            .unwrap();
        assert_eq!(handled.timed_out, 1);
    }

    #[test]
    fn a_restart_with_the_wall_clock_behind_starts_from_the_persisted_floor() {
        let (elapsed, source) = fake_elapsed();
        // The wall clock says an hour earlier than the last persisted time.
        let clock = MonotonicClock::new(START.add_millis(0), source);
        let floor = START.add_millis(3_600_000);
        clock.raise_floor(floor);
        assert_eq!(clock.now(), floor);
        elapsed.store(5, Ordering::SeqCst);
        assert_eq!(clock.now(), floor.add_millis(5));
        // A lower floor never moves it back.
        clock.raise_floor(START);
        assert_eq!(clock.now(), floor.add_millis(5));
        // The system clock starts near the wall clock and never goes back.
        let system = SystemClock::new();
        let a = system.now();
        assert!(system.now() >= a);
    }
}

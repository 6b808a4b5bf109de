//! Timeouts and the scheduler, with time passed in (no clock, no sleep).

use super::*;
use crate::model::{TaskKey, Timer};
use crate::ota::campaign::{self, Target};
use crate::ota::scheduler::{self, Handled};

backends!(
    timeout_fails_a_silent_task_exactly_at_its_deadline,
    sign_of_life_moves_the_deadline,
    scheduler_handles_due_timers_in_bounded_batches,
    timers_without_behaviour_are_removed,
    stale_timeout_timer_is_ignored,
    clock_floor_only_rises,
);

fn started(s: &impl SyncStore, names: &[&str]) -> u64 {
    register(s, names, "p", "1.0");
    let fw = add_firmware(s, "p", "2.0", 1);
    let id = s
        .write_sync(|tx| campaign::create(tx, T0, fw.id, &Target::All))
        .unwrap()
        .unwrap()
        .campaign
        .id;
    for name in names {
        poll_at(s, T0, name, "p", "1.0").unwrap();
    }
    id
}

fn due(s: &impl SyncStore, now: Timestamp, limit: usize) -> Handled {
    s.write_sync(|tx| scheduler::handle_due(tx, now, settings(), limit))
        .unwrap()
}

fn timeout_fails_a_silent_task_exactly_at_its_deadline(s: &impl SyncStore) {
    let id = started(s, &["d"]);
    let deadline = T0.add_millis(TIMEOUT_MS);
    assert_eq!(
        s.read_sync(|tx| scheduler::next_due(tx)).unwrap(),
        Some(deadline)
    );
    let early = due(s, Timestamp::from_millis(deadline.as_millis() - 1), 10);
    assert_eq!(early, Handled::default());
    assert_eq!(task(s, id, "d").state, TaskState::Initiated);
    let handled = due(s, deadline, 10);
    assert_eq!(
        (handled.timers, handled.timed_out, handled.more),
        (1, 1, false)
    );
    let t = task(s, id, "d");
    assert_eq!(
        (t.state, t.error.as_deref()),
        (TaskState::Failed, Some("timeout"))
    );
    assert_eq!(events(s, "d").last().map(String::as_str), Some("timeout"));
    assert_eq!(s.read_sync(|tx| scheduler::next_due(tx)).unwrap(), None);
    let pointers = s
        .read_sync(|tx| crate::ota::assignment::pointers(tx, "d"))
        .unwrap();
    assert_eq!(pointers.firmware, None);
}

fn sign_of_life_moves_the_deadline(s: &impl SyncStore) {
    let id = started(s, &["quiet", "alive"]);
    let name = crate::ota::task_id(id);
    report_at(s, at(10), "alive", &name, TaskState::Downloading, None).unwrap();
    let handled = due(s, at(16), 10);
    assert_eq!(handled.timed_out, 1);
    assert_eq!(task(s, id, "quiet").state, TaskState::Failed);
    assert_eq!(task(s, id, "alive").state, TaskState::Downloading);
    assert_eq!(
        s.read_sync(|tx| tx.timers(10)).unwrap(),
        [(at(25), Timer::TaskTimeout(TaskKey::new(id, "alive")))]
    );
    assert_eq!(due(s, at(25), 10).timed_out, 1);
}

fn scheduler_handles_due_timers_in_bounded_batches(s: &impl SyncStore) {
    let names = ["a", "b", "c", "d", "e"];
    started(s, &names);
    let first = due(s, at(20), 2);
    assert_eq!((first.timers, first.timed_out, first.more), (2, 2, true));
    let second = due(s, at(20), 2);
    assert!(second.more);
    let third = due(s, at(20), 2);
    assert_eq!((third.timers, third.more), (1, false));
    assert_eq!(due(s, at(20), 2), Handled::default());
}

fn timers_without_behaviour_are_removed(s: &impl SyncStore) {
    let key = TaskKey::new(1, "d");
    let timers = [
        Timer::TaskRetry(key),
        Timer::CampaignStart(1),
        Timer::RateWindow(1),
        Timer::WaveCheck(1),
        Timer::RegistrationExpiry("d".into()),
        Timer::QueuedRequest("d".into()),
    ];
    s.write_sync(|tx| {
        for (i, timer) in timers.iter().enumerate() {
            tx.set_timer(at(i as u64), timer)?;
        }
        Ok(())
    })
    .unwrap();
    // Every variant round-trips through the backend, in due order.
    let stored = s.read_sync(|tx| tx.timers(10)).unwrap();
    assert_eq!(
        stored.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>(),
        timers
    );
    let handled = due(s, at(100), 100);
    assert_eq!((handled.timers, handled.timed_out), (6, 0));
    assert!(s.read_sync(|tx| tx.timers(10)).unwrap().is_empty());
}

fn stale_timeout_timer_is_ignored(s: &impl SyncStore) {
    let id = started(s, &["d"]);
    // A timer that is not the task's current deadline (left behind).
    s.write_sync(|tx| tx.set_timer(at(1), &Timer::TaskTimeout(TaskKey::new(id, "d"))))
        .unwrap();
    let handled = due(s, at(2), 10);
    assert_eq!((handled.timers, handled.timed_out), (1, 0));
    assert_eq!(task(s, id, "d").state, TaskState::Initiated);
    // Removing a timer that is not there is fine.
    s.write_sync(|tx| tx.remove_timer(at(1), &Timer::CampaignStart(9)))
        .unwrap();
}

fn clock_floor_only_rises(s: &impl SyncStore) {
    assert_eq!(s.read_sync(|tx| tx.clock_floor()).unwrap(), None);
    let _ = due(s, at(5), 1);
    let _ = due(s, at(3), 1);
    assert_eq!(s.read_sync(|tx| tx.clock_floor()).unwrap(), Some(at(5)));
}

/// A corrupt DEVICE record must not fail the whole batch of due timers
/// (the shell would retry it every second and no timeout would ever fire).
/// Fails without the fix: `handle_due` returned `StoreError::Corrupt`.
/// redb only: the memory store holds decoded records, never garbage.
#[test]
fn corrupt_device_does_not_stall_timeouts() {
    const DEVICES: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("devices");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.redb");
    let id = {
        let s = crate::store::RedbStore::open(&path, options()).unwrap();
        started(&s, &["a", "b"])
    };
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(DEVICES)
            .unwrap()
            .insert("a", [0xffu8, 0x13, 0x37, 0x00, 0x42].as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let s = crate::store::RedbStore::open(&path, options()).unwrap();
    let handled = due(&s, T0.add_millis(TIMEOUT_MS), 10);
    assert_eq!((handled.timers, handled.timed_out), (2, 1));
    let t = task(&s, id, "b");
    assert_eq!(
        (t.state, t.error.as_deref()),
        (TaskState::Failed, Some("timeout"))
    );
    assert_eq!(s.read_sync(|tx| scheduler::next_due(tx)).unwrap(), None);
}

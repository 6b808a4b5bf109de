//! Queue mode (TS Core §6.5): what the server has to ask a sleeping
//! device is persisted on its registration (`RegistrationRecord::queued`)
//! with one `Timer::QueuedRequest`, sent in order right after its next
//! Register/Update; a device asleep longer than the task timeout fails
//! its task with `timeout`.

use super::super::ota::ledger::{self, Context};
use super::super::ota::task::TaskEvent;
use super::super::ota::OtaSettings;
use crate::model::{HistoryEntry, QueuedOp, Timer};
use crate::store::{StoreError, Tx};
use crate::time::Timestamp;

/// Requests queued per device at most: one read and one update are all
/// the flow ever queues; the bound guards against a bug filling it.
pub const MAX_QUEUED: usize = 8;

/// Queues `op` for the sleeping device `name` (once: an op already queued
/// is not queued again). Returns whether it was queued.
pub fn enqueue(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    timeout_ms: u64,
    name: &str,
    op: QueuedOp,
) -> Result<bool, StoreError> {
    let Some(previous) = tx.registration(name)? else {
        return Ok(false);
    };
    if previous.queued.contains(&op) || previous.queued.len() >= MAX_QUEUED {
        return Ok(false);
    }
    let mut record = previous.clone();
    record.queued.push(op.clone());
    if record.queued_deadline.is_none() {
        let due = now.add_millis(timeout_ms);
        record.queued_deadline = Some(due);
        tx.set_timer(due, &Timer::QueuedRequest(name.to_string()))?;
    }
    tx.put_registration(name, Some(&previous), &record)?;
    tx.append_history(
        name,
        &HistoryEntry::note(
            now,
            "lwm2m-queued",
            format!("{op:?} waits for the device to wake up"),
        ),
    )?;
    Ok(true)
}

/// Takes the device's queued requests (it just woke up), in order.
pub fn take(tx: &mut (impl Tx + ?Sized), name: &str) -> Result<Vec<QueuedOp>, StoreError> {
    let Some(previous) = tx.registration(name)? else {
        return Ok(Vec::new());
    };
    if previous.queued.is_empty() {
        return Ok(Vec::new());
    }
    let mut record = previous.clone();
    let ops = std::mem::take(&mut record.queued);
    if let Some(due) = record.queued_deadline.take() {
        tx.remove_timer(due, &Timer::QueuedRequest(name.to_string()))?;
    }
    tx.put_registration(name, Some(&previous), &record)?;
    Ok(ops)
}

/// The `QueuedRequest` timer of `name`, due at `at`: the device slept
/// through the task timeout. Its queued updates fail with `timeout`.
/// Returns how many tasks failed.
pub fn give_up(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    settings: OtaSettings,
    name: &str,
    at: Timestamp,
) -> Result<usize, StoreError> {
    let Some(previous) = tx.registration(name)? else {
        return Ok(0);
    };
    if previous.queued_deadline != Some(at) {
        return Ok(0);
    }
    let mut record = previous.clone();
    let ops = std::mem::take(&mut record.queued);
    record.queued_deadline = None;
    tx.put_registration(name, Some(&previous), &record)?;
    let mut failed = 0;
    for op in ops {
        let QueuedOp::Update(campaign) = op else {
            continue;
        };
        let Some(task) = tx.task(campaign, name)? else {
            continue;
        };
        let ctx = Context {
            now,
            timeout_ms: settings.timeout_ms,
            device_name: name,
            alive: false,
            cause: "timeout",
        };
        if ledger::transition_device(tx, &ctx, &task, &TaskEvent::TimedOut)? {
            failed += 1;
        }
    }
    Ok(failed)
}

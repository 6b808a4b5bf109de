//! Applies a task event and records everything it implies: the task record,
//! its timeout timer, the campaign counters (the store's), the device's
//! active task and a history entry. Every task transition in lwota goes
//! through [`transition`], so those stay consistent.

use super::campaign::lifecycle;
use super::task::{self, Outcome, Rejected, Status, TaskEvent};
use crate::model::{DeviceRecord, HistoryEntry, TaskKey, TaskRecord, TaskState, Timer};
use crate::store::{StoreError, Tx};
use crate::time::Timestamp;

/// The cause of block-inferred progress.
pub const CAUSE_DOWNLOAD: &str = "download";

/// What surrounds a transition.
pub struct Context<'a> {
    pub now: Timestamp,
    /// Task timeout in milliseconds.
    pub timeout_ms: u64,
    pub device_name: &'a str,
    /// Whether the event is a sign of life from the device (resets the
    /// timeout clock).
    pub alive: bool,
    /// History event name: `poll`, `report`, `download`, `timeout`, `cancel`.
    pub cause: &'a str,
}

/// Writes `record` over `previous` and moves its `TaskTimeout` timer to
/// `record.deadline`.
pub fn put_task(
    tx: &mut (impl Tx + ?Sized),
    device: &str,
    previous: Option<&TaskRecord>,
    record: &TaskRecord,
) -> Result<(), StoreError> {
    let old = previous.and_then(|p| p.deadline);
    if old != record.deadline {
        let timer = Timer::TaskTimeout(TaskKey::new(record.campaign, device));
        if let Some(old) = old {
            tx.remove_timer(old, &timer)?;
        }
        if let Some(new) = record.deadline {
            tx.set_timer(new, &timer)?;
        }
    }
    tx.put_task(device, previous, record)
}

/// Applies `event` to `task`. On a change, writes the task (and its
/// timer) and a history entry, and clears the device's task pointer when
/// the task finished; the caller writes `device` (its version moves when
/// the task reached `updated`). Nothing is written when the
/// event is rejected.
pub fn transition(
    tx: &mut (impl Tx + ?Sized),
    ctx: &Context<'_>,
    device: &mut DeviceRecord,
    task: &TaskRecord,
    event: &TaskEvent,
) -> Result<Result<Option<TaskRecord>, Rejected>, StoreError> {
    let current = Status {
        state: task.state,
        progress: task.progress,
        error: task.error.clone(),
    };
    let next = match task::apply(&current, event) {
        Err(rejected) => return Ok(Err(rejected)),
        Ok(Outcome::Unchanged) => {
            if ctx.alive && !task.state.is_final() {
                // No state change, but the device is alive: move the deadline.
                let mut touched = task.clone();
                touched.last_activity = Some(ctx.now);
                touched.deadline = deadline_of(&touched, ctx);
                put_task(tx, ctx.device_name, Some(task), &touched)?;
            }
            return Ok(Ok(None));
        }
        Ok(Outcome::Changed(next)) => next,
    };
    let mut updated = task.clone();
    updated.state = next.state;
    updated.progress = next.progress;
    updated.error = next.error.clone();
    updated.updated_at = ctx.now;
    if ctx.alive {
        updated.last_activity = Some(ctx.now);
    }
    updated.deadline = deadline_of(&updated, ctx);
    if next.state.is_final() {
        // Retry, waves, verification (issue 10): may set `retry_at`.
        lifecycle::on_final(tx, ctx.now, ctx.device_name, &mut updated, ctx.cause)?;
    }
    // A software task (issue 10 item 9) moves the software version.
    let software = super::assignment::is_software_task(tx, ctx.device_name, task.campaign)?;
    if task.queued_unnoted && next.state != TaskState::Queued {
        // Queued in bulk without its history entry: stored now that the
        // task moves on, before the entry of this move.
        let from = super::assignment::current_version(device, software).unwrap_or("unknown");
        tx.append_history(ctx.device_name, &task.queued_entry(from))?;
        updated.queued_unnoted = false;
    }
    put_task(tx, ctx.device_name, Some(task), &updated)?;
    if next.state != task.state {
        // Counted when applied: a batch rolled back by a storage failure
        // and re-run counts again (rare; see docs/METRICS.md).
        metrics::counter!(crate::telemetry::TASK_TRANSITIONS, "to" => next.state.as_str())
            .increment(1);
    }
    if next.state.is_final() {
        super::assignment::release(tx, ctx.device_name, task.campaign)?;
        lifecycle::finish_if_done(tx, task.campaign, ctx.now)?;
    }
    if next.state == TaskState::Updated {
        if software {
            device.software_version = Some(task.target_version.clone());
        } else {
            device.version = task.target_version.clone();
        }
    }
    // Block-inferred progress within `downloading` would add a hundred
    // entries per download; history keeps its state changes only.
    if ctx.cause == CAUSE_DOWNLOAD && next.state == task.state {
        return Ok(Ok(Some(updated)));
    }
    tx.append_history(
        ctx.device_name,
        &HistoryEntry {
            at: ctx.now,
            event: ctx.cause.to_string(),
            campaign: Some(task.campaign),
            from: Some(task.state),
            to: Some(next.state),
            progress: Some(next.progress),
            error: next.error,
            detail: None,
            repeat: None,
            since: None,
        },
    )?;
    Ok(Ok(Some(updated)))
}

/// [`transition`] for events that do not come with the device record in
/// hand (cancel, timeout, block progress): loads the device, applies the
/// event and writes the device back when the task changed. Returns whether
/// it changed.
pub fn transition_device(
    tx: &mut (impl Tx + ?Sized),
    ctx: &Context<'_>,
    task: &TaskRecord,
    event: &TaskEvent,
) -> Result<bool, StoreError> {
    let Some(device) = tx.device(ctx.device_name)? else {
        return Ok(false);
    };
    transition_loaded_device(tx, ctx, device, task, event)
}

/// [`transition_device`] with the device record already loaded (the
/// scheduler loads it itself to step around a corrupt one).
pub fn transition_loaded_device(
    tx: &mut (impl Tx + ?Sized),
    ctx: &Context<'_>,
    mut device: DeviceRecord,
    task: &TaskRecord,
    event: &TaskEvent,
) -> Result<bool, StoreError> {
    match transition(tx, ctx, &mut device, task, event)? {
        Ok(Some(_)) => {
            if ctx.alive {
                device.last_seen = Some(ctx.now);
            }
            tx.put_device(ctx.device_name, &device)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// A task times out `timeout` after the device's last sign of life; a
/// queued task (never handed out) waits for its device indefinitely.
fn deadline_of(task: &TaskRecord, ctx: &Context<'_>) -> Option<Timestamp> {
    if task.state.is_final() || task.state == TaskState::Queued {
        return None;
    }
    Some(
        task.last_activity
            .unwrap_or(ctx.now)
            .add_millis(task.timeout_ms.unwrap_or(ctx.timeout_ms)),
    )
}

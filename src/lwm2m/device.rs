//! What the LwM2M flow changes in the domain, as `Tx` operations: task
//! events (through `ota::ledger`, cause `lwm2m`) and the version read
//! from `/3/0/3`.

use crate::model::{FirmwareRecord, HistoryEntry, TaskState};
use crate::ota::ledger::{self, Context};
use crate::ota::task::TaskEvent;
use crate::ota::OtaSettings;
use crate::store::{ReadTx, StoreError, Tx};
use crate::time::Timestamp;

/// The history cause of task changes an LwM2M flow makes.
pub const CAUSE: &str = "lwm2m";

/// Applies `event` to the device's task of `campaign` (a rejected or
/// no-op event changes nothing). Returns whether the task changed.
pub fn apply(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    settings: OtaSettings,
    name: &str,
    campaign: u64,
    event: &TaskEvent,
) -> Result<bool, StoreError> {
    let Some(task) = tx.task(campaign, name)? else {
        return Ok(false);
    };
    let ctx = Context {
        now,
        timeout_ms: settings.timeout_ms,
        device_name: name,
        alive: true,
        cause: CAUSE,
    };
    ledger::transition_device(tx, &ctx, &task, event)
}

/// The version `/3/0/3` reports, recorded like a polled version: the
/// device's version changes (with a `version` history entry), and an
/// unfinished task whose target it is becomes `updated`.
pub fn record_version(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    settings: OtaSettings,
    name: &str,
    version: &str,
) -> Result<(), StoreError> {
    let Some(mut device) = tx.device(name)? else {
        return Ok(());
    };
    if device.version == version {
        return Ok(());
    }
    tx.append_history(
        name,
        &HistoryEntry::note(
            now,
            "version",
            format!("{} -> {version} (/3/0/3)", device.version),
        ),
    )?;
    device.version = version.to_string();
    device.last_seen = Some(now);
    if let Some(campaign) = crate::ota::assignment::active(tx, name, false)? {
        if let Some(task) = tx.task(campaign, name)? {
            if task.target_version == version && !task.state.is_final() {
                let ctx = Context {
                    now,
                    timeout_ms: settings.timeout_ms,
                    device_name: name,
                    alive: true,
                    cause: CAUSE,
                };
                let _ =
                    ledger::transition(tx, &ctx, &mut device, &task, &TaskEvent::ReachedTarget)?;
            }
        }
    }
    tx.put_device(name, &device)
}

/// A note in the device's history (what the flow saw).
pub fn note(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    name: &str,
    event: &str,
    detail: String,
) -> Result<(), StoreError> {
    tx.append_history(name, &HistoryEntry::note(now, event, detail))
}

/// The work waiting for a registered device: its unfinished task's
/// campaign, state and firmware.
#[derive(Debug, Clone)]
pub struct Work {
    pub campaign: u64,
    pub state: TaskState,
    pub firmware: FirmwareRecord,
}

pub fn work(tx: &(impl ReadTx + ?Sized), name: &str) -> Result<Option<Work>, StoreError> {
    if tx.device(name)?.is_none() {
        return Ok(None);
    }
    let Some(campaign) = crate::ota::assignment::active(tx, name, false)? else {
        return Ok(None);
    };
    let Some(task) = tx.task(campaign, name)? else {
        return Ok(None);
    };
    if task.state.is_final() {
        return Ok(None);
    }
    let Some(firmware) = tx.firmware(task.firmware)? else {
        return Ok(None);
    };
    Ok(Some(Work {
        campaign,
        state: task.state,
        firmware,
    }))
}

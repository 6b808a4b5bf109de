//! Firmware assignment (issue 10 item 9, ThingsBoard): the image a
//! product's devices, or one device, should run.
//!
//! An assignment is carried by a campaign of its own (target
//! `{"assignment": {"product"|"device": NAME, "kind": KIND}}`), so its
//! tasks, counts, history and statistics are those of any campaign.
//! Setting it queues a task for every device concerned that is not on the
//! assigned version and is free for a task of that kind; a device that
//! turns up later (registered, auto-registered on poll) or becomes free
//! gets its task at its next poll ([`catch_up`]). A device that already
//! had a task in the assignment's campaign does not get another one (no
//! automatic retry loop: re-assign or retry the campaign).
//!
//! `kind` `software` is tracked apart from firmware: a device has a
//! `version` and a `software_version`, and holds at most one unfinished
//! task of each kind (`active_task`, `software_task`).
//!
//! A device's own assignment beats its product's: setting it cancels the
//! device's unfinished task of the product's assignment, clearing it
//! brings the device back under the product's.

use serde_json::json;

use super::campaign::{self, CampaignError};
use super::ledger::{self, Context};
use super::task::TaskEvent;
use super::OtaSettings;
use crate::model::{
    Assigned, AssignmentScope, CampaignId, CampaignRecord, CampaignStatus, DeviceRecord,
    DeviceTasks, FirmwareId, FirmwareRecord, HistoryEntry, TaskRecord, TaskState,
};
use crate::store::{ReadTx, StoreError, Tx};
use crate::time::Timestamp;

/// The firmware `kind` tracked as the device's software.
pub const SOFTWARE: &str = "software";

pub fn is_software(fw: &FirmwareRecord) -> bool {
    fw.kind == SOFTWARE
}

pub fn kind_name(software: bool) -> &'static str {
    if software {
        SOFTWARE
    } else {
        "firmware"
    }
}

/// The device's current version of one kind (`None`: software version
/// never reported).
pub fn current_version(device: &DeviceRecord, software: bool) -> Option<&str> {
    if software {
        device.software_version.as_deref()
    } else {
        Some(device.version.as_str())
    }
}

/// The device's unfinished task of one kind. With [`set_active`] and
/// [`release`], the only place the device's task pointers are read and
/// written (they live in the store's `DeviceTasks` rows, not in the device
/// record, so queuing a campaign leaves device records alone).
pub fn active(
    tx: &(impl ReadTx + ?Sized),
    name: &str,
    software: bool,
) -> Result<Option<CampaignId>, StoreError> {
    Ok(tx.device_tasks(name)?.active(software))
}

/// Points the device's slot of one kind at `campaign` (which also becomes
/// its latest task) or clears it.
pub fn set_active(
    tx: &mut (impl Tx + ?Sized),
    name: &str,
    software: bool,
    campaign: Option<CampaignId>,
) -> Result<(), StoreError> {
    let mut pointers = tx.device_tasks(name)?;
    if pointers.active(software) == campaign && campaign.is_none() {
        return Ok(());
    }
    pointers.set_active(software, campaign);
    tx.put_device_tasks(name, &pointers)
}

/// Clears whichever of the device's slots holds `campaign` (its task
/// finished).
pub fn release(
    tx: &mut (impl Tx + ?Sized),
    name: &str,
    campaign: CampaignId,
) -> Result<(), StoreError> {
    let mut pointers = tx.device_tasks(name)?;
    let before = pointers;
    for software in [false, true] {
        if pointers.active(software) == Some(campaign) {
            pointers.set_active(software, None);
        }
    }
    if pointers != before {
        tx.put_device_tasks(name, &pointers)?;
    }
    Ok(())
}

/// The device's task pointers, for views: unfinished firmware and software
/// task, latest task.
pub fn pointers(tx: &(impl ReadTx + ?Sized), name: &str) -> Result<DeviceTasks, StoreError> {
    tx.device_tasks(name)
}

/// [`pointers`] of many devices, in order, in one batch read (campaign
/// creation).
pub fn pointers_of(
    tx: &(impl ReadTx + ?Sized),
    names: &[&str],
) -> Result<Vec<DeviceTasks>, StoreError> {
    tx.device_tasks_of(names)
}

/// Whether `campaign` is the device's software task (decided before a
/// transition clears the pointer).
pub fn is_software_task(
    tx: &(impl ReadTx + ?Sized),
    name: &str,
    campaign: CampaignId,
) -> Result<bool, StoreError> {
    Ok(active(tx, name, true)? == Some(campaign))
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AssignError {
    #[error("unknown firmware {0}")]
    UnknownFirmware(FirmwareId),
    #[error("unknown device {0}")]
    UnknownDevice(String),
    #[error("firmware {firmware} is for product {firmware_product}, not {product}")]
    WrongProduct {
        firmware: FirmwareId,
        firmware_product: String,
        product: String,
    },
}

/// What [`set`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct SetOutcome {
    pub assigned: Assigned,
    pub kind: &'static str,
    /// Tasks queued now (devices reached later are not counted).
    pub queued: u64,
    /// The assignment this one replaced (its campaign was cancelled).
    pub replaced: Option<Assigned>,
    /// Whether the same firmware was already assigned (nothing changed).
    pub unchanged: bool,
}

/// Devices read per step of a product scan.
const SCAN_PAGE: usize = 10_000;

/// Assigns `firmware` to `scope` (its kind's slot).
pub fn set(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    settings: OtaSettings,
    scope: &AssignmentScope,
    firmware: FirmwareId,
) -> Result<Result<SetOutcome, AssignError>, StoreError> {
    let Some(fw) = tx.firmware(firmware)? else {
        return Ok(Err(AssignError::UnknownFirmware(firmware)));
    };
    let product = match scope {
        AssignmentScope::Product(p) => p.clone(),
        AssignmentScope::Device(d) => match tx.device(d)? {
            Some(device) => device.product,
            None => return Ok(Err(AssignError::UnknownDevice(d.clone()))),
        },
    };
    if fw.product != product {
        return Ok(Err(AssignError::WrongProduct {
            firmware,
            firmware_product: fw.product,
            product,
        }));
    }
    let software = is_software(&fw);
    let mut row = tx.assignments(scope)?;
    if let Some(old) = row.slot(software) {
        if old.firmware == firmware {
            return Ok(Ok(SetOutcome {
                assigned: old.clone(),
                kind: kind_name(software),
                queued: 0,
                replaced: None,
                unchanged: true,
            }));
        }
    }
    // Checks done; writes from here on.
    let replaced = row.slot_mut(software).take();
    if let Some(old) = &replaced {
        cancel_campaign(tx, now, settings, old.campaign)?;
    }
    let id = tx.next_campaign_id()?;
    let mut record = CampaignRecord {
        id,
        firmware: fw.id,
        product: fw.product.clone(),
        target_version: fw.version.clone(),
        target: target_json(scope, software),
        status: CampaignStatus::Running,
        created_at: now,
        total: 0,
        finished_at: None,
        // An assignment has no rollout options: it runs until replaced.
        policy: Default::default(),
        progress: Default::default(),
    };
    tx.put_campaign(&record)?;
    let assigned = Assigned {
        firmware,
        version: fw.version.clone(),
        campaign: id,
        set_at: now,
    };
    *row.slot_mut(software) = Some(assigned.clone());
    tx.put_assignments(scope, &row)?;

    let mut queued = 0;
    match scope {
        AssignmentScope::Device(name) => {
            if let Some(mut device) = tx.device(name)? {
                // The device's own assignment beats its product's: drop
                // its unfinished task of the product's assignment.
                let product_row = tx.assignments(&AssignmentScope::Product(product.clone()))?;
                if let (Some(p), Some(active_id)) =
                    (product_row.slot(software), active(tx, name, software)?)
                {
                    if p.campaign == active_id {
                        if let Some(task) = tx.task(active_id, name)? {
                            let ctx = cancel_ctx(now, settings, name);
                            ledger::transition(
                                tx,
                                &ctx,
                                &mut device,
                                &task,
                                &TaskEvent::Cancelled,
                            )?
                            .ok();
                        }
                    }
                }
                if needs(tx, name, &device, software, &fw)? {
                    queue_one(tx, now, &mut record, &fw, software, name, &device, None)?;
                    queued += 1;
                }
                // What `ledger::transition` changed in the record.
                tx.put_device(name, &device)?;
                tx.put_campaign(&record)?;
            }
        }
        AssignmentScope::Product(p) => {
            let mut after: Option<String> = None;
            loop {
                let page = tx.devices(after.as_deref(), SCAN_PAGE)?;
                let Some((last, _)) = page.last() else {
                    break;
                };
                after = Some(last.clone());
                for (name, device) in page {
                    if device.product != *p || !needs(tx, &name, &device, software, &fw)? {
                        continue;
                    }
                    let own = tx.assignments(&AssignmentScope::Device(name.clone()))?;
                    if own.slot(software).is_some() {
                        continue;
                    }
                    queue_one(tx, now, &mut record, &fw, software, &name, &device, None)?;
                    queued += 1;
                }
            }
            tx.put_campaign(&record)?;
        }
    }
    Ok(Ok(SetOutcome {
        assigned,
        kind: kind_name(software),
        queued,
        replaced,
        unchanged: false,
    }))
}

/// What [`clear`] removed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cleared {
    pub firmware: Option<Assigned>,
    pub software: Option<Assigned>,
}

/// Removes `scope`'s assignment of one kind (`Some(software)`) or both;
/// their campaigns are cancelled. A device falls back to its product's
/// assignment at once.
pub fn clear(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    settings: OtaSettings,
    scope: &AssignmentScope,
    kind: Option<bool>,
) -> Result<Result<Cleared, AssignError>, StoreError> {
    if let AssignmentScope::Device(d) = scope {
        if tx.device(d)?.is_none() {
            return Ok(Err(AssignError::UnknownDevice(d.clone())));
        }
    }
    let mut row = tx.assignments(scope)?;
    let mut cleared = Cleared::default();
    for software in [false, true] {
        if kind.is_some_and(|k| k != software) {
            continue;
        }
        if let Some(old) = row.slot_mut(software).take() {
            cancel_campaign(tx, now, settings, old.campaign)?;
            if software {
                cleared.software = Some(old);
            } else {
                cleared.firmware = Some(old);
            }
        }
    }
    tx.put_assignments(scope, &row)?;
    if let AssignmentScope::Device(name) = scope {
        if let Some(device) = tx.device(name)? {
            catch_up(tx, now, name, &device)?;
        }
    }
    Ok(Ok(cleared))
}

/// The assignment that applies to a device for one kind: its own, else
/// its product's.
pub fn effective(
    tx: &(impl ReadTx + ?Sized),
    name: &str,
    device: &DeviceRecord,
    software: bool,
) -> Result<Option<(AssignmentScope, Assigned)>, StoreError> {
    let own = AssignmentScope::Device(name.to_string());
    if let Some(a) = tx.assignments(&own)?.slot(software) {
        return Ok(Some((own, a.clone())));
    }
    let product = AssignmentScope::Product(device.product.clone());
    Ok(tx
        .assignments(&product)?
        .slot(software)
        .cloned()
        .map(|a| (product, a)))
}

/// Gives `device` the task of each assignment that applies to it and that
/// it has not had yet, when it is free for a task of that kind and not on
/// the assigned version. Returns the campaigns that queued a task. Called on registration and on every poll
/// (two point reads when nothing applies).
pub fn catch_up(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    name: &str,
    device: &DeviceRecord,
) -> Result<Vec<CampaignId>, StoreError> {
    let mut queued = Vec::new();
    for software in [false, true] {
        if active(tx, name, software)?.is_some() {
            continue;
        }
        let Some((_, a)) = effective(tx, name, device, software)? else {
            continue;
        };
        if current_version(device, software) == Some(a.version.as_str()) {
            continue;
        }
        // One task per device per assignment; only one cancelled by an
        // override (or a per-device cancel) is given again.
        let previous = tx.task(a.campaign, name)?;
        if previous.as_ref().is_some_and(|t| !was_cancelled(t)) {
            continue;
        }
        let Some(mut record) = tx.campaign(a.campaign)? else {
            continue;
        };
        if record.status == CampaignStatus::Cancelled {
            continue;
        }
        // The image may have been deleted since (its campaign finished).
        let Some(fw) = tx.firmware(a.firmware)? else {
            continue;
        };
        if fw.product != device.product {
            continue;
        }
        queue_one(
            tx,
            now,
            &mut record,
            &fw,
            software,
            name,
            device,
            previous.as_ref(),
        )?;
        tx.put_campaign(&record)?;
        queued.push(a.campaign);
    }
    Ok(queued)
}

/// [`catch_up`] for devices just registered by the operator.
pub fn on_registered(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    names: &[String],
) -> Result<(), StoreError> {
    for name in names {
        if let Some(device) = tx.device(name)? {
            catch_up(tx, now, name, &device)?;
        }
    }
    Ok(())
}

fn target_json(scope: &AssignmentScope, software: bool) -> serde_json::Value {
    let (key, name) = match scope {
        AssignmentScope::Product(p) => ("product", p),
        AssignmentScope::Device(d) => ("device", d),
    };
    json!({"assignment": {key: name, "kind": kind_name(software)}})
}

/// Whether the device should get a task for `fw` now.
fn needs(
    tx: &(impl ReadTx + ?Sized),
    name: &str,
    device: &DeviceRecord,
    software: bool,
    fw: &FirmwareRecord,
) -> Result<bool, StoreError> {
    Ok(
        current_version(device, software) != Some(fw.version.as_str())
            && active(tx, name, software)?.is_none(),
    )
}

fn cancel_ctx<'a>(now: Timestamp, settings: OtaSettings, name: &'a str) -> Context<'a> {
    Context {
        now,
        timeout_ms: settings.timeout_ms,
        device_name: name,
        alive: false,
        cause: "cancel",
    }
}

/// Cancels a replaced assignment's campaign (already over: nothing to do).
fn cancel_campaign(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    settings: OtaSettings,
    id: CampaignId,
) -> Result<(), StoreError> {
    match campaign::cancel(tx, now, settings, id)? {
        Ok(_) | Err(CampaignError::AlreadyFinished(_)) | Err(CampaignError::UnknownCampaign(_)) => {
            Ok(())
        }
        // Cancel answers nothing else for a campaign that exists; any other
        // refusal leaves the replaced campaign as it is.
        Err(_) => Ok(()),
    }
}

fn was_cancelled(task: &TaskRecord) -> bool {
    task.state == TaskState::Failed && task.error.as_deref() == Some("cancelled")
}

/// Queues one task of `record` for the device (over `previous`, a
/// cancelled task of the same campaign, if any), points the device's slot
/// at it and counts it in the campaign, reopening it if it had finished.
/// The caller writes the campaign (once for a whole product scan).
#[allow(clippy::too_many_arguments)]
fn queue_one(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    record: &mut CampaignRecord,
    fw: &FirmwareRecord,
    software: bool,
    name: &str,
    device: &DeviceRecord,
    previous: Option<&TaskRecord>,
) -> Result<(), StoreError> {
    let task = TaskRecord::queued(
        record.id,
        fw.id,
        &fw.version,
        now,
        0,
        record.policy.timeout_ms,
    );
    ledger::put_task(tx, name, previous, &task)?;
    set_active(tx, name, software, Some(record.id))?;
    let mut entry = HistoryEntry::note(
        now,
        "queued",
        format!(
            "assignment {} ({}): {} -> {}",
            record.id,
            kind_name(software),
            current_version(device, software).unwrap_or("unknown"),
            fw.version
        ),
    );
    entry.campaign = Some(record.id);
    entry.to = Some(TaskState::Queued);
    tx.append_history(name, &entry)?;
    if previous.is_none() {
        record.total += 1;
    }
    if record.status == CampaignStatus::Finished {
        record.status = CampaignStatus::Running;
        record.finished_at = None;
    }
    Ok(())
}

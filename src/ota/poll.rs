//! `POST /ota/{device}/poll`: "anything for me?"

use super::campaign::{
    self,
    gate::{self, Gate},
};
use super::ledger::{self, Context};
use super::task::TaskEvent;
use super::{task_id, OtaSettings};
use crate::model::{DeviceRecord, FirmwareRecord, HistoryEntry, PendingReason, TaskState};
use crate::store::{StoreError, Tx};
use crate::time::Timestamp;

#[derive(Debug, Clone, PartialEq)]
pub struct PollRequest {
    pub product: String,
    pub version: String,
    pub battery: Option<u8>,
    /// Largest block size the device takes.
    pub block: Option<u32>,
    /// The version of the device's software (firmware of kind
    /// `software`), when it reports one.
    pub software_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskOffer {
    pub task: String,
    pub version: String,
    pub uri: String,
    pub size: u64,
    pub sha256: Vec<u8>,
    /// Present when the firmware's signature algorithm is MD5.
    pub md5: Option<Vec<u8>>,
    /// Issue 11 item 5: the signed COSE_Sign1 manifest, when the
    /// firmware's product has a signing key.
    pub manifest: Option<Vec<u8>>,
}

impl TaskOffer {
    /// The offer of `fw` to device `name` for `campaign`'s task (the poll
    /// answer and the Observe push build it the same way).
    pub fn new(
        tx: &(impl crate::store::ReadTx + ?Sized),
        fw: &FirmwareRecord,
        name: &str,
        campaign: u64,
    ) -> Result<TaskOffer, StoreError> {
        Ok(TaskOffer {
            task: task_id(campaign),
            version: fw.version.clone(),
            uri: task_uri(fw.id, name, campaign),
            size: fw.size,
            md5: (fw.signature == "md5").then(|| fw.md5.clone()),
            sha256: fw.sha256.clone(),
            manifest: super::signing::manifest_for(tx, fw)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum PollAnswer {
    Task(TaskOffer),
    Nothing,
    /// A campaign's `min_battery` turned the device away: `{}` with the
    /// low-battery Max-Age (come back later).
    LowBattery,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PollError {
    #[error("unknown device {0} (auto_register is off)")]
    UnknownDevice(String),
    #[error("device {device} is registered as product {registered}, not {claimed}")]
    WrongProduct {
        device: String,
        registered: String,
        claimed: String,
    },
}

/// The URI a device downloads its task's image from. It names the device
/// and task so the server can infer progress from the blocks fetched.
pub fn task_uri(firmware: u64, device: &str, campaign: u64) -> String {
    format!("/ota/fw/{firmware}/{device}/{}", task_id(campaign))
}

pub fn poll(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    settings: OtaSettings,
    name: &str,
    peer: Option<String>,
    request: &PollRequest,
) -> Result<Result<PollAnswer, PollError>, StoreError> {
    let existing = tx.device(name)?;
    let mut history = Vec::new();
    let mut device = match existing {
        Some(device) if device.product != request.product => {
            return Ok(Err(PollError::WrongProduct {
                device: name.to_string(),
                registered: device.product,
                claimed: request.product.clone(),
            }))
        }
        Some(device) => device,
        None if settings.auto_register => {
            history.push(HistoryEntry::note(
                now,
                "registered",
                format!("auto-registered on {}", request.version),
            ));
            DeviceRecord::new(&request.product, &request.version, now)
        }
        None => return Ok(Err(PollError::UnknownDevice(name.to_string()))),
    };
    if device.version != request.version {
        history.push(HistoryEntry::note(
            now,
            "version",
            format!("{} -> {}", device.version, request.version),
        ));
        device.version = request.version.clone();
    }
    if let Some(sw) = &request.software_version {
        if device.software_version.as_ref() != Some(sw) {
            history.push(HistoryEntry::note(
                now,
                "software_version",
                format!(
                    "{} -> {sw}",
                    device.software_version.as_deref().unwrap_or("unknown")
                ),
            ));
            device.software_version = Some(sw.clone());
        }
    }
    device.last_seen = Some(now);
    device.last_addr = peer;
    if request.battery.is_some() {
        device.battery = request.battery;
    }

    for h in &history {
        tx.append_history(name, h)?;
    }

    // Assignments (issue 10 item 9): a device new or free for a task gets
    // the one its assignment calls for.
    super::assignment::catch_up(tx, now, name, &device)?;

    let mut answer = PollAnswer::Nothing;
    // Dynamic campaigns (issue 10) take a device whose version now matches.
    campaign::dynamic::admit(tx, now, name, &device)?;
    // One task per answer: the firmware task first, then the software one.
    for software in [false, true] {
        let Some(campaign) = super::assignment::active(tx, name, software)? else {
            continue;
        };
        if matches!(answer, PollAnswer::Task(_)) {
            break;
        }
        let reported = if software {
            request.software_version.as_deref()
        } else {
            Some(request.version.as_str())
        };
        match tx.task(campaign, name)? {
            Some(mut task) => {
                if task.state == TaskState::Queued && reported != Some(task.target_version.as_str())
                {
                    match gate::check(tx, now, name, &device, &mut task)? {
                        Gate::Open => {}
                        Gate::Wait(reason) => {
                            if reason == PendingReason::LowBattery {
                                answer = PollAnswer::LowBattery;
                            }
                            let outcome = format!("waiting: {}", reason.as_str());
                            tx.record_poll(name, now, &outcome)?;
                            tx.put_device(name, &device)?;
                            return Ok(Ok(answer));
                        }
                    }
                }
                let ctx = Context {
                    now,
                    timeout_ms: settings.timeout_ms,
                    device_name: name,
                    alive: true,
                    cause: "poll",
                };
                let event = if reported == Some(task.target_version.as_str()) {
                    TaskEvent::ReachedTarget
                } else {
                    TaskEvent::Handed
                };
                // Neither event can be rejected; treat a rejection as "no change".
                let updated = ledger::transition(tx, &ctx, &mut device, &task, &event)?
                    .ok()
                    .flatten();
                let current = updated.as_ref().unwrap_or(&task);
                if !current.state.is_final() {
                    if let Some(fw) = tx.firmware(task.firmware)? {
                        answer = PollAnswer::Task(TaskOffer::new(tx, &fw, name, campaign)?);
                    }
                }
            }
            // A dangling pointer (should not happen): forget it.
            None => super::assignment::set_active(tx, name, software, None)?,
        }
    }
    let outcome = match &answer {
        PollAnswer::Task(offer) => {
            format!("handed task {} (version {})", offer.task, offer.version)
        }
        PollAnswer::Nothing | PollAnswer::LowBattery => "nothing to do".to_string(),
    };
    tx.record_poll(name, now, &outcome)?;
    tx.put_device(name, &device)?;
    Ok(Ok(answer))
}

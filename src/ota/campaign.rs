//! Campaigns: roll one firmware out to a set of devices.
//!
//! Creating a campaign queues one task per target device in the same
//! transaction (static campaign: the set is fixed at creation). Conflict
//! rule: a device keeps at most one unfinished task, so devices busy with
//! another campaign are skipped and reported, as are devices already on the
//! target version and (for explicit lists) unknown names or devices of
//! another product.

use std::collections::{HashMap, HashSet};

use redb::{ReadableTable, WriteTransaction};
use serde::Serialize;

use super::ledger::{self, Context};
use super::task::{TaskEvent, TaskState};
use super::OtaSettings;
use crate::store::records::{
    decode, encode, CampaignRecord, CampaignStatus, DeviceRecord, FirmwareRecord, HistoryEntry,
    TaskRecord,
};
use crate::store::{access, next_id, schema, StoreError};

/// Largest explicit device list one campaign takes.
pub const MAX_LISTED_DEVICES: usize = 10_000;

#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    All,
    SourceVersions(Vec<String>),
    Devices(Vec<String>),
}

impl Target {
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Target::All => serde_json::json!({"all": true}),
            Target::SourceVersions(v) => serde_json::json!({"source_versions": v}),
            // The list itself can be 10,000 names; keep the record small.
            Target::Devices(d) => serde_json::json!({"device_count": d.len()}),
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CampaignError {
    #[error("unknown firmware {0}")]
    UnknownFirmware(u64),
    #[error("unknown campaign {0}")]
    UnknownCampaign(u64),
    #[error("campaign {0} is already finished")]
    AlreadyFinished(u64),
}

/// Why listed devices got no task.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Skipped {
    /// Names that are not registered.
    pub unknown: Vec<String>,
    /// Registered under another product than the firmware's.
    pub wrong_product: Vec<String>,
    /// Already running the target version.
    pub up_to_date: Vec<String>,
    /// Busy with an unfinished task of another campaign.
    pub busy: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Created {
    pub campaign: CampaignRecord,
    pub skipped: Skipped,
}

pub fn create(
    txn: &WriteTransaction,
    now: u64,
    firmware: u64,
    target: &Target,
) -> Result<Result<Created, CampaignError>, StoreError> {
    let Some(fw) = access::firmware(txn, firmware)? else {
        return Ok(Err(CampaignError::UnknownFirmware(firmware)));
    };
    let mut skipped = Skipped::default();
    // Pick the devices first (reading), then write: redb does not allow
    // writing a table while iterating it.
    let mut chosen: Vec<(String, DeviceRecord)> = Vec::new();
    let mut consider = |name: &str, device: DeviceRecord, skipped: &mut Skipped| {
        if device.product != fw.product {
            skipped.wrong_product.push(name.to_string());
        } else if device.version == fw.version {
            skipped.up_to_date.push(name.to_string());
        } else if device.active_task.is_some() {
            skipped.busy.push(name.to_string());
        } else {
            chosen.push((name.to_string(), device));
        }
    };
    match target {
        Target::Devices(names) => {
            let mut seen = HashSet::new();
            for name in names {
                if !seen.insert(name.as_str()) {
                    continue;
                }
                match access::device(txn, name)? {
                    Some(device) => consider(name, device, &mut skipped),
                    None => skipped.unknown.push(name.clone()),
                }
            }
        }
        Target::All | Target::SourceVersions(_) => {
            let versions: Option<HashSet<&str>> = match target {
                Target::SourceVersions(v) => Some(v.iter().map(String::as_str).collect()),
                _ => None,
            };
            let table = txn.open_table(schema::DEVICES)?;
            for entry in table.iter()? {
                let (name, value) = entry?;
                // Issue 8 item 7c: a corrupt device is left out, not a 500.
                let Some(device) = crate::store::integrity::decode_or_skip::<DeviceRecord>(
                    "devices",
                    name.value(),
                    value.value(),
                ) else {
                    continue;
                };
                // Other products are simply not part of an "all" target.
                if device.product != fw.product {
                    continue;
                }
                if let Some(versions) = &versions {
                    if !versions.contains(device.version.as_str()) {
                        continue;
                    }
                }
                consider(name.value(), device, &mut skipped);
            }
        }
    }

    let id = next_id(txn, schema::NEXT_CAMPAIGN_ID)?;
    let total = chosen.len() as u64;
    queue_tasks(txn, now, id, &fw, chosen)?;
    let campaign = CampaignRecord {
        id,
        firmware: fw.id,
        product: fw.product.clone(),
        target_version: fw.version.clone(),
        target: target.to_json(),
        status: if total == 0 {
            CampaignStatus::Finished
        } else {
            CampaignStatus::Running
        },
        created_at: now,
        total,
        finished_at: (total == 0).then_some(now),
    };
    access::put_campaign(txn, &campaign)?;
    Ok(Ok(Created { campaign, skipped }))
}

/// Queues one task per chosen device. The bulk form of
/// `access::put_task` + `put_device` + `append_history` for a campaign of a
/// million devices: each table is opened once, history sequence numbers
/// are reserved in one step, and the campaign's `queued` counter is written
/// once. Queued tasks have no deadline, so `DEADLINES` is untouched.
fn queue_tasks(
    txn: &WriteTransaction,
    now: u64,
    id: u64,
    fw: &FirmwareRecord,
    chosen: Vec<(String, DeviceRecord)>,
) -> Result<(), StoreError> {
    let total = chosen.len() as u64;
    if total == 0 {
        return Ok(());
    }
    let first_seq = {
        let mut counters = txn.open_table(schema::COUNTERS)?;
        let first = counters
            .get(schema::NEXT_HISTORY_SEQ)?
            .map(|v| v.value())
            .unwrap_or(1);
        counters.insert(schema::NEXT_HISTORY_SEQ, first + total)?;
        first
    };
    let mut tasks = txn.open_table(schema::TASKS)?;
    let mut devices = txn.open_table(schema::DEVICES)?;
    let mut history = txn.open_table(schema::HISTORY)?;
    let task = TaskRecord {
        campaign: id,
        firmware: fw.id,
        target_version: fw.version.clone(),
        state: TaskState::Queued,
        progress: 0,
        error: None,
        created_at: now,
        updated_at: now,
        last_activity: None,
        deadline: None,
    };
    let task_bytes = encode(&task);
    // The history entry depends only on the source version: encode it once
    // per version, not once per device.
    let mut entries: HashMap<String, Vec<u8>> = HashMap::new();
    for (seq, (name, mut device)) in (first_seq..).zip(chosen) {
        tasks.insert((id, name.as_str()), task_bytes.as_slice())?;
        let entry = entries.entry(device.version.clone()).or_insert_with(|| {
            let mut entry = HistoryEntry::note(
                now,
                "queued",
                format!("campaign {id}: {} -> {}", device.version, fw.version),
            );
            entry.campaign = Some(id);
            entry.to = Some(TaskState::Queued);
            encode(&entry)
        });
        history.insert((name.as_str(), seq), entry.as_slice())?;
        device.active_task = Some(id);
        device.last_task = Some(id);
        devices.insert(name.as_str(), encode(&device).as_slice())?;
    }
    txn.open_table(schema::CAMPAIGN_COUNTS)?
        .insert((id, TaskState::Queued.index()), total)?;
    Ok(())
}

/// Cancels a campaign: its unfinished tasks fail with error `cancelled`.
/// Returns how many tasks were cancelled.
pub fn cancel(
    txn: &WriteTransaction,
    now: u64,
    settings: OtaSettings,
    id: u64,
) -> Result<Result<u64, CampaignError>, StoreError> {
    let Some(mut campaign) = access::campaign(txn, id)? else {
        return Ok(Err(CampaignError::UnknownCampaign(id)));
    };
    if campaign.status != CampaignStatus::Running {
        return Ok(Err(CampaignError::AlreadyFinished(id)));
    }
    let open: Vec<(String, TaskRecord)> = {
        let table = txn.open_table(schema::TASKS)?;
        let mut open = Vec::new();
        for entry in table.range((id, "")..(id + 1, ""))? {
            let (key, value) = entry?;
            let task: TaskRecord = decode(value.value())?;
            if !task.state.is_final() {
                open.push((key.value().1.to_string(), task));
            }
        }
        open
    };
    let mut cancelled = 0;
    for (name, task) in open {
        let ctx = Context {
            now,
            timeout_ms: settings.timeout_ms,
            device_name: &name,
            alive: false,
            cause: "cancel",
        };
        if ledger::transition_device(txn, &ctx, &task, &TaskEvent::Cancelled)? {
            cancelled += 1;
        }
    }
    campaign.status = CampaignStatus::Cancelled;
    campaign.finished_at = Some(now);
    access::put_campaign(txn, &campaign)?;
    Ok(Ok(cancelled))
}

/// The status shown to operators: a running campaign whose tasks all
/// finished is `finished`.
pub fn effective_status(campaign: &CampaignRecord, counts: &[u64; 8]) -> CampaignStatus {
    if campaign.status == CampaignStatus::Running && access::unfinished(counts) == 0 {
        CampaignStatus::Finished
    } else {
        campaign.status
    }
}

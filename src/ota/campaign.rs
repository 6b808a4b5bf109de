//! Campaigns: roll one firmware out to a set of devices.
//!
//! Creating a campaign queues one task per target device in the same
//! transaction (static campaign: the set is fixed at creation). Conflict
//! rule: a device keeps at most one unfinished task, so devices busy with
//! another campaign are skipped and reported, as are devices already on the
//! target version and (for explicit lists) unknown names or devices of
//! another product.

pub mod conflict;
pub mod dynamic;
pub mod gate;
pub mod lifecycle;
pub mod operator;
pub mod options;

use std::collections::{BTreeSet, HashSet};

use serde::Serialize;

use super::ledger::{self, Context};
use super::task::{TaskEvent, TaskState};
use super::OtaSettings;
use crate::model::{
    CampaignId, CampaignPolicy, CampaignProgress, CampaignRecord, CampaignStatus, DeviceRecord,
    DeviceTasks, FirmwareId, FirmwareRecord, StateCounts, TaskRecord, Timer,
};
use crate::store::{ReadTx, StoreError, Tx};
use crate::time::Timestamp;

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
    #[error("firmware {0} is not verified (run a verify campaign first, or create with \"force\": true)")]
    Unverified(u64),
    #[error("campaign {0} of the same product moves overlapping source versions to another target version and is unfinished")]
    Conflict(u64),
    #[error("campaign {0} is not paused")]
    NotPaused(u64),
    #[error("device {device} has no task in campaign {campaign}")]
    UnknownTask { campaign: u64, device: String },
    #[error("{0}")]
    Requeue(#[from] lifecycle::RequeueError),
}

/// A create request: target plus the validated v2 options.
#[derive(Debug, Clone)]
pub struct NewCampaign {
    pub firmware: FirmwareId,
    pub target: Target,
    pub policy: CampaignPolicy,
    /// `[campaigns] require_verified`.
    pub require_verified: bool,
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

/// Devices read per step of an "all" or "source versions" scan.
const SCAN_PAGE: usize = 10_000;

/// A v1 campaign: no options.
pub fn create(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    firmware: FirmwareId,
    target: &Target,
) -> Result<Result<Created, CampaignError>, StoreError> {
    let new = NewCampaign {
        firmware,
        target: target.clone(),
        policy: CampaignPolicy {
            kind: "batch".into(),
            ..CampaignPolicy::default()
        },
        require_verified: false,
    };
    create_with(tx, now, &new)
}

pub fn create_with(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    new: &NewCampaign,
) -> Result<Result<Created, CampaignError>, StoreError> {
    let (firmware, target) = (new.firmware, &new.target);
    let Some(fw) = tx.firmware(firmware)? else {
        return Ok(Err(CampaignError::UnknownFirmware(firmware)));
    };
    let batch = new.policy.kind != "verify";
    if batch && new.require_verified && !fw.verified && !new.policy.forced {
        return Ok(Err(CampaignError::Unverified(fw.id)));
    }
    let mut skipped = Skipped::default();
    let mut chosen: Vec<Chosen> = Vec::new();
    // Software images compare and occupy the software slot (issue 10 item 9).
    let software = super::assignment::is_software(&fw);
    let reader = &*tx;
    // Devices that passed the product and version checks, with their
    // version, waiting for their task pointers to be read in one batch.
    let mut candidates: Vec<(String, String)> = Vec::new();
    match target {
        Target::Devices(names) => {
            let mut seen = HashSet::new();
            for name in names {
                if !seen.insert(name.as_str()) {
                    continue;
                }
                match reader.device(name)? {
                    Some(device) => {
                        screen(&fw, software, name, device, &mut skipped, &mut candidates)
                    }
                    None => skipped.unknown.push(name.clone()),
                }
            }
            take_free(reader, software, &mut candidates, &mut skipped, &mut chosen)?;
        }
        Target::SourceVersions(versions) => {
            // The version index gives the names without reading a record
            // (issue 10: a million devices in under 5 s).
            let versions: BTreeSet<&str> = versions.iter().map(String::as_str).collect();
            for version in &versions {
                let mut after: Option<String> = None;
                loop {
                    let page = reader.device_names_on_version(
                        &fw.product,
                        software,
                        version,
                        after.as_deref(),
                        SCAN_PAGE,
                    )?;
                    let Some(last) = page.last() else {
                        break;
                    };
                    after = Some(last.clone());
                    if *version == fw.version {
                        skipped.up_to_date.extend(page);
                        continue;
                    }
                    candidates.extend(page.into_iter().map(|n| (n, version.to_string())));
                    take_free(reader, software, &mut candidates, &mut skipped, &mut chosen)?;
                }
            }
            if versions.len() > 1 {
                // Each version's devices came in name order; waves take
                // the campaign's devices in name order (ADMIN_API.md).
                chosen.sort_unstable_by(|a, b| a.name.cmp(&b.name));
                skipped.up_to_date.sort_unstable();
                skipped.busy.sort_unstable();
            }
        }
        Target::All => {
            let mut after: Option<String> = None;
            loop {
                let page = reader.devices(after.as_deref(), SCAN_PAGE)?;
                let Some((last, _)) = page.last() else {
                    break;
                };
                after = Some(last.clone());
                for (name, device) in page {
                    // Other products are simply not part of an "all" target.
                    if device.product == fw.product {
                        screen(&fw, software, &name, device, &mut skipped, &mut candidates);
                    }
                }
                take_free(reader, software, &mut candidates, &mut skipped, &mut chosen)?;
            }
        }
    }

    let mut policy = new.policy.clone();
    policy.source_versions = match target {
        Target::All => None,
        Target::SourceVersions(v) => Some(v.clone()),
        Target::Devices(_) => Some(
            chosen
                .iter()
                .map(|c| c.version.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
        ),
    };
    if batch {
        if let Some(other) = conflict::find(tx, &fw, policy.source_versions.as_deref())? {
            return Ok(Err(CampaignError::Conflict(other)));
        }
    }

    let id = tx.next_campaign_id()?;
    let total = chosen.len() as u64;
    let wave_sizes = options::wave_sizes(&policy.waves, total);
    let mut template = TaskRecord::queued(id, fw.id, &fw.version, now, 0, policy.timeout_ms);
    template.queued_unnoted = true;
    queue_tasks(tx, &template, &fw, &wave_sizes, chosen)?;
    let status = if let Some(start) = policy.start_at {
        tx.set_timer(start, &Timer::CampaignStart(id))?;
        CampaignStatus::Scheduled
    } else {
        CampaignStatus::Running
    };
    if policy.dynamic {
        tx.set_dynamic_campaign(&fw.product, id, true)?;
        if let Some(end) = policy.end_at {
            tx.set_timer(end, &Timer::CampaignEnd(id))?;
        }
    }
    let mut campaign = CampaignRecord {
        id,
        firmware: fw.id,
        product: fw.product.clone(),
        target_version: fw.version.clone(),
        target: target.to_json(),
        status,
        created_at: now,
        total,
        finished_at: None,
        policy,
        progress: CampaignProgress {
            wave_final: vec![0; wave_sizes.len()],
            wave_failed: vec![0; wave_sizes.len()],
            wave_sizes,
            ..CampaignProgress::default()
        },
    };
    if status == CampaignStatus::Running && lifecycle::is_done(&campaign, total) {
        campaign.status = CampaignStatus::Finished;
        campaign.finished_at = Some(now);
    }
    // A first wave of no device (a tiny campaign) opens the next at once.
    if total > 0 && campaign.progress.wave_sizes.first() == Some(&0) {
        tx.set_timer(now, &Timer::WaveCheck(id))?;
    }
    tx.put_campaign(&campaign)?;
    Ok(Ok(Created { campaign, skipped }))
}

/// Devices handed to one [`Tx::queue_tasks`] call: bounds the batch a
/// backend builds at once.
const QUEUE_CHUNK: usize = 10_000;

/// Skips a device of another product or already on the target version;
/// keeps the others as candidates.
fn screen(
    fw: &FirmwareRecord,
    software: bool,
    name: &str,
    device: DeviceRecord,
    skipped: &mut Skipped,
    candidates: &mut Vec<(String, String)>,
) {
    if device.product != fw.product {
        skipped.wrong_product.push(name.to_string());
    } else if super::assignment::current_version(&device, software) == Some(&fw.version) {
        skipped.up_to_date.push(name.to_string());
    } else {
        candidates.push((name.to_string(), device.version));
    }
}

/// Reads the candidates' task pointers in one batch: the busy ones are
/// skipped, the free ones chosen. Empties `candidates`.
fn take_free(
    tx: &(impl ReadTx + ?Sized),
    software: bool,
    candidates: &mut Vec<(String, String)>,
    skipped: &mut Skipped,
    chosen: &mut Vec<Chosen>,
) -> Result<(), StoreError> {
    let names: Vec<&str> = candidates.iter().map(|(n, _)| n.as_str()).collect();
    let pointers = super::assignment::pointers_of(tx, &names)?;
    for ((name, version), pointers) in candidates.drain(..).zip(pointers) {
        if pointers.active(software).is_some() {
            skipped.busy.push(name);
        } else {
            chosen.push(Chosen {
                name,
                version,
                pointers,
            });
        }
    }
    Ok(())
}

/// A device a new campaign takes: its name and its task pointers as read
/// (so queuing writes them without a read).
struct Chosen {
    name: String,
    /// The firmware version (a listed target's `source_versions`).
    version: String,
    pointers: DeviceTasks,
}

/// Queues one task per chosen device through the store's bulk operation,
/// the first `wave_sizes[0]` devices in wave 0 and so on. The devices'
/// `queued` history entries are not written now (`queued_unnoted`).
/// Queued tasks have no deadline, so no timer is set. Device records are
/// not written: only their task pointers.
fn queue_tasks(
    tx: &mut (impl Tx + ?Sized),
    template: &TaskRecord,
    fw: &FirmwareRecord,
    wave_sizes: &[u64],
    chosen: Vec<Chosen>,
) -> Result<(), StoreError> {
    let id: CampaignId = template.campaign;
    let mut task = template.clone();
    let software = super::assignment::is_software(fw);
    // Wave of each position: index into `wave_sizes` by running total.
    let mut wave_end = wave_sizes.first().copied().unwrap_or(u64::MAX);
    let mut chunk = Vec::with_capacity(QUEUE_CHUNK.min(chosen.len()));
    for (position, chosen) in (0u64..).zip(chosen) {
        while position >= wave_end && usize::from(task.wave) + 1 < wave_sizes.len() {
            // A new wave: flush the chunk under the old wave's template.
            tx.queue_tasks(&task, &chunk)?;
            chunk.clear();
            task.wave += 1;
            wave_end += wave_sizes[usize::from(task.wave)];
        }
        let Chosen {
            name, mut pointers, ..
        } = chosen;
        // The bulk form of `assignment::set_active` (the pointers were
        // read in the same transaction).
        pointers.set_active(software, Some(id));
        chunk.push((name, pointers));
        if chunk.len() >= QUEUE_CHUNK {
            tx.queue_tasks(&task, &chunk)?;
            chunk.clear();
        }
    }
    tx.queue_tasks(&task, &chunk)
}

/// Tasks read per step of a cancel.
const CANCEL_PAGE: usize = 10_000;

/// Cancels a campaign: its unfinished tasks fail with error `cancelled`.
/// Returns how many tasks were cancelled.
pub fn cancel(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    settings: OtaSettings,
    id: CampaignId,
) -> Result<Result<u64, CampaignError>, StoreError> {
    let Some(mut campaign) = tx.campaign(id)? else {
        return Ok(Err(CampaignError::UnknownCampaign(id)));
    };
    if !campaign.status.is_open() {
        return Ok(Err(CampaignError::AlreadyFinished(id)));
    }
    // Cancelled first, so what the cancelled tasks trigger (retries,
    // waves) sees a closed campaign.
    campaign.status = CampaignStatus::Cancelled;
    campaign.finished_at = Some(now);
    tx.put_campaign(&campaign)?;
    if campaign.policy.dynamic {
        tx.set_dynamic_campaign(&campaign.product, id, false)?;
    }
    let mut cancelled = 0;
    let mut after: Option<String> = None;
    loop {
        let page = tx.tasks(id, after.as_deref(), CANCEL_PAGE)?;
        let Some((last, _)) = page.last() else {
            break;
        };
        after = Some(last.clone());
        for (name, task) in page.into_iter().filter(|(_, t)| !t.state.is_final()) {
            let ctx = Context {
                now,
                timeout_ms: settings.timeout_ms,
                device_name: &name,
                alive: false,
                cause: "cancel",
            };
            if ledger::transition_device(tx, &ctx, &task, &TaskEvent::Cancelled)? {
                cancelled += 1;
            }
        }
    }
    Ok(Ok(cancelled))
}

/// The status shown to operators: a running campaign whose tasks all
/// finished (no retry pending, no longer dynamic) is `finished`.
pub fn effective_status(campaign: &CampaignRecord, counts: &StateCounts) -> CampaignStatus {
    if campaign.status == CampaignStatus::Running
        && lifecycle::is_done(campaign, TaskState::unfinished(counts))
    {
        CampaignStatus::Finished
    } else {
        campaign.status
    }
}

//! Statistics for operators (issue 10 item 12): per campaign and per
//! firmware, counts per state and per pending reason, the devices in the
//! middle of an update with their progress, failures grouped by error;
//! and the version distribution of a product.
//!
//! Counts per state come from the store's counters (no scan). Everything
//! else needs the tasks themselves: at most `max_scan` tasks are read per
//! request, and the answer says whether it saw them all (`complete`), so a
//! campaign of a million devices costs a bounded read, not a full scan.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::model::{CampaignId, FirmwareId, StateCounts, TaskRecord, TaskState};
use crate::store::{ReadTx, StoreError};

/// Tasks read at most for one statistics request.
pub const MAX_SCAN: usize = 200_000;
/// Devices listed at most under `in_progress.devices`.
pub const MAX_LISTED: usize = 100;
/// Distinct failure reasons kept; the rest are counted under `other`.
pub const MAX_REASONS: usize = 50;
/// Versions named in a distribution; the rest are `others`.
pub const TOP_VERSIONS: usize = 5;

/// A device in the middle of its update.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Updating {
    pub device: String,
    pub campaign: CampaignId,
    pub state: &'static str,
    pub progress: u8,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct InProgress {
    /// Tasks handed out and not final (initiated .. updating).
    pub total: u64,
    /// Their mean progress, percent.
    pub mean_progress: u8,
    /// The first [`MAX_LISTED`] of them in device-name order.
    pub devices: Vec<Updating>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Pending {
    /// Tasks still `queued`.
    pub total: u64,
    /// Why they wait (`scheduled`, `offline`, `rate_limited`, `wave`,
    /// `low_battery`, or `waiting` for their next poll).
    pub reasons: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Stats {
    /// Tasks per state (from the counters: always exact).
    pub counts: BTreeMap<&'static str, u64>,
    pub pending: Pending,
    pub in_progress: InProgress,
    /// Failed tasks per error (`cancelled`, `timeout`, device errors).
    pub failures: BTreeMap<String, u64>,
    /// Tasks read for the three above, and whether that was all of them.
    pub scanned: u64,
    pub complete: bool,
}

/// Why a queued task waits. Merge point with the campaign engine (branch
/// `campaign-rules`): once `TaskRecord::pending: Option<PendingReason>`
/// exists, return its snake_case name here (`scheduled`, `offline`,
/// `rate_limited`, `wave`, `low_battery`) and `waiting` when it is `None`.
/// Until then a queued task waits for its device's next poll.
fn pending_reason(_task: &TaskRecord) -> &'static str {
    "waiting"
}

struct Accumulator {
    stats: Stats,
    progress_sum: u64,
    budget: usize,
}

impl Accumulator {
    fn new(max_scan: usize) -> Accumulator {
        Accumulator {
            stats: Stats {
                complete: true,
                ..Stats::default()
            },
            progress_sum: 0,
            budget: max_scan,
        }
    }

    fn add_counts(&mut self, counts: &StateCounts) {
        for state in TaskState::ALL {
            *self.stats.counts.entry(state.as_str()).or_default() +=
                counts[usize::from(state.index())];
        }
    }

    fn add_task(&mut self, device: &str, task: &TaskRecord) {
        self.stats.scanned += 1;
        match task.state {
            TaskState::Queued => {
                self.stats.pending.total += 1;
                *self
                    .stats
                    .pending
                    .reasons
                    .entry(pending_reason(task).to_string())
                    .or_default() += 1;
            }
            TaskState::Updated => {}
            TaskState::Failed => {
                let reason = task.error.clone().unwrap_or_else(|| "unknown".into());
                let failures = &mut self.stats.failures;
                if failures.contains_key(&reason) || failures.len() < MAX_REASONS {
                    *failures.entry(reason).or_default() += 1;
                } else {
                    *failures.entry("other".into()).or_default() += 1;
                }
            }
            state => {
                let p = &mut self.stats.in_progress;
                p.total += 1;
                self.progress_sum += u64::from(task.progress);
                if p.devices.len() < MAX_LISTED {
                    p.devices.push(Updating {
                        device: device.to_string(),
                        campaign: task.campaign,
                        state: state.as_str(),
                        progress: task.progress,
                    });
                }
            }
        }
    }

    /// Reads the campaign's tasks within the remaining budget.
    fn scan(&mut self, tx: &(impl ReadTx + ?Sized), id: CampaignId) -> Result<(), StoreError> {
        const STEP: usize = 10_000;
        let mut after: Option<String> = None;
        loop {
            let want = STEP.min(self.budget);
            if want == 0 {
                // Budget spent: incomplete if anything is left.
                if !tx.tasks(id, after.as_deref(), 1)?.is_empty() {
                    self.stats.complete = false;
                }
                return Ok(());
            }
            let step = tx.tasks(id, after.as_deref(), want)?;
            self.budget -= step.len();
            for (device, task) in &step {
                self.add_task(device, task);
            }
            if step.len() < want {
                return Ok(());
            }
            after = step.last().map(|(d, _)| d.clone());
        }
    }

    fn finish(mut self) -> Stats {
        let p = &mut self.stats.in_progress;
        p.mean_progress = self.progress_sum.checked_div(p.total).unwrap_or(0) as u8;
        self.stats
    }
}

/// A campaign's statistics; `None` for an unknown campaign.
pub fn campaign(
    tx: &(impl ReadTx + ?Sized),
    id: CampaignId,
    max_scan: usize,
) -> Result<Option<Stats>, StoreError> {
    if tx.campaign(id)?.is_none() {
        return Ok(None);
    }
    let mut acc = Accumulator::new(max_scan);
    acc.add_counts(&tx.campaign_counts(id)?);
    acc.scan(tx, id)?;
    Ok(Some(acc.finish()))
}

/// A firmware's statistics over every campaign that rolls it out (its
/// assignments' included); `None` for an unknown firmware.
pub fn firmware(
    tx: &(impl ReadTx + ?Sized),
    id: FirmwareId,
    max_scan: usize,
) -> Result<Option<Stats>, StoreError> {
    if tx.firmware(id)?.is_none() {
        return Ok(None);
    }
    const STEP: usize = 1_000;
    let mut acc = Accumulator::new(max_scan);
    let mut after = None;
    loop {
        let step = tx.campaigns(after, STEP)?;
        let Some(last) = step.last() else {
            break;
        };
        after = Some(last.id);
        for c in step.iter().filter(|c| c.firmware == id) {
            acc.add_counts(&tx.campaign_counts(c.id)?);
            acc.scan(tx, c.id)?;
        }
    }
    Ok(Some(acc.finish()))
}

/// One version's share of a product's devices.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VersionShare {
    pub version: String,
    pub devices: u64,
    /// Percent of the devices, one decimal.
    pub percent: f64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Others {
    /// Versions not among the top ones.
    pub versions: u64,
    pub devices: u64,
    pub percent: f64,
}

/// A version distribution: every version's device count, and the top
/// [`TOP_VERSIONS`] plus the rest as `others`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Distribution {
    pub devices: u64,
    pub versions: BTreeMap<String, u64>,
    pub top: Vec<VersionShare>,
    pub others: Others,
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 * 1000.0 / whole as f64).round() / 10.0
}

impl Distribution {
    pub fn from_counts(versions: BTreeMap<String, u64>) -> Distribution {
        let devices = versions.values().sum();
        let mut ranked: Vec<(&String, &u64)> = versions.iter().collect();
        // Most devices first; ties by version name, so the answer is stable.
        ranked.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let top: Vec<VersionShare> = ranked
            .iter()
            .take(TOP_VERSIONS)
            .map(|(v, n)| VersionShare {
                version: (*v).clone(),
                devices: **n,
                percent: percent(**n, devices),
            })
            .collect();
        let rest: Vec<u64> = ranked.iter().skip(TOP_VERSIONS).map(|(_, n)| **n).collect();
        let others_devices = rest.iter().sum();
        Distribution {
            devices,
            top,
            others: Others {
                versions: rest.len() as u64,
                devices: others_devices,
                percent: percent(others_devices, devices),
            },
            versions,
        }
    }
}

/// Firmware and software version distributions of `product` (every
/// product when `None`). Devices that never reported a software version
/// count under `"unknown"` in the software distribution.
pub fn versions(
    tx: &(impl ReadTx + ?Sized),
    product: Option<&str>,
) -> Result<(Distribution, Distribution), StoreError> {
    const STEP: usize = 1_000;
    let mut firmware: HashMap<String, u64> = HashMap::new();
    let mut software: HashMap<String, u64> = HashMap::new();
    let mut after: Option<String> = None;
    loop {
        let step = tx.devices(after.as_deref(), STEP)?;
        let Some((last, _)) = step.last() else {
            break;
        };
        after = Some(last.clone());
        for (_, device) in step {
            if product.is_some_and(|p| p != device.product) {
                continue;
            }
            *firmware.entry(device.version).or_default() += 1;
            let sw = device.software_version.unwrap_or_else(|| "unknown".into());
            *software.entry(sw).or_default() += 1;
        }
    }
    Ok((
        Distribution::from_counts(firmware.into_iter().collect()),
        Distribution::from_counts(software.into_iter().collect()),
    ))
}

//! Dynamic campaigns: a device that registers, or polls with a matching
//! source version, after the campaign was created gets its task too,
//! until the campaign is cancelled or its `end_at` passes
//! (`Timer::CampaignEnd`). The open ones are found through
//! `ReadTx::dynamic_campaigns` (an index per product), not a scan.

use crate::model::{CampaignStatus, DeviceRecord, HistoryEntry, TaskRecord, TaskState};
use crate::store::{StoreError, Tx};
use crate::time::Timestamp;

/// Gives `device` a task of the first open dynamic campaign of its product
/// that matches its version and never had a task for it. Returns the
/// campaign id (the device's firmware slot points at it).
pub fn admit(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    name: &str,
    device: &DeviceRecord,
) -> Result<Option<u64>, StoreError> {
    if crate::ota::assignment::active(tx, name, false)?.is_some() {
        return Ok(None);
    }
    for id in tx.dynamic_campaigns(&device.product)? {
        let Some(mut c) = tx.campaign(id)? else {
            continue;
        };
        if !c.status.is_open()
            || c.progress.dynamic_ended
            || c.policy.end_at.is_some_and(|e| now >= e)
        {
            continue;
        }
        if device.version == c.target_version
            || c.policy
                .source_versions
                .as_ref()
                .is_some_and(|v| !v.contains(&device.version))
        {
            continue;
        }
        if tx.task(id, name)?.is_some() {
            continue;
        }
        let wave = c.progress.wave_sizes.len().saturating_sub(1);
        let task = TaskRecord::queued(
            id,
            c.firmware,
            &c.target_version,
            now,
            wave as u8,
            c.policy.timeout_ms,
        );
        tx.put_task(name, None, &task)?;
        c.total += 1;
        if let Some(size) = c.progress.wave_sizes.get_mut(wave) {
            *size += 1;
        } else {
            c.progress.wave_sizes.push(1);
        }
        if c.status == CampaignStatus::Finished {
            c.status = CampaignStatus::Running;
            c.finished_at = None;
        }
        tx.put_campaign(&c)?;
        crate::ota::assignment::set_active(tx, name, false, Some(id))?;
        let mut entry = HistoryEntry::note(
            now,
            "queued",
            format!(
                "dynamic campaign {id}: {} -> {}",
                device.version, c.target_version
            ),
        );
        entry.campaign = Some(id);
        entry.to = Some(TaskState::Queued);
        tx.append_history(name, &entry)?;
        return Ok(Some(id));
    }
    Ok(None)
}

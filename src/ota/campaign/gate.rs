//! The hand-out gate: whether a poll may be handed its queued task now.
//! Campaign-level rules first (scheduled start, pause, wave), then the
//! device's (battery), then the campaign's rate window, which a hand-out
//! uses up. A turned-away task keeps its reason (`TaskRecord::pending`)
//! for the operator's views.

use crate::model::{
    CampaignRecord, CampaignStatus, DeviceRecord, PendingReason, TaskRecord, Timer,
};
use crate::store::{StoreError, Tx};
use crate::time::Timestamp;

/// The gate's answer for one poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Open,
    Wait(PendingReason),
}

/// The campaign-level reason a queued task of `campaign` waits, if any
/// (the same for every task it names; no write).
pub fn campaign_reason(campaign: &CampaignRecord, task: &TaskRecord) -> Option<PendingReason> {
    match campaign.status {
        CampaignStatus::Scheduled => Some(PendingReason::Scheduled),
        CampaignStatus::Paused => Some(PendingReason::Wave),
        _ if task.wave > campaign.progress.open_wave => Some(PendingReason::Wave),
        _ => None,
    }
}

/// Decides for a poll of `device` holding the queued `task`, and records
/// the outcome: a hand-out counts in the rate window; a turn-away for a
/// device reason is stored on the task and counted on the campaign.
/// `task` is updated to what was written.
pub fn check(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    name: &str,
    device: &DeviceRecord,
    task: &mut TaskRecord,
) -> Result<Gate, StoreError> {
    let Some(mut campaign) = tx.campaign(task.campaign)? else {
        return Ok(Gate::Open);
    };
    if let Some(reason) = campaign_reason(&campaign, task) {
        return Ok(Gate::Wait(reason));
    }
    // The campaign record is written only when this poll changed it (a
    // campaign without rate or battery rules is never written here).
    let before = campaign.clone();
    let low = campaign
        .policy
        .min_battery
        .is_some_and(|min| device.battery.is_some_and(|b| b < min));
    let reason = if low {
        Some(PendingReason::LowBattery)
    } else if let Some(rate) = campaign.policy.rate {
        let p = &mut campaign.progress;
        let interval = rate.pack_interval_s.saturating_mul(1000);
        if p.window_start.is_none_or(|s| now >= s.add_millis(interval)) {
            p.window_start = Some(now);
            p.window_count = 0;
            tx.set_timer(now.add_millis(interval), &Timer::RateWindow(campaign.id))?;
        }
        if p.window_count >= rate.pack_size {
            Some(PendingReason::RateLimited)
        } else {
            p.window_count += 1;
            None
        }
    } else {
        None
    };
    set_pending(tx, name, &mut campaign, task, reason)?;
    if campaign != before {
        tx.put_campaign(&campaign)?;
    }
    Ok(match reason {
        Some(reason) => Gate::Wait(reason),
        None => Gate::Open,
    })
}

/// Stores `reason` on the task and keeps the campaign's per-reason counts
/// in step (only device-level reasons are stored; the caller writes
/// `campaign`).
pub fn set_pending(
    tx: &mut (impl Tx + ?Sized),
    name: &str,
    campaign: &mut CampaignRecord,
    task: &mut TaskRecord,
    reason: Option<PendingReason>,
) -> Result<(), StoreError> {
    if task.pending == reason {
        return Ok(());
    }
    set_pending_counts(campaign, task.pending, reason);
    let mut updated = task.clone();
    updated.pending = reason;
    tx.put_task(name, Some(task), &updated)?;
    *task = updated;
    Ok(())
}

/// Moves one task's count from reason `from` to `to` on the campaign.
pub fn set_pending_counts(
    campaign: &mut CampaignRecord,
    from: Option<PendingReason>,
    to: Option<PendingReason>,
) {
    let p = &mut campaign.progress;
    for (r, delta) in [(from, false), (to, true)] {
        let slot = match r {
            Some(PendingReason::RateLimited) => &mut p.rate_limited,
            Some(PendingReason::LowBattery) => &mut p.low_battery,
            _ => continue,
        };
        *slot = if delta {
            *slot + 1
        } else {
            slot.saturating_sub(1)
        };
    }
}

/// `RateWindow` due: the window rolled over; forget its count (a poll
/// would start a new window anyway, this keeps the record truthful).
pub fn window_rolled(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    id: u64,
) -> Result<(), StoreError> {
    let Some(mut campaign) = tx.campaign(id)? else {
        return Ok(());
    };
    let Some(rate) = campaign.policy.rate else {
        return Ok(());
    };
    let p = &mut campaign.progress;
    let interval = rate.pack_interval_s.saturating_mul(1000);
    if p.window_start
        .is_some_and(|s| now >= s.add_millis(interval))
    {
        p.window_start = None;
        p.window_count = 0;
        tx.put_campaign(&campaign)?;
    }
    Ok(())
}

//! What follows a task reaching a final state, and the campaign-level
//! moves of the engine: retry scheduling and re-queueing, wave accounting
//! (open the next wave, pause on too many failures), verification, the
//! finish rule, scheduled start, dynamic end, resume.
//!
//! Everything here runs inside the transaction of the event that caused
//! it, or of the due `Timer` (`ota::scheduler`), so a kill -9 loses or
//! repeats nothing.

use super::options::abort_percent;
use crate::model::{
    CampaignRecord, CampaignStatus, HistoryEntry, TaskKey, TaskRecord, TaskState, Timer,
};
use crate::store::{StoreError, Tx};
use crate::time::Timestamp;

/// Whether a campaign with these counts is done: no unfinished task, no
/// retry pending, and (dynamic) no longer taking devices.
pub fn is_done(c: &CampaignRecord, unfinished: u64) -> bool {
    unfinished == 0
        && c.progress.retries_pending == 0
        && (!c.policy.dynamic || c.progress.dynamic_ended)
}

/// Called by `ota::ledger` when `task` (already updated, not yet written)
/// became final through `cause`. May set `task.retry_at` (and its
/// `TaskRetry` timer); updates the campaign's wave accounting, pauses or
/// opens waves, and finishes the campaign when it is done.
pub fn on_final(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    device: &str,
    task: &mut TaskRecord,
    cause: &str,
) -> Result<(), StoreError> {
    let Some(mut c) = tx.campaign(task.campaign)? else {
        return Ok(());
    };
    let before = c.clone();
    if task.pending.is_some() {
        // Final without a hand-out (cancel, reached the target): the
        // reason no longer holds.
        super::gate::set_pending_counts(&mut c, task.pending, None);
        task.pending = None;
    }
    let failed = task.state == TaskState::Failed;
    // Retry: a failure (device-reported or timeout), never a cancel.
    if failed && cause != "cancel" && c.status.is_open() {
        if let Some(retry) = c.policy.retry {
            if task.attempt < retry.max {
                let at = now.add_millis(retry.interval_s.saturating_mul(1000));
                task.retry_at = Some(at);
                tx.set_timer(at, &Timer::TaskRetry(TaskKey::new(c.id, device)))?;
                c.progress.retries_pending += 1;
            }
        }
    }
    // An operator's cancel is not a failure of the wave. Without waves
    // there is nothing to count (and no campaign write per task).
    if !c.policy.waves.is_empty() {
        count_final(&mut c, task.wave, failed && cause != "cancel", 1);
    }
    if c.status == CampaignStatus::Running {
        let w = task.wave;
        if over_threshold(&c, w) {
            c.status = CampaignStatus::Paused;
            tracing::info!(campaign = c.id, wave = w, "wave failure threshold: paused");
        } else if usize::from(c.progress.open_wave) + 1 < c.progress.wave_sizes.len()
            && wave_complete(&c, c.progress.open_wave)
        {
            tx.set_timer(now, &Timer::WaveCheck(c.id))?;
        }
    }
    if c != before {
        tx.put_campaign(&c)?;
    }
    Ok(())
}

/// After the task write: finishes `c` when it is done, and marks the
/// firmware of a fully updated verification campaign verified.
pub fn finish_if_done(
    tx: &mut (impl Tx + ?Sized),
    id: u64,
    now: Timestamp,
) -> Result<(), StoreError> {
    let counts = tx.campaign_counts(id)?;
    let Some(mut c) = tx.campaign(id)? else {
        return Ok(());
    };
    if c.status != CampaignStatus::Running || !is_done(&c, TaskState::unfinished(&counts)) {
        return Ok(());
    }
    c.status = CampaignStatus::Finished;
    c.finished_at = Some(now);
    tx.put_campaign(&c)?;
    let updated = counts[usize::from(TaskState::Updated.index())];
    if c.policy.kind == "verify" && c.total > 0 && updated == c.total {
        if let Some(mut fw) = tx.firmware(c.firmware)? {
            if !fw.verified {
                fw.verified = true;
                tx.put_firmware(&fw)?;
                tracing::info!(firmware = fw.id, campaign = id, "firmware verified");
            }
        }
    }
    Ok(())
}

fn count_final(c: &mut CampaignRecord, wave: u8, failed: bool, n: i64) {
    let w = usize::from(wave);
    let p = &mut c.progress;
    if p.wave_final.len() <= w {
        p.wave_final.resize(w + 1, 0);
        p.wave_failed.resize(w + 1, 0);
    }
    let step = |v: &mut u64| *v = v.saturating_add_signed(n);
    step(&mut p.wave_final[w]);
    if failed {
        step(&mut p.wave_failed[w]);
    }
}

fn over_threshold(c: &CampaignRecord, wave: u8) -> bool {
    let p = &c.progress;
    if p.acknowledged_wave.is_some_and(|a| wave <= a) {
        return false;
    }
    let Some(abort) = abort_percent(&c.policy.waves, usize::from(wave)) else {
        return false;
    };
    let size = p.wave_sizes.get(usize::from(wave)).copied().unwrap_or(0);
    let failed = p.wave_failed.get(usize::from(wave)).copied().unwrap_or(0);
    failed * 100 > u64::from(abort) * size
}

fn wave_complete(c: &CampaignRecord, wave: u8) -> bool {
    let p = &c.progress;
    let w = usize::from(wave);
    p.wave_final.get(w).copied().unwrap_or(0) >= p.wave_sizes.get(w).copied().unwrap_or(0)
}

/// `WaveCheck` due (or a resume): opens every next wave whose
/// predecessors are all final, unless the campaign is not running.
pub fn advance_waves(tx: &mut (impl Tx + ?Sized), id: u64) -> Result<(), StoreError> {
    let Some(mut c) = tx.campaign(id)? else {
        return Ok(());
    };
    if c.status != CampaignStatus::Running {
        return Ok(());
    }
    let last = c.progress.wave_sizes.len().saturating_sub(1);
    let before = c.progress.open_wave;
    while usize::from(c.progress.open_wave) < last && wave_complete(&c, c.progress.open_wave) {
        c.progress.open_wave += 1;
    }
    if c.progress.open_wave != before {
        tracing::info!(campaign = id, wave = c.progress.open_wave, "wave opened");
        tx.put_campaign(&c)?;
    }
    Ok(())
}

/// `CampaignStart` due: a scheduled campaign starts.
pub fn start(tx: &mut (impl Tx + ?Sized), id: u64) -> Result<(), StoreError> {
    if let Some(mut c) = tx.campaign(id)? {
        if c.status == CampaignStatus::Scheduled {
            c.status = CampaignStatus::Running;
            tx.put_campaign(&c)?;
            tracing::info!(campaign = id, "scheduled campaign started");
        }
    }
    Ok(())
}

/// `CampaignEnd` due: a dynamic campaign takes no more devices.
pub fn end_dynamic(tx: &mut (impl Tx + ?Sized), now: Timestamp, id: u64) -> Result<(), StoreError> {
    let Some(mut c) = tx.campaign(id)? else {
        return Ok(());
    };
    tx.set_dynamic_campaign(&c.product, id, false)?;
    if !c.progress.dynamic_ended {
        c.progress.dynamic_ended = true;
        tx.put_campaign(&c)?;
    }
    finish_if_done(tx, id, now)
}

/// Resumes a paused campaign: the waves that paused it are acknowledged
/// (they do not pause it again), and the next wave opens if due.
pub fn resume(tx: &mut (impl Tx + ?Sized), c: &mut CampaignRecord) -> Result<(), StoreError> {
    c.status = CampaignStatus::Running;
    let highest = (c.progress.wave_sizes.len().saturating_sub(1)) as u8;
    let mut ack = c.progress.acknowledged_wave.unwrap_or(0);
    for w in 0..=highest {
        if over_threshold(c, w) {
            ack = ack.max(w);
        }
    }
    c.progress.acknowledged_wave = Some(ack);
    tx.put_campaign(c)?;
    advance_waves(tx, c.id)
}

/// Why a failed task could not be queued again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequeueError {
    #[error("task is {0}, not failed")]
    NotFailed(&'static str),
    #[error("device is busy with campaign {0}")]
    Busy(u64),
    #[error("device is unknown")]
    UnknownDevice,
}

/// Puts a failed task back to `queued` (a retry: automatic when `auto`,
/// else an operator's), with its history entry. The campaign's accounting
/// follows; the caller has checked the campaign is open.
pub fn requeue(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    name: &str,
    task: &TaskRecord,
    auto: bool,
) -> Result<Result<(), RequeueError>, StoreError> {
    if task.state != TaskState::Failed {
        return Ok(Err(RequeueError::NotFailed(task.state.as_str())));
    }
    if tx.device(name)?.is_none() {
        return Ok(Err(RequeueError::UnknownDevice));
    }
    let software = task_is_software(tx, task)?;
    let active = crate::ota::assignment::active(tx, name, software)?;
    if let Some(other) = active.filter(|a| *a != task.campaign) {
        return Ok(Err(RequeueError::Busy(other)));
    }
    let mut next = task.clone();
    next.state = TaskState::Queued;
    next.progress = 0;
    next.error = None;
    next.deadline = None;
    next.last_activity = None;
    next.pending = None;
    next.updated_at = now;
    if auto {
        next.attempt = next.attempt.saturating_add(1);
    }
    next.retry_at = None;
    if let Some(at) = task.retry_at {
        tx.remove_timer(at, &Timer::TaskRetry(TaskKey::new(task.campaign, name)))?;
    }
    tx.put_task(name, Some(task), &next)?;
    if let Some(mut c) = tx.campaign(task.campaign)? {
        if task.retry_at.is_some() {
            c.progress.retries_pending = c.progress.retries_pending.saturating_sub(1);
        }
        if !c.policy.waves.is_empty() {
            let counted_failed = task.error.as_deref() != Some("cancelled");
            count_final(&mut c, task.wave, counted_failed, -1);
        }
        if c.status == CampaignStatus::Finished {
            c.status = CampaignStatus::Running;
            c.finished_at = None;
        }
        tx.put_campaign(&c)?;
    }
    crate::ota::assignment::set_active(tx, name, software, Some(task.campaign))?;
    let mut entry = HistoryEntry::note(
        now,
        "retry",
        format!(
            "{} retry {} after error {}",
            if auto { "automatic" } else { "operator" },
            next.attempt,
            task.error.as_deref().unwrap_or("-")
        ),
    );
    entry.campaign = Some(task.campaign);
    entry.from = Some(TaskState::Failed);
    entry.to = Some(TaskState::Queued);
    entry.error = task.error.clone();
    tx.append_history(name, &entry)?;
    Ok(Ok(()))
}

/// Whether `task` occupies the software slot (its firmware is of kind
/// `software`; a deleted image counts as firmware).
fn task_is_software(tx: &(impl Tx + ?Sized), task: &TaskRecord) -> Result<bool, StoreError> {
    Ok(tx
        .firmware(task.firmware)?
        .is_some_and(|fw| crate::ota::assignment::is_software(&fw)))
}

/// `TaskRetry` due: hands a failed task out again if it is still the
/// retry this timer was set for.
pub fn retry_due(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    at: Timestamp,
    key: &TaskKey,
) -> Result<(), StoreError> {
    let Some(task) = tx.task(key.campaign, &key.device)? else {
        return Ok(());
    };
    if task.retry_at != Some(at) {
        return Ok(());
    }
    let open = tx
        .campaign(key.campaign)?
        .is_some_and(|c| c.status.is_open());
    if !open {
        return Ok(());
    }
    if let Err(e) = requeue(tx, now, &key.device, &task, true)? {
        // Busy with another campaign meanwhile: the retry is given up,
        // and the campaign no longer waits for it.
        tracing::info!(campaign = key.campaign, device = %key.device, "retry skipped: {e}");
        let mut cleared = task.clone();
        cleared.retry_at = None;
        tx.put_task(&key.device, Some(&task), &cleared)?;
        if let Some(mut c) = tx.campaign(key.campaign)? {
            c.progress.retries_pending = c.progress.retries_pending.saturating_sub(1);
            tx.put_campaign(&c)?;
        }
        finish_if_done(tx, key.campaign, now)?;
    }
    Ok(())
}

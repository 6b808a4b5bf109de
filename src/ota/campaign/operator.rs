//! Operator actions on a running campaign beyond create and cancel:
//! re-queue its failed tasks, resume a paused one, cancel or retry one
//! device's task.

use super::lifecycle::{self, RequeueError};
use super::CampaignError;
use crate::model::{CampaignStatus, TaskState};
use crate::ota::ledger::{self, Context};
use crate::ota::task::TaskEvent;
use crate::ota::OtaSettings;
use crate::store::{StoreError, Tx};
use crate::time::Timestamp;

/// Tasks read per step of a retry-all.
const PAGE: usize = 10_000;

/// What a retry-all did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Retried {
    pub requeued: u64,
    /// Failed tasks whose device is busy with another campaign now.
    pub busy: Vec<String>,
}

fn open_campaign(
    tx: &mut (impl Tx + ?Sized),
    id: u64,
) -> Result<Result<crate::model::CampaignRecord, CampaignError>, StoreError> {
    match tx.campaign(id)? {
        None => Ok(Err(CampaignError::UnknownCampaign(id))),
        Some(c) if c.status == CampaignStatus::Cancelled => {
            Ok(Err(CampaignError::AlreadyFinished(id)))
        }
        Some(c) => Ok(Ok(c)),
    }
}

/// `POST /campaigns/{id}/retry`: re-queues exactly the failed tasks
/// (a finished campaign runs again).
pub fn retry_failed(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    id: u64,
) -> Result<Result<Retried, CampaignError>, StoreError> {
    if let Err(e) = open_campaign(tx, id)? {
        return Ok(Err(e));
    }
    let mut out = Retried::default();
    let mut after: Option<String> = None;
    loop {
        let page = tx.tasks(id, after.as_deref(), PAGE)?;
        let Some((last, _)) = page.last() else {
            break;
        };
        after = Some(last.clone());
        for (name, task) in page {
            if task.state != TaskState::Failed {
                continue;
            }
            match lifecycle::requeue(tx, now, &name, &task, false)? {
                Ok(()) => out.requeued += 1,
                Err(RequeueError::Busy(_)) => out.busy.push(name),
                Err(_) => {}
            }
        }
    }
    Ok(Ok(out))
}

/// `POST /campaigns/{id}/resume`.
pub fn resume(
    tx: &mut (impl Tx + ?Sized),
    id: u64,
) -> Result<Result<(), CampaignError>, StoreError> {
    let Some(mut c) = tx.campaign(id)? else {
        return Ok(Err(CampaignError::UnknownCampaign(id)));
    };
    if c.status != CampaignStatus::Paused {
        return Ok(Err(CampaignError::NotPaused(id)));
    }
    lifecycle::resume(tx, &mut c)?;
    Ok(Ok(()))
}

/// `POST /campaigns/{id}/devices/{name}/cancel`: that device's unfinished
/// task fails with `cancelled`.
pub fn cancel_device(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    settings: OtaSettings,
    id: u64,
    name: &str,
) -> Result<Result<(), CampaignError>, StoreError> {
    let c = match open_campaign(tx, id)? {
        Ok(c) => c,
        Err(e) => return Ok(Err(e)),
    };
    let Some(mut task) = tx.task(id, name)? else {
        return Ok(Err(CampaignError::UnknownTask {
            campaign: id,
            device: name.to_string(),
        }));
    };
    if task.state.is_final() {
        if task.retry_at.is_some() {
            // A failed task waiting for its retry: the retry is cancelled.
            let mut c = c;
            let mut cleared = task.clone();
            cleared.retry_at = None;
            cleared.error = Some("cancelled".into());
            tx.put_task(name, Some(&task), &cleared)?;
            c.progress.retries_pending = c.progress.retries_pending.saturating_sub(1);
            tx.put_campaign(&c)?;
            lifecycle::finish_if_done(tx, id, now)?;
            return Ok(Ok(()));
        }
        return Ok(Err(CampaignError::Requeue(RequeueError::NotFailed(
            task.state.as_str(),
        ))));
    }
    if task.pending.is_some() {
        let mut c = c;
        super::gate::set_pending(tx, name, &mut c, &mut task, None)?;
        tx.put_campaign(&c)?;
    }
    let ctx = Context {
        now,
        timeout_ms: settings.timeout_ms,
        device_name: name,
        alive: false,
        cause: "cancel",
    };
    ledger::transition_device(tx, &ctx, &task, &TaskEvent::Cancelled)?;
    Ok(Ok(()))
}

/// `POST /campaigns/{id}/devices/{name}/retry`: that device's failed task
/// is queued again.
pub fn retry_device(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    id: u64,
    name: &str,
) -> Result<Result<(), CampaignError>, StoreError> {
    if let Err(e) = open_campaign(tx, id)? {
        return Ok(Err(e));
    }
    let Some(task) = tx.task(id, name)? else {
        return Ok(Err(CampaignError::UnknownTask {
            campaign: id,
            device: name.to_string(),
        }));
    };
    Ok(lifecycle::requeue(tx, now, name, &task, false)?.map_err(CampaignError::from))
}

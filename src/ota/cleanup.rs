//! Issue 11 item 6: campaigns can be deleted once over, and queued tasks
//! of devices that never showed up (self-registered fakes, devices that
//! were never deployed) can be cancelled, so a campaign can finish and its
//! firmware be deleted.

use super::campaign::{effective_status, CampaignError};
use super::ledger::{self, Context};
use super::task::TaskEvent;
use super::OtaSettings;
use crate::model::{CampaignId, CampaignStatus, TaskState};
use crate::store::{StoreError, Tx};
use crate::time::Timestamp;

/// Tasks removed per write job of a deletion (bounds one transaction).
pub const DELETE_CHUNK: usize = 10_000;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeleteError {
    #[error("unknown campaign {0}")]
    Unknown(CampaignId),
    #[error("campaign {0} is still running; cancel it first")]
    Running(CampaignId),
}

/// One step of deleting a finished or cancelled campaign: removes up to
/// [`DELETE_CHUNK`] of its tasks, and the record once none is left.
/// Returns whether the campaign is gone (call again until it is).
pub fn delete_step(
    tx: &mut (impl Tx + ?Sized),
    id: CampaignId,
) -> Result<Result<bool, DeleteError>, StoreError> {
    let Some(campaign) = tx.campaign(id)? else {
        return Ok(Err(DeleteError::Unknown(id)));
    };
    let counts = tx.campaign_counts(id)?;
    if effective_status(&campaign, &counts) == CampaignStatus::Running {
        return Ok(Err(DeleteError::Running(id)));
    }
    let removed = tx.delete_tasks(id, DELETE_CHUNK)?;
    if removed < DELETE_CHUNK {
        tx.delete_campaign(id)?;
        return Ok(Ok(true));
    }
    Ok(Ok(false))
}

/// Tasks read per step of [`cancel_unseen`].
const PAGE: usize = 10_000;

/// Cancels the `queued` tasks of a running campaign whose device was never
/// seen (no poll, no report): they fail with error `cancelled`. Returns how
/// many.
pub fn cancel_unseen(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    settings: OtaSettings,
    id: CampaignId,
) -> Result<Result<u64, CampaignError>, StoreError> {
    let Some(campaign) = tx.campaign(id)? else {
        return Ok(Err(CampaignError::UnknownCampaign(id)));
    };
    if campaign.status != CampaignStatus::Running {
        return Ok(Err(CampaignError::AlreadyFinished(id)));
    }
    let mut cancelled = 0;
    let mut after: Option<String> = None;
    loop {
        let page = tx.tasks(id, after.as_deref(), PAGE)?;
        let Some((last, _)) = page.last() else {
            break;
        };
        after = Some(last.clone());
        for (name, task) in page
            .into_iter()
            .filter(|(_, t)| t.state == TaskState::Queued)
        {
            let seen = tx.device(&name)?.is_some_and(|d| d.last_seen.is_some());
            if seen {
                continue;
            }
            let ctx = Context {
                now,
                timeout_ms: settings.timeout_ms,
                device_name: &name,
                alive: false,
                cause: "cancel_unseen",
            };
            if ledger::transition_device(tx, &ctx, &task, &TaskEvent::Cancelled)? {
                cancelled += 1;
            }
        }
    }
    Ok(Ok(cancelled))
}

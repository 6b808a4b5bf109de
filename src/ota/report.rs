//! `POST /ota/{device}/report`: a device says how its task is going.

use super::ledger::{self, Context};
use super::task::{Rejected, TaskEvent, TaskState};
use super::{parse_task_id, OtaSettings};
use crate::model::HistoryEntry;
use crate::store::{StoreError, Tx};
use crate::time::Timestamp;

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub task: String,
    pub state: TaskState,
    pub progress: Option<u8>,
    pub error: Option<String>,
    pub version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReportError {
    #[error("unknown device {0}")]
    UnknownDevice(String),
    #[error("device {device} has no task {task}")]
    UnknownTask { device: String, task: String },
    #[error("{0}")]
    Conflict(Rejected),
}

/// Whether the report changed anything (a repeat does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Changed,
    Repeat,
}

pub fn report(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    settings: OtaSettings,
    name: &str,
    report: &Report,
) -> Result<Result<Applied, ReportError>, StoreError> {
    let Some(mut device) = tx.device(name)? else {
        return Ok(Err(ReportError::UnknownDevice(name.to_string())));
    };
    let unknown_task = || ReportError::UnknownTask {
        device: name.to_string(),
        task: report.task.clone(),
    };
    let Some(campaign) = parse_task_id(&report.task) else {
        return Ok(Err(unknown_task()));
    };
    let Some(task) = tx.task(campaign, name)? else {
        return Ok(Err(unknown_task()));
    };
    let ctx = Context {
        now,
        timeout_ms: settings.timeout_ms,
        device_name: name,
        alive: true,
        cause: "report",
    };
    let event = TaskEvent::Report {
        state: report.state,
        progress: report.progress,
        error: report.error.clone(),
    };
    let software = super::assignment::is_software_task(tx, name, campaign)?;
    let previous_version = device.version.clone();
    let changed = match ledger::transition(tx, &ctx, &mut device, &task, &event)? {
        Err(rejected) => return Ok(Err(ReportError::Conflict(rejected))),
        Ok(None) => false,
        Ok(Some(_)) => true,
    };
    if !changed {
        // A repeat: the deadline may have moved (sign of life), nothing else.
        return Ok(Ok(Applied::Repeat));
    }
    if report.state == TaskState::Updated && software {
        if let Some(version) = &report.version {
            device.software_version = Some(version.clone());
        }
    } else if report.state == TaskState::Updated {
        // The device's own word on what it runs now wins over the target.
        if let Some(version) = &report.version {
            device.version = version.clone();
        }
        if device.version != previous_version {
            let change = format!("{previous_version} -> {}", device.version);
            tx.append_history(name, &HistoryEntry::note(now, "version", change))?;
        }
    }
    device.last_seen = Some(now);
    tx.put_device(name, &device)?;
    Ok(Ok(Applied::Changed))
}

//! The persisted records. Serialised with serde (the redb backend stores
//! CBOR): a field added later carries `#[serde(default)]`, so an older
//! database reads without a migration.

use serde::{Deserialize, Serialize};

use super::{CampaignId, CampaignPolicy, CampaignProgress, FirmwareId, PendingReason, TaskState};
use crate::time::Timestamp;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FirmwareRecord {
    pub id: FirmwareId,
    pub product: String,
    pub name: String,
    pub version: String,
    pub kind: String,
    pub filename: String,
    pub size: u64,
    #[serde(with = "serde_bytes")]
    pub sha256: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub md5: Vec<u8>,
    pub signature: String,
    pub description: String,
    pub created_at: Timestamp,
    /// Every device of a `verify` campaign on it reached `updated`.
    #[serde(default)]
    pub verified: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeviceRecord {
    pub product: String,
    pub version: String,
    pub created_at: Timestamp,
    #[serde(default)]
    pub last_seen: Option<Timestamp>,
    #[serde(default)]
    pub last_addr: Option<String>,
    #[serde(default)]
    pub battery: Option<u8>,
    // The task pointers (`active_task`, `last_task`, `software_task`)
    // live in their own table (`DeviceTasks`); records written before
    // still carry them and are moved by the redb migration at open.
    /// The version of the device's software (firmware of `kind`
    /// `software`), tracked apart from `version`; from the poll's
    /// `software_version`.
    #[serde(default)]
    pub software_version: Option<String>,
}

impl DeviceRecord {
    /// A device never seen and with no task yet.
    pub fn new(product: &str, version: &str, now: Timestamp) -> DeviceRecord {
        DeviceRecord {
            product: product.to_string(),
            version: version.to_string(),
            created_at: now,
            last_seen: None,
            last_addr: None,
            battery: None,
            software_version: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskRecord {
    pub campaign: CampaignId,
    pub firmware: FirmwareId,
    pub target_version: String,
    pub state: TaskState,
    pub progress: u8,
    #[serde(default)]
    pub error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// When the device last showed a sign of life for this task; the
    /// timeout counts from here.
    #[serde(default)]
    pub last_activity: Option<Timestamp>,
    /// When this task's `Timer::TaskTimeout` is due, if it has one (the
    /// timer's key, so the ledger can move it).
    #[serde(default)]
    pub deadline: Option<Timestamp>,
    /// The staged wave the task belongs to (0 without waves).
    #[serde(default)]
    pub wave: u8,
    /// Retries handed out so far (retry policy).
    #[serde(default)]
    pub attempt: u8,
    /// The campaign's `timeout_s` in ms, when it set one.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Why the last poll of this queued task was turned away.
    #[serde(default)]
    pub pending: Option<PendingReason>,
    /// When a failed task is handed out again (retry policy).
    #[serde(default)]
    pub retry_at: Option<Timestamp>,
    /// Queued in bulk (campaign creation) without the device's `queued`
    /// history entry: a million-device campaign would write a million.
    /// The entry is stored, dated `created_at`, when the task leaves
    /// `queued` (`ota::ledger`); until then history reads show it from
    /// the task (`ota::history`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub queued_unnoted: bool,
}

impl TaskRecord {
    /// A task just queued for a device: the one place a new task is built
    /// (campaign creation, dynamic admission, assignment catch-up).
    pub fn queued(
        campaign: CampaignId,
        firmware: FirmwareId,
        target_version: &str,
        now: Timestamp,
        wave: u8,
        timeout_ms: Option<u64>,
    ) -> TaskRecord {
        TaskRecord {
            campaign,
            firmware,
            target_version: target_version.to_string(),
            state: TaskState::Queued,
            progress: 0,
            error: None,
            created_at: now,
            updated_at: now,
            last_activity: None,
            deadline: None,
            wave,
            attempt: 0,
            timeout_ms,
            pending: None,
            retry_at: None,
            queued_unnoted: false,
        }
    }

    /// The device's `queued` history entry of this task, `from` the
    /// version it updates from.
    pub fn queued_entry(&self, from: &str) -> HistoryEntry {
        let mut entry = HistoryEntry::note(
            self.created_at,
            "queued",
            format!(
                "campaign {}: {from} -> {}",
                self.campaign, self.target_version
            ),
        );
        entry.campaign = Some(self.campaign);
        entry.to = Some(TaskState::Queued);
        entry
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    Running,
    Finished,
    Cancelled,
    /// `start_at` is still ahead.
    Scheduled,
    /// A wave failed more than its threshold; waits for resume or cancel.
    Paused,
}

impl CampaignStatus {
    /// Still handing out, or able to again (scheduled, paused).
    pub fn is_open(self) -> bool {
        !matches!(self, CampaignStatus::Finished | CampaignStatus::Cancelled)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CampaignRecord {
    pub id: CampaignId,
    pub firmware: FirmwareId,
    pub product: String,
    pub target_version: String,
    pub target: serde_json::Value,
    pub status: CampaignStatus,
    pub created_at: Timestamp,
    pub total: u64,
    #[serde(default)]
    pub finished_at: Option<Timestamp>,
    #[serde(default)]
    pub policy: CampaignPolicy,
    #[serde(default)]
    pub progress: CampaignProgress,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HistoryEntry {
    pub at: Timestamp,
    /// What happened: `registered`, `version` (the device's version
    /// changed), `queued` (a campaign gave it a task), `poll` (poll
    /// outcome, or a state change a poll caused), `report`, `download`
    /// (block-inferred progress started), `timeout`, `cancel`, `truncated`
    /// (older entries were dropped to keep the history bounded).
    pub event: String,
    #[serde(default)]
    pub campaign: Option<CampaignId>,
    #[serde(default)]
    pub from: Option<TaskState>,
    #[serde(default)]
    pub to: Option<TaskState>,
    #[serde(default)]
    pub progress: Option<u8>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub detail: Option<String>,
    /// For a run of identical idle polls kept as one entry: how many, and
    /// when the first was (`at` is the latest). For `truncated`: how many
    /// entries were dropped.
    #[serde(default)]
    pub repeat: Option<u32>,
    #[serde(default)]
    pub since: Option<Timestamp>,
}

impl HistoryEntry {
    /// The event name of the note that stands for dropped entries.
    pub const TRUNCATED: &'static str = "truncated";

    /// An entry that records an event without a task state change.
    pub fn note(at: Timestamp, event: &str, detail: String) -> HistoryEntry {
        HistoryEntry {
            at,
            event: event.to_string(),
            campaign: None,
            from: None,
            to: None,
            progress: None,
            error: None,
            detail: Some(detail),
            repeat: None,
            since: None,
        }
    }

    /// The note that replaces the oldest entries of a capped history:
    /// `dropped` entries, the newest of them at `at`.
    pub fn truncated(at: Timestamp, dropped: u32) -> HistoryEntry {
        let mut note = HistoryEntry::note(
            at,
            HistoryEntry::TRUNCATED,
            format!("{dropped} older entries dropped (history cap)"),
        );
        note.repeat = Some(dropped);
        note
    }

    /// Whether this is the poll-outcome entry a repeated poll with
    /// `detail` coalesces into.
    pub fn is_poll_run(&self, detail: &str) -> bool {
        self.event == "poll" && self.detail.as_deref() == Some(detail)
    }
}

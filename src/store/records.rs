//! Records stored as redb values, and their CBOR encoding.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::ota::task::TaskState;

use super::StoreError;

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    // Writing CBOR into a Vec cannot fail for these plain records.
    if let Err(e) = ciborium::into_writer(value, &mut out) {
        tracing::error!("cbor encode failed: {e}");
    }
    out
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    ciborium::from_reader(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FirmwareRecord {
    pub id: u64,
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
    pub created_at: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeviceRecord {
    pub product: String,
    pub version: String,
    pub created_at: u64,
    #[serde(default)]
    pub last_seen: Option<u64>,
    #[serde(default)]
    pub last_addr: Option<String>,
    #[serde(default)]
    pub battery: Option<u8>,
    /// Campaign id of the task the device is working on, if any.
    #[serde(default)]
    pub active_task: Option<u64>,
    /// Campaign id of the most recent task, finished or not.
    #[serde(default)]
    pub last_task: Option<u64>,
}

impl DeviceRecord {
    /// A device never seen and with no task yet.
    pub fn new(product: &str, version: &str, now: u64) -> DeviceRecord {
        DeviceRecord {
            product: product.to_string(),
            version: version.to_string(),
            created_at: now,
            last_seen: None,
            last_addr: None,
            battery: None,
            active_task: None,
            last_task: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskRecord {
    pub campaign: u64,
    pub firmware: u64,
    pub target_version: String,
    pub state: TaskState,
    pub progress: u8,
    #[serde(default)]
    pub error: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
    /// When the device last showed a sign of life for this task; the
    /// timeout counts from here.
    #[serde(default)]
    pub last_activity: Option<u64>,
    /// The key under which this task sits in `DEADLINES`, if it does.
    #[serde(default)]
    pub deadline: Option<u64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    Running,
    Finished,
    Cancelled,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CampaignRecord {
    pub id: u64,
    pub firmware: u64,
    pub product: String,
    pub target_version: String,
    pub target: serde_json::Value,
    pub status: CampaignStatus,
    pub created_at: u64,
    pub total: u64,
    #[serde(default)]
    pub finished_at: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HistoryEntry {
    pub at: u64,
    /// What happened: `registered`, `version` (the device's version
    /// changed), `queued` (a campaign gave it a task), `poll` (poll
    /// outcome, or a state change a poll caused), `report`, `download`
    /// (block-inferred progress started), `timeout`, `cancel`.
    pub event: String,
    #[serde(default)]
    pub campaign: Option<u64>,
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
    /// when the first was (`at` is the latest).
    #[serde(default)]
    pub repeat: Option<u32>,
    #[serde(default)]
    pub since: Option<u64>,
}

impl HistoryEntry {
    /// An entry that records an event without a task state change.
    pub fn note(at: u64, event: &str, detail: String) -> HistoryEntry {
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
}

//! The JSON shapes of the admin API as OpenAPI schemas (issue 12 item 3).
//!
//! Handlers build their bodies with `views.rs` (`serde_json::json!`), so
//! these types only describe them; `tests/openapi.rs` checks real responses
//! against these schemas, so a field added to a view and not here fails a
//! test. Field docs become the schema descriptions.

#![allow(dead_code)] // Description-only types: never constructed.

use utoipa::ToSchema;

/// Every error: `{"error": {"code", "message"}}`.
#[derive(ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code, e.g. `duplicate_version` (see ADMIN_API.md).
    #[schema(example = "duplicate_version")]
    pub code: String,
    /// Human-readable text; may change between versions.
    pub message: String,
}

/// `GET /healthz`.
#[derive(ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: String,
    /// `ok` or `failing`.
    pub write_path: String,
    /// Present while writes fail (code `write_path_failing`).
    pub error: Option<ErrorDetail>,
}

/// Tasks per state.
#[derive(ToSchema)]
pub struct StateCounts {
    pub queued: u64,
    pub initiated: u64,
    pub downloading: u64,
    pub downloaded: u64,
    pub verified: u64,
    pub updating: u64,
    pub updated: u64,
    pub failed: u64,
}

/// A firmware image.
#[derive(ToSchema)]
pub struct Firmware {
    pub id: u64,
    pub product: String,
    pub name: String,
    pub version: String,
    pub kind: String,
    pub filename: String,
    /// Bytes.
    pub size: u64,
    /// Lowercase hex, 64 characters.
    pub sha256: String,
    /// Lowercase hex, 32 characters.
    pub md5: String,
    pub signature: String,
    pub description: String,
    /// RFC 3339, UTC, milliseconds.
    pub created_at: String,
    /// CoAP path of the image, e.g. `/ota/fw/1`.
    pub uri: String,
    /// Devices per task state over the campaigns of this image.
    pub counts: StateCounts,
}

/// One device's task in a campaign.
#[derive(ToSchema, serde::Serialize)]
pub struct Task {
    pub device: String,
    /// Task id as devices see it.
    pub task: String,
    pub campaign: u64,
    pub firmware: u64,
    pub target_version: String,
    /// queued, initiated, downloading, downloaded, verified, updating,
    /// updated or failed.
    pub state: String,
    /// Percent, 0-100.
    pub progress: u8,
    pub error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A device.
#[derive(ToSchema, serde::Serialize)]
pub struct Device {
    pub name: String,
    pub product: String,
    pub version: String,
    pub created_at: String,
    pub last_seen: Option<String>,
    /// Last source address `IP:port`.
    pub address: Option<String>,
    /// Percent, as last reported.
    pub battery: Option<u8>,
    /// The active task, or else the most recent one.
    pub task: Option<Task>,
    /// That task's state.
    pub state: Option<String>,
}

/// `POST /api/v1/devices` with a list: how many were new, which existed.
#[derive(ToSchema, serde::Serialize)]
pub struct DevicesCreated {
    pub created: u64,
    pub existing: Vec<String>,
}

/// A device to register (alone or in a list of up to 100,000).
#[derive(ToSchema, serde::Serialize)]
pub struct NewDevice {
    /// 1-64 of letters, digits, `.` `_` `-` `:`.
    pub name: String,
    pub product: String,
    /// Version it runs now (default empty).
    pub version: Option<String>,
}

/// Body of `POST /api/v1/devices`: one device or a list.
#[derive(ToSchema, serde::Serialize)]
#[serde(untagged)] // read by utoipa: a oneOf of the bare shapes
pub enum NewDevices {
    One(NewDevice),
    Many(Vec<NewDevice>),
}

/// Answer of `POST /api/v1/devices`: the device (one was sent) or the
/// counts (a list was sent).
#[derive(ToSchema, serde::Serialize)]
#[serde(untagged)]
#[allow(clippy::large_enum_variant)] // never constructed
pub enum DevicesCreateAnswer {
    One(Device),
    Many(DevicesCreated),
}

/// A campaign.
#[derive(ToSchema)]
pub struct Campaign {
    pub id: u64,
    pub firmware: u64,
    pub product: String,
    pub target_version: String,
    /// The target as given at creation.
    #[schema(value_type = Object)]
    pub target: serde_json::Value,
    /// running, finished or cancelled.
    pub status: String,
    pub created_at: String,
    pub finished_at: Option<String>,
    /// Tasks created.
    pub total: u64,
    pub counts: StateCounts,
    /// Only on create: listed devices left out, by reason.
    pub skipped: Option<Skipped>,
    /// Only on cancel: how many tasks this request cancelled.
    pub cancelled: Option<u64>,
}

/// Why listed devices got no task.
#[derive(ToSchema)]
pub struct Skipped {
    /// Not registered.
    pub unknown: Vec<String>,
    /// Registered under another product than the firmware's.
    pub wrong_product: Vec<String>,
    /// Already running the target version.
    pub up_to_date: Vec<String>,
    /// Busy with an unfinished task of another campaign.
    pub busy: Vec<String>,
}

/// Body of `POST /api/v1/campaigns`.
#[derive(ToSchema)]
pub struct NewCampaign {
    /// Firmware id (number or numeric string).
    #[schema(value_type = u64)]
    pub firmware: serde_json::Value,
    /// Exactly one of `{"all": true}`, `{"source_versions": [..]}`,
    /// `{"devices": [..]}` (at most 100,000 names).
    #[schema(value_type = Object)]
    pub target: serde_json::Value,
}

/// One device history entry.
#[derive(ToSchema)]
pub struct HistoryEntry {
    /// Position in the device's history; the `after` cursor of the next page.
    pub seq: u64,
    pub at: String,
    pub at_ms: u64,
    /// registered, version, queued, poll, report, download, timeout,
    /// cancel, truncated, ...
    pub event: String,
    pub campaign: Option<u64>,
    pub task: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub progress: Option<u8>,
    pub error: Option<String>,
    pub detail: Option<String>,
    /// Identical idle polls merged into this entry, or entries dropped.
    pub repeat: Option<u32>,
    pub since: Option<String>,
}

/// `GET /api/v1/metrics`: writer counters.
#[derive(ToSchema)]
pub struct StoreCounters {
    /// Commits (fsyncs) so far.
    pub commits: u64,
    /// Write jobs so far.
    pub write_jobs: u64,
    /// Jobs answered with their own error while their batch committed.
    pub isolated_write_failures: u64,
}

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
    /// Every device of a `verify` campaign on it reached `updated`.
    pub verified: bool,
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
    /// Staged wave (0-based).
    pub wave: u8,
    /// Automatic retries so far.
    pub attempt: u8,
    /// When a failed task is queued again (retry policy).
    pub retry_at: Option<String>,
    /// Why a queued task waits: scheduled, offline, rate_limited, wave,
    /// low_battery.
    pub pending: Option<String>,
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
    /// Software (application) version, as last reported.
    pub software_version: Option<String>,
    /// Id of the device's software task, if it has one.
    pub software_task: Option<String>,
    /// Only on `GET /api/v1/devices/{name}` of an LwM2M device: its
    /// registration (registered, lwm2m_version, binding, lifetime,
    /// queue_mode, registered_at, last_update, expires_at, objects,
    /// location, address, queued_requests); after a De-register or
    /// expiry the last one with `registered: false`, `ended_at` and
    /// `ended_by` (`deregistered` or `expired`).
    #[schema(value_type = Option<Object>)]
    pub lwm2m: Option<serde_json::Value>,
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
    /// scheduled, running, paused, finished or cancelled.
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
    /// batch or verify.
    pub kind: String,
    pub dynamic: bool,
    /// Created with `force` despite an unverified firmware.
    pub forced: bool,
    pub start_at: Option<String>,
    pub end_at: Option<String>,
    /// `{"interval_s", "max"}`.
    #[schema(value_type = Option<Object>)]
    pub retry: Option<serde_json::Value>,
    pub timeout_s: Option<u64>,
    /// `{"pack_size", "pack_interval_s"}`.
    #[schema(value_type = Option<Object>)]
    pub rate: Option<serde_json::Value>,
    pub min_battery: Option<u8>,
    /// Per wave: wave, percent, abort_failure_percent, devices, final,
    /// failed, open.
    #[schema(value_type = Vec<Object>)]
    pub waves: Vec<serde_json::Value>,
    /// Queued tasks per pending reason.
    #[schema(value_type = Object)]
    pub pending: serde_json::Value,
    /// Only on retry: failed tasks queued again.
    pub requeued: Option<u64>,
    /// Only on retry: failed devices now busy with another campaign.
    pub busy: Option<Vec<String>>,
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
    /// batch (default) or verify (1-10 listed devices).
    pub kind: Option<String>,
    /// With `[campaigns] require_verified`: create on an unverified firmware.
    pub force: Option<bool>,
    /// Also devices that appear later (until cancel or `end_at`).
    pub dynamic: Option<bool>,
    /// RFC 3339 UTC, 5 minutes to 7 days ahead; static campaigns only.
    pub start_at: Option<String>,
    /// RFC 3339 UTC; dynamic campaigns only.
    pub end_at: Option<String>,
    /// `{"interval_s": 0|600|1800|3600|86400, "max": 1|2|5}`.
    #[schema(value_type = Option<Object>)]
    pub retry: Option<serde_json::Value>,
    /// Per-task timeout, seconds.
    pub timeout_s: Option<u64>,
    /// `{"pack_size": >=1, "pack_interval_s": 1..86400}`.
    #[schema(value_type = Option<Object>)]
    pub rate: Option<serde_json::Value>,
    /// `[{"percent": 1..100 increasing, "abort_failure_percent": 0..100}]`.
    #[schema(value_type = Option<Vec<Object>>)]
    pub waves: Option<Vec<serde_json::Value>>,
    /// Devices polling with a lower battery wait.
    pub min_battery: Option<u8>,
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

/// Body of `PUT /api/v1/devices/{name}/psk`.
#[derive(ToSchema)]
pub struct PskBody {
    /// DTLS PSK identity, unique over devices.
    pub identity: String,
    /// The key, hex.
    pub key: String,
}

/// One credential of `PUT /api/v1/psks`.
#[derive(ToSchema)]
pub struct PskEntry {
    pub device: String,
    pub identity: String,
    /// The key, hex.
    pub key: String,
}

/// Body of `PUT /api/v1/psks` (all or nothing).
#[derive(ToSchema)]
pub struct PskBulk {
    pub credentials: Vec<PskEntry>,
}

/// Answer of `PUT /api/v1/psks`.
#[derive(ToSchema)]
pub struct PskUpdated {
    pub updated: u64,
}

/// Body of `POST /api/v1/tokens`.
#[derive(ToSchema)]
pub struct NewToken {
    /// 1-64 letters, digits, `.`, `_` or `-`.
    pub name: String,
    /// `admin` or `read`.
    pub role: String,
}

/// An admin token (the secret only in the answer to its creation).
#[derive(ToSchema)]
pub struct Token {
    pub name: String,
    /// `admin` or `read`.
    pub role: String,
    pub created_at: String,
    /// The bearer token; only in the answer of `POST /api/v1/tokens`.
    pub token: Option<String>,
}

/// Answer of `POST /api/v1/campaigns/{id}/cancel-unseen`.
#[derive(ToSchema)]
pub struct Cancelled {
    /// Tasks this request cancelled.
    pub cancelled: u64,
}

/// One entry of the audit log.
#[derive(ToSchema)]
pub struct AuditEntry {
    /// Position in the log; the `after` cursor of the next page.
    pub id: u64,
    pub at: String,
    /// e.g. `firmware.upload`.
    pub action: String,
    pub target: String,
    /// Name of the admin token behind the request.
    pub actor: Option<String>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

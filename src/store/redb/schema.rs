//! The persisted schema: every redb table lwota uses, in one place.
//!
//! Values are CBOR-encoded records (`codec.rs`) so a field can be added
//! with `#[serde(default)]` without a migration. Keys are chosen so that the
//! hot paths are point lookups or short range scans:
//!
//! - a device poll touches `DEVICES[name]`, `DEVICE_TASKS[name]`,
//!   `TASKS[(campaign, name)]` and
//!   the device's last `HISTORY` key;
//! - a campaign's devices are the range `TASKS[(campaign, ..)]`;
//! - a device's history is the range `HISTORY[(name, ..)]`;
//! - the scheduler reads the first keys of `TIMERS`, ordered by time.

use ::redb::TableDefinition;

/// Firmware id → `FirmwareRecord`.
pub const FIRMWARE: TableDefinition<u64, &[u8]> = TableDefinition::new("firmware");
/// (product, version) → firmware id; enforces "one image per product version".
pub const FIRMWARE_KEYS: TableDefinition<(&str, &str), u64> = TableDefinition::new("firmware_keys");
/// Device name → `DeviceRecord`.
pub const DEVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("devices");
/// Device name → `DeviceTasks` (its unfinished firmware and software task
/// and its latest task), apart from `DEVICES` so queuing a campaign does
/// not rewrite device records. Before this table the pointers were fields
/// of the device record; `device_tasks::migrate` moves them at open.
pub const DEVICE_TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("device_tasks");
/// (product, slot: 0 firmware / 1 software, version, device name) → ():
/// the devices on each version, so a campaign by source version reads
/// names without decoding records (`device_versions.rs`). Derived from
/// `DEVICES`, written with it.
pub const DEVICE_VERSIONS: TableDefinition<(&str, u8, &str, &str), ()> =
    TableDefinition::new("device_versions");
/// Campaign id → `CampaignRecord`.
pub const CAMPAIGNS: TableDefinition<u64, &[u8]> = TableDefinition::new("campaigns");
/// (campaign id, device name) → `TaskRecord`: one task per device per campaign.
pub const TASKS: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("tasks");
/// (campaign, wave) -> the record of the tasks the campaign queued in
/// bulk for that wave, which their `TASKS` rows refer to (`task_rows.rs`).
pub const TASK_TEMPLATES: TableDefinition<(u64, u8), &[u8]> =
    TableDefinition::new("task_templates");
/// (campaign id, task state index) → number of the campaign's tasks in
/// that state; kept in step with `TASKS` so counts never need a scan.
pub const CAMPAIGN_COUNTS: TableDefinition<(u64, u8), u64> =
    TableDefinition::new("campaign_counts");
/// (device name, per-device sequence) → `HistoryEntry`, oldest first.
/// Databases written before per-device sequences have keys from one global
/// counter: still ordered per device, so they read the same.
pub const HISTORY: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("history");
/// Device name → number of its `HISTORY` entries (for the cap). Missing for
/// histories written before the cap: counted once, then kept.
pub const HISTORY_LEN: TableDefinition<&str, u64> = TableDefinition::new("history_len");
/// (due ms, encoded `Timer`) → (): every timer, earliest first.
pub const TIMERS: TableDefinition<(u64, &[u8]), ()> = TableDefinition::new("timers");
/// Before `TIMERS`: (deadline ms, campaign id, device name) → (). Moved into
/// `TIMERS` as `Timer::TaskTimeout` at start-up, then deleted.
pub const LEGACY_DEADLINES: TableDefinition<(u64, u64, &str), ()> =
    TableDefinition::new("deadlines");
/// (product, campaign id) → (): dynamic campaigns still taking devices,
/// so a poll finds them without scanning every campaign.
pub const DYNAMIC_CAMPAIGNS: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("dynamic_campaigns");
/// Device name → `PskRecord` (DTLS pre-shared key, issue 11).
pub const PSKS: TableDefinition<&str, &[u8]> = TableDefinition::new("psks");
/// PSK identity → device name: an identity authenticates exactly one device.
pub const PSK_IDENTITIES: TableDefinition<&str, &str> = TableDefinition::new("psk_identities");
/// Audit id → `AuditEntry`, oldest first (bounded by `audit.limit`).
pub const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// (scope: 0 product / 1 device, name) → `Assignments`.
pub const ASSIGNMENTS: TableDefinition<(u8, &str), &[u8]> = TableDefinition::new("assignments");
/// Issue 11: (kind, key) → admin-security record bytes (admin tokens,
/// stored hashed; per-product signing keys). Encoded by their owners.
pub const SECRETS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("secrets");
/// Named counters: id sequences, and the clock floor.
pub const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

pub const NEXT_FIRMWARE_ID: &str = "next_firmware_id";
pub const NEXT_CAMPAIGN_ID: &str = "next_campaign_id";
pub const NEXT_AUDIT_ID: &str = "next_audit_id";
/// Present once device task pointers live in `DEVICE_TASKS` only.
pub const DEVICE_TASKS_MIGRATED: &str = "device_tasks_migrated";
/// Present once `DEVICE_VERSIONS` holds every device record.
pub const DEVICE_VERSIONS_BUILT: &str = "device_versions_built";
/// Entries in `AUDIT` (kept with it, so the cap needs no count).
pub const AUDIT_LEN: &str = "audit_len";
/// The latest "now" the server persisted, in ms (see `Tx::raise_clock_floor`).
pub const CLOCK_FLOOR: &str = "clock_floor_ms";
/// Device (endpoint) name → `RegistrationRecord` (LwM2M).
pub const REGISTRATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("lwm2m_registrations");
/// Device name → `EndedRegistration`: the last registration of a device
/// that de-registered or expired (shown as `"registered": false`).
pub const ENDED_REGISTRATIONS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("lwm2m_ended_registrations");
/// Registration location (`/rd/{id}`) → device name.
pub const REGISTRATION_LOCATIONS: TableDefinition<&str, &str> =
    TableDefinition::new("lwm2m_locations");

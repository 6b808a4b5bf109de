//! Corrupt records (issue 8, item 7c): find them, step around them, and
//! move them out.
//!
//! - [`check`] decodes every record of every CBOR table; start-up runs it
//!   and logs the bad ones with their keys, and `lwota check` prints them.
//! - [`decode_or_skip`] is what listings use: a record that does not
//!   decode is skipped with a `warn!` naming table and key, so one bad
//!   record cannot turn a whole listing (or campaign creation) into a
//!   permanent 500.
//! - [`repair`] (offline, `lwota check --repair`) appends each bad
//!   record's raw bytes to `DATA/quarantine.jsonl`, deletes it, and then
//!   rebuilds what is derived from the records: `CAMPAIGN_COUNTS` from
//!   `TASKS`, task timers (`TIMERS`) without their task, `FIRMWARE_KEYS`
//!   entries without their firmware, devices' task pointers (`DEVICE_TASKS`)
//!   to a task that is missing or finished, pointer rows of devices
//!   that are gone, and the version index (`DEVICE_VERSIONS`).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io::Write as _;
use std::path::Path;

use ::redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, WriteTransaction};
use serde::de::DeserializeOwned;

use super::codec::{decode, decode_timer, encode};
use super::schema;
use super::task_rows;
use crate::model::{
    CampaignRecord, DeviceRecord, DeviceTasks, FirmwareRecord, HistoryEntry, TaskKey, TaskRecord,
    Timer,
};
use crate::store::StoreError;

/// Bad records listed in one report; beyond it they are only counted, so
/// a badly damaged file cannot make the report itself unbounded.
pub const MAX_LISTED: usize = 10_000;

/// Where a record lives.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "table", content = "key", rename_all = "snake_case")]
pub enum RecordKey {
    Firmware(u64),
    Devices(String),
    DeviceTasks(String),
    Campaigns(u64),
    Tasks(u64, String),
    History(String, u64),
    Registrations(String),
    EndedRegistrations(String),
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordKey::Firmware(id) => write!(f, "firmware[{id}]"),
            RecordKey::Devices(name) => write!(f, "devices[{name:?}]"),
            RecordKey::DeviceTasks(name) => write!(f, "device_tasks[{name:?}]"),
            RecordKey::Campaigns(id) => write!(f, "campaigns[{id}]"),
            RecordKey::Tasks(c, name) => write!(f, "tasks[({c}, {name:?})]"),
            RecordKey::History(name, seq) => write!(f, "history[({name:?}, {seq})]"),
            RecordKey::Registrations(name) => write!(f, "lwm2m_registrations[{name:?}]"),
            RecordKey::EndedRegistrations(name) => {
                write!(f, "lwm2m_ended_registrations[{name:?}]")
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct BadRecord {
    pub key: RecordKey,
    pub error: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Default)]
pub struct IntegrityReport {
    /// Records decoded.
    pub checked: u64,
    /// Records that did not decode (all of them, listed or not).
    pub bad_count: u64,
    /// The first [`MAX_LISTED`] of them.
    pub bad: Vec<BadRecord>,
    /// Records that decode but disagree with another table (LwM2M
    /// registrations, `integrity_lwm2m.rs`): all of them counted...
    pub inconsistent_count: u64,
    /// ...the first [`MAX_LISTED`] described.
    pub inconsistent: Vec<String>,
}

impl IntegrityReport {
    pub fn is_clean(&self) -> bool {
        self.bad_count == 0 && self.inconsistent_count == 0
    }

    pub(super) fn inconsistent(&mut self, what: String) {
        self.inconsistent_count += 1;
        if self.inconsistent.len() < MAX_LISTED {
            self.inconsistent.push(what);
        }
    }

    /// Whether any firmware record is bad: then start-up must not delete
    /// blobs, one of them may belong to the unreadable record.
    pub fn firmware_damaged(&self) -> bool {
        self.bad
            .iter()
            .any(|b| matches!(b.key, RecordKey::Firmware(_)))
            || self.bad_count > self.bad.len() as u64
    }

    pub(super) fn note<T: DeserializeOwned>(
        &mut self,
        key: impl FnOnce() -> RecordKey,
        bytes: &[u8],
    ) {
        self.checked += 1;
        if let Err(e) = decode::<T>(bytes) {
            self.bad_count += 1;
            if self.bad.len() < MAX_LISTED {
                self.bad.push(BadRecord {
                    key: key(),
                    error: e.to_string(),
                    bytes: bytes.to_vec(),
                });
            }
        }
    }
}

/// Decodes every record of every CBOR table. Reads only; takes time in
/// proportion to the database (about a microsecond per record).
pub fn check(txn: &ReadTransaction) -> Result<IntegrityReport, StoreError> {
    let mut report = IntegrityReport::default();
    for entry in txn.open_table(schema::FIRMWARE)?.iter()? {
        let (k, v) = entry?;
        report.note::<FirmwareRecord>(|| RecordKey::Firmware(k.value()), v.value());
    }
    for entry in txn.open_table(schema::DEVICES)?.iter()? {
        let (k, v) = entry?;
        report.note::<DeviceRecord>(|| RecordKey::Devices(k.value().to_string()), v.value());
    }
    for entry in txn.open_table(schema::DEVICE_TASKS)?.iter()? {
        let (k, v) = entry?;
        report.note::<DeviceTasks>(|| RecordKey::DeviceTasks(k.value().to_string()), v.value());
    }
    for entry in txn.open_table(schema::CAMPAIGNS)?.iter()? {
        let (k, v) = entry?;
        report.note::<CampaignRecord>(|| RecordKey::Campaigns(k.value()), v.value());
    }
    // A database last written by a version before templates has none
    // (`lwota check` opens it read-only, so nothing created the table).
    let templates = match txn.open_table(schema::TASK_TEMPLATES) {
        Ok(t) => Some(t),
        Err(::redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(e.into()),
    };
    for entry in txn.open_table(schema::TASKS)?.iter()? {
        let (k, v) = entry?;
        let (c, name) = k.value();
        // A reference to a missing template is checked as its own bytes,
        // which are not a record: reported, and removed by repair.
        let bytes = match &templates {
            Some(t) => task_rows::record_bytes(t, c, v.value())?,
            None => None,
        }
        .unwrap_or_else(|| v.value().to_vec());
        report.note::<TaskRecord>(|| RecordKey::Tasks(c, name.to_string()), &bytes);
    }
    for entry in txn.open_table(schema::HISTORY)?.iter()? {
        let (k, v) = entry?;
        let (name, seq) = k.value();
        report.note::<HistoryEntry>(|| RecordKey::History(name.to_string(), seq), v.value());
    }
    super::integrity_lwm2m::check(txn, &mut report)?;
    super::device_versions::check(txn, &mut report)?;
    Ok(report)
}

/// Logs a start-up report: one line per bad record (up to the cap).
pub fn log_report(report: &IntegrityReport) {
    if report.is_clean() {
        tracing::info!("integrity check: {} records, all readable", report.checked);
        return;
    }
    for bad in &report.bad {
        tracing::error!("corrupt record {}: {}", bad.key, bad.error);
    }
    for what in &report.inconsistent {
        tracing::error!("inconsistent {what}");
    }
    tracing::error!(
        "integrity check: {} of {} records are corrupt, {} inconsistent; listings skip them. \
         Stop the server and run `lwota check --repair` to move them out",
        report.bad_count,
        report.checked,
        report.inconsistent_count
    );
}

/// For listings: the record, or `None` (logged with table and key) when
/// its bytes do not decode.
pub fn decode_or_skip<T: DeserializeOwned>(
    table: &str,
    key: impl fmt::Debug,
    bytes: &[u8],
) -> Option<T> {
    match decode(bytes) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!("skipping corrupt record {table}[{key:?}]: {e} (see `lwota check`)");
            None
        }
    }
}

/// What [`repair`] did.
#[derive(Debug, Default)]
pub struct RepairReport {
    pub quarantined: u64,
    pub counts_rebuilt: u64,
    pub deadlines_removed: u64,
    pub firmware_keys_removed: u64,
    pub active_tasks_cleared: u64,
    /// LwM2M registrations, locations and timers put back in step.
    pub lwm2m_fixed: u64,
    /// Version index keys added or removed (`DEVICE_VERSIONS`).
    pub version_keys_fixed: u64,
}

/// Name of the file in the data dir that keeps the removed records.
pub const QUARANTINE_FILE: &str = "quarantine.jsonl";

/// Moves every bad record out (raw bytes to `quarantine_dir/quarantine.jsonl`
/// first, fsynced, then deleted in one transaction) and fixes what is
/// derived from the records. Offline: the caller holds the database alone.
/// Repeats the check until it is clean, bounded by the listing cap.
pub fn repair(db: &Database, quarantine_dir: &Path) -> Result<RepairReport, StoreError> {
    let mut out = RepairReport::default();
    loop {
        let report = check(&db.begin_read()?)?;
        if report.bad.is_empty() {
            break;
        }
        quarantine(&report.bad, quarantine_dir)?;
        let txn = db.begin_write()?;
        for bad in &report.bad {
            remove(&txn, &bad.key)?;
            out.quarantined += 1;
        }
        txn.commit()?;
    }
    let txn = db.begin_write()?;
    rebuild_derived(&txn, &mut out)?;
    txn.commit()?;
    Ok(out)
}

fn quarantine(bad: &[BadRecord], dir: &Path) -> Result<(), StoreError> {
    let path = dir.join(QUARANTINE_FILE);
    let io = |e: std::io::Error| StoreError::Io(format!("{}: {e}", path.display()));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io)?;
    for b in bad {
        let line = serde_json::json!({
            "record": b.key,
            "error": b.error,
            "bytes_hex": hex::encode(&b.bytes),
        });
        writeln!(file, "{line}").map_err(io)?;
    }
    // The bytes must be safe on disk before the records are deleted.
    file.sync_all().map_err(io)
}

fn remove(txn: &WriteTransaction, key: &RecordKey) -> Result<(), StoreError> {
    match key {
        RecordKey::Firmware(id) => {
            txn.open_table(schema::FIRMWARE)?.remove(*id)?;
        }
        RecordKey::Devices(name) => {
            txn.open_table(schema::DEVICES)?.remove(name.as_str())?;
        }
        RecordKey::DeviceTasks(name) => {
            txn.open_table(schema::DEVICE_TASKS)?
                .remove(name.as_str())?;
        }
        RecordKey::Campaigns(id) => {
            txn.open_table(schema::CAMPAIGNS)?.remove(*id)?;
        }
        RecordKey::Tasks(c, name) => {
            txn.open_table(schema::TASKS)?.remove((*c, name.as_str()))?;
        }
        RecordKey::History(name, seq) => {
            txn.open_table(schema::HISTORY)?
                .remove((name.as_str(), *seq))?;
        }
        RecordKey::Registrations(name) => {
            txn.open_table(schema::REGISTRATIONS)?
                .remove(name.as_str())?;
        }
        RecordKey::EndedRegistrations(name) => {
            txn.open_table(schema::ENDED_REGISTRATIONS)?
                .remove(name.as_str())?;
        }
    }
    Ok(())
}

/// Recomputes the indexes and counters that mirror the records.
fn rebuild_derived(txn: &WriteTransaction, out: &mut RepairReport) -> Result<(), StoreError> {
    out.version_keys_fixed = super::device_versions::rebuild(txn)?;
    // CAMPAIGN_COUNTS from TASKS.
    let mut counts: BTreeMap<(u64, u8), u64> = BTreeMap::new();
    // Unfinished tasks: what a device's task pointer may point at.
    let mut tasks: HashSet<(u64, String)> = HashSet::new();
    let mut deadlines_of: HashSet<(u64, TaskKey)> = HashSet::new();
    let templates = txn.open_table(schema::TASK_TEMPLATES)?;
    let mut decoder = task_rows::TaskDecoder::default();
    for entry in txn.open_table(schema::TASKS)?.iter()? {
        let (k, v) = entry?;
        let (c, name) = k.value();
        // Every task decodes here: the bad ones were removed above.
        let task: TaskRecord = decoder.decode(&templates, c, v.value())?;
        *counts.entry((c, task.state.index())).or_default() += 1;
        if let Some(at) = task.deadline {
            deadlines_of.insert((at.as_millis(), TaskKey::new(c, name)));
        }
        if !task.state.is_final() {
            tasks.insert((c, name.to_string()));
        }
    }
    {
        let mut table = txn.open_table(schema::CAMPAIGN_COUNTS)?;
        let old: Vec<((u64, u8), u64)> = table
            .iter()?
            .map(|e| e.map(|(k, v)| (k.value(), v.value())))
            .collect::<Result<_, _>>()?;
        for (key, n) in &old {
            let want = counts.get(key).copied().unwrap_or(0);
            if want != *n {
                table.insert(*key, want)?;
                out.counts_rebuilt += 1;
            }
        }
        let old: HashSet<(u64, u8)> = old.into_iter().map(|(k, _)| k).collect();
        for (key, n) in &counts {
            if !old.contains(key) {
                table.insert(*key, *n)?;
                out.counts_rebuilt += 1;
            }
        }
    }
    // Task timeout timers whose task is gone or has another deadline (the
    // scheduler would step over them anyway; this keeps `TIMERS` tidy).
    // Other timers are not derived from the records and stay.
    {
        let mut table = txn.open_table(schema::TIMERS)?;
        let mut stale: Vec<(u64, Vec<u8>)> = Vec::new();
        for entry in table.iter()? {
            let (k, _) = entry?;
            let (at, bytes) = k.value();
            let keep = match decode_timer(bytes) {
                Ok(Timer::TaskTimeout(key)) => deadlines_of.contains(&(at, key)),
                Ok(_) => true,
                // Undecodable keys are dropped by the scheduler when due;
                // removing them here is the same, earlier.
                Err(_) => false,
            };
            if !keep {
                stale.push((at, bytes.to_vec()));
            }
        }
        for (at, bytes) in stale {
            table.remove((at, bytes.as_slice()))?;
            out.deadlines_removed += 1;
        }
    }
    // FIRMWARE_KEYS entries whose firmware is gone.
    {
        let firmware: HashSet<u64> = txn
            .open_table(schema::FIRMWARE)?
            .iter()?
            .map(|e| e.map(|(k, _)| k.value()))
            .collect::<Result<_, _>>()?;
        let mut table = txn.open_table(schema::FIRMWARE_KEYS)?;
        let stale: Vec<(String, String)> = table
            .iter()?
            .filter_map(|e| match e {
                Ok((k, v)) if !firmware.contains(&v.value()) => {
                    let (p, ver) = k.value();
                    Some(Ok((p.to_string(), ver.to_string())))
                }
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<_, _>>()?;
        for (p, ver) in stale {
            table.remove((p.as_str(), ver.as_str()))?;
            out.firmware_keys_removed += 1;
        }
    }
    // Task pointers to a task that is gone or finished, and pointer rows
    // of devices that are gone.
    {
        let devices = txn.open_table(schema::DEVICES)?;
        let mut table = txn.open_table(schema::DEVICE_TASKS)?;
        let mut fix: Vec<(String, DeviceTasks)> = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            let name = k.value();
            // Every row decodes here: the bad ones were removed above.
            let before: DeviceTasks = decode(v.value())?;
            let mut after = before;
            if devices.get(name)?.is_none() {
                after = DeviceTasks::default();
            }
            for software in [false, true] {
                if let Some(c) = after.active(software) {
                    if !tasks.contains(&(c, name.to_string())) {
                        after.set_active(software, None);
                    }
                }
            }
            if after != before {
                fix.push((name.to_string(), after));
            }
        }
        for (name, pointers) in fix {
            if pointers.is_empty() {
                table.remove(name.as_str())?;
            } else {
                table.insert(name.as_str(), encode(&pointers).as_slice())?;
            }
            out.active_tasks_cleared += 1;
        }
    }
    super::integrity_lwm2m::rebuild(txn, out)?;
    Ok(())
}

/// Runs `f` (opening or first reading a database file) with panics caught
/// and kept quiet: redb panics on some damaged pages (debug builds assert
/// "unreachable"). Returns the panic's message as the error, so the caller
/// can print one clear line instead of a backtrace.
///
/// The panic hook is process-wide, so it is installed once and stays
/// quiet only on the thread inside `catch_quietly` (a thread-local flag);
/// panics elsewhere still go to the previous hook. Swapping hooks per call
/// would race between threads opening stores at the same time (tests).
pub fn catch_quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    install_quiet_hook();
    QUIET.with(|q| q.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    let caught = CAUGHT.with(|c| c.take());
    result.map_err(|_| caught.unwrap_or_else(|| "unknown panic".into()))
}

thread_local! {
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static CAUGHT: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

fn install_quiet_hook() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                return previous(info);
            }
            let text = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            CAUGHT.with(|c| *c.borrow_mut() = Some(format!("{text}{at}")));
        }));
    });
}

/// What `lwota check` found in a database file.
#[derive(Debug)]
pub struct FileCheck {
    pub report: IntegrityReport,
    /// Set when a repair ran.
    pub repaired: Option<RepairReport>,
}

/// `lwota check` on a database file, offline: opens it (never creates
/// it), checks every record, and with `repair` moves bad records to
/// `quarantine.jsonl` beside the file. The error is one line for the
/// operator.
pub fn check_file(path: &Path, repair_it: bool) -> Result<FileCheck, String> {
    let shown = path.display();
    if !path.exists() {
        return Err(format!("no database at {shown}"));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let outcome = catch_quietly(|| -> Result<FileCheck, String> {
        let db = Database::open(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                format!("{shown} is in use: stop the server first")
            }
            e => format!("cannot open {shown}: {e}"),
        })?;
        let read = db.begin_read().map_err(|e| format!("{shown}: {e}"))?;
        let report = check(&read).map_err(|e| format!("{shown}: {e}"))?;
        drop(read);
        let repaired = if repair_it && !report.is_clean() {
            Some(repair(&db, dir).map_err(|e| format!("repair of {shown} failed: {e}"))?)
        } else {
            None
        };
        Ok(FileCheck { report, repaired })
    });
    match outcome {
        Ok(result) => result,
        Err(panic) => {
            tracing::debug!("redb panicked reading {shown}: {panic}");
            Err(format!(
                "{shown} is damaged below the record level (redb cannot read its pages); restore it from a backup"
            ))
        }
    }
}

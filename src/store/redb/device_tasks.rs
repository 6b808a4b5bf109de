//! Devices' task pointers (`DEVICE_TASKS`), and the migration that moves
//! them out of the device records of databases written before the table.

use ::redb::{ReadableTable, WriteTransaction};
use serde::Deserialize;

use super::codec::{decode, encode};
use super::integrity::decode_or_skip;
use super::schema;
use crate::model::{CampaignId, DeviceRecord, DeviceTasks};
use crate::store::Result;

pub fn get(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &str,
) -> Result<DeviceTasks> {
    // A corrupt row reads as "no task" (logged, and named by `lwota
    // check`) rather than failing every poll of the device.
    Ok(table
        .get(name)?
        .and_then(|v| decode_or_skip("device_tasks", name, v.value()))
        .unwrap_or_default())
}

pub fn put(
    table: &mut ::redb::Table<&'static str, &'static [u8]>,
    name: &str,
    value: &DeviceTasks,
) -> Result<()> {
    if value.is_empty() {
        table.remove(name)?;
    } else {
        table.insert(name, encode(value).as_slice())?;
    }
    Ok(())
}

/// The pointers as device records stored them before `DEVICE_TASKS`.
#[derive(Deserialize)]
struct LegacyPointers {
    #[serde(default)]
    active_task: Option<CampaignId>,
    #[serde(default)]
    last_task: Option<CampaignId>,
    #[serde(default)]
    software_task: Option<CampaignId>,
}

/// Moves the task pointers of every device record that still carries them
/// into `DEVICE_TASKS` and rewrites the record without them. Runs once: a
/// counter marks the database as migrated (new databases are marked at
/// creation). Returns how many devices were moved.
pub fn migrate(txn: &WriteTransaction) -> Result<u64> {
    let mut counters = txn.open_table(schema::COUNTERS)?;
    if counters.get(schema::DEVICE_TASKS_MIGRATED)?.is_some() {
        return Ok(0);
    }
    let mut devices = txn.open_table(schema::DEVICES)?;
    let mut pointers = txn.open_table(schema::DEVICE_TASKS)?;
    let mut moved: Vec<(String, DeviceTasks, Vec<u8>)> = Vec::new();
    for entry in devices.iter()? {
        let (k, v) = entry?;
        // A record that does not decode stays as it is, for `lwota check`.
        let (Ok(legacy), Ok(record)) = (
            decode::<LegacyPointers>(v.value()),
            decode::<DeviceRecord>(v.value()),
        ) else {
            continue;
        };
        let tasks = DeviceTasks {
            firmware: legacy.active_task,
            software: legacy.software_task,
            last: legacy.last_task,
        };
        if !tasks.is_empty() {
            moved.push((k.value().to_string(), tasks, encode(&record)));
        }
    }
    for (name, tasks, record) in &moved {
        put(&mut pointers, name, tasks)?;
        devices.insert(name.as_str(), record.as_slice())?;
    }
    counters.insert(schema::DEVICE_TASKS_MIGRATED, 1)?;
    Ok(moved.len() as u64)
}

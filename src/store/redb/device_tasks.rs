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

/// [`get`] of many names. Names in ascending order (a campaign's scan)
/// are read in one pass over the rows between the first and the last:
/// only devices that had a task have a row, so the pass is usually far
/// shorter than one lookup per name. When the range holds many more rows
/// than names (a short list spread over a busy fleet), the rest are
/// looked up one by one.
pub fn get_many(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    names: &[&str],
) -> Result<Vec<DeviceTasks>> {
    let (Some(first), Some(last)) = (names.first(), names.last()) else {
        return Ok(Vec::new());
    };
    if !names.is_sorted() {
        return names.iter().map(|n| get(table, n)).collect();
    }
    let budget = names.len().saturating_mul(4).saturating_add(64);
    let mut out = Vec::with_capacity(names.len());
    let mut rows = table.range::<&str>(*first..=*last)?;
    let mut row = rows.next().transpose()?;
    let mut visited = 0usize;
    for name in names {
        // Rows before `name` belong to devices not asked about.
        while let Some((k, _)) = &row {
            if k.value() >= *name {
                break;
            }
            visited += 1;
            if visited > budget {
                break;
            }
            row = rows.next().transpose()?;
        }
        if visited > budget {
            out.push(get(table, name)?);
            continue;
        }
        let found = match &row {
            Some((k, v)) if k.value() == *name => decode_or_skip("device_tasks", name, v.value()),
            _ => None,
        };
        out.push(found.unwrap_or_default());
    }
    Ok(out)
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

#[cfg(test)]
mod get_many_tests {
    use super::*;
    use ::redb::ReadableDatabase;

    #[test]
    fn many_names_read_in_one_pass_match_lookups_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let db = ::redb::Database::create(dir.path().join("t.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(schema::DEVICE_TASKS).unwrap();
            // Rows for every third device of 300, plus one far beyond.
            for i in (0..300).step_by(3) {
                let tasks = DeviceTasks {
                    firmware: Some(i),
                    software: None,
                    last: Some(i),
                };
                put(&mut table, &format!("d{i:03}"), &tasks).unwrap();
            }
            let busy = DeviceTasks {
                firmware: None,
                software: Some(9),
                last: Some(9),
            };
            put(&mut table, "z", &busy).unwrap();
        }
        txn.commit().unwrap();
        let read = db.begin_read().unwrap();
        let table = read.open_table(schema::DEVICE_TASKS).unwrap();
        let one_by_one = |names: &[&str]| -> Vec<DeviceTasks> {
            names.iter().map(|n| get(&table, n).unwrap()).collect()
        };
        let all: Vec<String> = (0..300).map(|i| format!("d{i:03}")).collect();
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        // Sorted, dense: one pass.
        assert_eq!(get_many(&table, &all).unwrap(), one_by_one(&all));
        // Sorted, sparse over many rows: past the budget, lookups.
        let sparse = ["d000", "d151", "e", "z"];
        assert_eq!(get_many(&table, &sparse).unwrap(), one_by_one(&sparse));
        // Not sorted: lookups.
        let shuffled = ["z", "d003", "d002", "d003"];
        assert_eq!(get_many(&table, &shuffled).unwrap(), one_by_one(&shuffled));
        assert!(get_many(&table, &[]).unwrap().is_empty());
    }
}

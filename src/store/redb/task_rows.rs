//! Task rows (`TASKS`). A row is a task's CBOR record or, for the tasks
//! a campaign queues in bulk (identical but for the device), a 2-byte
//! reference to the campaign's record for that wave in `TASK_TEMPLATES`:
//! a million queued tasks write 2 bytes each instead of ~180. The first
//! change to a task (`put_task`) writes its own record.

use std::collections::HashMap;

use ::redb::ReadableTable;

use super::codec::decode;
use crate::model::{CampaignId, TaskRecord};
use crate::store::{Result, StoreError};

/// First byte of a template reference. A record is a CBOR map (major
/// type 5, 0xa0-0xbf), so it never starts with this.
const TEMPLATE_REF: u8 = 0x00;

/// The row of a task that is its campaign's template for `wave`.
pub fn template_ref(wave: u8) -> [u8; 2] {
    [TEMPLATE_REF, wave]
}

/// The wave whose template `row` refers to, if it is a reference.
pub fn referred_wave(row: &[u8]) -> Option<u8> {
    match row {
        [TEMPLATE_REF, wave] => Some(*wave),
        _ => None,
    }
}

/// The record bytes of a task row: the row itself, or its template's
/// (`None` when the template is missing).
pub fn record_bytes(
    templates: &impl ReadableTable<(u64, u8), &'static [u8]>,
    campaign: CampaignId,
    row: &[u8],
) -> Result<Option<Vec<u8>>> {
    match referred_wave(row) {
        Some(wave) => Ok(templates.get((campaign, wave))?.map(|t| t.value().to_vec())),
        None => Ok(Some(row.to_vec())),
    }
}

/// Decodes task rows, each template once.
#[derive(Default)]
pub struct TaskDecoder {
    templates: HashMap<(CampaignId, u8), TaskRecord>,
}

impl TaskDecoder {
    pub fn decode(
        &mut self,
        templates: &impl ReadableTable<(u64, u8), &'static [u8]>,
        campaign: CampaignId,
        row: &[u8],
    ) -> Result<TaskRecord> {
        let Some(wave) = referred_wave(row) else {
            return decode(row);
        };
        if let Some(task) = self.templates.get(&(campaign, wave)) {
            return Ok(task.clone());
        }
        let bytes = templates.get((campaign, wave))?.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "task template of campaign {campaign} wave {wave} is missing"
            ))
        })?;
        let task: TaskRecord = decode(bytes.value())?;
        self.templates.insert((campaign, wave), task.clone());
        Ok(task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DeviceTasks, TaskState};
    use crate::store::redb::{integrity, schema, RedbStore, FILE_NAME};
    use crate::store::{StoreOptions, SyncStore};
    use crate::time::Timestamp;
    use ::redb::ReadableDatabase;

    fn queued(wave: u8) -> TaskRecord {
        let mut t = TaskRecord::queued(7, 1, "2.0", Timestamp::from_millis(5), wave, None);
        t.queued_unnoted = true;
        t
    }

    #[test]
    fn bulk_rows_refer_to_their_wave_template_until_the_task_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let store = RedbStore::open(&path, StoreOptions::default()).unwrap();
        let pointers = DeviceTasks {
            firmware: Some(7),
            software: None,
            last: Some(7),
        };
        store
            .write_sync(|tx| {
                tx.queue_tasks(&queued(0), &[("a".into(), pointers)])?;
                tx.queue_tasks(
                    &queued(1),
                    &[("b".into(), pointers), ("c".into(), pointers)],
                )
            })
            .unwrap();
        assert_eq!(
            store.read_sync(|tx| tx.task(7, "a")).unwrap(),
            Some(queued(0))
        );
        let listed = store.read_sync(|tx| tx.tasks(7, None, 10)).unwrap();
        let waves: Vec<(String, u8)> = listed.iter().map(|(n, t)| (n.clone(), t.wave)).collect();
        assert_eq!(waves, [("a".into(), 0), ("b".into(), 1), ("c".into(), 1)]);
        let counts = store.read_sync(|tx| tx.campaign_counts(7)).unwrap();
        assert_eq!(counts[usize::from(TaskState::Queued.index())], 3);
        // A change writes the task's own record; the others still refer.
        let mut handed = queued(1);
        handed.state = TaskState::Initiated;
        handed.queued_unnoted = false;
        store
            .write_sync(|tx| tx.put_task("b", Some(&queued(1)), &handed))
            .unwrap();
        assert_eq!(store.read_sync(|tx| tx.task(7, "b")).unwrap(), Some(handed));
        assert_eq!(
            store.read_sync(|tx| tx.task(7, "c")).unwrap(),
            Some(queued(1))
        );
        drop(store);
        let db = ::redb::Database::open(&path).unwrap();
        let read = db.begin_read().unwrap();
        let tasks = read.open_table(schema::TASKS).unwrap();
        assert_eq!(tasks.get((7, "c")).unwrap().unwrap().value(), [0, 1]);
        assert!(tasks.get((7, "b")).unwrap().unwrap().value().len() > 2);
        assert_eq!(integrity::check(&read).unwrap().bad_count, 0);
    }

    #[test]
    fn a_reference_to_a_missing_template_is_found_and_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let store = RedbStore::open(&path, StoreOptions::default()).unwrap();
        store
            .write_sync(|tx| tx.queue_tasks(&queued(0), &[("a".into(), DeviceTasks::default())]))
            .unwrap();
        drop(store);
        let db = ::redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(schema::TASK_TEMPLATES)
            .unwrap()
            .remove((7, 0))
            .unwrap();
        txn.commit().unwrap();
        let report = integrity::check(&db.begin_read().unwrap()).unwrap();
        assert_eq!(report.bad_count, 1);
        assert!(matches!(&report.bad[0].key, integrity::RecordKey::Tasks(7, n) if n == "a"));
        integrity::repair(&db, dir.path()).unwrap();
        let read = db.begin_read().unwrap();
        assert_eq!(integrity::check(&read).unwrap().bad_count, 0);
        assert!(read
            .open_table(schema::TASKS)
            .unwrap()
            .get((7, "a"))
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_record_is_never_read_as_a_reference() {
        let record = super::super::codec::encode(&TaskRecord::queued(
            1,
            2,
            "2.0",
            crate::time::Timestamp::from_millis(0),
            3,
            None,
        ));
        assert!(matches!(record.first(), Some(0xa0..=0xbf)));
        assert_eq!(referred_wave(&record), None);
        assert_eq!(referred_wave(&template_ref(3)), Some(3));
    }
}

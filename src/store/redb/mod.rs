//! The redb backend: one database file, MVCC snapshot reads, and one
//! writer thread doing group commit (`writer.rs`).
//!
//! **Architecture invariant:** this directory is the only code in lwota
//! that names redb. `schema.rs` holds every table, `codec.rs` the byte
//! formats, `tx.rs` the [`ReadTx`]/[`Tx`] implementations.
//!
//! Storage faults (issue 8 item 7): `recovery.rs` reopens the database
//! after a failed write (the writer drives it), `integrity.rs` finds,
//! skips and repairs corrupt records, `fault.rs` is the disk-full
//! injection the tests start a server on.

pub mod backup; // issue 12 item 7: consistent copy while running
mod codec;
mod device_tasks; // issue 10: task pointers apart from device records
mod device_versions; // issue 10: devices by version, for campaigns by source version
pub mod fault; // issue 8 item 7a: ENOSPC injection for tests
mod fleet; // issue 10: audit log and assignment rows
pub mod integrity; // issue 8 item 7c: decode checks, skip-and-report, repair
mod integrity_lwm2m; // issue 9: `lwota check` of the LwM2M tables
mod lwm2m; // issue 9: LwM2M registrations and their location index
pub mod recovery; // issue 8 item 7a: reopen after a failed write, write health
mod schema;
mod task_rows; // issue 10: bulk-queued tasks refer to one template
mod tx;
mod writer;

use std::path::Path;
use std::sync::Arc;

use ::redb::{ReadableDatabase, ReadableTable};

use self::recovery::{DbSlot, Opener, WriteHealth};
use self::tx::{RedbRead, RedbTx};
use crate::model::{TaskKey, Timer};
use crate::store::{
    Backend, ReadTx, Result, StoreError, StoreOptions, StoreStats, SyncStore, TimerSignal, Tx,
    WriteJob,
};

/// The database file's name inside the data directory.
pub const FILE_NAME: &str = "lwota.redb";

/// An open database, before (or without) its writer thread.
#[derive(Clone)]
pub struct RedbStore {
    /// Swapped when the writer reopens the database after an I/O error.
    db: Arc<DbSlot>,
    options: StoreOptions,
}

impl RedbStore {
    /// Opens (or creates) the file, creates every table so readers never
    /// see a missing one, and migrates older layouts (`DEADLINES` →
    /// `TIMERS`).
    pub fn open(path: &Path, options: StoreOptions) -> Result<RedbStore> {
        RedbStore::open_with(recovery::file_opener(path.to_path_buf()), options)
    }

    /// Like [`RedbStore::open`], through `opener` (also used to reopen
    /// after an I/O error; tests pass a fault-injecting one).
    pub fn open_with(opener: Opener, options: StoreOptions) -> Result<RedbStore> {
        let slot = Arc::new(DbSlot::open(opener)?);
        let db = slot.get()?;
        let txn = db.begin_write()?;
        {
            txn.open_table(schema::FIRMWARE)?;
            txn.open_table(schema::FIRMWARE_KEYS)?;
            txn.open_table(schema::DEVICES)?;
            txn.open_table(schema::DEVICE_TASKS)?;
            txn.open_table(schema::DEVICE_VERSIONS)?;
            txn.open_table(schema::CAMPAIGNS)?;
            txn.open_table(schema::TASKS)?;
            txn.open_table(schema::TASK_TEMPLATES)?;
            txn.open_table(schema::CAMPAIGN_COUNTS)?;
            txn.open_table(schema::HISTORY)?;
            txn.open_table(schema::HISTORY_LEN)?;
            txn.open_table(schema::TIMERS)?;
            txn.open_table(schema::COUNTERS)?;
            txn.open_table(schema::REGISTRATIONS)?;
            txn.open_table(schema::REGISTRATION_LOCATIONS)?;
            txn.open_table(schema::ENDED_REGISTRATIONS)?;
            txn.open_table(schema::DYNAMIC_CAMPAIGNS)?;
            txn.open_table(schema::PSKS)?;
            txn.open_table(schema::PSK_IDENTITIES)?;
            txn.open_table(schema::AUDIT)?;
            txn.open_table(schema::ASSIGNMENTS)?;
            txn.open_table(schema::SECRETS)?;
        }
        let moved = migrate_deadlines(&txn)?;
        let pointers = device_tasks::migrate(&txn)?;
        let indexed = device_versions::build(&txn)?;
        txn.commit()?;
        if moved > 0 {
            tracing::info!("moved {moved} task deadlines into the timers table");
        }
        if indexed > 0 {
            tracing::info!("indexed the versions of {indexed} devices");
        }
        if pointers > 0 {
            tracing::info!("moved the task pointers of {pointers} devices into their own table");
        }
        Ok(RedbStore { db: slot, options })
    }

    /// Opens `data_dir/lwota.redb`.
    pub fn open_in(data_dir: &Path, options: StoreOptions) -> Result<RedbStore> {
        RedbStore::open(&data_dir.join(FILE_NAME), options)
    }

    /// Starts the group-commit writer; the result is what [`crate::store::Store`] wraps.
    pub fn start_writer(self, timers: Arc<TimerSignal>) -> Result<RedbBackend> {
        let health = Arc::new(WriteHealth::default());
        let writer = writer::WriterHandle::start(
            self.db.clone(),
            health.clone(),
            self.options.history_cap,
            timers,
        )
        .map_err(|e| StoreError::Db(format!("cannot start the writer thread: {e}")))?;
        Ok(RedbBackend {
            db: self.db,
            health,
            writer,
        })
    }
}

/// Moves every `DEADLINES` entry into `TIMERS` and deletes the old table.
fn migrate_deadlines(txn: &::redb::WriteTransaction) -> Result<usize> {
    let legacy: Vec<(u64, u64, String)> = {
        let table = txn.open_table(schema::LEGACY_DEADLINES)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, _) = entry?;
            let (at, campaign, device) = k.value();
            out.push((at, campaign, device.to_string()));
        }
        out
    };
    {
        let mut timers = txn.open_table(schema::TIMERS)?;
        for (at, campaign, device) in &legacy {
            let timer = Timer::TaskTimeout(TaskKey::new(*campaign, device));
            timers.insert((*at, codec::encode_timer(&timer).as_slice()), ())?;
        }
    }
    txn.delete_table(schema::LEGACY_DEADLINES)?;
    Ok(legacy.len())
}

impl SyncStore for RedbStore {
    fn write_sync<R>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<R>) -> Result<R> {
        let mut tx = RedbTx {
            txn: self.db.get()?.begin_write()?,
            history_cap: self.options.history_cap,
            earliest_set: None,
        };
        let out = f(&mut tx)?;
        tx.txn.commit()?;
        Ok(out)
    }

    fn read_sync<R>(&self, f: impl FnOnce(&dyn ReadTx) -> Result<R>) -> Result<R> {
        let tx = RedbRead(self.db.get()?.begin_read()?);
        f(&tx)
    }
}

/// The running backend: snapshot reads plus the writer thread.
pub struct RedbBackend {
    db: Arc<DbSlot>,
    health: Arc<WriteHealth>,
    writer: writer::WriterHandle,
}

impl Backend for RedbBackend {
    fn read(&self) -> Result<Box<dyn ReadTx + Send>> {
        Ok(Box::new(RedbRead(self.db.get()?.begin_read()?)))
    }

    fn write_health(&self) -> std::result::Result<(), String> {
        // A writer thread that ended takes no more writes, whatever the
        // last batch said.
        if !self.writer.is_running() {
            return Err("the store writer thread has stopped".into());
        }
        self.health.status()
    }

    fn check_integrity(&self) -> Result<integrity::IntegrityReport> {
        integrity::check(&self.db.get()?.begin_read()?)
    }

    fn submit(&self, job: Box<dyn WriteJob>) -> Result<()> {
        self.writer.submit(job)
    }

    fn snapshot_to(&self, out: &Path) -> Result<u64> {
        let db = self.db.get()?;
        backup::snapshot(&db, out)
    }

    fn stats(&self) -> Arc<StoreStats> {
        self.writer.stats()
    }

    fn shutdown(&self) {
        self.writer.shutdown()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    #[test]
    fn legacy_deadlines_become_task_timeout_timers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        {
            let db = ::redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(schema::LEGACY_DEADLINES)
                .unwrap()
                .insert((5u64, 2u64, "dev"), ())
                .unwrap();
            txn.commit().unwrap();
        }
        let store = RedbStore::open(&path, StoreOptions::default()).unwrap();
        let timers = store.read_sync(|tx| tx.timers(10)).unwrap();
        assert_eq!(
            timers,
            vec![(
                Timestamp::from_millis(5),
                Timer::TaskTimeout(TaskKey::new(2, "dev"))
            )]
        );
        drop(store);
        // Opening again finds nothing more to move.
        let store = RedbStore::open(&path, StoreOptions::default()).unwrap();
        assert_eq!(store.read_sync(|tx| tx.timers(10)).unwrap().len(), 1);
    }

    /// Issue 10: a database written when the task pointers were fields of
    /// the device record opens with them moved to `DEVICE_TASKS`, the
    /// device records rewritten without them, and the migration marked.
    #[test]
    fn device_records_with_task_pointers_migrate_to_their_own_table() {
        use crate::model::{DeviceRecord, DeviceTasks};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let legacy = |pointers: &[(&str, u64)]| {
            let record = DeviceRecord::new("p", "1.0", Timestamp::ZERO);
            let mut value = ciborium::Value::serialized(&record).unwrap();
            if let ciborium::Value::Map(fields) = &mut value {
                for (k, v) in pointers {
                    fields.push(((*k).into(), (*v).into()));
                }
            }
            let mut bytes = Vec::new();
            ciborium::into_writer(&value, &mut bytes).unwrap();
            bytes
        };
        {
            let db = ::redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut devices = txn.open_table(schema::DEVICES).unwrap();
                let busy = legacy(&[("active_task", 7), ("last_task", 7), ("software_task", 8)]);
                devices.insert("busy", busy.as_slice()).unwrap();
                let idle = legacy(&[("last_task", 3)]);
                devices.insert("idle", idle.as_slice()).unwrap();
                devices.insert("new", legacy(&[]).as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }
        let store = RedbStore::open(&path, StoreOptions::default()).unwrap();
        let read = |name: &str| store.read_sync(|tx| tx.device_tasks(name)).unwrap();
        assert_eq!(
            read("busy"),
            DeviceTasks {
                firmware: Some(7),
                software: Some(8),
                last: Some(7)
            }
        );
        assert_eq!(read("idle").last, Some(3));
        assert!(read("new").is_empty());
        // The records still read, and no longer carry the pointers.
        let device = store.read_sync(|tx| tx.device("busy")).unwrap().unwrap();
        assert_eq!(device.version, "1.0");
        {
            let db = store.db.get().unwrap();
            let txn = db.begin_read().unwrap();
            let devices = txn.open_table(schema::DEVICES).unwrap();
            let raw = devices.get("busy").unwrap().unwrap();
            let value: ciborium::Value = ciborium::from_reader(raw.value()).unwrap();
            let text = format!("{value:?}");
            assert!(!text.contains("active_task"), "{text}");
        }
        // Pointers cleared since are not brought back by a second open.
        store
            .write_sync(|tx| tx.put_device_tasks("busy", &DeviceTasks::default()))
            .unwrap();
        drop(store);
        let store = RedbStore::open(&path, StoreOptions::default()).unwrap();
        assert!(store
            .read_sync(|tx| tx.device_tasks("busy"))
            .unwrap()
            .is_empty());
    }

    /// Issue 8 item 7c: a record that does not decode is stepped over by
    /// listings (a page still holds `limit` readable records), while a
    /// point lookup reports it; the integrity check names it.
    #[test]
    fn listings_skip_a_corrupt_record_and_the_check_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join(FILE_NAME), StoreOptions::default()).unwrap();
        let device = crate::model::DeviceRecord::new("p", "1", Timestamp::ZERO);
        store
            .write_sync(|tx| {
                for name in ["a", "b", "c"] {
                    tx.put_device(name, &device)?;
                }
                Ok(())
            })
            .unwrap();
        {
            let db = store.db.get().unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(schema::DEVICES)
                .unwrap()
                .insert("b", [0xffu8; 5].as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let names: Vec<String> = store
            .read_sync(|tx| tx.devices(None, 2))
            .unwrap()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(names, ["a", "c"]);
        assert!(matches!(
            store.read_sync(|tx| tx.device("b")),
            Err(StoreError::Corrupt(_))
        ));
        let report = integrity::check(&store.db.get().unwrap().begin_read().unwrap()).unwrap();
        assert_eq!(report.bad_count, 1);
        assert_eq!(report.bad[0].key, integrity::RecordKey::Devices("b".into()));
    }
}

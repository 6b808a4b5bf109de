//! The redb backend: one database file, MVCC snapshot reads, and one
//! writer thread doing group commit (`writer.rs`).
//!
//! **Architecture invariant:** this directory is the only code in lwota
//! that names redb. `schema.rs` holds every table, `codec.rs` the byte
//! formats, `tx.rs` the [`ReadTx`]/[`Tx`] implementations.

mod codec;
mod schema;
mod tx;
mod writer;

use std::path::Path;
use std::sync::Arc;

use ::redb::{Database, ReadableDatabase, ReadableTable};

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
    db: Arc<Database>,
    options: StoreOptions,
}

impl RedbStore {
    /// Opens (or creates) the file, creates every table so readers never
    /// see a missing one, and migrates older layouts (`DEADLINES` →
    /// `TIMERS`).
    pub fn open(path: &Path, options: StoreOptions) -> Result<RedbStore> {
        let db = Arc::new(Database::create(path)?);
        let txn = db.begin_write()?;
        {
            txn.open_table(schema::FIRMWARE)?;
            txn.open_table(schema::FIRMWARE_KEYS)?;
            txn.open_table(schema::DEVICES)?;
            txn.open_table(schema::CAMPAIGNS)?;
            txn.open_table(schema::TASKS)?;
            txn.open_table(schema::CAMPAIGN_COUNTS)?;
            txn.open_table(schema::HISTORY)?;
            txn.open_table(schema::HISTORY_LEN)?;
            txn.open_table(schema::TIMERS)?;
            txn.open_table(schema::COUNTERS)?;
        }
        let moved = migrate_deadlines(&txn)?;
        txn.commit()?;
        if moved > 0 {
            tracing::info!("moved {moved} task deadlines into the timers table");
        }
        Ok(RedbStore { db, options })
    }

    /// Opens `data_dir/lwota.redb`.
    pub fn open_in(data_dir: &Path, options: StoreOptions) -> Result<RedbStore> {
        RedbStore::open(&data_dir.join(FILE_NAME), options)
    }

    /// Starts the group-commit writer; the result is what [`crate::store::Store`] wraps.
    pub fn start_writer(self, timers: Arc<TimerSignal>) -> Result<RedbBackend> {
        let writer = writer::WriterHandle::start(self.db.clone(), self.options.history_cap, timers)
            .map_err(|e| StoreError::Db(format!("cannot start the writer thread: {e}")))?;
        Ok(RedbBackend {
            db: self.db,
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
            txn: self.db.begin_write()?,
            history_cap: self.options.history_cap,
            earliest_set: None,
        };
        let out = f(&mut tx)?;
        tx.txn.commit()?;
        Ok(out)
    }

    fn read_sync<R>(&self, f: impl FnOnce(&dyn ReadTx) -> Result<R>) -> Result<R> {
        let tx = RedbRead(self.db.begin_read()?);
        f(&tx)
    }
}

/// The running backend: snapshot reads plus the writer thread.
pub struct RedbBackend {
    db: Arc<Database>,
    writer: writer::WriterHandle,
}

impl Backend for RedbBackend {
    fn read(&self) -> Result<Box<dyn ReadTx + Send>> {
        Ok(Box::new(RedbRead(self.db.begin_read()?)))
    }

    fn submit(&self, job: Box<dyn WriteJob>) -> Result<()> {
        self.writer.submit(job)
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
            let db = Database::create(&path).unwrap();
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
}

//! All persistence: redb tables (`schema`), their records (`records`), the
//! group-commit writer (`writer`) and firmware blob files (`blobs`).
//!
//! **Architecture invariant:** nothing outside `store/` opens the database
//! file or a blob directly. Reads use a redb read transaction (MVCC, never
//! blocked by the writer); every write goes through [`Store::write`], which
//! returns only once the write is durable (fsynced by redb's commit).

pub mod access;
pub mod blobs;
pub mod fault; // issue 8 item 7a: ENOSPC injection for tests
pub mod integrity; // issue 8 item 7c: decode checks, skip-and-report, repair
pub mod records;
pub mod recovery; // issue 8 item 7a: reopen after a failed write, write health
pub mod schema;
mod writer;

use std::path::Path;
use std::sync::Arc;

use redb::{ReadTransaction, ReadableDatabase, ReadableTable, WriteTransaction};

pub use writer::{StoreStats, WriteOutcome};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(String),
    /// The storage itself failed (disk full, I/O error): the writer
    /// reopens the database (see `recovery`).
    #[error("storage I/O error: {0}")]
    Io(String),
    /// Writes are refused until the database is reopened after an I/O
    /// error: devices get 5.03, HTTP 503.
    #[error("storage unavailable, retry later: {0}")]
    Unavailable(String),
    #[error("corrupt record: {0}")]
    Corrupt(String),
    #[error("store writer has stopped")]
    Closed,
    #[error("too many writes queued; retry later")]
    Busy,
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                // I/O errors are told apart: they take the reopen path.
                match redb::Error::from(e) {
                    e @ (redb::Error::Io(_)
                    | redb::Error::PreviousIo
                    | redb::Error::Backend(_)
                    | redb::Error::DatabaseClosed) => StoreError::Io(e.to_string()),
                    e => StoreError::Db(e.to_string()),
                }
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// Swapped when the writer reopens the database after an I/O error.
    db: Arc<recovery::DbSlot>,
    health: Arc<recovery::WriteHealth>,
    writer: writer::WriterHandle,
}

impl Store {
    /// Opens (or creates) the redb file and starts the writer thread. All
    /// tables are created here so readers never see a missing table.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(recovery::file_opener(path.to_path_buf()))
    }

    /// Like [`Store::open`], through `opener` (also used to reopen).
    pub fn open_with(opener: recovery::Opener) -> Result<Store, StoreError> {
        let slot = Arc::new(recovery::DbSlot::open(opener)?);
        let db = slot.get()?;
        let txn = db.begin_write()?;
        {
            txn.open_table(schema::FIRMWARE)?;
            txn.open_table(schema::FIRMWARE_KEYS)?;
            txn.open_table(schema::DEVICES)?;
            txn.open_table(schema::CAMPAIGNS)?;
            txn.open_table(schema::TASKS)?;
            txn.open_table(schema::CAMPAIGN_COUNTS)?;
            txn.open_table(schema::HISTORY)?;
            txn.open_table(schema::DEADLINES)?;
            txn.open_table(schema::COUNTERS)?;
        }
        txn.commit()?;
        drop(db);
        let health = Arc::new(recovery::WriteHealth::default());
        let writer = writer::WriterHandle::start(slot.clone(), health.clone())
            .map_err(|e| StoreError::Db(format!("cannot start the writer thread: {e}")))?;
        Ok(Store {
            db: slot,
            health,
            writer,
        })
    }

    pub fn read(&self) -> Result<ReadTransaction, StoreError> {
        Ok(self.db.get()?.begin_read()?)
    }

    /// `Err(why)` while writes fail (for `/healthz`).
    pub fn write_health(&self) -> Result<(), String> {
        self.health.status()
    }

    /// Runs `job` inside a write transaction shared with other concurrent
    /// jobs (group commit) and returns its result once that transaction is
    /// committed and fsynced.
    ///
    /// The job's contract: it returns `Ok(Err(domain))` only *before* it
    /// has written anything (check, then write), so a rejected request
    /// changes nothing; `Err(StoreError)` aborts the whole batch.
    pub async fn write<T, E, F>(&self, job: F) -> Result<Result<T, E>, StoreError>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<Result<T, E>, StoreError> + Send + 'static,
    {
        self.writer.submit(job).await
    }

    /// Like [`Store::write`] but nobody waits for the result: for
    /// best-effort facts no peer was promised (block-inferred progress).
    pub fn write_detached<F>(&self, job: F)
    where
        F: FnOnce(&WriteTransaction) -> Result<(), StoreError> + Send + 'static,
    {
        self.writer.submit_detached(job)
    }

    /// Commits all queued writes and stops the writer thread. Blocking.
    pub fn shutdown(&self) {
        self.writer.shutdown()
    }

    pub fn stats(&self) -> Arc<StoreStats> {
        self.writer.stats()
    }
}

/// Reads and increments the named counter; returns the value before.
pub fn next_id(txn: &WriteTransaction, name: &str) -> Result<u64, StoreError> {
    let mut table = txn.open_table(schema::COUNTERS)?;
    let current = table.get(name)?.map(|v| v.value()).unwrap_or(1);
    table.insert(name, current + 1)?;
    Ok(current)
}

//! A file backend that can be told to fail like a full disk: the ENOSPC
//! injection behind the storage-fault tests (issue 8, item 7a).
//!
//! Wraps redb's own [`FileBackend`] and, while [`DiskFull::set`] is on,
//! fails every `write`, `set_len` and `sync_data` with the same error the
//! kernel returns for a full disk (`ENOSPC`). Reads and locks always pass
//! through, as on a real full disk. It is public so integration tests can
//! start a real server on it ([`crate::server::start_on`]); production
//! opens the plain file.

use std::fs::OpenOptions;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use ::redb::backends::FileBackend;
use ::redb::{BackendError, Database, StorageBackend};

use super::recovery::Opener;

/// The switch shared by every backend the opener creates.
#[derive(Debug, Default)]
pub struct DiskFull {
    full: AtomicBool,
    refused: AtomicU64,
    /// The next `sync_data` panics (a redb bug in commit, for the writer's
    /// panic test).
    panic_next_sync: AtomicBool,
}

impl DiskFull {
    pub fn set(&self, full: bool) {
        self.full.store(full, Ordering::SeqCst);
    }

    /// Makes the next `sync_data` (so the next commit) panic once.
    pub fn panic_next_sync(&self) {
        self.panic_next_sync.store(true, Ordering::SeqCst);
    }

    /// How many writes/syncs were refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }

    fn check(&self) -> Result<(), std::io::Error> {
        if self.full.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            // ENOSPC is 28 on Linux; raw so the message is the kernel's.
            return Err(std::io::Error::from_raw_os_error(28));
        }
        Ok(())
    }
}

#[derive(Debug)]
struct FaultyFile {
    inner: FileBackend,
    disk: Arc<DiskFull>,
}

/// An opener for `path` whose backends fail while `disk` says full.
pub fn opener(path: &Path, disk: Arc<DiskFull>) -> Opener {
    let path: PathBuf = path.to_path_buf();
    Arc::new(move || {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let backend = FaultyFile {
            inner: FileBackend::new(file)?,
            disk: disk.clone(),
        };
        Database::builder().create_with_backend(backend)
    })
}

impl StorageBackend for FaultyFile {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.disk.check()?;
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        if self.disk.panic_next_sync.swap(false, Ordering::SeqCst) {
            panic!("injected panic in sync_data");
        }
        self.disk.check()?;
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.disk.check()?;
        self.inner.write(offset, data)
    }

    fn close(&self) -> Result<(), std::io::Error> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

//! Surviving a failed write (issue 8, item 7a): a full disk must not
//! poison the database until restart.
//!
//! redb latches the first I/O error of a commit: every later operation on
//! that `Database` fails with "Previous I/O error occurred. Please close and
//! re-open the database." So when a commit fails with an I/O error the
//! writer closes the database and opens it again ([`DbSlot::reopen`]),
//! retrying with back-off while the disk is still full, and proves the
//! write path with a probe commit before it takes jobs again. Meanwhile
//! jobs are answered with [`StoreError::Unavailable`] (devices get 5.03,
//! HTTP 503) and [`WriteHealth`] says why, for `/healthz`.
//!
//! Nothing acknowledged is lost: a job is answered `Ok` only after its
//! commit returned `Ok`; a commit that failed is reverted by redb's repair
//! on reopen (or, if its final fsync failed after the header reached the
//! disk, kept — present but never acknowledged, which is harmless).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use ::redb::{Database, ReadableTable as _};

use super::schema;
use crate::store::StoreError;

/// Opens the database file; called at start-up and again on every reopen.
/// A closure so that tests can open through a fault-injecting backend
/// (see [`super::fault`]).
pub type Opener = Arc<dyn Fn() -> Result<Database, ::redb::DatabaseError> + Send + Sync>;

/// The opener for a plain file: `Database::create(path)`.
pub fn file_opener(path: PathBuf) -> Opener {
    Arc::new(move || Database::create(&path))
}

/// First and largest wait between two reopen attempts. The cap keeps a
/// freed disk noticed within seconds without spinning on a full one.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The current `Database`, replaced on reopen. Readers take a clone of the
/// `Arc` for the moment they begin a transaction; while the slot is empty
/// (between closing and reopening) they get [`StoreError::Unavailable`].
pub struct DbSlot {
    current: RwLock<Option<Arc<Database>>>,
    opener: Opener,
}

impl DbSlot {
    pub fn open(opener: Opener) -> Result<DbSlot, StoreError> {
        let db = opener()?;
        Ok(DbSlot {
            current: RwLock::new(Some(Arc::new(db))),
            opener,
        })
    }

    /// The database as it is now.
    pub fn get(&self) -> Result<Arc<Database>, StoreError> {
        let current = self.current.read().map_err(|_| poisoned())?;
        current
            .clone()
            .ok_or_else(|| StoreError::Unavailable("the database is being reopened".into()))
    }

    /// Closes the database and opens it again (redb repairs it on open).
    /// Fails while the file is still held — a reader's transaction keeps
    /// the old `Database` alive and its file lock taken — or while the
    /// disk refuses the repair; the caller retries.
    pub fn reopen(&self) -> Result<(), StoreError> {
        let old = self.current.write().map_err(|_| poisoned())?.take();
        drop(old);
        let db = (self.opener)()?;
        *self.current.write().map_err(|_| poisoned())? = Some(Arc::new(db));
        Ok(())
    }
}

fn poisoned() -> StoreError {
    StoreError::Db("database slot lock poisoned".into())
}

/// Whether writes currently work, for `/healthz`. Set by the writer.
#[derive(Debug, Default)]
pub struct WriteHealth {
    failure: Mutex<Option<String>>,
}

impl WriteHealth {
    /// `Ok` while writes commit; `Err(why)` from a failed commit until a
    /// probe write succeeds again.
    pub fn status(&self) -> Result<(), String> {
        match self.failure.lock() {
            Ok(f) => f.clone().map_or(Ok(()), Err),
            Err(_) => Err("health lock poisoned".into()),
        }
    }

    pub fn set_failed(&self, why: &str) {
        if let Ok(mut f) = self.failure.lock() {
            *f = Some(why.to_string());
        }
    }

    pub fn set_ok(&self) {
        if let Ok(mut f) = self.failure.lock() {
            *f = None;
        }
    }
}

/// Counter bumped by every probe commit: it allocates a page, so it fails
/// on a full disk where an empty commit might not.
pub const WRITE_PROBE: &str = "write_probe";

/// One small durable write that proves the write path works.
pub fn probe(db: &Database) -> Result<(), StoreError> {
    let txn = db.begin_write()?;
    {
        let mut table = txn.open_table(schema::COUNTERS)?;
        let n = table.get(WRITE_PROBE)?.map(|v| v.value()).unwrap_or(0);
        table.insert(WRITE_PROBE, n.wrapping_add(1))?;
    }
    txn.commit()?;
    Ok(())
}

/// Called by the writer after a commit failed with `why` (an I/O error):
/// marks the write path down, then reopens and probes until both work.
/// Between attempts it calls `wait(backoff)`, which must answer whatever
/// jobs arrive meanwhile with [`StoreError::Unavailable`] and return
/// `false` when the writer is asked to stop (then this returns `false`).
pub fn recover(
    slot: &DbSlot,
    health: &WriteHealth,
    why: &StoreError,
    mut wait: impl FnMut(Duration) -> bool,
) -> bool {
    tracing::error!("write failed ({why}); reopening the database, writes refused meanwhile");
    health.set_failed(&why.to_string());
    let mut backoff = FIRST_BACKOFF;
    let mut attempts: u64 = 0;
    loop {
        attempts += 1;
        let outcome = slot.reopen().and_then(|()| probe(&*slot.get()?));
        match outcome {
            Ok(()) => {
                health.set_ok();
                tracing::info!("database reopened after {attempts} attempt(s); writes work again");
                return true;
            }
            Err(e) => {
                // Log the first few and then rarely: a full disk can last hours.
                if attempts <= 3 || attempts.is_power_of_two() {
                    tracing::warn!("reopen attempt {attempts} failed: {e}");
                }
                health.set_failed(&e.to_string());
            }
        }
        if !wait(backoff) {
            return false;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Whether an error means the storage itself failed (as opposed to a bad
/// record or a refused job): these take the recovery path.
pub fn is_io(e: &StoreError) -> bool {
    matches!(e, StoreError::Io(_))
}

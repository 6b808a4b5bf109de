//! All persistence, behind two traits: [`ReadTx`] (a consistent snapshot)
//! and [`Tx`] (a write transaction), plus the [`Store`] handle the app uses
//! to run reads off the async workers and group-committed writes.
//!
//! Backends: `redb/` (the server's, a single file; the only code in lwota
//! that names redb) and [`memory`] (unit tests). Firmware bytes live in
//! blob files ([`blobs`]), never in a transaction.
//!
//! **Architecture invariant:** the domain (`ota/`) sees only `&mut impl Tx`
//! / `&impl ReadTx`; nothing outside `store/redb/` names redb.
//!
//! **Designed for a second backend** (PostgreSQL, several server processes
//! on one database):
//! - *No process-global counters on hot paths.* History is keyed by
//!   (device, per-device sequence), the next sequence found from the
//!   device's own last key; ids (`next_firmware_id`, `next_campaign_id`)
//!   are rare operator actions and map to database sequences.
//! - *Counts are the backend's business.* [`Tx::put_task`] receives the
//!   previous record so a backend can keep per-state counters in step (redb
//!   does); another may count with an index instead of a hot row.
//! - *Timers are claimed, not scanned.* [`Tx::take_due_timers`] removes and
//!   returns due timers in one step, which is `DELETE … WHERE id IN
//!   (SELECT … ORDER BY at LIMIT n FOR UPDATE SKIP LOCKED) RETURNING …` in
//!   SQL: several schedulers never handle the same timer twice.
//! - *Tasks are claimed by row.* A poll reads its device and task and
//!   writes them back in one transaction (`SELECT … FOR UPDATE` on two
//!   rows, never a range lock); operations that hand out many tasks (the
//!   campaign engine's admission) are to be added the same way as timers:
//!   one `Tx` operation that takes up to `n` rows `FOR UPDATE SKIP LOCKED`.
//! - *Polls are an operation, not read-modify-write.* [`Tx::record_poll`]
//!   is the poll's history write; a backend may turn it into an appended
//!   event with materialised state without the domain noticing.

pub mod blobs;
mod history;
pub mod memory;
mod redb;

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::model::{
    AssignmentScope, Assignments, AuditEntry, AuditId, CampaignId, CampaignRecord, DeviceRecord,
    DeviceTasks, EndedRegistration, FirmwareId, FirmwareRecord, HistoryEntry, HistorySeq,
    PskRecord, RegistrationRecord, StateCounts, TaskRecord, Timer,
};
use crate::time::Timestamp;

pub use self::redb::FILE_NAME;
pub use self::redb::{fault, integrity, recovery, RedbStore}; // issue 12 item 7: the backup names it

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(String),
    /// The storage itself failed (disk full, I/O error): the writer
    /// reopens the database (see `redb/recovery.rs`).
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
    /// The job panicked; its writes were rolled back, the rest of its
    /// batch committed.
    #[error("write job failed: {0}")]
    JobPanicked(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What a write job reports back: the outer error means nothing of the
/// job was stored; the inner one is the domain's answer.
pub type WriteOutcome<T, E> = Result<Result<T, E>, StoreError>;

/// Retention settings the backends apply.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// Most history entries kept per device; older ones are replaced by one
    /// `truncated` note that counts them. At least 2.
    pub history_cap: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { history_cap: 1000 }
    }
}

/// A consistent view of the data. Every range operation takes a `limit`
/// (and an exclusive `after` cursor), so no caller can ask for an
/// unbounded scan, and each maps to one indexed `SELECT … WHERE key > $after
/// ORDER BY key LIMIT $n` in SQL.
pub trait ReadTx {
    fn device(&self, name: &str) -> Result<Option<DeviceRecord>>;
    /// Devices in name order, after `after`, at most `limit`.
    fn devices(&self, after: Option<&str>, limit: usize) -> Result<Vec<(String, DeviceRecord)>>;
    /// Names of `product`'s devices whose firmware version (or, with
    /// `software`, software version) is `version`, in name order, after
    /// `after`, at most `limit`. An index: no device record is read.
    fn device_names_on_version(
        &self,
        product: &str,
        software: bool,
        version: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>>;
    /// A device's task pointers (empty when it never had a task). Kept
    /// apart from the device record so queuing a campaign writes only
    /// these; read through `ota::assignment`.
    fn device_tasks(&self, name: &str) -> Result<DeviceTasks>;
    /// [`ReadTx::device_tasks`] of many devices, in order (one batch: a
    /// backend opens its table once, or runs one `WHERE name = ANY($1)`).
    fn device_tasks_of(&self, names: &[&str]) -> Result<Vec<DeviceTasks>> {
        names.iter().map(|n| self.device_tasks(n)).collect()
    }
    /// Device records in the store, without a scan (issue 11: the cap on
    /// self-registration).
    fn device_count(&self) -> Result<u64>;
    fn firmware(&self, id: FirmwareId) -> Result<Option<FirmwareRecord>>;
    /// Every firmware record, by id (the table is small: `max_per_product`
    /// per product).
    fn firmware_all(&self) -> Result<Vec<FirmwareRecord>>;
    fn campaign(&self, id: CampaignId) -> Result<Option<CampaignRecord>>;
    /// Campaigns by id, after `after`, at most `limit`.
    fn campaigns(&self, after: Option<CampaignId>, limit: usize) -> Result<Vec<CampaignRecord>>;
    fn task(&self, campaign: CampaignId, device: &str) -> Result<Option<TaskRecord>>;
    /// A campaign's tasks in device-name order, after `after`, at most `limit`.
    fn tasks(
        &self,
        campaign: CampaignId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, TaskRecord)>>;
    /// Tasks per state, without a scan.
    fn campaign_counts(&self, campaign: CampaignId) -> Result<StateCounts>;
    /// A device's history, oldest first, after sequence `after`, at most `limit`.
    fn history(
        &self,
        device: &str,
        after: Option<HistorySeq>,
        limit: usize,
    ) -> Result<Vec<(HistorySeq, HistoryEntry)>>;
    /// The sequence number of a device's newest stored history entry.
    fn last_history_seq(&self, device: &str) -> Result<Option<HistorySeq>>;
    /// The earliest timer's due time.
    fn earliest_timer(&self) -> Result<Option<Timestamp>>;
    /// Timers in due order, at most `limit` (for inspection; the scheduler
    /// claims with [`Tx::take_due_timers`]).
    fn timers(&self, limit: usize) -> Result<Vec<(Timestamp, Timer)>>;
    /// The latest time the server persisted as "now" (its clock never
    /// starts below this after a restart).
    fn clock_floor(&self) -> Result<Option<Timestamp>>;
    /// The LwM2M registration of device `name`.
    fn registration(&self, name: &str) -> Result<Option<RegistrationRecord>>;
    /// The device registered at `/rd/{location}`.
    fn registration_name(&self, location: &str) -> Result<Option<String>>;
    /// The last registration of device `name` when it de-registered or
    /// expired (none while it is registered).
    fn ended_registration(&self, name: &str) -> Result<Option<EndedRegistration>>;
    /// Registrations in device-name order, after `after`, at most `limit`.
    fn registrations(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, RegistrationRecord)>>;
    /// Dynamic campaigns of `product` still taking new devices (few: one
    /// per open dynamic campaign).
    fn dynamic_campaigns(&self, product: &str) -> Result<Vec<CampaignId>>;
    /// A device's DTLS pre-shared key (issue 11).
    fn psk(&self, device: &str) -> Result<Option<PskRecord>>;
    /// The device a PSK identity belongs to.
    fn psk_owner(&self, identity: &str) -> Result<Option<String>>;
    /// Credentials in device-name order, after `after`, at most `limit`.
    fn psks(&self, after: Option<&str>, limit: usize) -> Result<Vec<(String, PskRecord)>>;

    // Audit log and assignments (issue 10 items 9, 13).
    /// Audit entries oldest first, after id `after`, at most `limit`.
    fn audit(&self, after: Option<AuditId>, limit: usize) -> Result<Vec<AuditEntry>>;
    /// The assignments of a product or device (empty when none).
    fn assignments(&self, scope: &AssignmentScope) -> Result<Assignments>;
    /// Issue 11: an admin-security record (admin token, signing key),
    /// encoded by its owner (`admin::auth`, `ota::signing`), under
    /// (`kind`, `key`). Few and small: operator-made only.
    fn secret(&self, kind: &str, key: &str) -> Result<Option<Vec<u8>>>;
    /// Records of `kind` in key order, after `after`, at most `limit`.
    fn secrets(
        &self,
        kind: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>>;
}

/// A write transaction. Nothing is visible to readers, nor durable, until
/// the whole transaction commits; a job that returns `Err` (or panics) has
/// all its writes discarded.
///
/// Shaped for more than one backend (module docs): no operation needs a
/// process-global counter on the hot path (history sequences are per
/// device), timers are claimed with [`Tx::take_due_timers`] (`FOR UPDATE
/// SKIP LOCKED`), counts stay behind [`Tx::put_task`], and a poll's history
/// write is one [`Tx::record_poll`] call a backend may turn into an
/// appended event.
pub trait Tx: ReadTx {
    fn next_firmware_id(&mut self) -> Result<FirmwareId>;
    fn next_campaign_id(&mut self) -> Result<CampaignId>;
    fn put_device(&mut self, name: &str, record: &DeviceRecord) -> Result<()>;
    /// Writes a firmware record and its (product, version) key.
    fn put_firmware(&mut self, record: &FirmwareRecord) -> Result<()>;
    fn delete_firmware(&mut self, record: &FirmwareRecord) -> Result<()>;
    fn put_campaign(&mut self, record: &CampaignRecord) -> Result<()>;
    /// Writes a task; `previous` is the record as it was (None for a new
    /// task), so the backend keeps its per-state counts in step. Timers are
    /// the caller's ([`Tx::set_timer`]).
    fn put_task(
        &mut self,
        device: &str,
        previous: Option<&TaskRecord>,
        record: &TaskRecord,
    ) -> Result<()>;
    /// Writes a device's task pointers (empty: the row is removed).
    fn put_device_tasks(&mut self, name: &str, value: &DeviceTasks) -> Result<()>;
    /// Queues a campaign's tasks in bulk: for each `(name, pointers)`,
    /// writes `task` for the device and its task pointers; device records
    /// and history are not touched (`TaskRecord::queued_unnoted`). One
    /// call per chunk of a large campaign.
    fn queue_tasks(&mut self, task: &TaskRecord, devices: &[(String, DeviceTasks)]) -> Result<()>;
    /// Appends to the device's history (capped, see [`StoreOptions`]).
    fn append_history(&mut self, device: &str, entry: &HistoryEntry) -> Result<()>;
    /// Records a poll's outcome (`detail`). A run of polls with the same
    /// outcome is one entry with a count (`repeat`) and the time of the
    /// first (`since`); anything else in between starts a new entry. The
    /// poll fast path: a backend may store polls as appended events.
    fn record_poll(&mut self, device: &str, now: Timestamp, detail: &str) -> Result<()>;
    /// Adds `timer` due at `at` (a no-op if that exact pair exists).
    fn set_timer(&mut self, at: Timestamp, timer: &Timer) -> Result<()>;
    fn remove_timer(&mut self, at: Timestamp, timer: &Timer) -> Result<()>;
    /// Removes and returns timers due at or before `now`, earliest first,
    /// at most `limit` (claiming: see the module docs).
    fn take_due_timers(&mut self, now: Timestamp, limit: usize) -> Result<Vec<(Timestamp, Timer)>>;
    /// Adds (`on`) or removes a dynamic campaign of `product` from the set
    /// [`ReadTx::dynamic_campaigns`] reads.
    fn set_dynamic_campaign(&mut self, product: &str, id: CampaignId, on: bool) -> Result<()>;
    /// Raises the persisted clock floor to `now` (never lowers it).
    fn raise_clock_floor(&mut self, now: Timestamp) -> Result<()>;
    /// Writes device `name`'s registration; `previous` is the stored one,
    /// so its location index entry moves with it.
    fn put_registration(
        &mut self,
        name: &str,
        previous: Option<&RegistrationRecord>,
        record: &RegistrationRecord,
    ) -> Result<()>;
    /// Removes device `name`'s registration `record` and its location.
    fn delete_registration(&mut self, name: &str, record: &RegistrationRecord) -> Result<()>;
    /// Keeps (`Some`) or forgets (`None`) the last registration of a
    /// device that is not registered.
    fn put_ended_registration(
        &mut self,
        name: &str,
        ended: Option<&EndedRegistration>,
    ) -> Result<()>;
    /// Sets a device's credential, replacing its previous identity (which
    /// becomes free). The caller checks the identity is not another's.
    fn put_psk(&mut self, device: &str, record: &PskRecord) -> Result<()>;

    // Audit log and assignments (issue 10 items 9, 13).
    /// Appends `entry` to the audit log under a new id (the `id` field is
    /// ignored) and drops the oldest entries beyond `cap`. Returns the id
    /// and how many were dropped. Operator actions only: the id sequence
    /// is a counter, like `next_campaign_id`.
    fn append_audit(&mut self, entry: &AuditEntry, cap: usize) -> Result<(AuditId, u64)>;
    /// Writes the assignments of a product or device (empty: removed).
    fn put_assignments(&mut self, scope: &AssignmentScope, value: &Assignments) -> Result<()>;
    /// Issue 11: writes an admin-security record (see [`ReadTx::secret`]).
    fn put_secret(&mut self, kind: &str, key: &str, value: &[u8]) -> Result<()>;
    /// Removes one; whether it existed.
    fn delete_secret(&mut self, kind: &str, key: &str) -> Result<bool>;
    /// Issue 11: removes up to `limit` tasks of `campaign`; how many. The
    /// caller deletes only finished campaigns, whose tasks have no timers.
    fn delete_tasks(&mut self, campaign: CampaignId, limit: usize) -> Result<usize>;
    /// Removes a campaign record and its counts (its tasks first, with
    /// [`Tx::delete_tasks`]).
    fn delete_campaign(&mut self, id: CampaignId) -> Result<()>;
}

/// Synchronous transactions, for unit tests and tools: the same domain
/// code runs against every backend through this.
pub trait SyncStore {
    fn write_sync<R>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<R>) -> Result<R>;
    fn read_sync<R>(&self, f: impl FnOnce(&dyn ReadTx) -> Result<R>) -> Result<R>;
}

/// One job of a group-committed batch, as the writer sees it.
pub trait WriteJob: Send {
    /// Runs inside the batch's transaction. It may run more than once: when
    /// another job of the batch fails, the transaction is rolled back and
    /// the batch re-run without it. `Err` (or a panic) fails this job only.
    fn run(&mut self, tx: &mut dyn Tx) -> Result<()>;
    /// Called once: `Ok` after the batch committed, or this job's error.
    fn finish(self: Box<Self>, outcome: Result<()>);
}

/// Counters for benchmarks and the metrics endpoint.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub commits: AtomicU64,
    pub jobs: AtomicU64,
    /// Jobs answered with their own error while their batch committed.
    pub isolated_failures: AtomicU64,
    /// Jobs submitted and not yet taken by the writer (issue 12 item 2).
    pub queued: AtomicU64,
}

/// What the scheduler shell waits on: notified when a commit set a timer
/// earlier than the one the shell sleeps until.
#[derive(Debug)]
pub struct TimerSignal {
    notify: tokio::sync::Notify,
    sleeping_until: AtomicU64,
}

impl Default for TimerSignal {
    fn default() -> Self {
        TimerSignal {
            notify: tokio::sync::Notify::new(),
            sleeping_until: AtomicU64::new(u64::MAX),
        }
    }
}

impl TimerSignal {
    /// The shell says until when it sleeps (`Timestamp::MAX`: no timer).
    pub fn sleeping_until(&self, at: Timestamp) {
        self.sleeping_until.store(at.as_millis(), Ordering::SeqCst);
    }

    /// A commit set a timer due at `at`.
    pub fn timer_set(&self, at: Timestamp) {
        if at.as_millis() < self.sleeping_until.load(Ordering::SeqCst) {
            // A permit is kept if the shell is not waiting yet.
            self.notify.notify_one();
        }
    }

    pub async fn notified(&self) {
        self.notify.notified().await
    }
}

/// What a backend offers the [`Store`] handle.
pub trait Backend: Send + Sync + 'static {
    fn read(&self) -> Result<Box<dyn ReadTx + Send>>;
    /// Queues a job for the next batch; `Busy` when the queue is full.
    fn submit(&self, job: Box<dyn WriteJob>) -> Result<()>;
    fn stats(&self) -> Arc<StoreStats>;
    /// Commits what is queued and stops. Blocking.
    fn shutdown(&self);
    /// `Err(why)` while writes fail (for `/healthz`); a backend without a
    /// failure mode of its own is always healthy.
    fn write_health(&self) -> std::result::Result<(), String> {
        Ok(())
    }
    /// Decodes every stored record (issue 8 item 7c); a backend that
    /// stores no bytes has nothing to check.
    fn check_integrity(&self) -> Result<integrity::IntegrityReport> {
        Ok(integrity::IntegrityReport::default())
    }
    /// Writes a consistent copy of the database to a new file at `out`
    /// while writes go on (issue 12 item 7); returns the records copied.
    fn snapshot_to(&self, out: &Path) -> Result<u64> {
        let _ = out;
        Err(StoreError::Db("this store cannot make a backup".into()))
    }
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    timers: Arc<TimerSignal>,
}

impl Store {
    /// Opens (or creates) the redb file, migrates it, and starts its
    /// group-commit writer.
    pub fn open(path: &Path, options: StoreOptions) -> Result<Store> {
        Store::start(RedbStore::open(path, options)?)
    }

    /// Opens the database file of the data directory `data_dir`.
    pub fn open_in(data_dir: &Path, options: StoreOptions) -> Result<Store> {
        Store::start(RedbStore::open_in(data_dir, options)?)
    }

    /// Like [`Store::open`], through `opener` (also used to reopen after
    /// an I/O error; tests inject faults through it, [`fault`]).
    pub fn open_with(opener: recovery::Opener, options: StoreOptions) -> Result<Store> {
        Store::start(RedbStore::open_with(opener, options)?)
    }

    /// The database file's path inside `data_dir` (for messages).
    pub fn file_in(data_dir: &Path) -> std::path::PathBuf {
        data_dir.join(self::redb::FILE_NAME)
    }

    fn start(db: RedbStore) -> Result<Store> {
        let timers = Arc::new(TimerSignal::default());
        let backend = db.start_writer(timers.clone())?;
        Ok(Store {
            backend: Arc::new(backend),
            timers,
        })
    }

    /// A snapshot read. Cheap, but blocking: long scans belong in
    /// [`Store::scan`].
    pub fn read(&self) -> Result<Box<dyn ReadTx + Send>> {
        self.backend.read()
    }

    /// Runs a read-only scan on the blocking pool, off the async workers
    /// that serve devices.
    pub async fn scan<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn ReadTx) -> Result<T> + Send + 'static,
    {
        let backend = self.backend.clone();
        tokio::task::spawn_blocking(move || {
            let tx = backend.read()?;
            f(tx.as_ref())
        })
        .await
        .map_err(|e| StoreError::JobPanicked(e.to_string()))?
    }

    /// Runs `job` inside a write transaction shared with other concurrent
    /// jobs (group commit) and returns its result once that transaction is
    /// committed and fsynced.
    ///
    /// The job's contract: it returns `Ok(Err(domain))` only *before* it
    /// has written anything (check, then write), so a rejected request
    /// changes nothing. `Err(StoreError)` or a panic fails this job alone
    /// (its writes are rolled back). A job may run more than once (when
    /// another job of its batch fails), hence `FnMut`: it must act only
    /// through `tx`, never on the world outside the transaction.
    pub fn write<T, E, F>(&self, job: F) -> impl Future<Output = WriteOutcome<T, E>> + Send
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnMut(&mut dyn Tx) -> WriteOutcome<T, E> + Send + 'static,
    {
        let (reply, wait) = tokio::sync::oneshot::channel();
        let submitted = self.backend.submit(Box::new(Reply {
            job,
            result: None,
            reply: Some(reply),
        }));
        async move {
            submitted?;
            wait.await.map_err(|_| StoreError::Closed)?
        }
    }

    /// Like [`Store::write`] but nobody waits for the result: for
    /// best-effort facts no peer was promised (block-inferred progress).
    /// Dropped (logged at debug) when the queue is full.
    pub fn write_detached<F>(&self, job: F)
    where
        F: FnMut(&mut dyn Tx) -> Result<()> + Send + 'static,
    {
        if let Err(e) = self.backend.submit(Box::new(Detached(job))) {
            tracing::debug!("best-effort write dropped: {e}");
        }
    }

    /// The signal the scheduler shell sleeps on.
    pub fn timer_signal(&self) -> Arc<TimerSignal> {
        self.timers.clone()
    }

    /// Commits all queued writes and stops the writer. Blocking.
    pub fn shutdown(&self) {
        self.backend.shutdown()
    }

    /// [`Backend::snapshot_to`], off the async workers.
    pub async fn snapshot_to(&self, out: std::path::PathBuf) -> Result<u64> {
        let backend = self.backend.clone();
        tokio::task::spawn_blocking(move || backend.snapshot_to(&out))
            .await
            .map_err(|e| StoreError::Db(format!("backup task failed: {e}")))?
    }

    pub fn stats(&self) -> Arc<StoreStats> {
        self.backend.stats()
    }

    /// `Err(why)` while writes fail (for `/healthz`).
    pub fn write_health(&self) -> std::result::Result<(), String> {
        self.backend.write_health()
    }

    /// Decodes every record and reports the ones that do not (start-up
    /// logs them, `server/startup.rs`). Reads only; blocking, in proportion
    /// to the database.
    pub fn check_integrity(&self) -> Result<integrity::IntegrityReport> {
        self.backend.check_integrity()
    }
}

struct Reply<F, T, E> {
    job: F,
    result: Option<Result<T, E>>,
    reply: Option<tokio::sync::oneshot::Sender<WriteOutcome<T, E>>>,
}

impl<F, T, E> WriteJob for Reply<F, T, E>
where
    F: FnMut(&mut dyn Tx) -> WriteOutcome<T, E> + Send,
    T: Send,
    E: Send,
{
    fn run(&mut self, tx: &mut dyn Tx) -> Result<()> {
        self.result = Some((self.job)(tx)?);
        Ok(())
    }

    fn finish(mut self: Box<Self>, outcome: Result<()>) {
        let outcome = match (outcome, self.result.take()) {
            (Ok(()), Some(result)) => Ok(result),
            (Ok(()), None) => Err(StoreError::Db("job did not run".into())),
            (Err(e), _) => Err(e),
        };
        if let Some(reply) = self.reply.take() {
            // The requester may have gone away (timeout, shutdown): fine.
            let _ = reply.send(outcome);
        }
    }
}

struct Detached<F>(F);

impl<F> WriteJob for Detached<F>
where
    F: FnMut(&mut dyn Tx) -> Result<()> + Send,
{
    fn run(&mut self, tx: &mut dyn Tx) -> Result<()> {
        (self.0)(tx)
    }

    fn finish(self: Box<Self>, outcome: Result<()>) {
        match outcome {
            Ok(()) => {}
            // Expected while the database is reopened; the recovery logs it once.
            Err(e @ StoreError::Unavailable(_)) => tracing::debug!("detached write lost: {e}"),
            Err(e) => tracing::warn!("detached write lost: {e}"),
        }
    }
}

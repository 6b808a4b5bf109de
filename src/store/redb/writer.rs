//! Group commit: one thread owns all write transactions.
//!
//! Jobs queue on a channel; the thread takes every job waiting (up to
//! `MAX_BATCH`), runs them in one transaction, commits once (one fsync),
//! then answers each job. Under load, N concurrent polls cost one fsync
//! instead of N, and no job is answered before its write is durable.
//!
//! **Failure isolation.** A job that returns `Err` or panics fails alone:
//! the transaction is rolled back (redb's savepoints only work on an
//! untouched transaction, so there is no cheaper per-job undo) and the
//! batch is run again without it; the other jobs commit. Jobs are `FnMut`
//! for that reason. After `MAX_ISOLATIONS` failures in one batch the
//! problem is not one bad job: the failing job gets its error and the rest
//! of the batch a retryable `StoreError::Busy` instead of being re-run again.
//!
//! **I/O errors are not isolated.** A failed begin or commit, and any job
//! error that is a storage I/O error (`StoreError::Io`: disk full, a failed
//! fsync), is a batch-level failure: the disk fails every job alike, and
//! redb latches the error, so re-running the batch without one job cannot
//! help. The whole batch is answered `Unavailable` and the writer reopens
//! the database (`recovery.rs`, issue 8 item 7a), refusing new jobs with
//! `Unavailable` until a probe write commits again.
//!
//! A std thread rather than a tokio task because redb's commit blocks on
//! fsync; keeping it off the runtime keeps the CoAP loop responsive.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use super::recovery::{self, DbSlot, WriteHealth};
use super::tx::RedbTx;
use crate::store::{Result, StoreError, StoreStats, TimerSignal, WriteJob};

/// Bound on jobs per transaction: keeps one commit's latency bounded when
/// thousands of jobs are queued.
const MAX_BATCH: usize = 4096;

/// Bound on queued jobs. When the disk cannot keep up, new writes are
/// refused (`StoreError::Busy`: devices get 5.03 and retry later) and
/// best-effort writes are dropped, instead of memory growing.
const MAX_QUEUED: usize = 65_536;

/// Bound on re-runs of one batch (see the module docs).
const MAX_ISOLATIONS: usize = 8;

enum Message {
    Job(Box<dyn WriteJob>),
    /// Commit what is queued before this, then exit.
    Stop,
}

#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::SyncSender<Message>,
    stats: Arc<StoreStats>,
    thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

struct Writer {
    db: Arc<DbSlot>,
    health: Arc<WriteHealth>,
    history_cap: usize,
    stats: Arc<StoreStats>,
    timers: Arc<TimerSignal>,
}

impl WriterHandle {
    pub fn start(
        db: Arc<DbSlot>,
        health: Arc<WriteHealth>,
        history_cap: usize,
        timers: Arc<TimerSignal>,
    ) -> std::io::Result<WriterHandle> {
        let (tx, rx) = mpsc::sync_channel::<Message>(MAX_QUEUED);
        let stats = Arc::new(StoreStats::default());
        let writer = Writer {
            db,
            health,
            history_cap,
            stats: stats.clone(),
            timers,
        };
        let thread = std::thread::Builder::new()
            .name("lwota-writer".into())
            .spawn(move || writer.run(&rx))?;
        Ok(WriterHandle {
            tx,
            stats,
            thread: Arc::new(Mutex::new(Some(thread))),
        })
    }

    pub fn submit(&self, job: Box<dyn WriteJob>) -> Result<()> {
        // Counted before sending, so the writer never takes a job it has
        // not counted yet (the gauge never goes below zero).
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        self.tx.try_send(Message::Job(job)).map_err(|e| {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            match e {
                mpsc::TrySendError::Full(_) => StoreError::Busy,
                mpsc::TrySendError::Disconnected(_) => StoreError::Closed,
            }
        })
    }

    pub fn stats(&self) -> Arc<StoreStats> {
        self.stats.clone()
    }

    /// Whether the writer thread is still taking jobs (false once it
    /// ended, by shutdown or by a panic the writer did not catch).
    pub fn is_running(&self) -> bool {
        match self.thread.lock() {
            Ok(thread) => thread.as_ref().is_some_and(|t| !t.is_finished()),
            Err(_) => false,
        }
    }

    /// Commits everything queued so far, stops the thread and waits for
    /// it; later writes fail with `Closed`. Blocks: call off the runtime.
    pub fn shutdown(&self) {
        let _ = self.tx.send(Message::Stop);
        let thread = self.thread.lock().map(|mut t| t.take()).unwrap_or(None);
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// How one attempt at a batch ended.
enum Attempt {
    Committed,
    /// Job `index` failed: roll back, answer it, re-run the others.
    JobFailed(usize, StoreError),
    /// Beginning or committing failed: every job gets this error.
    BatchFailed(StoreError),
}

impl Writer {
    fn run(&self, rx: &mpsc::Receiver<Message>) {
        let mut batch: Vec<Box<dyn WriteJob>> = Vec::with_capacity(64);
        let mut stopping = false;
        // Ends on Stop, or when every WriterHandle is dropped.
        while !stopping {
            match rx.recv() {
                Ok(Message::Job(job)) => batch.push(job),
                Ok(Message::Stop) | Err(_) => break,
            }
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(Message::Job(job)) => batch.push(job),
                    Ok(Message::Stop) => {
                        stopping = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.stats
                .queued
                .fetch_sub(batch.len() as u64, Ordering::Relaxed);
            if let Some(failed) = self.commit_batch(&mut batch) {
                // Issue 8 item 7a: an I/O error poisons this `Database`;
                // reopen it before taking jobs again.
                let go_on = recovery::recover(&self.db, &self.health, &failed, |wait| {
                    refuse_while_down(rx, wait, &failed, &self.stats)
                });
                if !go_on {
                    break;
                }
            }
        }
    }

    /// Commits `batch` (draining it), isolating failing jobs. Returns the
    /// error when the batch failed on a storage I/O error: the caller then
    /// reopens the database.
    fn commit_batch(&self, batch: &mut Vec<Box<dyn WriteJob>>) -> Option<StoreError> {
        self.stats
            .jobs
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let mut isolations = 0;
        loop {
            let started = std::time::Instant::now();
            match self.attempt(batch) {
                Attempt::Committed => {
                    self.stats.commits.fetch_add(1, Ordering::Relaxed);
                    metrics::histogram!(crate::telemetry::COMMIT_SECONDS)
                        .record(started.elapsed().as_secs_f64());
                    metrics::histogram!(crate::telemetry::JOBS_PER_COMMIT)
                        .record(batch.len() as f64);
                    for job in batch.drain(..) {
                        job.finish(Ok(()));
                    }
                    return None;
                }
                // An I/O error is the storage failing, not this job: no
                // isolation (see the module docs), the batch goes down whole.
                Attempt::JobFailed(_, e) | Attempt::BatchFailed(e) if recovery::is_io(&e) => {
                    tracing::error!("write batch of {} failed on storage: {e}", batch.len());
                    // Marked before anyone is answered: a client that got
                    // 503 and asks `/healthz` next must see it failing.
                    self.health.set_failed(&e.to_string());
                    let answer = StoreError::Unavailable(e.to_string());
                    for job in batch.drain(..) {
                        job.finish(Err(answer.clone()));
                    }
                    return Some(e);
                }
                Attempt::JobFailed(index, e) if isolations < MAX_ISOLATIONS => {
                    isolations += 1;
                    self.stats.isolated_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("write job failed, batch re-run without it: {e}");
                    batch.remove(index).finish(Err(e));
                    if batch.is_empty() {
                        return None;
                    }
                }
                Attempt::JobFailed(index, e) => {
                    // Too many failures to keep isolating: the failing job
                    // gets its own error; the rest did nothing wrong and
                    // get a retryable `Busy` (devices: 5.03, then retry),
                    // not this job's error (a corrupt record would be a
                    // 5.00 for every innocent job).
                    tracing::error!(
                        "write batch of {} failed {} times; answering the rest busy: {e}",
                        batch.len(),
                        isolations + 1
                    );
                    batch.remove(index).finish(Err(e));
                    for job in batch.drain(..) {
                        job.finish(Err(StoreError::Busy));
                    }
                    return None;
                }
                Attempt::BatchFailed(e) => {
                    tracing::error!("write batch of {} failed: {e}", batch.len());
                    for job in batch.drain(..) {
                        job.finish(Err(e.clone()));
                    }
                    return None;
                }
            }
        }
    }

    fn attempt(&self, batch: &mut [Box<dyn WriteJob>]) -> Attempt {
        let db = match self.db.get() {
            Ok(db) => db,
            Err(e) => return Attempt::BatchFailed(e),
        };
        let txn = match db.begin_write() {
            Ok(txn) => txn,
            Err(e) => return Attempt::BatchFailed(e.into()),
        };
        let mut tx = RedbTx {
            txn,
            history_cap: self.history_cap,
            earliest_set: None,
        };
        for (index, job) in batch.iter_mut().enumerate() {
            // Dropping `tx` on failure aborts the transaction: nothing of
            // this attempt lands.
            match catch_unwind(AssertUnwindSafe(|| job.run(&mut tx))) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Attempt::JobFailed(index, e),
                Err(panic) => {
                    let what = panic_message(&*panic);
                    return Attempt::JobFailed(index, StoreError::JobPanicked(what));
                }
            }
        }
        let earliest = tx.earliest_set;
        // A panic inside redb's commit must not kill the writer thread
        // (every later write would hang up and /healthz would still say
        // ok). Whether anything landed is unknown, so it is treated like
        // an I/O error: the batch is answered `Unavailable` and the
        // database is reopened.
        match catch_unwind(AssertUnwindSafe(|| tx.txn.commit())) {
            Ok(Ok(())) => {
                if let Some(at) = earliest {
                    self.timers.timer_set(at);
                }
                Attempt::Committed
            }
            Ok(Err(e)) => Attempt::BatchFailed(e.into()),
            Err(panic) => Attempt::BatchFailed(StoreError::Io(format!(
                "commit panicked: {}",
                panic_message(&*panic)
            ))),
        }
    }
}

/// The text a panic was raised with.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

/// Waits `wait`, answering every job that arrives with `Unavailable`;
/// `false` when the writer is told to stop (or every handle is gone).
fn refuse_while_down(
    rx: &mpsc::Receiver<Message>,
    wait: std::time::Duration,
    why: &StoreError,
    stats: &StoreStats,
) -> bool {
    let until = std::time::Instant::now() + wait;
    loop {
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return true;
        }
        match rx.recv_timeout(left) {
            Ok(Message::Job(job)) => {
                stats.queued.fetch_sub(1, Ordering::Relaxed);
                job.finish(Err(StoreError::Unavailable(why.to_string())))
            }
            Ok(Message::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return false,
            Err(mpsc::RecvTimeoutError::Timeout) => return true,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::{mpsc, Mutex};
    use std::time::Duration;

    use crate::model::DeviceRecord;
    use crate::store::{Store, StoreError, StoreOptions, Tx, WriteOutcome};
    use crate::time::Timestamp;

    fn device() -> DeviceRecord {
        DeviceRecord::new("p", "1", Timestamp::ZERO)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// A store whose file can be made to fail (disk full, panicking sync).
    fn store_on_faulty_disk(
        dir: &std::path::Path,
    ) -> (Store, std::sync::Arc<crate::store::fault::DiskFull>) {
        let disk = std::sync::Arc::new(crate::store::fault::DiskFull::default());
        let opener = crate::store::fault::opener(&dir.join("w.redb"), disk.clone());
        let store = Store::open_with(opener, StoreOptions::default()).unwrap();
        (store, disk)
    }

    /// Waits (at most 10 s) until the writer reports the write path healthy.
    async fn wait_for_recovery(store: &Store) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.write_health().is_err() {
            assert!(std::time::Instant::now() < deadline, "no recovery");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Holds the writer inside a first batch until the returned sender
    /// sends, so every job submitted meanwhile queues into one second batch.
    fn hold_writer(
        store: &Store,
    ) -> (
        impl std::future::Future<Output = WriteOutcome<(), ()>>,
        mpsc::Sender<()>,
    ) {
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let gate_channels = Mutex::new((started_tx, release_rx));
        let mut held = false;
        let gate = store.write(move |_tx| {
            if !held {
                held = true;
                let channels = gate_channels.lock().unwrap();
                let _ = channels.0.send(());
                let _ = channels.1.recv_timeout(Duration::from_secs(10));
            }
            Ok(Ok::<(), ()>(()))
        });
        started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        (gate, release_tx)
    }

    fn put(store: &Store, name: String) -> impl std::future::Future<Output = WriteOutcome<(), ()>> {
        store.write(move |tx: &mut dyn Tx| {
            tx.put_device(&name, &device())?;
            Ok(Ok(()))
        })
    }

    #[test]
    fn failing_and_panicking_jobs_fail_alone_and_the_batch_commits() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = runtime();
        let store = Store::open(&dir.path().join("w.redb"), StoreOptions::default()).unwrap();
        runtime.block_on(async {
            let (gate, release_tx) = hold_writer(&store);

            let mut good = Vec::new();
            for i in 0..3 {
                good.push(put(&store, format!("good-{i}")));
            }
            let failing = store.write(|tx: &mut dyn Tx| {
                tx.put_device("bad-error", &device())?;
                Err::<Result<(), ()>, _>(StoreError::Db("boom".into()))
            });
            for i in 3..6 {
                good.push(put(&store, format!("good-{i}")));
            }
            let panicking = store.write(|tx: &mut dyn Tx| {
                tx.put_device("bad-panic", &device())?;
                if tx.device("bad-panic")?.is_some() {
                    panic!("job bug");
                }
                Ok(Ok::<(), ()>(()))
            });
            good.push(put(&store, "good-last".into()));
            release_tx.send(()).unwrap();

            assert!(matches!(gate.await, Ok(Ok(()))));
            for job in good {
                assert!(matches!(job.await, Ok(Ok(()))));
            }
            assert!(matches!(failing.await, Err(StoreError::Db(m)) if m == "boom"));
            assert!(matches!(panicking.await, Err(StoreError::JobPanicked(m)) if m == "job bug"));
        });
        let read = store.read().unwrap();
        for i in 0..6 {
            assert!(
                read.device(&format!("good-{i}")).unwrap().is_some(),
                "good-{i}"
            );
        }
        assert!(read.device("good-last").unwrap().is_some());
        assert!(read.device("bad-error").unwrap().is_none());
        assert!(read.device("bad-panic").unwrap().is_none());
        let stats = store.stats();
        assert_eq!(stats.isolated_failures.load(Ordering::Relaxed), 2);
        // One commit (one fsync) for the gate, one for everything else.
        assert_eq!(stats.commits.load(Ordering::Relaxed), 2);
        store.shutdown();
    }

    /// Beyond `MAX_ISOLATIONS` failures in one batch, the innocent jobs
    /// left get a retryable `Busy`, not the last failing job's error.
    /// Fails without the fix: the good job got `Db("boom")`.
    #[test]
    fn innocent_jobs_after_too_many_failures_get_busy() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = runtime();
        let store = Store::open(&dir.path().join("w.redb"), StoreOptions::default()).unwrap();
        runtime.block_on(async {
            let (gate, release_tx) = hold_writer(&store);
            let failing: Vec<_> = (0..super::MAX_ISOLATIONS + 1)
                .map(|_| {
                    store.write(|_tx: &mut dyn Tx| {
                        Err::<Result<(), ()>, _>(StoreError::Db("boom".into()))
                    })
                })
                .collect();
            let good = put(&store, "good".into());
            release_tx.send(()).unwrap();
            assert!(matches!(gate.await, Ok(Ok(()))));
            for job in failing {
                assert!(matches!(job.await, Err(StoreError::Db(m)) if m == "boom"));
            }
            assert!(matches!(good.await, Err(StoreError::Busy)));
        });
        assert!(store.read().unwrap().device("good").unwrap().is_none());
        store.shutdown();
    }

    /// A panic inside redb's commit does not kill the writer: the batch
    /// gets `Unavailable`, the database is reopened and writes work again.
    /// Fails without the fix: the job's answer was lost with the thread
    /// (`Closed`) and every later write failed.
    #[test]
    fn panic_in_commit_fails_the_batch_and_the_writer_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = runtime();
        let (store, disk) = store_on_faulty_disk(dir.path());
        runtime.block_on(async {
            assert!(matches!(put(&store, "before".into()).await, Ok(Ok(()))));
            disk.panic_next_sync();
            let answer = put(&store, "panics".into()).await;
            assert!(
                matches!(answer, Err(StoreError::Unavailable(ref m)) if m.contains("commit panicked")),
                "{answer:?}"
            );
            wait_for_recovery(&store).await;
            assert!(matches!(put(&store, "after".into()).await, Ok(Ok(()))));
        });
        let read = store.read().unwrap();
        assert!(read.device("before").unwrap().is_some());
        assert!(read.device("after").unwrap().is_some());
        drop(read);
        store.shutdown();
    }

    /// An I/O error (disk full) is not one job's fault: nothing is isolated
    /// or re-run, every job of the batch gets `Unavailable`, `/healthz`
    /// says failing, and writes work again once the disk has room, without
    /// a restart (issue 8 item 7a).
    #[test]
    fn io_error_fails_the_batch_whole_and_the_writer_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = runtime();
        let (store, disk) = store_on_faulty_disk(dir.path());
        runtime.block_on(async {
            assert!(matches!(put(&store, "before".into()).await, Ok(Ok(()))));
            disk.set(true);
            let jobs: Vec<_> = (0..4).map(|i| put(&store, format!("full-{i}"))).collect();
            for job in jobs {
                assert!(matches!(job.await, Err(StoreError::Unavailable(_))));
            }
            assert!(store.write_health().is_err());
            disk.set(false);
            wait_for_recovery(&store).await;
            assert!(matches!(put(&store, "after".into()).await, Ok(Ok(()))));
        });
        assert_eq!(store.stats().isolated_failures.load(Ordering::Relaxed), 0);
        let read = store.read().unwrap();
        assert!(read.device("before").unwrap().is_some());
        assert!(read.device("after").unwrap().is_some());
        assert!(read.device("full-0").unwrap().is_none());
        drop(read);
        store.shutdown();
    }
}

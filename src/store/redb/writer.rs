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
//! problem is not one bad job (a dead disk fails every job) and the rest of
//! the batch is answered with the last error instead of being re-run again.
//!
//! A std thread rather than a tokio task because redb's commit blocks on
//! fsync; keeping it off the runtime keeps the CoAP loop responsive.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use ::redb::Database;

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
    db: Arc<Database>,
    history_cap: usize,
    stats: Arc<StoreStats>,
    timers: Arc<TimerSignal>,
}

impl WriterHandle {
    pub fn start(
        db: Arc<Database>,
        history_cap: usize,
        timers: Arc<TimerSignal>,
    ) -> std::io::Result<WriterHandle> {
        let (tx, rx) = mpsc::sync_channel::<Message>(MAX_QUEUED);
        let stats = Arc::new(StoreStats::default());
        let writer = Writer {
            db,
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
        self.tx.try_send(Message::Job(job)).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => StoreError::Busy,
            mpsc::TrySendError::Disconnected(_) => StoreError::Closed,
        })
    }

    pub fn stats(&self) -> Arc<StoreStats> {
        self.stats.clone()
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
            self.commit_batch(&mut batch);
        }
    }

    /// Commits `batch` (draining it), isolating failing jobs.
    fn commit_batch(&self, batch: &mut Vec<Box<dyn WriteJob>>) {
        self.stats
            .jobs
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let mut isolations = 0;
        loop {
            match self.attempt(batch) {
                Attempt::Committed => {
                    self.stats.commits.fetch_add(1, Ordering::Relaxed);
                    for job in batch.drain(..) {
                        job.finish(Ok(()));
                    }
                    return;
                }
                Attempt::JobFailed(index, e) if isolations < MAX_ISOLATIONS => {
                    isolations += 1;
                    self.stats.isolated_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("write job failed, batch re-run without it: {e}");
                    batch.remove(index).finish(Err(e));
                    if batch.is_empty() {
                        return;
                    }
                }
                Attempt::JobFailed(_, e) | Attempt::BatchFailed(e) => {
                    tracing::error!("write batch of {} failed: {e}", batch.len());
                    for job in batch.drain(..) {
                        job.finish(Err(e.clone()));
                    }
                    return;
                }
            }
        }
    }

    fn attempt(&self, batch: &mut [Box<dyn WriteJob>]) -> Attempt {
        let txn = match self.db.begin_write() {
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
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "panic".into());
                    return Attempt::JobFailed(index, StoreError::JobPanicked(what));
                }
            }
        }
        let earliest = tx.earliest_set;
        match tx.txn.commit() {
            Ok(()) => {
                if let Some(at) = earliest {
                    self.timers.timer_set(at);
                }
                Attempt::Committed
            }
            Err(e) => Attempt::BatchFailed(e.into()),
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

    fn put(store: &Store, name: String) -> impl std::future::Future<Output = WriteOutcome<(), ()>> {
        store.write(move |tx: &mut dyn Tx| {
            tx.put_device(&name, &device())?;
            Ok(Ok(()))
        })
    }

    #[test]
    fn failing_and_panicking_jobs_fail_alone_and_the_batch_commits() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = Store::open(&dir.path().join("w.redb"), StoreOptions::default()).unwrap();
        runtime.block_on(async {
            // Hold the writer in a first batch, so every later job queues
            // into one second batch.
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
}

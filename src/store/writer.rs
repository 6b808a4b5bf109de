//! Group commit: one thread owns all write transactions.
//!
//! Jobs queue on a channel; the thread takes every job waiting (up to
//! `MAX_BATCH`), runs them in one transaction, commits once (one fsync),
//! then answers each job. Under load, N concurrent polls cost one fsync
//! instead of N, and no job is answered before its write is durable.
//!
//! A std thread rather than a tokio task because redb's commit blocks on
//! fsync; keeping it off the runtime keeps the CoAP loop responsive.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use redb::WriteTransaction;
use tokio::sync::oneshot;

use super::recovery::{self, DbSlot, WriteHealth};
use super::StoreError;

/// Bound on jobs per transaction: keeps one commit's latency bounded when
/// thousands of jobs are queued.
const MAX_BATCH: usize = 4096;

/// Bound on queued jobs. When the disk cannot keep up, new writes are
/// refused (`StoreError::Busy`: devices get 5.03 and retry later) and
/// best-effort writes are dropped, instead of memory growing.
const MAX_QUEUED: usize = 65_536;

/// What a job reports back: the outer error aborted its batch.
pub type WriteOutcome<T, E> = Result<Result<T, E>, StoreError>;

trait Job: Send {
    /// Runs inside the shared transaction. `Err` aborts the batch.
    fn run(&mut self, txn: &WriteTransaction) -> Result<(), StoreError>;
    /// Called after the batch committed (`Ok`) or was aborted (`Err`).
    fn finish(self: Box<Self>, commit: Result<(), StoreError>);
}

struct Reply<F, T, E> {
    job: Option<F>,
    result: Option<Result<T, E>>,
    reply: oneshot::Sender<WriteOutcome<T, E>>,
}

impl<F, T, E> Job for Reply<F, T, E>
where
    F: FnOnce(&WriteTransaction) -> WriteOutcome<T, E> + Send,
    T: Send,
    E: Send,
{
    fn run(&mut self, txn: &WriteTransaction) -> Result<(), StoreError> {
        if let Some(job) = self.job.take() {
            self.result = Some(job(txn)?);
        }
        Ok(())
    }

    fn finish(self: Box<Self>, commit: Result<(), StoreError>) {
        let outcome = match (commit, self.result) {
            (Ok(()), Some(result)) => Ok(result),
            (Ok(()), None) => Err(StoreError::Db("job did not run".into())),
            (Err(e), _) => Err(e),
        };
        // The requester may have gone away (timeout, shutdown): fine.
        let _ = self.reply.send(outcome);
    }
}

struct Detached<F>(Option<F>);

impl<F> Job for Detached<F>
where
    F: FnOnce(&WriteTransaction) -> Result<(), StoreError> + Send,
{
    fn run(&mut self, txn: &WriteTransaction) -> Result<(), StoreError> {
        match self.0.take() {
            Some(job) => job(txn),
            None => Ok(()),
        }
    }

    fn finish(self: Box<Self>, commit: Result<(), StoreError>) {
        match commit {
            Ok(()) => {}
            // Expected while the database is reopened; the recovery logs it once.
            Err(e @ StoreError::Unavailable(_)) => tracing::debug!("detached write lost: {e}"),
            Err(e) => tracing::warn!("detached write lost: {e}"),
        }
    }
}

/// Counters for benchmarks and the metrics endpoint.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub commits: AtomicU64,
    pub jobs: AtomicU64,
}

enum Message {
    Job(Box<dyn Job>),
    /// Commit what is queued before this, then exit.
    Stop,
}

#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::SyncSender<Message>,
    stats: Arc<StoreStats>,
    thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl WriterHandle {
    pub fn start(db: Arc<DbSlot>, health: Arc<WriteHealth>) -> std::io::Result<WriterHandle> {
        let (tx, rx) = mpsc::sync_channel::<Message>(MAX_QUEUED);
        let stats = Arc::new(StoreStats::default());
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("lwota-writer".into())
            .spawn(move || run_writer(&db, &health, &rx, &thread_stats))?;
        Ok(WriterHandle {
            tx,
            stats,
            thread: Arc::new(Mutex::new(Some(thread))),
        })
    }

    pub async fn submit<T, E, F>(&self, job: F) -> WriteOutcome<T, E>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce(&WriteTransaction) -> WriteOutcome<T, E> + Send + 'static,
    {
        let (reply, wait) = oneshot::channel();
        let job = Box::new(Reply {
            job: Some(job),
            result: None,
            reply,
        });
        self.tx.try_send(Message::Job(job)).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => StoreError::Busy,
            mpsc::TrySendError::Disconnected(_) => StoreError::Closed,
        })?;
        wait.await.map_err(|_| StoreError::Closed)?
    }

    pub fn submit_detached<F>(&self, job: F)
    where
        F: FnOnce(&WriteTransaction) -> Result<(), StoreError> + Send + 'static,
    {
        if let Err(e) = self
            .tx
            .try_send(Message::Job(Box::new(Detached(Some(job)))))
        {
            tracing::debug!("best-effort write dropped: {e}");
        }
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

fn run_writer(db: &DbSlot, health: &WriteHealth, rx: &mpsc::Receiver<Message>, stats: &StoreStats) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(64);
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
        // A panicking job must not take every later write down with the
        // thread: its batch is aborted and answered with an error.
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_batch(db, &mut batch)))
                .unwrap_or_else(|_| {
                    Err(StoreError::Db("a write job panicked; batch aborted".into()))
                });
        stats.jobs.fetch_add(batch.len() as u64, Ordering::Relaxed);
        if outcome.is_ok() {
            stats.commits.fetch_add(1, Ordering::Relaxed);
        } else if let Err(e) = &outcome {
            tracing::error!("write batch of {} aborted: {e}", batch.len());
        }
        // Issue 8 item 7a: an I/O error poisons this `Database`; answer the
        // batch with a clear "unavailable", then reopen before going on.
        let failed_io = match &outcome {
            Err(e) if recovery::is_io(e) => Some(e.clone()),
            _ => None,
        };
        let commit = match (&failed_io, outcome) {
            (Some(e), _) => Err(StoreError::Unavailable(e.to_string())),
            (None, outcome) => outcome,
        };
        for job in batch.drain(..) {
            job.finish(commit.clone());
        }
        if let Some(e) = failed_io {
            if !recovery::recover(db, health, &e, |wait| refuse_while_down(rx, wait, &e)) {
                break;
            }
        }
    }
}

/// Waits `wait`, answering every job that arrives with `Unavailable`;
/// `false` when the writer is told to stop (or every handle is gone).
fn refuse_while_down(
    rx: &mpsc::Receiver<Message>,
    wait: std::time::Duration,
    why: &StoreError,
) -> bool {
    let until = std::time::Instant::now() + wait;
    loop {
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return true;
        }
        match rx.recv_timeout(left) {
            Ok(Message::Job(job)) => job.finish(Err(StoreError::Unavailable(why.to_string()))),
            Ok(Message::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return false,
            Err(mpsc::RecvTimeoutError::Timeout) => return true,
        }
    }
}

fn run_batch(db: &DbSlot, batch: &mut [Box<dyn Job>]) -> Result<(), StoreError> {
    let db = db.get()?;
    let txn = db.begin_write()?;
    for job in batch.iter_mut() {
        // On error, dropping the transaction aborts it: nothing of the batch lands.
        job.run(&txn)?;
    }
    txn.commit()?;
    Ok(())
}

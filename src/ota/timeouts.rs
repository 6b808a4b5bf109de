//! Task timeouts: the scheduler's sweep over `DEADLINES`.

use redb::{ReadableTable, WriteTransaction};

use super::ledger::{self, Context};
use super::task::TaskEvent;
use super::OtaSettings;
use crate::store::{access, schema, StoreError};

/// Bound on tasks failed per sweep, so one sweep is one bounded
/// transaction; the scheduler sweeps again at once when it hit the bound.
pub const SWEEP_LIMIT: usize = 10_000;

/// Fails every unfinished task whose deadline is at or before `now` with
/// error `timeout`. Returns how many tasks timed out.
pub fn sweep(txn: &WriteTransaction, now: u64, settings: OtaSettings) -> Result<usize, StoreError> {
    let due: Vec<(u64, u64, String)> = {
        let table = txn.open_table(schema::DEADLINES)?;
        let mut due = Vec::new();
        for entry in table.range((0u64, 0u64, "")..(now.saturating_add(1), 0u64, ""))? {
            let (key, _) = entry?;
            let (at, campaign, device) = key.value();
            due.push((at, campaign, device.to_string()));
            if due.len() >= SWEEP_LIMIT {
                break;
            }
        }
        due
    };
    let mut failed = 0;
    for (at, campaign, name) in due {
        let task = match access::task(txn, campaign, &name) {
            // Issue 8 item 7c: a corrupt task must not stall every timeout;
            // its index entry is dropped below (`lwota check --repair`).
            Err(StoreError::Corrupt(e)) => {
                tracing::warn!("skipping corrupt task ({campaign}, {name:?}): {e}");
                None
            }
            other => other?,
        };
        let ctx = Context {
            now,
            timeout_ms: settings.timeout_ms,
            device_name: &name,
            alive: false,
            cause: "timeout",
        };
        let timed_out = match &task {
            // Only the task's current deadline counts; the transition
            // removes it from the index.
            Some(task) if task.deadline == Some(at) => {
                ledger::transition_device(txn, &ctx, task, &TaskEvent::TimedOut)?
            }
            _ => false,
        };
        if timed_out {
            failed += 1;
        } else {
            // Stale or orphaned index entry.
            txn.open_table(schema::DEADLINES)?
                .remove((at, campaign, name.as_str()))?;
        }
    }
    Ok(failed)
}

/// The earliest pending deadline.
pub fn earliest(txn: &redb::ReadTransaction) -> Result<Option<u64>, StoreError> {
    let table = txn.open_table(schema::DEADLINES)?;
    let first = table.first()?.map(|(k, _)| k.value().0);
    Ok(first)
}

//! A device's history as operators read it: the stored entries, then the
//! `queued` entries of its tasks queued in bulk whose entry is not stored
//! yet (`TaskRecord::queued_unnoted`: a million-device campaign does not
//! write a million history rows at creation; `ota::ledger` stores each
//! when its task leaves `queued`).

use crate::model::{HistoryEntry, HistorySeq, TaskState};
use crate::store::{ReadTx, StoreError};

/// Entries after `after`, oldest first, at most `limit`. The pending
/// `queued` entries are numbered after the newest stored one (the number
/// the stored entry gets when nothing else happens to the device first).
pub fn page(
    tx: &(impl ReadTx + ?Sized),
    name: &str,
    after: Option<HistorySeq>,
    limit: usize,
) -> Result<Vec<(HistorySeq, HistoryEntry)>, StoreError> {
    let mut page = tx.history(name, after, limit)?;
    if page.len() >= limit {
        return Ok(page);
    }
    let pending = pending(tx, name)?;
    if pending.is_empty() {
        return Ok(page);
    }
    let last = match page.last() {
        Some((seq, _)) => Some(*seq),
        None => tx.last_history_seq(name)?,
    };
    let mut seq = last.map_or(1, |s| s.saturating_add(1));
    for entry in pending {
        if after.is_none_or(|a| seq > a) && page.len() < limit {
            page.push((seq, entry));
        }
        seq = seq.saturating_add(1);
    }
    Ok(page)
}

/// The `queued` entries of the device's unfinished tasks that are not
/// stored yet (firmware slot first).
fn pending(tx: &(impl ReadTx + ?Sized), name: &str) -> Result<Vec<HistoryEntry>, StoreError> {
    let Some(device) = tx.device(name)? else {
        return Ok(Vec::new());
    };
    let pointers = super::assignment::pointers(tx, name)?;
    let mut out = Vec::new();
    for software in [false, true] {
        let Some(campaign) = pointers.active(software) else {
            continue;
        };
        if let Some(task) = tx.task(campaign, name)? {
            if task.queued_unnoted && task.state == TaskState::Queued {
                let from =
                    super::assignment::current_version(&device, software).unwrap_or("unknown");
                out.push(task.queued_entry(from));
            }
        }
    }
    Ok(out)
}

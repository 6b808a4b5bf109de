//! Per-device history rules shared by every backend: per-device sequence
//! numbers, the cap (oldest entries replaced by one `truncated` note that
//! counts them), and coalescing runs of identical poll outcomes.
//!
//! Written once over [`HistoryRows`], the few row operations a backend
//! provides, so redb and the in-memory store behave identically.

use super::Result;
use crate::model::{HistoryEntry, HistorySeq};
use crate::time::Timestamp;

/// Most entries dropped by one append. A history over its cap (the cap was
/// lowered, or an old database) shrinks by this much per append instead of
/// in one unbounded step.
const MAX_DROP_PER_APPEND: u64 = 64;

pub(super) trait HistoryRows {
    /// The device's entry count, if recorded.
    fn stored_len(&self, device: &str) -> Result<Option<u64>>;
    fn set_len(&mut self, device: &str, len: u64) -> Result<()>;
    /// Counts the device's entries by scanning (for histories written
    /// before counts were kept).
    fn count(&self, device: &str) -> Result<u64>;
    fn last(&self, device: &str) -> Result<Option<(HistorySeq, HistoryEntry)>>;
    fn oldest(&self, device: &str, n: usize) -> Result<Vec<(HistorySeq, HistoryEntry)>>;
    fn put(&mut self, device: &str, seq: HistorySeq, entry: &HistoryEntry) -> Result<()>;
    fn remove(&mut self, device: &str, seq: HistorySeq) -> Result<()>;
}

fn len_of(rows: &impl HistoryRows, device: &str) -> Result<u64> {
    match rows.stored_len(device)? {
        Some(len) => Ok(len),
        None => rows.count(device),
    }
}

/// Appends `entry` after the device's last entry, then applies the cap.
pub(super) fn append(
    rows: &mut impl HistoryRows,
    device: &str,
    entry: &HistoryEntry,
    cap: usize,
) -> Result<()> {
    let last = rows.last(device)?.map(|(seq, _)| seq);
    append_after(rows, device, last, entry, cap)
}

fn append_after(
    rows: &mut impl HistoryRows,
    device: &str,
    last: Option<HistorySeq>,
    entry: &HistoryEntry,
    cap: usize,
) -> Result<()> {
    // A device without history (the common case at registration) needs no
    // count lookup.
    let len = match last {
        Some(_) => len_of(rows, device)?,
        None => 0,
    };
    let seq = last.map_or(1, |s| s.saturating_add(1));
    rows.put(device, seq, entry)?;
    let len = len + 1;
    let cap = cap.max(2) as u64;
    let len = if len > cap {
        len - drop_oldest(rows, device, (len - cap).min(MAX_DROP_PER_APPEND))?
    } else {
        len
    };
    rows.set_len(device, len)
}

/// Shrinks the history by `n` entries: the oldest `n` real entries and
/// any existing note become one note at the newest dropped position.
/// Returns how much the count went down.
fn drop_oldest(rows: &mut impl HistoryRows, device: &str, n: u64) -> Result<u64> {
    let oldest = rows.oldest(device, n as usize + 1)?;
    let Some((_, first)) = oldest.first() else {
        return Ok(0);
    };
    let carried = if first.event == HistoryEntry::TRUNCATED {
        first.repeat.unwrap_or(0)
    } else {
        1
    };
    // All of `oldest` goes; its last position holds the note.
    let Some((note_seq, newest)) = oldest.last() else {
        return Ok(0);
    };
    let dropped_now = u32::try_from(oldest.len() - 1).unwrap_or(u32::MAX);
    let note = HistoryEntry::truncated(newest.at, carried.saturating_add(dropped_now));
    for (seq, _) in &oldest {
        rows.remove(device, *seq)?;
    }
    rows.put(device, *note_seq, &note)?;
    Ok(oldest.len() as u64 - 1)
}

/// See [`super::Tx::record_poll`].
pub(super) fn record_poll(
    rows: &mut impl HistoryRows,
    device: &str,
    now: Timestamp,
    detail: &str,
    cap: usize,
) -> Result<()> {
    match rows.last(device)? {
        Some((seq, mut entry)) if entry.is_poll_run(detail) => {
            entry.since = Some(entry.since.unwrap_or(entry.at));
            entry.repeat = Some(entry.repeat.unwrap_or(1).saturating_add(1));
            entry.at = now;
            rows.put(device, seq, &entry)
        }
        last => append_after(
            rows,
            device,
            last.map(|(seq, _)| seq),
            &HistoryEntry::note(now, "poll", detail.to_string()),
            cap,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryTx;
    use crate::store::ReadTx;

    fn note(at: u64) -> HistoryEntry {
        HistoryEntry::note(Timestamp::from_millis(at), "x", at.to_string())
    }

    #[test]
    fn old_gapped_keys_without_a_count_are_counted_then_capped() {
        let mut rows = MemoryTx::default();
        // Keys from the old global sequence: gaps, no stored count.
        for seq in [3, 40, 41, 900] {
            rows.put("d", seq, &note(seq)).unwrap();
        }
        append(&mut rows, "d", &note(1000), 4).unwrap();
        let h = rows.history("d", None, 100).unwrap();
        let seqs: Vec<u64> = h.iter().map(|(s, _)| *s).collect();
        // Five entries over a cap of four: the oldest two became one note.
        assert_eq!(seqs, [40, 41, 900, 901]);
        assert_eq!(h[0].1.event, HistoryEntry::TRUNCATED);
        assert_eq!(h[0].1.repeat, Some(2));
        assert_eq!(rows.stored_len("d").unwrap(), Some(4));
        // The next drop folds one more entry into the note.
        append(&mut rows, "d", &note(1001), 4).unwrap();
        let h = rows.history("d", None, 100).unwrap();
        assert_eq!(h.len(), 4);
        assert_eq!(h[0].1.repeat, Some(3));
        assert_eq!(h[0].0, 41);
    }

    #[test]
    fn a_history_far_over_its_cap_shrinks_by_a_bounded_step_per_append() {
        let mut rows = MemoryTx::default();
        for seq in 1..=200 {
            rows.put("d", seq, &note(seq)).unwrap();
        }
        append(&mut rows, "d", &note(201), 10).unwrap();
        let len = rows.history("d", None, 1000).unwrap().len() as u64;
        assert_eq!(len, 201 - MAX_DROP_PER_APPEND);
        for i in 0..10 {
            append(&mut rows, "d", &note(202 + i), 10).unwrap();
        }
        assert_eq!(rows.history("d", None, 1000).unwrap().len(), 10);
        let first = &rows.history("d", None, 1).unwrap()[0].1;
        // Every dropped entry is counted: 211 written, 9 real ones kept.
        assert_eq!(first.repeat, Some(211 - 9));
    }
}

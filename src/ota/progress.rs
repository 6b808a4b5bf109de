//! Download progress inferred from the Block2 blocks a device fetches
//! through its task URI, so a device that never reports still shows real
//! progress.

use redb::WriteTransaction;

use super::ledger::{self, Context};
use super::task::TaskEvent;
use super::OtaSettings;
use crate::store::{access, StoreError};

/// The percentage reached when a block ending at `end` of `size` bytes is
/// served, if that block crossed a whole-percent boundary. Stateless, so a
/// sequential download yields at most ~100 progress writes however small
/// its blocks are.
pub fn crossed_percent(start: u64, end: u64, size: u64) -> Option<u8> {
    if size == 0 {
        return None;
    }
    let before = start * 100 / size;
    let after = end * 100 / size;
    (after > before || start == 0).then_some(after.min(100) as u8)
}

/// Records `percent` for the device's task of `campaign` (best effort: a
/// task that moved on, or is not the device's, is left alone).
pub fn record(
    txn: &WriteTransaction,
    now: u64,
    settings: OtaSettings,
    device_name: &str,
    campaign: u64,
    percent: u8,
) -> Result<(), StoreError> {
    let Some(task) = access::task(txn, campaign, device_name)? else {
        return Ok(());
    };
    let ctx = Context {
        now,
        timeout_ms: settings.timeout_ms,
        device_name,
        alive: true,
        cause: ledger::CAUSE_DOWNLOAD,
    };
    ledger::transition_device(txn, &ctx, &task, &TaskEvent::BlockProgress(percent))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::crossed_percent;

    #[test]
    fn percent_boundaries() {
        assert_eq!(crossed_percent(0, 16, 1000), Some(1));
        assert_eq!(crossed_percent(16, 32, 1000), Some(3));
        assert_eq!(crossed_percent(0, 5, 10_000), Some(0));
        assert_eq!(crossed_percent(5, 10, 10_000), None);
        assert_eq!(crossed_percent(9_990, 10_000, 10_000), Some(100));
    }
}

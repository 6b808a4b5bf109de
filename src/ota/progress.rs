//! Download progress inferred from the Block2 blocks a device fetches
//! through its task URI, so a device that never reports still shows real
//! progress.

use super::ledger::{self, Context};
use super::task::TaskEvent;
use super::OtaSettings;
use crate::store::{StoreError, Tx};
use crate::time::Timestamp;

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

/// When each downloading task last had its timeout pushed back by a block
/// fetch. A block that crosses no whole percent is written only when the
/// last such "sign of life" is older than a quarter of the task timeout,
/// so a slow download (tiny blocks, a big image) never times out while
/// blocks keep coming, at the cost of a few writes per timeout period.
///
/// Bounded: past `MAX_TRACKED` entries the map is cleared, which only
/// costs one extra write per active download.
#[derive(Debug, Default)]
pub struct Touches {
    last: std::sync::Mutex<std::collections::HashMap<(u64, String), u64>>,
}

const MAX_TRACKED: usize = 100_000;

impl Touches {
    /// Whether a fetch at `now` should be written; records it if so.
    /// `crossed` says the block crossed a percent boundary (always written).
    pub fn due(
        &self,
        campaign: u64,
        device: &str,
        now: u64,
        timeout_ms: u64,
        crossed: bool,
    ) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let key = (campaign, device.to_string());
        let stale = last
            .get(&key)
            .is_none_or(|at| now.saturating_sub(*at) >= timeout_ms / 4);
        if crossed || stale {
            if last.len() >= MAX_TRACKED {
                last.clear();
            }
            last.insert(key, now);
            return true;
        }
        false
    }
}

/// Records `percent` for the device's task of `campaign` (best effort: a
/// task that moved on, or is not the device's, is left alone).
pub fn record(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    settings: OtaSettings,
    device_name: &str,
    campaign: u64,
    percent: u8,
) -> Result<(), StoreError> {
    let Some(task) = tx.task(campaign, device_name)? else {
        return Ok(());
    };
    let ctx = Context {
        now,
        timeout_ms: settings.timeout_ms,
        device_name,
        alive: true,
        cause: ledger::CAUSE_DOWNLOAD,
    };
    ledger::transition_device(tx, &ctx, &task, &TaskEvent::BlockProgress(percent))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{crossed_percent, Touches};

    #[test]
    fn touches_are_coalesced_to_a_quarter_of_the_timeout() {
        let t = Touches::default();
        assert!(t.due(1, "d", 0, 1000, false), "first fetch");
        assert!(!t.due(1, "d", 100, 1000, false));
        assert!(t.due(1, "d", 120, 1000, true), "percent crossed");
        assert!(!t.due(1, "d", 300, 1000, false));
        assert!(t.due(1, "d", 370, 1000, false), "quarter timeout passed");
        assert!(t.due(1, "other", 370, 1000, false));
    }

    #[test]
    fn percent_boundaries() {
        assert_eq!(crossed_percent(0, 16, 1000), Some(1));
        assert_eq!(crossed_percent(16, 32, 1000), Some(3));
        assert_eq!(crossed_percent(0, 5, 10_000), Some(0));
        assert_eq!(crossed_percent(5, 10, 10_000), None);
        assert_eq!(crossed_percent(9_990, 10_000, 10_000), Some(100));
    }
}

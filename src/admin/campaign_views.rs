//! The v2 parts of a campaign's JSON (issue 10): waves and pending
//! reasons.

use serde_json::{json, Map, Value};

use crate::model::{
    CampaignRecord, CampaignStatus, DeviceRecord, PendingReason, StateCounts, TaskRecord, TaskState,
};
use crate::ota::campaign::gate;
use crate::ota::campaign::options::abort_percent;
use crate::time::Timestamp;

/// Each wave: its devices, how many are final and failed, whether open.
pub fn waves(c: &CampaignRecord) -> Value {
    let p = &c.progress;
    if c.policy.waves.is_empty() {
        return Value::Array(Vec::new());
    }
    let out = p
        .wave_sizes
        .iter()
        .enumerate()
        .map(|(w, size)| {
            json!({
                "wave": w,
                "percent": c.policy.waves.get(w).map_or(100, |x| x.percent),
                "abort_failure_percent": abort_percent(&c.policy.waves, w),
                "devices": size,
                "final": p.wave_final.get(w).copied().unwrap_or(0),
                "failed": p.wave_failed.get(w).copied().unwrap_or(0),
                "open": w <= usize::from(p.open_wave),
            })
        })
        .collect();
    Value::Array(out)
}

/// Queued tasks per pending reason. `scheduled` and `wave` follow from the
/// campaign; `rate_limited` and `low_battery` are what the devices' last
/// polls were told; `offline` is the rest: queued, free to go, and their
/// device has not polled since.
pub fn pending(c: &CampaignRecord, counts: &StateCounts) -> Value {
    let queued = counts[usize::from(TaskState::Queued.index())];
    let p = &c.progress;
    let mut by = [0u64; 5];
    match c.status {
        CampaignStatus::Scheduled => by[0] = queued,
        CampaignStatus::Paused => by[3] = queued,
        CampaignStatus::Running => {
            let closed: u64 = p.wave_sizes.iter().skip(usize::from(p.open_wave) + 1).sum();
            by[3] = closed.min(queued);
            by[2] = p.rate_limited;
            by[4] = p.low_battery;
            by[1] = queued.saturating_sub(by[2] + by[3] + by[4]);
        }
        _ => {}
    }
    let mut map = Map::new();
    for (reason, n) in PendingReason::ALL.iter().zip(by) {
        map.insert(reason.as_str().into(), json!(n));
    }
    Value::Object(map)
}

/// Why one queued task waits: the campaign's reason, the reason its last
/// poll was given, else `offline` when its device was not seen within
/// `poll_interval_ms` (a device seen recently simply has not polled since
/// it became free to go: no reason).
pub fn task_pending(
    c: &CampaignRecord,
    task: &TaskRecord,
    device: Option<&DeviceRecord>,
    now: Timestamp,
    poll_interval_ms: u64,
) -> Option<&'static str> {
    if task.state != TaskState::Queued {
        return None;
    }
    if let Some(r) = gate::campaign_reason(c, task).or(task.pending) {
        return Some(r.as_str());
    }
    let seen = device.and_then(|d| d.last_seen);
    let recent = seen.is_some_and(|s| now.as_millis() <= s.as_millis() + poll_interval_ms);
    (!recent).then_some(PendingReason::Offline.as_str())
}

//! What a campaign's options (v2, issue 10) persist: the operator's
//! policy, fixed at creation, and the campaign's rollout progress, which
//! the scheduler and the hand-out gate move. Both are `#[serde(default)]`
//! fields of `CampaignRecord`, so a v1 database reads as "no options".

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// Retry after a failure: again after `interval_s`, at most `max` more times.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct RetryPolicy {
    pub interval_s: u64,
    pub max: u8,
}

/// At most `pack_size` hand-outs in any `pack_interval_s` window.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct RatePolicy {
    pub pack_size: u64,
    pub pack_interval_s: u64,
}

/// One staged wave: the first `percent` (cumulative) of the campaign's
/// devices; more than `abort_failure_percent` failed pauses the campaign.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct WavePolicy {
    pub percent: u8,
    pub abort_failure_percent: u8,
}

/// The operator's options, as validated at creation.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CampaignPolicy {
    /// `batch` (default) or `verify`.
    pub kind: String,
    /// Created with `force` despite an unverified firmware.
    pub forced: bool,
    pub dynamic: bool,
    pub end_at: Option<Timestamp>,
    pub start_at: Option<Timestamp>,
    pub retry: Option<RetryPolicy>,
    /// Per-task timeout; `None`: the server's `tasks.timeout`.
    pub timeout_ms: Option<u64>,
    pub rate: Option<RatePolicy>,
    pub waves: Vec<WavePolicy>,
    pub min_battery: Option<u8>,
    /// Source versions the campaign takes devices from (`None`: any), for
    /// the conflict rule.
    pub source_versions: Option<Vec<String>>,
}

/// Why a queued task is not handed out yet.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum PendingReason {
    Scheduled,
    Offline,
    RateLimited,
    Wave,
    LowBattery,
}

impl PendingReason {
    pub const ALL: [PendingReason; 5] = [
        PendingReason::Scheduled,
        PendingReason::Offline,
        PendingReason::RateLimited,
        PendingReason::Wave,
        PendingReason::LowBattery,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PendingReason::Scheduled => "scheduled",
            PendingReason::Offline => "offline",
            PendingReason::RateLimited => "rate_limited",
            PendingReason::Wave => "wave",
            PendingReason::LowBattery => "low_battery",
        }
    }
}

/// Where a campaign's rollout is; moved by the gate and the scheduler.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CampaignProgress {
    /// Devices per wave (an implicit last wave takes devices past the last
    /// percentage, and devices a dynamic campaign adds later).
    pub wave_sizes: Vec<u64>,
    /// Tasks of each wave that are final (updated or failed).
    pub wave_final: Vec<u64>,
    /// Tasks of each wave that failed.
    pub wave_failed: Vec<u64>,
    /// Highest wave whose tasks may be handed out.
    pub open_wave: u8,
    /// Waves up to this one had their failure threshold acknowledged by a
    /// resume (`None`: none yet), so they do not pause the campaign again.
    pub acknowledged_wave: Option<u8>,
    /// Start of the current rate window and hand-outs in it.
    pub window_start: Option<Timestamp>,
    pub window_count: u64,
    /// Failed tasks with a `TaskRetry` timer set: the campaign is not
    /// finished while any is pending.
    pub retries_pending: u64,
    /// Queued tasks whose last poll was turned away, per stored reason
    /// (`rate_limited`, `low_battery`).
    pub rate_limited: u64,
    pub low_battery: u64,
    /// A dynamic campaign stopped taking new devices (`end_at` passed).
    pub dynamic_ended: bool,
}

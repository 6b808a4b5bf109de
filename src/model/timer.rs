//! The closed set of things that happen at a time: one `enum Timer`, one
//! table of `(due time, timer)`, processed by `ota::scheduler`.
//!
//! It lives in `model/` (not `ota/`) because the store persists it and
//! `store/` must not import `ota/`; `ota::scheduler` re-exports it and owns
//! what each variant does.

use serde::{Deserialize, Serialize};

use super::CampaignId;

/// One device's task in one campaign.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskKey {
    pub campaign: CampaignId,
    pub device: String,
}

impl TaskKey {
    pub fn new(campaign: CampaignId, device: &str) -> TaskKey {
        TaskKey {
            campaign,
            device: device.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Timer {
    /// An unfinished task had no sign of life for the task timeout.
    TaskTimeout(TaskKey),
    /// A failed task may be offered again (campaign engine).
    TaskRetry(TaskKey),
    /// A scheduled campaign starts (campaign engine).
    CampaignStart(CampaignId),
    /// A campaign's rate limit window rolls over (campaign engine).
    RateWindow(CampaignId),
    /// A campaign's wave is checked against its failure threshold (campaign engine).
    WaveCheck(CampaignId),
    /// An LwM2M registration's lifetime ran out (device name).
    RegistrationExpiry(String),
    /// A request queued for a sleeping LwM2M device expires (device name).
    QueuedRequest(String),
    /// A dynamic campaign's `end_at`: it stops taking new devices.
    CampaignEnd(CampaignId),
}

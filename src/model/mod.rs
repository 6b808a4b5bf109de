//! Plain records that both the domain (`ota/`) and the storage backends
//! (`store/`) use: what a device, a task, a campaign, a firmware image and
//! a history entry are, and the closed set of timers.
//!
//! **Architecture invariant:** `model/` imports nothing of `ota/`,
//! `store/` or `server/`; it is data and the rules that belong to the data
//! alone (state names, ordering).

mod assignment;
mod audit;
mod device_tasks;
mod lwm2m;
mod policy;
mod psk;
mod records;
mod task_state;
mod timer;

pub use assignment::{Assigned, AssignmentScope, Assignments};
pub use audit::{AuditEntry, AuditId};
pub use device_tasks::DeviceTasks;
pub use lwm2m::{EndedRegistration, QueuedOp, RegistrationRecord};
pub use policy::{
    CampaignPolicy, CampaignProgress, PendingReason, RatePolicy, RetryPolicy, WavePolicy,
};
pub use psk::PskRecord;
pub use records::{
    CampaignRecord, CampaignStatus, DeviceRecord, FirmwareRecord, HistoryEntry, TaskRecord,
};
pub use task_state::{StateCounts, TaskState};
pub use timer::{TaskKey, Timer};

/// A campaign's id; also names its tasks (`c{id}`), one per device.
pub type CampaignId = u64;
/// A firmware image's id.
pub type FirmwareId = u64;
/// Per-device history sequence number: unique within one device only, so
/// appending never touches a process-global counter.
pub type HistorySeq = u64;

//! The persisted LwM2M registration of one device (keyed by endpoint
//! name = device name).

use serde::{Deserialize, Serialize};

use super::CampaignId;
use crate::time::Timestamp;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RegistrationRecord {
    /// The `ID` of `/rd/ID` the device updates and de-registers with.
    pub location: String,
    /// `lwm2m=` of the Register (`1.0` when absent).
    pub lwm2m_version: String,
    /// `b=` without the queue flag: `U`, `S`, `T`, ... (`U` when absent).
    pub binding: String,
    /// Queue mode: `b=UQ` (1.0) or a bare `Q` (1.1+).
    pub queue_mode: bool,
    /// Seconds (`lt=`, 86400 when absent).
    pub lifetime: u64,
    pub registered_at: Timestamp,
    /// The last Register or Update.
    pub last_update: Timestamp,
    /// When the registration expires without an Update (its
    /// `Timer::RegistrationExpiry` is due then).
    pub expires_at: Timestamp,
    /// Object and object-instance links of the payload (`/3/0`, `/5`).
    pub objects: Vec<String>,
    /// The alternate root path (`/` unless the payload names one).
    pub root: String,
    /// The device's address (where requests go).
    pub peer: String,
    /// The server address the device registered to (Package URI host).
    pub local: String,
    /// Registered over CoAPS: the server's requests go out through the
    /// device's DTLS session, the Package URI is `coaps://`.
    #[serde(default)]
    pub secure: bool,
    /// Requests waiting for a queue-mode device to wake up, in order.
    #[serde(default)]
    pub queued: Vec<QueuedOp>,
    /// When the queued requests give up (the due time of the device's
    /// `Timer::QueuedRequest`: a task timeout after the first was queued).
    #[serde(default)]
    pub queued_deadline: Option<Timestamp>,
}

/// The last registration of a device that de-registered or expired,
/// kept so the operator still sees its LwM2M version, binding and
/// objects (`"registered": false`). A new Register replaces it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EndedRegistration {
    /// The registration as it was last (its queue is dropped).
    pub record: RegistrationRecord,
    pub ended_at: Timestamp,
    /// `deregistered` or `expired`.
    pub reason: String,
}

/// What the server still has to ask a sleeping device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum QueuedOp {
    /// Read `/3/0/3` (the device's firmware version).
    ReadVersion,
    /// Drive the device's task of this campaign (Object 5 or 9).
    Update(CampaignId),
}

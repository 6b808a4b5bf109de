//! One operator action in the audit log (`GET /api/v1/audit`).

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// Position in the audit log: increasing, never reused.
pub type AuditId = u64;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEntry {
    /// Given by the store when the entry is appended.
    pub id: AuditId,
    pub at: Timestamp,
    /// What was done: `firmware.upload`, `campaign.create`, ...
    pub action: String,
    /// On what: `firmware/3`, `campaign/7`, `device/d1`, `product/p`.
    pub target: String,
    /// The admin token's name; `None` before tokens exist.
    #[serde(default)]
    pub actor: Option<String>,
    /// Action-specific facts (the request's parameters, the outcome).
    #[serde(default)]
    pub details: serde_json::Value,
}

//! The audit log: every operator action, appended in the same transaction
//! as the action itself, so an action is in the log exactly when it took
//! effect. Bounded: beyond `audit.limit` entries the oldest are dropped
//! (`lwota_audit_dropped_total`).

use crate::model::{AuditEntry, AuditId};
use crate::store::{StoreError, Tx};
use crate::time::Timestamp;

/// What an operator did, before it gets an id.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    /// `firmware.upload`, `campaign.create`, `assignment.set`, ...
    pub action: &'static str,
    /// `firmware/3`, `campaign/7`, `device/d1`, `product/p`, `token/ci`.
    pub target: String,
    pub actor: Option<String>,
    pub details: serde_json::Value,
}

impl Action {
    pub fn new(
        action: &'static str,
        target: impl Into<String>,
        actor: Option<String>,
        details: serde_json::Value,
    ) -> Action {
        Action {
            action,
            target: target.into(),
            actor,
            details,
        }
    }
}

/// Appends `action` to the log (call it inside the action's own write
/// job, after the action succeeded). `cap` is `audit.limit`.
pub fn record(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    cap: usize,
    action: &Action,
) -> Result<AuditId, StoreError> {
    let entry = AuditEntry {
        id: 0,
        at: now,
        action: action.action.to_string(),
        target: action.target.clone(),
        actor: action.actor.clone(),
        details: action.details.clone(),
    };
    let (id, dropped) = tx.append_audit(&entry, cap)?;
    if dropped > 0 {
        // A re-run batch may count a drop twice; the metric is a rate
        // indicator, not a ledger.
        metrics::counter!("lwota_audit_dropped_total").increment(dropped);
    }
    Ok(id)
}

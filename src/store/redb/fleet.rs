//! The audit log and assignment rows (issue 10 items 9 and 13), kept out
//! of `tx.rs` so the trait impls there stay one line each.

use ::redb::{ReadableTable, WriteTransaction};

use super::codec::encode;
use super::integrity::decode_or_skip;
use super::schema;
use crate::model::{AssignmentScope, Assignments, AuditEntry, AuditId};
use crate::store::Result;

pub fn audit_page(
    table: &impl ReadableTable<u64, &'static [u8]>,
    after: Option<AuditId>,
    limit: usize,
) -> Result<Vec<AuditEntry>> {
    let start = after.map_or(0, |a| a.saturating_add(1));
    let mut out = Vec::new();
    for entry in table.range(start..)? {
        if out.len() >= limit {
            break;
        }
        let (k, v) = entry?;
        if let Some(e) = decode_or_skip("audit", k.value(), v.value()) {
            out.push(e);
        }
    }
    Ok(out)
}

pub fn assignments(
    table: &impl ReadableTable<(u8, &'static str), &'static [u8]>,
    scope: &AssignmentScope,
) -> Result<Assignments> {
    // A corrupt row reads as "no assignment" (logged) rather than failing
    // every poll of the product's devices; setting it again rewrites it.
    Ok(table
        .get(scope.key())?
        .and_then(|v| decode_or_skip("assignments", scope.key(), v.value()))
        .unwrap_or_default())
}

/// Appends under the next id, then drops the oldest rows beyond `cap`.
/// The length lives in `COUNTERS` so the cap costs no count.
pub fn append_audit(
    txn: &WriteTransaction,
    entry: &AuditEntry,
    cap: usize,
) -> Result<(AuditId, u64)> {
    let mut counters = txn.open_table(schema::COUNTERS)?;
    let id = counters
        .get(schema::NEXT_AUDIT_ID)?
        .map(|v| v.value())
        .unwrap_or(1);
    counters.insert(schema::NEXT_AUDIT_ID, id + 1)?;
    let mut len = counters
        .get(schema::AUDIT_LEN)?
        .map(|v| v.value())
        .unwrap_or(0);
    let mut table = txn.open_table(schema::AUDIT)?;
    let stored = AuditEntry {
        id,
        ..entry.clone()
    };
    table.insert(id, encode(&stored).as_slice())?;
    len += 1;
    let mut dropped = 0;
    while len > cap.max(1) as u64 {
        if table.pop_first()?.is_none() {
            break;
        }
        len -= 1;
        dropped += 1;
    }
    counters.insert(schema::AUDIT_LEN, len)?;
    Ok((id, dropped))
}

pub fn put_assignments(
    txn: &WriteTransaction,
    scope: &AssignmentScope,
    value: &Assignments,
) -> Result<()> {
    let mut table = txn.open_table(schema::ASSIGNMENTS)?;
    if value.is_empty() {
        table.remove(scope.key())?;
    } else {
        table.insert(scope.key(), encode(value).as_slice())?;
    }
    Ok(())
}

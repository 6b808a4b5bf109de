//! The JSON shapes of records, shared by handlers.

use serde_json::{json, Map, Value};

use crate::model::{
    CampaignId, CampaignRecord, DeviceRecord, FirmwareRecord, HistoryEntry, StateCounts,
    TaskRecord, TaskState,
};
use crate::ota::campaign::effective_status;
use crate::ota::task_id;
use crate::time::Timestamp;

fn rfc3339(t: Timestamp) -> String {
    t.rfc3339()
}

pub fn counts(counts: &StateCounts) -> Value {
    let mut map = Map::new();
    for state in TaskState::ALL {
        map.insert(
            state.as_str().into(),
            json!(counts[usize::from(state.index())]),
        );
    }
    Value::Object(map)
}

pub fn firmware(fw: &FirmwareRecord, state_counts: &StateCounts) -> Value {
    json!({
        "id": fw.id,
        "product": fw.product,
        "name": fw.name,
        "version": fw.version,
        "kind": fw.kind,
        "filename": fw.filename,
        "size": fw.size,
        "sha256": hex::encode(&fw.sha256),
        "md5": hex::encode(&fw.md5),
        "signature": fw.signature,
        "description": fw.description,
        "created_at": rfc3339(fw.created_at),
        "verified": fw.verified,
        "uri": format!("/ota/fw/{}", fw.id),
        "counts": counts(state_counts),
    })
}

pub fn task(device: &str, t: &TaskRecord) -> Value {
    json!({
        "device": device,
        "task": task_id(t.campaign),
        "campaign": t.campaign,
        "firmware": t.firmware,
        "target_version": t.target_version,
        "state": t.state.as_str(),
        "progress": t.progress,
        "error": t.error,
        "created_at": rfc3339(t.created_at),
        "updated_at": rfc3339(t.updated_at),
        "wave": t.wave,
        "attempt": t.attempt,
        "retry_at": t.retry_at.map(rfc3339),
        "pending": t.pending.map(|p| p.as_str()),
    })
}

pub fn device(
    name: &str,
    d: &DeviceRecord,
    software_task: Option<CampaignId>,
    current_task: Option<&TaskRecord>,
) -> Value {
    json!({
        "name": name,
        "product": d.product,
        "version": d.version,
        "created_at": rfc3339(d.created_at),
        "last_seen": d.last_seen.map(rfc3339),
        "address": d.last_addr,
        "battery": d.battery,
        "software_version": d.software_version,
        "software_task": software_task.map(task_id),
        "task": current_task.map(|t| task(name, t)),
        "state": current_task.map(|t| t.state.as_str()),
    })
}

pub fn campaign(c: &CampaignRecord, state_counts: &StateCounts) -> Value {
    json!({
        "id": c.id,
        "firmware": c.firmware,
        "product": c.product,
        "target_version": c.target_version,
        "target": c.target,
        "status": effective_status(c, state_counts),
        "created_at": rfc3339(c.created_at),
        "finished_at": c.finished_at.map(rfc3339),
        "total": c.total,
        "counts": counts(state_counts),
        "kind": if c.policy.kind.is_empty() { "batch" } else { c.policy.kind.as_str() },
        "dynamic": c.policy.dynamic,
        "forced": c.policy.forced,
        "start_at": c.policy.start_at.map(rfc3339),
        "end_at": c.policy.end_at.map(rfc3339),
        "retry": c.policy.retry,
        "timeout_s": c.policy.timeout_ms.map(|ms| ms / 1000),
        "rate": c.policy.rate,
        "min_battery": c.policy.min_battery,
        "waves": super::campaign_views::waves(c),
        "pending": super::campaign_views::pending(c, state_counts),
    })
}

pub fn history(h: &HistoryEntry) -> Value {
    json!({
        "at": rfc3339(h.at),
        "at_ms": h.at.as_millis(),
        "event": h.event,
        "campaign": h.campaign,
        "task": h.campaign.map(task_id),
        "from": h.from.map(|s| s.as_str()),
        "to": h.to.map(|s| s.as_str()),
        "progress": h.progress,
        "error": h.error,
        "detail": h.detail,
        "repeat": h.repeat,
        "since": h.since.map(rfc3339),
    })
}

/// The `"lwm2m"` block of an LwM2M device (`GET /api/v1/devices/{name}`).
pub fn lwm2m(r: &crate::model::RegistrationRecord, now: Timestamp) -> Value {
    json!({
        "registered": r.expires_at > now,
        "lwm2m_version": r.lwm2m_version,
        "binding": r.binding,
        "lifetime": r.lifetime,
        "queue_mode": r.queue_mode,
        "registered_at": rfc3339(r.registered_at),
        "last_update": rfc3339(r.last_update),
        "expires_at": rfc3339(r.expires_at),
        "objects": r.objects,
        "location": format!("/rd/{}", r.location),
        "address": r.peer,
        "queued_requests": r.queued.len(),
    })
}

/// The `"lwm2m"` block of a device that de-registered or expired: its
/// last registration, `"registered": false`, when and why it ended.
pub fn lwm2m_ended(e: &crate::model::EndedRegistration) -> Value {
    let mut view = lwm2m(&e.record, e.ended_at);
    view["registered"] = json!(false);
    view["ended_at"] = json!(rfc3339(e.ended_at));
    view["ended_by"] = json!(e.reason);
    view["queued_requests"] = json!(0);
    view
}

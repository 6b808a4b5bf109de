//! `/api/v1/campaigns`: create, list, show, devices, cancel.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use redb::ReadableTable;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult, Query};
use super::views;
use crate::ota::campaign::{self, CampaignError, Target, MAX_LISTED_DEVICES};
use crate::ota::task::TaskState;
use crate::state::App;
use crate::store::access::{self, Reader};
use crate::store::records::{CampaignRecord, TaskRecord};
use crate::store::schema;

fn api_error(e: CampaignError) -> ApiError {
    match e {
        e @ CampaignError::UnknownFirmware(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "unknown_firmware", e.to_string())
        }
        e @ CampaignError::UnknownCampaign(_) => {
            ApiError::not_found("unknown_campaign", e.to_string())
        }
        e @ CampaignError::AlreadyFinished(_) => {
            ApiError::conflict("campaign_finished", e.to_string())
        }
    }
}

/// Accepts the firmware id as a number or a numeric string.
fn firmware_id(value: Option<&Value>) -> ApiResult<u64> {
    match value {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| ApiError::bad_request("\"firmware\" (the firmware id) is required"))
}

fn string_list(value: &Value, field: &str) -> ApiResult<Vec<String>> {
    let items = value.as_array().ok_or_else(|| {
        ApiError::bad_request(format!("target.{field} must be a list of strings"))
    })?;
    items
        .iter()
        .map(|v| {
            v.as_str().map(str::to_string).ok_or_else(|| {
                ApiError::bad_request(format!("target.{field} must be a list of strings"))
            })
        })
        .collect()
}

fn parse_target(value: Option<&Value>) -> ApiResult<Target> {
    let shape =
        "target must be {\"all\": true}, {\"source_versions\": [..]} or {\"devices\": [..]}";
    let Some(Value::Object(map)) = value else {
        return Err(ApiError::bad_request(shape));
    };
    if map.len() != 1 {
        return Err(ApiError::bad_request(shape));
    }
    if let Some(all) = map.get("all") {
        return match all {
            Value::Bool(true) => Ok(Target::All),
            _ => Err(ApiError::bad_request("target.all must be true")),
        };
    }
    if let Some(versions) = map.get("source_versions") {
        let versions = string_list(versions, "source_versions")?;
        if versions.is_empty() {
            return Err(ApiError::bad_request(
                "target.source_versions must not be empty",
            ));
        }
        return Ok(Target::SourceVersions(versions));
    }
    if let Some(devices) = map.get("devices") {
        let devices = string_list(devices, "devices")?;
        if devices.is_empty() {
            return Err(ApiError::bad_request("target.devices must not be empty"));
        }
        if devices.len() > MAX_LISTED_DEVICES {
            return Err(ApiError::bad_request(format!(
                "target.devices lists {} devices; at most {MAX_LISTED_DEVICES}",
                devices.len()
            )));
        }
        return Ok(Target::Devices(devices));
    }
    Err(ApiError::bad_request(shape))
}

pub async fn create(
    State(app): State<App>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("body is not JSON: {e}")))?;
    let firmware = firmware_id(value.get("firmware"))?;
    let target = parse_target(value.get("target"))?;
    let now = app.now_ms();
    let created = app
        .store
        .write(move |txn| campaign::create(txn, now, firmware, &target))
        .await?
        .map_err(api_error)?;
    let counts = app.store.read()?.campaign_counts(created.campaign.id)?;
    let mut body = views::campaign(&created.campaign, &counts);
    body["skipped"] = json!(created.skipped);
    tracing::info!(
        id = created.campaign.id,
        tasks = created.campaign.total,
        "campaign created"
    );
    Ok((StatusCode::CREATED, Json(body)))
}

pub async fn list(State(app): State<App>) -> ApiResult<Json<Value>> {
    let txn = app.store.read()?;
    let table = txn.open_table(schema::CAMPAIGNS)?;
    let mut out = Vec::new();
    for entry in table.iter()? {
        let (key, value) = entry.map_err(crate::store::StoreError::from)?;
        let Some(c) = crate::store::integrity::decode_or_skip::<CampaignRecord>(
            "campaigns",
            key.value(),
            value.value(),
        ) else {
            continue; // issue 8 item 7c: a corrupt record is skipped, not a 500
        };
        let counts = txn.campaign_counts(c.id)?;
        out.push(views::campaign(&c, &counts));
    }
    Ok(Json(Value::Array(out)))
}

fn parse_campaign_id(id: &str) -> ApiResult<u64> {
    super::http_errors::parse_path_id(id)
        .ok_or_else(|| ApiError::not_found("unknown_campaign", format!("unknown campaign {id}")))
}

pub async fn show(State(app): State<App>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = parse_campaign_id(&id)?;
    let txn = app.store.read()?;
    let c =
        access::campaign(&txn, id)?.ok_or_else(|| api_error(CampaignError::UnknownCampaign(id)))?;
    let counts = txn.campaign_counts(id)?;
    Ok(Json(views::campaign(&c, &counts)))
}

#[derive(Debug, serde::Deserialize)]
pub struct DevicesQuery {
    state: Option<String>,
}

pub async fn devices(
    State(app): State<App>,
    Path(id): Path<String>,
    Query(q): Query<DevicesQuery>,
) -> ApiResult<Json<Value>> {
    let id = parse_campaign_id(&id)?;
    let state = match &q.state {
        Some(s) => Some(TaskState::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown state {s:?}: one of queued, initiated, downloading, downloaded, verified, updating, updated, failed"
            ))
        })?),
        None => None,
    };
    let txn = app.store.read()?;
    if access::campaign(&txn, id)?.is_none() {
        return Err(api_error(CampaignError::UnknownCampaign(id)));
    }
    let table = txn.open_table(schema::TASKS)?;
    let mut out = Vec::new();
    for entry in table.range((id, "")..(id + 1, ""))? {
        let (key, value) = entry.map_err(crate::store::StoreError::from)?;
        let Some(task) = crate::store::integrity::decode_or_skip::<TaskRecord>(
            "tasks",
            key.value(),
            value.value(),
        ) else {
            continue; // issue 8 item 7c: a corrupt record is skipped, not a 500
        };
        if state.is_some_and(|s| s != task.state) {
            continue;
        }
        out.push(views::task(key.value().1, &task));
    }
    Ok(Json(Value::Array(out)))
}

pub async fn cancel(State(app): State<App>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = parse_campaign_id(&id)?;
    let now = app.now_ms();
    let settings = app.ota_settings();
    let cancelled = app
        .store
        .write(move |txn| campaign::cancel(txn, now, settings, id))
        .await?
        .map_err(api_error)?;
    let txn = app.store.read()?;
    let c =
        access::campaign(&txn, id)?.ok_or_else(|| api_error(CampaignError::UnknownCampaign(id)))?;
    let counts = txn.campaign_counts(id)?;
    let mut body = views::campaign(&c, &counts);
    body["cancelled"] = json!(cancelled);
    Ok(Json(body))
}

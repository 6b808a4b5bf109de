//! `/api/v1/campaigns`: create, list, show, devices, cancel.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult, Query};
use super::{page, views};
use crate::model::TaskState;
use crate::ota::campaign::{self, CampaignError, Target, MAX_LISTED_DEVICES};
use crate::state::App;

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

#[utoipa::path(post, operation_id = "campaigns_create", path = "/api/v1/campaigns", tag = "campaigns",
    request_body(content = super::schemas::NewCampaign),
    responses(
        (status = 201, description = "Created, with `skipped`", body = super::schemas::Campaign),
        (status = 400, description = "Invalid body or unknown firmware", body = super::schemas::ErrorBody),
    ))]
pub async fn create(
    State(app): State<App>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("body is not JSON: {e}")))?;
    let firmware = firmware_id(value.get("firmware"))?;
    let target = parse_target(value.get("target"))?;
    let now = app.now();
    let created = app
        .store
        .write(move |tx| campaign::create(tx, now, firmware, &target))
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

/// Campaigns read per step of the listing.
const CAMPAIGN_STEP: usize = 1_000;

#[utoipa::path(get, operation_id = "campaigns_list", path = "/api/v1/campaigns", tag = "campaigns",
    responses((status = 200, description = "Every campaign, by id", body = [super::schemas::Campaign])))]
pub async fn list(State(app): State<App>) -> ApiResult<Json<Value>> {
    let out = app
        .store
        .scan(|tx| {
            let mut out = Vec::new();
            let mut after = None;
            loop {
                let step = tx.campaigns(after, CAMPAIGN_STEP)?;
                let Some(last) = step.last() else {
                    break;
                };
                after = Some(last.id);
                for c in &step {
                    out.push(views::campaign(c, &tx.campaign_counts(c.id)?));
                }
            }
            Ok(out)
        })
        .await?;
    Ok(Json(Value::Array(out)))
}

fn parse_campaign_id(id: &str) -> ApiResult<u64> {
    super::http_errors::parse_path_id(id)
        .ok_or_else(|| ApiError::not_found("unknown_campaign", format!("unknown campaign {id}")))
}

#[utoipa::path(get, operation_id = "campaigns_show", path = "/api/v1/campaigns/{id}", tag = "campaigns",
    params(("id" = u64, Path, description = "Campaign id")),
    responses(
        (status = 200, description = "The campaign", body = super::schemas::Campaign),
        (status = 404, description = "No such campaign", body = super::schemas::ErrorBody),
    ))]
pub async fn show(State(app): State<App>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = parse_campaign_id(&id)?;
    let tx = app.store.read()?;
    let c = tx
        .campaign(id)?
        .ok_or_else(|| api_error(CampaignError::UnknownCampaign(id)))?;
    let counts = tx.campaign_counts(id)?;
    Ok(Json(views::campaign(&c, &counts)))
}

#[derive(Debug, serde::Deserialize)]
pub struct DevicesQuery {
    state: Option<String>,
    /// Page size: default 1,000, at most 10,000.
    limit: Option<usize>,
    /// Device names sort; only tasks of devices after this one.
    after: Option<String>,
}

/// Tasks one request reads at most while filtering by state: a page of
/// rare states ends early (with a next link) rather than scanning a
/// million tasks.
const MAX_SCANNED: usize = 50_000;

#[utoipa::path(get, operation_id = "campaigns_devices", path = "/api/v1/campaigns/{id}/devices", tag = "campaigns",
    params(
        ("id" = u64, Path, description = "Campaign id"),
        ("state" = Option<String>, Query, description = "Only tasks in this state: queued, initiated, downloading, downloaded, verified, updating, updated, failed"),
        ("limit" = Option<usize>, Query, description = "Page size (default 1,000, at most 10,000)"),
        ("after" = Option<String>, Query, description = "Tasks of devices after this name"),
    ),
    responses(
        (status = 200, description = "Tasks by device name; a `Link: <...>; rel=\"next\"` header when more may follow", body = [super::schemas::Task]),
        (status = 400, description = "Unknown state", body = super::schemas::ErrorBody),
        (status = 404, description = "No such campaign", body = super::schemas::ErrorBody),
    ))]
pub async fn devices(
    State(app): State<App>,
    Path(id): Path<String>,
    Query(q): Query<DevicesQuery>,
) -> ApiResult<(HeaderMap, Json<Value>)> {
    let id = parse_campaign_id(&id)?;
    let state = match &q.state {
        Some(s) => Some(TaskState::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown state {s:?}: one of queued, initiated, downloading, downloaded, verified, updating, updated, failed"
            ))
        })?),
        None => None,
    };
    let limit = page::limit(q.limit);
    let after = q.after.clone();
    let (out, next) = app
        .store
        .scan(move |tx| {
            if tx.campaign(id)?.is_none() {
                return Ok(None);
            }
            let mut out = Vec::new();
            let mut cursor = after;
            let mut scanned = 0;
            let mut exhausted = false;
            while out.len() < limit && scanned < MAX_SCANNED {
                let step = tx.tasks(id, cursor.as_deref(), limit - out.len())?;
                if step.len() < limit - out.len() {
                    exhausted = true;
                }
                scanned += step.len();
                for (device, task) in &step {
                    cursor = Some(device.clone());
                    if state.is_none_or(|s| s == task.state) {
                        out.push(views::task(device, task));
                    }
                }
                if exhausted {
                    break;
                }
            }
            let next = if exhausted { None } else { cursor };
            Ok(Some((out, next)))
        })
        .await?
        .ok_or_else(|| api_error(CampaignError::UnknownCampaign(id)))?;
    let path = format!("/api/v1/campaigns/{id}/devices");
    let query: Vec<(&str, String)> = q.state.iter().map(|s| ("state", s.clone())).collect();
    Ok((
        page::next_link(&path, &query, limit, next),
        Json(Value::Array(out)),
    ))
}

#[utoipa::path(post, operation_id = "campaigns_cancel", path = "/api/v1/campaigns/{id}/cancel", tag = "campaigns",
    params(("id" = u64, Path, description = "Campaign id")),
    responses(
        (status = 200, description = "Cancelled, with `cancelled` (tasks cancelled now)", body = super::schemas::Campaign),
        (status = 404, description = "No such campaign", body = super::schemas::ErrorBody),
        (status = 409, description = "Already finished", body = super::schemas::ErrorBody),
    ))]
pub async fn cancel(State(app): State<App>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = parse_campaign_id(&id)?;
    let now = app.now();
    let settings = app.ota_settings();
    let cancelled = app
        .store
        .write(move |tx| campaign::cancel(tx, now, settings, id))
        .await?
        .map_err(api_error)?;
    let tx = app.store.read()?;
    let c = tx
        .campaign(id)?
        .ok_or_else(|| api_error(CampaignError::UnknownCampaign(id)))?;
    let counts = tx.campaign_counts(id)?;
    let mut body = views::campaign(&c, &counts);
    body["cancelled"] = json!(cancelled);
    Ok(Json(body))
}

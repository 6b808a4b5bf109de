//! `/api/v1/campaigns`: create, list, show, devices, cancel.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};

use super::actor::Actor;
use super::audit::{audited, Action};
use super::error::{ApiError, ApiResult, Query};
use super::{campaign_options, campaign_views};
use super::{page, views};
use crate::model::RatePolicy;
use crate::model::TaskState;
use crate::ota::campaign::options::{self, Defaults};
use crate::ota::campaign::{self, CampaignError, NewCampaign, Target, MAX_LISTED_DEVICES};
use crate::state::App;

pub(super) fn api_error(e: CampaignError) -> ApiError {
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
        e @ CampaignError::Unverified(_) => {
            ApiError::conflict("firmware_unverified", e.to_string())
        }
        e @ CampaignError::Conflict(_) => ApiError::conflict("campaign_conflict", e.to_string()),
        e @ CampaignError::NotPaused(_) => ApiError::conflict("campaign_not_paused", e.to_string()),
        e @ CampaignError::UnknownTask { .. } => ApiError::not_found("unknown_task", e.to_string()),
        e @ CampaignError::Requeue(_) => ApiError::conflict("task_not_retryable", e.to_string()),
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

/// Most entries of `target.source_versions`.
pub const MAX_SOURCE_VERSIONS: usize = 1_000;

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
        // Issue 11 item 6: bounded like every operator list.
        if versions.len() > MAX_SOURCE_VERSIONS {
            return Err(ApiError::bad_request(format!(
                "target.source_versions lists {} versions; at most {MAX_SOURCE_VERSIONS}",
                versions.len()
            )));
        }
        if let Some(bad) = versions
            .iter()
            .find(|v| !crate::ota::firmware::valid_version(v))
        {
            return Err(ApiError::bad_request(format!(
                "target.source_versions: {:?} is not a version (1-64 letters, digits, '.', '_', '-')",
                bad.chars().take(80).collect::<String>()
            )));
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
        (status = 400, description = "Invalid body, an invalid option (named), or unknown firmware", body = super::schemas::ErrorBody),
        (status = 409, description = "firmware_unverified or campaign_conflict", body = super::schemas::ErrorBody),
    ))]
pub async fn create(
    State(app): State<App>,
    actor: Actor,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let parsed = campaign_options::parse(&body)?;
    let firmware = firmware_id(parsed.firmware.as_ref())?;
    let target = parse_target(parsed.target.as_ref())?;
    let now = app.now();
    let listed = match &target {
        Target::Devices(d) => Some(d.len()),
        _ => None,
    };
    let cfg = &app.config.campaigns;
    let defaults = Defaults {
        rate: (cfg.pack_size > 0).then_some(RatePolicy {
            pack_size: cfg.pack_size,
            pack_interval_s: cfg.pack_interval_s,
        }),
    };
    let policy = options::validate(now, &parsed.options()?, listed, defaults)
        .map_err(campaign_options::option_error)?;
    let new = NewCampaign {
        firmware,
        target,
        policy,
        require_verified: cfg.require_verified,
    };
    // The body parsed above, as the audit log keeps it.
    let details = serde_json::from_slice::<Value>(&body)
        .map(|v| audit_details(&v))
        .unwrap_or(Value::Null);
    let created = audited(&app, move |tx, now| {
        Ok(campaign::create_with(tx, now, &new)?.map(|created| {
            let action = Action::new(
                "campaign.create",
                format!("campaign/{}", created.campaign.id),
                actor.0.clone(),
                details.clone(),
            );
            (created, action)
        }))
    })
    .await?
    .map_err(api_error)?;
    crate::resources::task_observe::changed(&app, crate::resources::task_observe::Scope::All);
    let counts = app.store.read()?.campaign_counts(created.campaign.id)?;
    let mut body = views::campaign(&created.campaign, &counts);
    body["skipped"] = json!(created.skipped);
    tracing::info!(
        id = created.campaign.id,
        tasks = created.campaign.total,
        forced = created.campaign.policy.forced,
        "campaign created"
    );
    super::campaign_rules::count_action(if created.campaign.policy.forced {
        "create_forced"
    } else {
        "create"
    });
    Ok((StatusCode::CREATED, Json(body)))
}

/// What the audit log keeps of a campaign request: every option as sent
/// (`force` included), the device list as a count (it can be 10,000 names).
fn audit_details(body: &Value) -> Value {
    let mut details = body.clone();
    if let Some(devices) = details.get_mut("target").and_then(|t| t.get_mut("devices")) {
        let n = devices.as_array().map_or(0, Vec::len);
        *devices = json!({"count": n});
    }
    details
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

pub(super) fn parse_campaign_id(id: &str) -> ApiResult<u64> {
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
    let now = app.now();
    let poll_ms = u64::from(app.config.devices.poll_interval) * 1000;
    let (out, next) = app
        .store
        .scan(move |tx| {
            let Some(campaign) = tx.campaign(id)? else {
                return Ok(None);
            };
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
                        let mut view = views::task(device, task);
                        if task.state == TaskState::Queued {
                            let d = tx.device(device)?;
                            view["pending"] = json!(campaign_views::task_pending(
                                &campaign,
                                task,
                                d.as_ref(),
                                now,
                                poll_ms
                            ));
                        }
                        out.push(view);
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
pub async fn cancel(
    State(app): State<App>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_campaign_id(&id)?;
    let settings = app.ota_settings();
    let cancelled = audited(&app, move |tx, now| {
        Ok(campaign::cancel(tx, now, settings, id)?.map(|n| {
            let action = Action::new(
                "campaign.cancel",
                format!("campaign/{id}"),
                actor.0.clone(),
                json!({"cancelled": n}),
            );
            (n, action)
        }))
    })
    .await?
    .map_err(api_error)?;
    crate::resources::task_observe::changed(&app, crate::resources::task_observe::Scope::All);
    let tx = app.store.read()?;
    let c = tx
        .campaign(id)?
        .ok_or_else(|| api_error(CampaignError::UnknownCampaign(id)))?;
    let counts = tx.campaign_counts(id)?;
    let mut body = views::campaign(&c, &counts);
    body["cancelled"] = json!(cancelled);
    Ok(Json(body))
}

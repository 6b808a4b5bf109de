//! `/api/v1/campaigns/{id}/retry|resume` and the per-device
//! `/api/v1/campaigns/{id}/devices/{name}/cancel|retry` (issue 10).

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use super::campaigns::{api_error, parse_campaign_id};
use super::error::{ApiError, ApiResult};
use super::views;
use crate::ota::campaign::{operator, CampaignError};
use crate::state::App;

/// `lwota_campaign_actions_total{action}`: operator actions on campaigns
/// (counted once committed).
pub(super) fn count_action(action: &'static str) {
    metrics::counter!("lwota_campaign_actions_total", "action" => action).increment(1);
}

fn current(app: &App, id: u64) -> ApiResult<Value> {
    let tx = app.store.read()?;
    let c = tx
        .campaign(id)?
        .ok_or_else(|| api_error(CampaignError::UnknownCampaign(id)))?;
    Ok(views::campaign(&c, &tx.campaign_counts(id)?))
}

/// Re-queues exactly the campaign's failed tasks.
#[utoipa::path(post, operation_id = "campaigns_retry", path = "/api/v1/campaigns/{id}/retry", tag = "campaigns",
    params(("id" = u64, Path, description = "Campaign id")),
    responses(
        (status = 200, description = "Failed tasks queued again, with `requeued` and `busy`", body = super::schemas::Campaign),
        (status = 404, description = "No such campaign", body = super::schemas::ErrorBody),
        (status = 409, description = "Campaign cancelled", body = super::schemas::ErrorBody),
    ))]
pub async fn retry(State(app): State<App>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = parse_campaign_id(&id)?;
    let now = app.now();
    let retried = app
        .store
        .write(move |tx| operator::retry_failed(tx, now, id))
        .await?
        .map_err(api_error)?;
    tracing::info!(campaign = id, requeued = retried.requeued, "campaign retry");
    count_action("retry");
    let mut body = current(&app, id)?;
    body["requeued"] = json!(retried.requeued);
    body["busy"] = json!(retried.busy);
    Ok(Json(body))
}

/// Continues a paused campaign.
#[utoipa::path(post, operation_id = "campaigns_resume", path = "/api/v1/campaigns/{id}/resume", tag = "campaigns",
    params(("id" = u64, Path, description = "Campaign id")),
    responses(
        (status = 200, description = "Running again", body = super::schemas::Campaign),
        (status = 404, description = "No such campaign", body = super::schemas::ErrorBody),
        (status = 409, description = "Not paused", body = super::schemas::ErrorBody),
    ))]
pub async fn resume(State(app): State<App>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = parse_campaign_id(&id)?;
    app.store
        .write(move |tx| operator::resume(tx, id))
        .await?
        .map_err(api_error)?;
    tracing::info!(campaign = id, "campaign resumed");
    count_action("resume");
    Ok(Json(current(&app, id)?))
}

fn device_name(name: &str) -> ApiResult<String> {
    if crate::ota::valid_device_name(name) {
        Ok(name.to_string())
    } else {
        Err(ApiError::not_found(
            "unknown_task",
            format!("no task for device {name:?}"),
        ))
    }
}

fn task_view(app: &App, id: u64, name: &str) -> ApiResult<Value> {
    let tx = app.store.read()?;
    let task = tx.task(id, name)?.ok_or_else(|| {
        api_error(CampaignError::UnknownTask {
            campaign: id,
            device: name.to_string(),
        })
    })?;
    Ok(views::task(name, &task))
}

/// Cancels one device's task.
#[utoipa::path(post, operation_id = "campaigns_cancel_device", path = "/api/v1/campaigns/{id}/devices/{name}/cancel", tag = "campaigns",
    params(("id" = u64, Path, description = "Campaign id"), ("name" = String, Path, description = "Device name")),
    responses(
        (status = 200, description = "The device's task, failed with `cancelled`", body = super::schemas::Task),
        (status = 404, description = "No such campaign or task", body = super::schemas::ErrorBody),
        (status = 409, description = "Task already final, or campaign cancelled", body = super::schemas::ErrorBody),
    ))]
pub async fn cancel_device(
    State(app): State<App>,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let id = parse_campaign_id(&id)?;
    let name = device_name(&name)?;
    let now = app.now();
    let settings = app.ota_settings();
    let who = name.clone();
    app.store
        .write(move |tx| operator::cancel_device(tx, now, settings, id, &who))
        .await?
        .map_err(api_error)?;
    tracing::info!(campaign = id, device = %name, "device task cancelled");
    count_action("cancel_device");
    Ok(Json(task_view(&app, id, &name)?))
}

/// Queues one device's failed task again.
#[utoipa::path(post, operation_id = "campaigns_retry_device", path = "/api/v1/campaigns/{id}/devices/{name}/retry", tag = "campaigns",
    params(("id" = u64, Path, description = "Campaign id"), ("name" = String, Path, description = "Device name")),
    responses(
        (status = 200, description = "The device's task, queued again", body = super::schemas::Task),
        (status = 404, description = "No such campaign or task", body = super::schemas::ErrorBody),
        (status = 409, description = "Task not failed, device busy, or campaign cancelled", body = super::schemas::ErrorBody),
    ))]
pub async fn retry_device(
    State(app): State<App>,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let id = parse_campaign_id(&id)?;
    let name = device_name(&name)?;
    let now = app.now();
    let who = name.clone();
    app.store
        .write(move |tx| operator::retry_device(tx, now, id, &who))
        .await?
        .map_err(api_error)?;
    tracing::info!(campaign = id, device = %name, "device task retried");
    count_action("retry_device");
    Ok(Json(task_view(&app, id, &name)?))
}

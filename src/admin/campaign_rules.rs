//! `/api/v1/campaigns/{id}/retry|resume` and the per-device
//! `/api/v1/campaigns/{id}/devices/{name}/cancel|retry` (issue 10).

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use super::actor::Actor;
use super::audit::{audited, Action};
use super::campaigns::{api_error, parse_campaign_id};
use super::error::{ApiError, ApiResult};
use super::views;
use crate::ota::campaign::{operator, CampaignError};
use crate::state::App;
use crate::store::{Tx, WriteOutcome};
use crate::time::Timestamp;

/// `lwota_campaign_actions_total{action}`: operator actions on campaigns
/// (counted once committed).
pub(super) fn count_action(action: &'static str) {
    metrics::counter!("lwota_campaign_actions_total", "action" => action).increment(1);
}

/// One operator action on a campaign or one of its tasks: runs `job` as
/// one durable write with its audit entry (`campaign.{what}`, naming the
/// token), then logs and counts it. `details` of the entry come from the
/// job's result.
async fn operate<T, F>(
    app: &App,
    actor: Actor,
    what: &'static str,
    target: String,
    mut job: F,
) -> ApiResult<T>
where
    T: Send + Clone + serde::Serialize + 'static,
    F: FnMut(&mut dyn Tx, Timestamp) -> WriteOutcome<T, CampaignError> + Send + 'static,
{
    let action_target = target.clone();
    let done = audited(app, move |tx, now| {
        Ok(job(tx, now)?.map(|value| {
            let details = serde_json::to_value(&value).unwrap_or(Value::Null);
            let action = Action::new(
                audit_name(what),
                action_target.clone(),
                actor.0.clone(),
                details,
            );
            (value, action)
        }))
    })
    .await?
    .map_err(api_error)?;
    tracing::info!(action = what, target = %target, "campaign action");
    count_action(what);
    Ok(done)
}

/// The audit log's name for an action (`campaign.retry`, ...).
fn audit_name(what: &'static str) -> &'static str {
    match what {
        "retry" => "campaign.retry",
        "resume" => "campaign.resume",
        "cancel_device" => "campaign.cancel_device",
        "retry_device" => "campaign.retry_device",
        _ => "campaign.action",
    }
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
pub async fn retry(
    State(app): State<App>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_campaign_id(&id)?;
    let (requeued, busy) = operate(
        &app,
        actor,
        "retry",
        format!("campaign/{id}"),
        move |tx, now| Ok(operator::retry_failed(tx, now, id)?.map(|r| (r.requeued, r.busy))),
    )
    .await?;
    let mut body = current(&app, id)?;
    body["requeued"] = json!(requeued);
    body["busy"] = json!(busy);
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
pub async fn resume(
    State(app): State<App>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_campaign_id(&id)?;
    operate(
        &app,
        actor,
        "resume",
        format!("campaign/{id}"),
        move |tx, _now| operator::resume(tx, id),
    )
    .await?;
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
    actor: Actor,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let settings = app.ota_settings();
    device_action(
        app,
        actor,
        id,
        name,
        "cancel_device",
        move |tx, now, id, who| operator::cancel_device(tx, now, settings, id, who),
    )
    .await
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
    actor: Actor,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    device_action(app, actor, id, name, "retry_device", |tx, now, id, who| {
        operator::retry_device(tx, now, id, who)
    })
    .await
}

/// The per-device actions: parse the path, act (audited), answer with the
/// device's task.
async fn device_action<F>(
    app: App,
    actor: Actor,
    id: String,
    name: String,
    what: &'static str,
    mut act: F,
) -> ApiResult<Json<Value>>
where
    F: FnMut(&mut dyn Tx, Timestamp, u64, &str) -> WriteOutcome<(), CampaignError> + Send + 'static,
{
    let id = parse_campaign_id(&id)?;
    let name = device_name(&name)?;
    let who = name.clone();
    let target = format!("campaign/{id}/device/{name}");
    operate(&app, actor, what, target, move |tx, now| {
        act(tx, now, id, &who)
    })
    .await?;
    Ok(Json(task_view(&app, id, &name)?))
}

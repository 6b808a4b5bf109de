//! Issue 11 item 6: `DELETE /api/v1/campaigns/{id}` (finished or
//! cancelled campaigns) and `POST /api/v1/campaigns/{id}/cancel-unseen`
//! (queued tasks of devices never seen).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::actor::Actor;
use super::audit::{audited, Action};
use super::error::{ApiError, ApiResult};
use crate::ota::campaign::CampaignError;
use crate::ota::cleanup::{self, DeleteError};
use crate::state::App;

fn campaign_id(id: &str) -> ApiResult<u64> {
    super::http_errors::parse_path_id(id)
        .ok_or_else(|| ApiError::not_found("unknown_campaign", format!("unknown campaign {id}")))
}

#[utoipa::path(delete, operation_id = "campaigns_delete", path = "/api/v1/campaigns/{id}", tag = "campaigns",
    params(("id" = u64, Path, description = "Campaign id")),
    responses(
        (status = 204, description = "Deleted with its tasks"),
        (status = 404, description = "No such campaign", body = super::schemas::ErrorBody),
        (status = 409, description = "Campaign still running", body = super::schemas::ErrorBody),
    ))]
pub async fn delete(
    State(app): State<App>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = campaign_id(&id)?;
    let action = Action::new(
        "campaign.delete",
        format!("campaign/{id}"),
        actor.0,
        json!({}),
    );
    let (now, cap) = (app.now(), app.config.audit.limit);
    // Chunked: each job removes at most `DELETE_CHUNK` tasks, so polls
    // queued behind a large deletion wait for one chunk only. The audit
    // entry goes with the chunk that removes the campaign record.
    loop {
        let action = action.clone();
        let done = app
            .store
            .write(move |tx| {
                let step = cleanup::delete_step(tx, id)?;
                if let Ok(true) = step {
                    crate::ota::audit::record(tx, now, cap, &action)?;
                }
                Ok(step)
            })
            .await?
            .map_err(|e| match e {
                e @ DeleteError::Unknown(_) => {
                    ApiError::not_found("unknown_campaign", e.to_string())
                }
                e @ DeleteError::Running(_) => {
                    ApiError::conflict("campaign_running", e.to_string())
                }
            })?;
        if done {
            break;
        }
    }
    tracing::info!(id, "campaign deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, operation_id = "campaigns_cancel_unseen", path = "/api/v1/campaigns/{id}/cancel-unseen", tag = "campaigns",
    params(("id" = u64, Path, description = "Campaign id")),
    responses(
        (status = 200, description = "Queued tasks of never-seen devices cancelled", body = super::schemas::Cancelled),
        (status = 404, description = "No such campaign", body = super::schemas::ErrorBody),
        (status = 409, description = "Campaign finished", body = super::schemas::ErrorBody),
    ))]
pub async fn cancel_unseen(
    State(app): State<App>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = campaign_id(&id)?;
    let settings = app.ota_settings();
    let cancelled = audited(&app, move |tx, now| {
        Ok(cleanup::cancel_unseen(tx, now, settings, id)?.map(|n| {
            let action = Action::new(
                "campaign.cancel_unseen",
                format!("campaign/{id}"),
                actor.0.clone(),
                json!({"cancelled": n}),
            );
            (n, action)
        }))
    })
    .await?
    .map_err(|e| match e {
        e @ CampaignError::UnknownCampaign(_) => {
            ApiError::not_found("unknown_campaign", e.to_string())
        }
        e => ApiError::conflict("campaign_finished", e.to_string()),
    })?;
    Ok(Json(json!({"cancelled": cancelled})))
}

//! Statistics (issue 10 item 12): `GET /api/v1/campaigns/{id}/stats`,
//! `GET /api/v1/firmware/{id}/stats` and `GET /api/v1/versions?detail=true`.
//! Computed in `ota/stats.rs` on a snapshot, on the blocking pool.

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use crate::ota::stats::{self, MAX_SCAN};
use crate::state::App;

#[utoipa::path(get, operation_id = "campaigns_stats", path = "/api/v1/campaigns/{id}/stats", tag = "campaigns",
    params(("id" = u64, Path, description = "Campaign id")),
    responses(
        (status = 200, description = "Statistics of the campaign's tasks", body = Object),
        (status = 404, description = "No such campaign", body = super::schemas::ErrorBody),
    ))]
pub async fn campaign(State(app): State<App>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = super::http_errors::parse_path_id(&id)
        .ok_or_else(|| ApiError::not_found("unknown_campaign", format!("unknown campaign {id}")))?;
    let stats = app
        .store
        .scan(move |tx| stats::campaign(tx, id, MAX_SCAN))
        .await?
        .ok_or_else(|| ApiError::not_found("unknown_campaign", format!("unknown campaign {id}")))?;
    let mut body = json!(stats);
    body["campaign"] = json!(id);
    Ok(Json(body))
}

#[utoipa::path(get, operation_id = "firmware_stats", path = "/api/v1/firmware/{id}/stats", tag = "firmware",
    params(("id" = u64, Path, description = "Firmware id")),
    responses(
        (status = 200, description = "Statistics over the firmware's campaigns", body = Object),
        (status = 404, description = "No such firmware", body = super::schemas::ErrorBody),
    ))]
pub async fn firmware(State(app): State<App>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = super::firmware::parse_id(&id)?;
    let stats = app
        .store
        .scan(move |tx| stats::firmware(tx, id, MAX_SCAN))
        .await?
        .ok_or_else(|| ApiError::not_found("unknown_firmware", format!("unknown firmware {id}")))?;
    let mut body = json!(stats);
    body["firmware"] = json!(id);
    Ok(Json(body))
}

/// `?detail=true` of `/api/v1/versions`: the firmware and software
/// distributions with their top versions (the plain form keeps its v1
/// shape, `version → count`).
pub async fn versions_detail(app: App, product: Option<String>) -> ApiResult<Json<Value>> {
    let query = product.clone();
    let (firmware, software) = app
        .store
        .scan(move |tx| stats::versions(tx, query.as_deref()))
        .await?;
    Ok(Json(json!({
        "product": product,
        "devices": firmware.devices,
        "firmware": firmware,
        "software": software,
    })))
}

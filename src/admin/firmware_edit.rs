//! `PATCH /api/v1/firmware/{id}`: edit an image's `name` and
//! `description` (rules in `ota/firmware_edit.rs`), audited.

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use super::actor::Actor;
use super::audit::{audited, Action};
use super::error::{ApiError, ApiResult};
use super::firmware::{api_error, parse_id};
use super::views;
use crate::ota::firmware_edit::{self, FirmwareEdit};
use crate::state::App;

/// Parses a JSON body strictly: unknown fields and wrong types are a 400
/// whose message names the field (serde's message does).
pub(super) fn strict_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            ApiError::bad_request(format!("bad body: {}", e.inner()))
        } else {
            ApiError::bad_request(format!("field {path:?}: {}", e.inner()))
        }
    })?;
    de.end()
        .map_err(|e| ApiError::bad_request(format!("bad body: {e}")))?;
    Ok(value)
}

#[utoipa::path(patch, operation_id = "firmware_edit", path = "/api/v1/firmware/{id}", tag = "firmware",
    params(("id" = u64, Path, description = "Firmware id")),
    request_body(content = Object, content_type = "application/json", description = "Fields to change (see ADMIN_API.md)"),
    responses(
        (status = 200, description = "The firmware after the edit", body = super::schemas::Firmware),
        (status = 400, description = "Bad body", body = super::schemas::ErrorBody),
        (status = 404, description = "No such firmware", body = super::schemas::ErrorBody),
    ))]
pub async fn patch(
    State(app): State<App>,
    actor: Actor,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let id = parse_id(&id)?;
    let edit: FirmwareEdit = strict_json(&body)?;
    firmware_edit::validate(&edit).map_err(api_error)?;
    let after = audited(&app, move |tx, _now| {
        Ok(firmware_edit::apply(tx, id, &edit)?.map(|(before, after)| {
            let action = Action::new(
                "firmware.edit",
                format!("firmware/{id}"),
                actor.0.clone(),
                json!({
                    "name": {"from": before.name, "to": after.name},
                    "description": {"from": before.description, "to": after.description},
                }),
            );
            (after, action)
        }))
    })
    .await?
    .map_err(api_error)?;
    let counts = super::firmware::counts_of(&app, id).await?;
    Ok(Json(views::firmware(&after, &counts)))
}

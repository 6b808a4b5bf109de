//! Firmware assignment (issue 10 item 9): `PUT|GET|DELETE
//! /api/v1/products/{product}/firmware` and `/api/v1/devices/{name}/firmware`.
//! Rules in `ota/assignment.rs`; every change is audited.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::actor::Actor;
use super::audit::{audited, Action};
use super::error::{ApiError, ApiResult, Query};
use super::firmware_edit::strict_json;
use crate::model::{Assigned, AssignmentScope, Assignments};
use crate::ota::assignment::{self, AssignError};
use crate::resources::task_observe::{self, Scope};
use crate::state::App;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignBody {
    /// The firmware id; its `kind` decides the slot (firmware or software).
    firmware: u64,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClearQuery {
    /// `firmware` or `software`; both when absent.
    kind: Option<String>,
}

fn api_error(e: AssignError) -> ApiError {
    match e {
        e @ AssignError::UnknownFirmware(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "unknown_firmware", e.to_string())
        }
        e @ AssignError::UnknownDevice(_) => ApiError::not_found("unknown_device", e.to_string()),
        e @ AssignError::WrongProduct { .. } => {
            ApiError::new(StatusCode::BAD_REQUEST, "wrong_product", e.to_string())
        }
    }
}

fn product_scope(product: String) -> ApiResult<AssignmentScope> {
    if !crate::ota::firmware::valid_product(&product) {
        return Err(ApiError::bad_request(
            "product must be 1-64 characters of letters, digits, '.', '_', '-', ':'",
        ));
    }
    Ok(AssignmentScope::Product(product))
}

fn device_scope(name: String) -> ApiResult<AssignmentScope> {
    if !crate::ota::valid_device_name(&name) {
        return Err(ApiError::not_found(
            "unknown_device",
            format!("unknown device {name}"),
        ));
    }
    Ok(AssignmentScope::Device(name))
}

fn assigned_view(a: Option<&Assigned>) -> Value {
    match a {
        Some(a) => json!({
            "firmware": a.firmware,
            "version": a.version,
            "campaign": a.campaign,
            "set_at": a.set_at.rfc3339(),
        }),
        None => Value::Null,
    }
}

fn row_view(scope: &AssignmentScope, row: &Assignments) -> Value {
    let (key, name) = match scope {
        AssignmentScope::Product(p) => ("product", p),
        AssignmentScope::Device(d) => ("device", d),
    };
    json!({
        key: name,
        "firmware": assigned_view(row.firmware.as_ref()),
        "software": assigned_view(row.software.as_ref()),
    })
}

async fn put(
    app: App,
    actor: Actor,
    scope: AssignmentScope,
    body: &[u8],
) -> ApiResult<Json<Value>> {
    let body: AssignBody = strict_json(body)?;
    let settings = app.ota_settings();
    let job_scope = scope.clone();
    let outcome = audited(&app, move |tx, now| {
        Ok(
            assignment::set(tx, now, settings, &job_scope, body.firmware)?.map(|out| {
                let action = Action::new(
                    "assignment.set",
                    job_scope.label(),
                    actor.0.clone(),
                    json!({
                        "firmware": body.firmware, "kind": out.kind,
                        "version": out.assigned.version, "campaign": out.assigned.campaign,
                        "queued": out.queued, "unchanged": out.unchanged,
                        "replaced": out.replaced.as_ref().map(|r| r.firmware),
                    }),
                );
                (out, action)
            }),
        )
    })
    .await?
    .map_err(api_error)?;
    task_observe::changed(&app, Scope::All);
    let mut view = row_view(&scope, &app.store.read()?.assignments(&scope)?);
    view["kind"] = json!(outcome.kind);
    view["campaign"] = json!(outcome.assigned.campaign);
    view["queued"] = json!(outcome.queued);
    view["unchanged"] = json!(outcome.unchanged);
    Ok(Json(view))
}

async fn clear(
    app: App,
    actor: Actor,
    scope: AssignmentScope,
    q: ClearQuery,
) -> ApiResult<StatusCode> {
    let kind = match q.kind.as_deref() {
        None => None,
        Some("firmware") => Some(false),
        Some("software") => Some(true),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "kind {other:?}: must be firmware or software"
            )))
        }
    };
    let settings = app.ota_settings();
    let job_scope = scope.clone();
    audited(&app, move |tx, now| {
        Ok(
            assignment::clear(tx, now, settings, &job_scope, kind)?.map(|cleared| {
                let action = Action::new(
                    "assignment.clear",
                    job_scope.label(),
                    actor.0.clone(),
                    json!({
                        "firmware": cleared.firmware.as_ref().map(|a| a.firmware),
                        "software": cleared.software.as_ref().map(|a| a.firmware),
                    }),
                );
                ((), action)
            }),
        )
    })
    .await?
    .map_err(api_error)?;
    task_observe::changed(&app, Scope::All);
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(put, operation_id = "assignments_set_product", path = "/api/v1/products/{product}/firmware", tag = "assignments",
    params(("product" = String, Path, description = "Product")),
    request_body(content = Object, content_type = "application/json", description = "The assignment (see ADMIN_API.md)"),
    responses(
        (status = 200, description = "The assignment in effect", body = Object),
        (status = 400, description = "Bad body, firmware or product", body = super::schemas::ErrorBody),
        (status = 404, description = "Not found", body = super::schemas::ErrorBody),
    ))]
pub async fn put_product(
    State(app): State<App>,
    actor: Actor,
    Path(product): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    put(app, actor, product_scope(product)?, &body).await
}

#[utoipa::path(put, operation_id = "assignments_set_device", path = "/api/v1/devices/{name}/firmware", tag = "assignments",
    params(("name" = String, Path, description = "Device name")),
    request_body(content = Object, content_type = "application/json", description = "The assignment (see ADMIN_API.md)"),
    responses(
        (status = 200, description = "The assignment in effect", body = Object),
        (status = 400, description = "Bad body, firmware or product", body = super::schemas::ErrorBody),
        (status = 404, description = "No such device", body = super::schemas::ErrorBody),
    ))]
pub async fn put_device(
    State(app): State<App>,
    actor: Actor,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    put(app, actor, device_scope(name)?, &body).await
}

#[utoipa::path(delete, operation_id = "assignments_clear_product", path = "/api/v1/products/{product}/firmware", tag = "assignments",
    params(("product" = String, Path, description = "Product"), ("kind" = Option<String>, Query, description = "Which assignment to clear (see ADMIN_API.md)")),
    responses(
        (status = 204, description = "Cleared"),
        (status = 400, description = "Bad query", body = super::schemas::ErrorBody),
        (status = 404, description = "Not found", body = super::schemas::ErrorBody),
    ))]
pub async fn delete_product(
    State(app): State<App>,
    actor: Actor,
    Path(product): Path<String>,
    Query(q): Query<ClearQuery>,
) -> ApiResult<StatusCode> {
    clear(app, actor, product_scope(product)?, q).await
}

#[utoipa::path(delete, operation_id = "assignments_clear_device", path = "/api/v1/devices/{name}/firmware", tag = "assignments",
    params(("name" = String, Path, description = "Device name"), ("kind" = Option<String>, Query, description = "Which assignment to clear (see ADMIN_API.md)")),
    responses(
        (status = 204, description = "Cleared"),
        (status = 400, description = "Bad query", body = super::schemas::ErrorBody),
        (status = 404, description = "No such device", body = super::schemas::ErrorBody),
    ))]
pub async fn delete_device(
    State(app): State<App>,
    actor: Actor,
    Path(name): Path<String>,
    Query(q): Query<ClearQuery>,
) -> ApiResult<StatusCode> {
    clear(app, actor, device_scope(name)?, q).await
}

#[utoipa::path(get, operation_id = "assignments_show_product", path = "/api/v1/products/{product}/firmware", tag = "assignments",
    params(("product" = String, Path, description = "Product")),
    responses(
        (status = 200, description = "The product's assignments", body = Object),
        (status = 400, description = "Bad product", body = super::schemas::ErrorBody),
    ))]
pub async fn get_product(
    State(app): State<App>,
    Path(product): Path<String>,
) -> ApiResult<Json<Value>> {
    let scope = product_scope(product)?;
    let row = app.store.read()?.assignments(&scope)?;
    Ok(Json(row_view(&scope, &row)))
}

/// The device's own assignments, and the ones in effect (own or product's).
#[utoipa::path(get, operation_id = "assignments_show_device", path = "/api/v1/devices/{name}/firmware", tag = "assignments",
    params(("name" = String, Path, description = "Device name")),
    responses(
        (status = 200, description = "The device's own assignments and those in effect", body = Object),
        (status = 404, description = "No such device", body = super::schemas::ErrorBody),
    ))]
pub async fn get_device(
    State(app): State<App>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let scope = device_scope(name.clone())?;
    let tx = app.store.read()?;
    let device = tx
        .device(&name)?
        .ok_or_else(|| ApiError::not_found("unknown_device", format!("unknown device {name}")))?;
    let row = tx.assignments(&scope)?;
    let mut view = row_view(&scope, &row);
    let mut effective = serde_json::Map::new();
    for software in [false, true] {
        let value = match assignment::effective(tx.as_ref(), &name, &device, software)? {
            Some((from, a)) => {
                let mut v = assigned_view(Some(&a));
                v["from"] = json!(from.label());
                v
            }
            None => Value::Null,
        };
        effective.insert(assignment::kind_name(software).into(), value);
    }
    view["effective"] = Value::Object(effective);
    view["version"] = json!(device.version);
    view["software_version"] = json!(device.software_version);
    Ok(Json(view))
}

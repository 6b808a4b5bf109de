//! `/firmware` (list + upload form), `/firmware/{id}` (details, statistics
//! per state, campaigns using it, delete), and `POST /console/upload`, the
//! route the upload form's script sends the image to.

use axum::body::Body;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use maud::{html, Markup};
use serde_json::{json, Value};

use super::campaigns::campaign_rows;
use super::layout::{self, bytes, error_box, field, page, respond, state_badge, when, Nav};
use super::login::CsrfForm;
use super::session::Operator;
use super::{from_json, ConsoleState};
use crate::admin::console_api::{campaigns as api_campaigns, firmware as api};
use crate::admin::error::{ApiError, Query};
use crate::model::TaskState;
use crate::ota::firmware::UploadParams;

/// All firmware records, as the API lists them.
pub async fn all(state: &ConsoleState) -> Result<Vec<Value>, ApiError> {
    let Json(list) = api::list(State(state.app.clone()), Query(from_json(json!({}))?)).await?;
    Ok(list.as_array().cloned().unwrap_or_default())
}

fn verified(fw: &Value) -> Markup {
    match fw.get("verified").and_then(Value::as_bool) {
        Some(true) => html! { span.badge.ok { "verified" } },
        Some(false) => html! { span.badge.idle { "not verified" } },
        None => html! { "—" },
    }
}

fn sum(fw: &Value, states: &[TaskState]) -> u64 {
    states
        .iter()
        .filter_map(|s| fw["counts"][s.as_str()].as_u64())
        .sum()
}

fn upload_form() -> Markup {
    html! {
        h2 { "Upload firmware" }
        form.stack #upload-form {
            div {
                label for="fw-file" { "Image file" }
                input #fw-file type="file" name="file" required;
            }
            div {
                label for="fw-product" { "Product" }
                input #fw-product type="text" name="product" required;
            }
            div {
                label for="fw-version" { "Version" }
                input #fw-version type="text" name="version" required;
                span.hint { "1-64 letters, digits, . _ -" }
            }
            div {
                label for="fw-name" { "Name (optional)" }
                input #fw-name type="text" name="name";
            }
            div {
                label for="fw-kind" { "Kind" }
                select #fw-kind name="kind" {
                    option value="firmware" { "firmware" }
                    option value="software" { "software" }
                }
            }
            div {
                label for="fw-signature" { "Signature algorithm" }
                select #fw-signature name="signature" {
                    option value="sha256" { "sha256" }
                    option value="md5" { "md5" }
                }
            }
            div {
                label for="fw-description" { "Description (optional)" }
                input #fw-description type="text" name="description" maxlength="100";
            }
            div {
                button type="submit" { "Upload" }
            }
            div #upload-meter hidden {
                label for="upload-progress" { "Upload progress" }
                progress #upload-progress value="0" max="1" {}
            }
            p #upload-status role="status" aria-live="polite" {}
        }
    }
}

pub async fn list(State(state): State<ConsoleState>, op: Operator) -> Response {
    let list = match all(&state).await {
        Ok(list) => list,
        Err(e) => return layout::error_page(&op, &e, "/"),
    };
    let body = html! {
        @if list.is_empty() {
            p { "No firmware yet." }
        } @else {
            div.table-wrap { table {
                thead { tr {
                    th.num scope="col" { "ID" } th scope="col" { "Product" } th scope="col" { "Version" }
                    th scope="col" { "Name" } th.hide-narrow scope="col" { "Kind" } th.num scope="col" { "Size" }
                    th scope="col" { "Verified" } th.num scope="col" { "Updated" } th.num scope="col" { "Failed" }
                    th.hide-narrow scope="col" { "Uploaded" }
                } }
                tbody {
                    @for fw in list.iter().rev() {
                        tr {
                            td.num { a href={ "/firmware/" (field(fw, "id")) } { (field(fw, "id")) } }
                            td { (field(fw, "product")) }
                            td { a href={ "/firmware/" (field(fw, "id")) } { (field(fw, "version")) } }
                            td { (field(fw, "name")) }
                            td.hide-narrow { (field(fw, "kind")) }
                            td.num { (bytes(fw["size"].as_u64().unwrap_or(0))) }
                            td { (verified(fw)) }
                            td.num { (sum(fw, &[TaskState::Updated])) }
                            td.num { (sum(fw, &[TaskState::Failed])) }
                            td.hide-narrow { (when(&fw["created_at"])) }
                        }
                    }
                }
            } }
        }
        @if op.admin() { (upload_form()) }
    };
    respond(StatusCode::OK, page("Firmware", Nav::Firmware, &op, body))
}

async fn details(state: &ConsoleState, op: &Operator, id: &str, error: Option<&str>) -> Response {
    let fw = match api::show(State(state.app.clone()), Path(id.to_string())).await {
        Ok(Json(fw)) => fw,
        Err(e) => return layout::error_page(op, &e, "/firmware"),
    };
    let campaigns = match api_campaigns::list(State(state.app.clone())).await {
        Ok(Json(list)) => list.as_array().cloned().unwrap_or_default(),
        Err(e) => return layout::error_page(op, &e, "/firmware"),
    };
    let using: Vec<Value> = campaigns
        .into_iter()
        .filter(|c| c["firmware"] == fw["id"])
        .rev()
        .collect();
    let title = format!(
        "Firmware {} — {} {}",
        field(&fw, "id"),
        field(&fw, "product"),
        field(&fw, "version")
    );
    let body = html! {
        @if let Some(message) = error { (error_box(message)) }
        dl.props {
            dt { "Product" } dd { (field(&fw, "product")) }
            dt { "Version" } dd { (field(&fw, "version")) }
            dt { "Name" } dd { (field(&fw, "name")) }
            dt { "Kind" } dd { (field(&fw, "kind")) }
            dt { "Verified" } dd { (verified(&fw)) }
            dt { "File name" } dd { (field(&fw, "filename")) }
            dt { "Size" } dd { (bytes(fw["size"].as_u64().unwrap_or(0))) " (" (field(&fw, "size")) " bytes)" }
            dt { "Signature" } dd { (field(&fw, "signature")) }
            dt { "SHA-256" } dd { code { (field(&fw, "sha256")) } }
            dt { "MD5" } dd { code { (field(&fw, "md5")) } }
            dt { "Description" } dd { (field(&fw, "description")) }
            dt { "Uploaded" } dd { (when(&fw["created_at"])) }
            dt { "Device URI" } dd { code { (field(&fw, "uri")) } }
        }
        h2 { "Devices per task state" }
        div.cards {
            @for s in TaskState::ALL {
                div.card {
                    span.n { (fw["counts"][s.as_str()].as_u64().unwrap_or(0)) }
                    span.l { (state_badge(s.as_str())) }
                }
            }
        }
        h2 { "Campaigns using it" }
        @if using.is_empty() { p { "None." } } @else { (campaign_rows(&using)) }
        @if op.admin() {
            p { a.button href={ "/campaigns/new?firmware=" (field(&fw, "id")) } { "New campaign with this firmware" } }
            h2 { "Delete" }
            p.hint { "Refused while an unfinished campaign uses this firmware." }
            form method="post" action={ "/firmware/" (field(&fw, "id")) "/delete" } {
                input type="hidden" name="csrf" value=(op.csrf);
                button.danger type="submit" data-confirm="Delete this firmware?" { "Delete firmware" }
            }
        }
    };
    let status = if error.is_some() {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    respond(status, page(&title, Nav::Firmware, op, body))
}

pub async fn show(
    State(state): State<ConsoleState>,
    op: Operator,
    Path(id): Path<String>,
) -> Response {
    details(&state, &op, &id, None).await
}

pub async fn delete(
    State(state): State<ConsoleState>,
    op: Operator,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(why) = op.may_write(&headers, &form.csrf) {
        return layout::error_page(
            &op,
            &ApiError::new(StatusCode::FORBIDDEN, "forbidden", why),
            "/firmware",
        );
    }
    match api::delete(
        State(state.app.clone()),
        crate::admin::actor::Actor(Some(op.principal.name.clone())),
        Path(id.clone()),
    )
    .await
    {
        Ok(_) => {
            tracing::info!(id, token = %op.principal.name, "console: firmware deleted");
            Redirect::to("/firmware").into_response()
        }
        Err(e) if e.status == StatusCode::CONFLICT => {
            let message = format!("Not deleted: {}", e.message);
            details(&state, &op, &id, Some(&message)).await
        }
        Err(e) => layout::error_page(&op, &e, "/firmware"),
    }
}

/// The upload form's target: the image is the raw body, as in the API;
/// the session cookie plus `X-CSRF-Token` stand in for the bearer token.
/// Answers the API's JSON (the script reads `id` or `error.message`).
pub async fn upload(
    State(state): State<ConsoleState>,
    op: Operator,
    Query(params): Query<UploadParams>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let csrf = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Err(why) = op.may_write(&headers, csrf) {
        return ApiError::new(StatusCode::FORBIDDEN, "forbidden", why).into_response();
    }
    match api::upload(
        State(state.app.clone()),
        crate::admin::actor::Actor(Some(op.principal.name.clone())),
        Query(params),
        headers,
        body,
    )
    .await
    {
        Ok(created) => {
            tracing::info!(token = %op.principal.name, "console: firmware uploaded");
            created.into_response()
        }
        Err(e) => e.into_response(),
    }
}

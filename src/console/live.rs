//! The self-updating part of a campaign page: `GET /campaigns/{id}/live`
//! answers an HTML fragment (status, counts per state and per pending
//! reason, waves, a progress bar per downloading device, failures with
//! their reasons) that the page's script fetches every 2 seconds and swaps
//! in, until the campaign is final. Polling rather than server-sent
//! events: one short read per viewer every 2 s, nothing held open, and it
//! passes any proxy.

use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use maud::{html, Markup};
use serde_json::{json, Value};

use super::campaigns::done;
use super::layout::{enc, error_box, field, progress, state_badge, text, when};
use super::session::Operator;
use super::{from_json, ConsoleState};
use crate::admin::console_api::campaigns as api;
use crate::admin::error::{ApiError, Query};
use crate::model::TaskState;

/// Devices listed per section of the fragment (downloading, failed): the
/// counts above cover the rest; each section is one bounded API read.
const LISTED: usize = 50;

/// The campaign's tasks in one state, first `LISTED` by device name.
async fn tasks(state: &ConsoleState, id: &Value, task_state: &str) -> Result<Vec<Value>, ApiError> {
    let query = from_json(json!({"state": task_state, "limit": LISTED}))?;
    let (_, Json(list)) =
        api::devices(State(state.app.clone()), Path(text(id)), Query(query)).await?;
    Ok(list.as_array().cloned().unwrap_or_default())
}

/// An array of objects as a table, columns from the first object's keys
/// (waves and other shapes newer servers add).
fn object_table(caption: &str, rows: &[Value]) -> Markup {
    let columns: Vec<String> = rows
        .first()
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    html! {
        div.table-wrap { table {
            caption.hint { (caption) }
            thead { tr { @for c in &columns { th scope="col" { (c) } } } }
            tbody {
                @for row in rows {
                    tr { @for c in &columns { td { (field(row, c)) } } }
                }
            }
        } }
    }
}

pub async fn render(state: &ConsoleState, c: &Value) -> Markup {
    let status = field(c, "status");
    let is_final = matches!(status.as_str(), "finished" | "cancelled");
    let total = c["total"].as_u64().unwrap_or(0);
    let downloading = tasks(state, &c["id"], "downloading").await;
    let failed = tasks(state, &c["id"], "failed").await;
    let pending = c
        .get("pending")
        .or_else(|| c.get("pending_reasons"))
        .and_then(Value::as_object);
    let waves = c
        .get("waves")
        .and_then(Value::as_array)
        .filter(|w| !w.is_empty());
    html! {
        div data-status=(status) data-final=(is_final) {
            p role="status" {
                "Status: " (state_badge(&status)) " — " (done(c)) " of " (total) " devices final. "
                span.live-stamp { "(as of " (when(&json!(state.app.now().rfc3339()))) ")" }
            }
            (progress("campaign progress", done(c), total))
            h2 { "Devices per state" }
            div.cards {
                @for s in TaskState::ALL {
                    div.card data-state=(s.as_str()) {
                        span.n { (c["counts"][s.as_str()].as_u64().unwrap_or(0)) }
                        span.l { (state_badge(s.as_str())) }
                    }
                }
            }
            @if let Some(pending) = pending {
                h2 { "Waiting devices by reason" }
                div.table-wrap { table {
                    thead { tr { th scope="col" { "Reason" } th.num scope="col" { "Devices" } } }
                    tbody { @for (reason, n) in pending { tr { td { (reason) } td.num { (text(n)) } } } }
                } }
            }
            @if let Some(waves) = waves {
                h2 { "Waves" }
                @if waves.iter().all(Value::is_object) {
                    (object_table("One row per wave, in order", waves))
                } @else {
                    p { code { (text(&Value::Array(waves.clone()))) } }
                }
            }
            h2 { "Downloading" }
            @match &downloading {
                Err(e) => (error_box(&e.message)),
                Ok(list) if list.is_empty() => p { "No device is downloading." },
                Ok(list) => div.table-wrap { table {
                    thead { tr { th scope="col" { "Device" } th scope="col" { "Progress" } th.hide-narrow scope="col" { "Since" } } }
                    tbody { @for t in list { tr {
                        td { a href={ "/devices/" (enc(&field(t, "device"))) } { (field(t, "device")) } }
                        td { (progress(&format!("{} download", field(t, "device")), t["progress"].as_u64().unwrap_or(0), 100)) }
                        td.hide-narrow { (when(&t["updated_at"])) }
                    } } }
                } },
            }
            h2 { "Failures" }
            @match &failed {
                Err(e) => (error_box(&e.message)),
                Ok(list) if list.is_empty() => p { "No failures." },
                Ok(list) => div.table-wrap { table {
                    thead { tr { th scope="col" { "Device" } th scope="col" { "Reason" } th.hide-narrow scope="col" { "At" } } }
                    tbody { @for t in list { tr {
                        td { a href={ "/devices/" (enc(&field(t, "device"))) } { (field(t, "device")) } }
                        td { (field(t, "error")) }
                        td.hide-narrow { (when(&t["updated_at"])) }
                    } } }
                } },
            }
            @if c["counts"]["failed"].as_u64().unwrap_or(0) > LISTED as u64 {
                p.hint { "First " (LISTED) " failures by device name; "
                    code { "GET /api/v1/campaigns/" (field(c, "id")) "/devices?state=failed" } " lists all." }
            }
        }
    }
}

pub async fn fragment(
    State(state): State<ConsoleState>,
    _op: Operator,
    Path(id): Path<String>,
) -> Response {
    match api::show(State(state.app.clone()), Path(id)).await {
        Ok(Json(c)) => Html(render(&state, &c).await.into_string()).into_response(),
        Err(e) => (e.status, Html(error_box(&e.message).into_string())).into_response(),
    }
}

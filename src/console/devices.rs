//! `/devices` (searchable, paginated list) and `/devices/{name}` (the
//! device, its history as a timeline, its LwM2M registration when it has
//! one).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use maud::{html, Markup};
use serde_json::{json, Value};

use super::layout::{self, enc, field, page, respond, state_badge, text, when, Nav};
use super::session::Operator;
use super::{from_json, ConsoleState};
use crate::admin::console_api::devices as api;
use crate::admin::error::{ApiError, Query as ApiQuery};
use crate::model::DeviceRecord;
use crate::store::{ReadTx, StoreError};
use crate::time::Timestamp;

/// Devices per page of the list.
const PAGE: usize = 50;
/// Devices one list request reads at most while filtering: a search that
/// matches rarely ends its page early (with a "next" link) rather than
/// reading a million records.
const SCAN_BUDGET: usize = 100_000;
/// Devices read per store call.
const STEP: usize = 1_000;
/// History entries shown on a device page (the store keeps
/// `devices.history_limit`, 1,000 by default).
const HISTORY_SHOWN: usize = 10_000;

#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Filter {
    /// Part of the device name.
    q: String,
    product: String,
    version: String,
    /// Task state (current or last task), or `none`.
    state: String,
    /// Names sort; the page starts after this one.
    after: String,
}

struct Row {
    name: String,
    device: DeviceRecord,
    state: Option<&'static str>,
}

fn task_state(tx: &dyn ReadTx, name: &str) -> Result<Option<&'static str>, StoreError> {
    Ok(match crate::ota::assignment::pointers(tx, name)?.shown() {
        Some(campaign) => tx.task(campaign, name)?.map(|t| t.state.as_str()),
        None => None,
    })
}

/// One page of matching devices and where the next page starts.
fn search(tx: &dyn ReadTx, f: &Filter) -> Result<(Vec<Row>, Option<String>), StoreError> {
    let mut rows = Vec::new();
    let mut after = (!f.after.is_empty()).then(|| f.after.clone());
    let mut scanned = 0;
    loop {
        let step = tx.devices(after.as_deref(), STEP)?;
        let exhausted = step.len() < STEP;
        for (name, device) in step {
            scanned += 1;
            after = Some(name.clone());
            if (!f.q.is_empty() && !name.contains(f.q.as_str()))
                || (!f.product.is_empty() && device.product != f.product)
                || (!f.version.is_empty() && device.version != f.version)
            {
                continue;
            }
            let state = task_state(tx, &name)?;
            if !f.state.is_empty() && state.unwrap_or("none") != f.state {
                continue;
            }
            rows.push(Row {
                name,
                device,
                state,
            });
            if rows.len() == PAGE {
                return Ok((rows, after));
            }
        }
        if exhausted {
            return Ok((rows, None));
        }
        if scanned >= SCAN_BUDGET {
            return Ok((rows, after));
        }
    }
}

fn filter_link(f: &Filter, after: &str) -> String {
    format!(
        "/devices?q={}&product={}&version={}&state={}&after={}",
        enc(&f.q),
        enc(&f.product),
        enc(&f.version),
        enc(&f.state),
        enc(after)
    )
}

fn ts(t: Option<Timestamp>) -> String {
    when(&t.map(|t| json!(t.rfc3339())).unwrap_or(Value::Null))
}

pub async fn list(
    State(state): State<ConsoleState>,
    op: Operator,
    Query(f): Query<Filter>,
) -> Response {
    let filter = f.clone();
    let found = state.app.store.scan(move |tx| search(tx, &filter)).await;
    let (rows, next) = match found {
        Ok(found) => found,
        Err(e) => return layout::error_page(&op, &ApiError::from(e), "/devices"),
    };
    let states = [
        "",
        "none",
        "queued",
        "initiated",
        "downloading",
        "downloaded",
        "verified",
        "updating",
        "updated",
        "failed",
    ];
    let body = html! {
        form.search method="get" action="/devices" role="search" {
            div { label for="q" { "Name contains" } input #q type="search" name="q" value=(f.q); }
            div { label for="product" { "Product" } input #product type="text" name="product" value=(f.product); }
            div { label for="version" { "Version" } input #version type="text" name="version" value=(f.version); }
            div {
                label for="state" { "Task state" }
                select #state name="state" {
                    @for s in states {
                        option value=(s) selected[s == f.state] { @if s.is_empty() { "any" } @else { (s) } }
                    }
                }
            }
            div { button type="submit" { "Search" } }
        }
        @if rows.is_empty() {
            p { "No matching devices" @if next.is_some() { " in this stretch" } "." }
        } @else {
            div.table-wrap { table {
                thead { tr {
                    th scope="col" { "Name" } th scope="col" { "Product" } th scope="col" { "Version" }
                    th scope="col" { "Task state" } th scope="col" { "Last seen" }
                } }
                tbody {
                    @for r in &rows {
                        tr {
                            td { a href={ "/devices/" (enc(&r.name)) } { (r.name) } }
                            td { (r.device.product) }
                            td { (r.device.version) }
                            td { (state_badge(r.state.unwrap_or("—"))) }
                            td { (ts(r.device.last_seen)) }
                        }
                    }
                }
            } }
        }
        nav.pager aria-label="Pages" {
            @if !f.after.is_empty() { a href=(filter_link(&f, "")) { "First page" } }
            @if let Some(next) = &next { a href=(filter_link(&f, next)) { "Next page" } }
        }
    };
    respond(StatusCode::OK, page("Devices", Nav::Devices, &op, body))
}

/// An object's fields as a definition list (the LwM2M registration and
/// whatever else newer servers attach to a device).
fn props(v: &Value) -> Markup {
    html! {
        dl.props {
            @if let Some(map) = v.as_object() {
                @for (k, v) in map {
                    dt { (k) }
                    dd { @if v.is_object() || v.is_array() { code { (text(v)) } } @else { (text(v)) } }
                }
            }
        }
    }
}

fn timeline(entries: &[Value]) -> Markup {
    html! {
        ol.timeline {
            @for h in entries.iter().rev() {
                li {
                    time datetime=(field(h, "at")) { (when(&h["at"])) }
                    strong { (field(h, "event")) }
                    @if let (Some(from), Some(to)) = (h["from"].as_str(), h["to"].as_str()) {
                        " " (state_badge(from)) " → " (state_badge(to))
                    } @else if let Some(to) = h["to"].as_str() {
                        " → " (state_badge(to))
                    }
                    @if let Some(task) = h["campaign"].as_u64() {
                        " · " a href={ "/campaigns/" (task) } { "campaign " (task) }
                    }
                    @if let Some(p) = h["progress"].as_u64() { " · " (p) "%" }
                    @if let Some(e) = h["error"].as_str() { " · error: " (e) }
                    @if let Some(d) = h["detail"].as_str() { " · " (d) }
                    @if let Some(n) = h["repeat"].as_u64().filter(|n| *n > 1) {
                        " · ×" (n) @if h["since"].is_string() { " since " (when(&h["since"])) }
                    }
                }
            }
        }
    }
}

pub async fn show(
    State(state): State<ConsoleState>,
    op: Operator,
    Path(name): Path<String>,
) -> Response {
    let app = || State(state.app.clone());
    let device = match api::show(app(), Path(name.clone())).await {
        Ok(Json(d)) => d,
        Err(e) => return layout::error_page(&op, &e, "/devices"),
    };
    let query = match from_json(json!({"limit": HISTORY_SHOWN})) {
        Ok(q) => q,
        Err(e) => return layout::error_page(&op, &e, "/devices"),
    };
    let history = match api::history(app(), Path(name.clone()), ApiQuery(query)).await {
        Ok((_, Json(h))) => h.as_array().cloned().unwrap_or_default(),
        Err(e) => return layout::error_page(&op, &e, "/devices"),
    };
    let task = &device["task"];
    let body = html! {
        dl.props {
            dt { "Product" } dd { (field(&device, "product")) }
            dt { "Version" } dd { (field(&device, "version")) }
            dt { "Task state" } dd { (state_badge(&field(&device, "state"))) }
            @if task.is_object() {
                dt { "Task" } dd {
                    a href={ "/campaigns/" (field(task, "campaign")) } { "campaign " (field(task, "campaign")) }
                    " → " (field(task, "target_version"))
                    @if let Some(p) = task["progress"].as_u64() { " · " (p) "%" }
                    @if let Some(e) = task["error"].as_str() { " · error: " (e) }
                }
            }
            dt { "Last seen" } dd { (when(&device["last_seen"])) }
            dt { "Address" } dd { (field(&device, "address")) }
            dt { "Battery" } dd { (field(&device, "battery")) }
            dt { "Registered" } dd { (when(&device["created_at"])) }
        }
        @if let Some(lwm2m) = device.get("lwm2m").filter(|v| v.is_object()) {
            h2 { "LwM2M registration" }
            (props(lwm2m))
        }
        h2 { "History" }
        p.hint { "Newest first; " (history.len()) " entries." }
        @if history.is_empty() { p { "Nothing yet." } } @else { (timeline(&history)) }
    };
    let title = format!("Device {name}");
    respond(StatusCode::OK, page(&title, Nav::Devices, &op, body))
}

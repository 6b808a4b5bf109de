//! `/campaigns` (list), `/campaigns/{id}` (the live campaign page; its
//! self-updating part is `live.rs`) and the cancel / retry / resume
//! buttons (`POST /campaigns/{id}/{action}`).

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use maud::{html, Markup};
use serde_json::Value;

use super::layout::{self, field, page, progress, respond, state_badge, text, when, Nav};
use super::login::CsrfForm;
use super::session::Operator;
use super::{live, ConsoleState};
use crate::admin::console_api::campaign_rules as rules;
use crate::admin::console_api::campaigns as api;
use crate::admin::error::ApiError;

/// Campaigns per page of the list.
const PAGE: usize = 50;

/// Fields of the campaign JSON the page lays out itself; any other field
/// (options added by newer servers) is listed as it is under "Options".
const LAID_OUT: [&str; 14] = [
    "id",
    "firmware",
    "product",
    "target_version",
    "target",
    "status",
    "created_at",
    "finished_at",
    "total",
    "counts",
    "waves",
    "pending",
    "pending_reasons",
    "skipped",
];

pub fn done(c: &Value) -> u64 {
    c["counts"]["updated"].as_u64().unwrap_or(0) + c["counts"]["failed"].as_u64().unwrap_or(0)
}

/// A table of campaigns (newest first as given).
pub fn campaign_rows(list: &[Value]) -> Markup {
    html! {
        div.table-wrap { table {
            thead { tr {
                th.num scope="col" { "ID" } th scope="col" { "Firmware" } th scope="col" { "Product" }
                th scope="col" { "Target version" } th scope="col" { "Status" } th scope="col" { "Progress" }
                th.num scope="col" { "Updated" } th.num scope="col" { "Failed" } th.hide-narrow scope="col" { "Created" }
            } }
            tbody {
                @for c in list {
                    tr {
                        td.num { a href={ "/campaigns/" (field(c, "id")) } { (field(c, "id")) } }
                        td { a href={ "/firmware/" (field(c, "firmware")) } { (field(c, "firmware")) } }
                        td { (field(c, "product")) }
                        td { (field(c, "target_version")) }
                        td { (state_badge(&field(c, "status"))) }
                        td { (progress(&format!("campaign {} progress", field(c, "id")), done(c), c["total"].as_u64().unwrap_or(0))) }
                        td.num { (c["counts"]["updated"].as_u64().unwrap_or(0)) }
                        td.num { (c["counts"]["failed"].as_u64().unwrap_or(0)) }
                        td.hide-narrow { (when(&c["created_at"])) }
                    }
                }
            }
        } }
    }
}

/// Every campaign, oldest first, as the API lists them.
pub async fn all(state: &ConsoleState) -> Result<Vec<Value>, ApiError> {
    let Json(list) = api::list(State(state.app.clone())).await?;
    Ok(list.as_array().cloned().unwrap_or_default())
}

pub async fn list_page(state: &ConsoleState, op: &Operator, title: &str) -> Response {
    list_at(state, op, title, 0).await
}

async fn list_at(state: &ConsoleState, op: &Operator, title: &str, page_no: usize) -> Response {
    let mut list = match all(state).await {
        Ok(list) => list,
        Err(e) => return layout::error_page(op, &e, "/"),
    };
    list.reverse();
    let pages = list.len().div_ceil(PAGE).max(1);
    let page_no = page_no.min(pages - 1);
    let shown: Vec<Value> = list.into_iter().skip(page_no * PAGE).take(PAGE).collect();
    let body = html! {
        @if op.admin() {
            p { a.button href="/campaigns/new" { "New campaign" } }
        }
        @if shown.is_empty() { p { "No campaigns yet." } } @else { (campaign_rows(&shown)) }
        @if pages > 1 {
            nav.pager aria-label="Pages" {
                @if page_no > 0 { a href={ "/campaigns?page=" (page_no - 1) } { "Newer" } }
                span { "Page " (page_no + 1) " of " (pages) }
                @if page_no + 1 < pages { a href={ "/campaigns?page=" (page_no + 1) } { "Older" } }
            }
        }
    };
    respond(StatusCode::OK, page(title, Nav::Campaigns, op, body))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    page: Option<usize>,
}

pub async fn list(
    State(state): State<ConsoleState>,
    op: Operator,
    axum::extract::Query(q): axum::extract::Query<ListParams>,
) -> Response {
    list_at(&state, &op, "Campaigns", q.page.unwrap_or(0)).await
}

/// The target of a campaign in words.
fn target_text(target: &Value) -> String {
    if target.get("all").is_some() {
        return "all devices of the product".into();
    }
    if let Some(v) = target.get("source_versions").and_then(Value::as_array) {
        let list: Vec<String> = v.iter().map(text).collect();
        return format!("devices on {}", list.join(", "));
    }
    if let Some(v) = target.get("devices").and_then(Value::as_array) {
        let shown: Vec<String> = v.iter().take(20).map(text).collect();
        let more = v.len().saturating_sub(20);
        return if more > 0 {
            format!("{} and {more} more", shown.join(", "))
        } else {
            shown.join(", ")
        };
    }
    text(target)
}

pub async fn show(
    State(state): State<ConsoleState>,
    op: Operator,
    Path(id): Path<String>,
) -> Response {
    let c = match api::show(State(state.app.clone()), Path(id.clone())).await {
        Ok(Json(c)) => c,
        Err(e) => return layout::error_page(&op, &e, "/campaigns"),
    };
    let fragment = live::render(&state, &c).await;
    let status = field(&c, "status");
    let options: Vec<(&String, &Value)> = c
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !LAID_OUT.contains(&k.as_str()))
                .collect()
        })
        .unwrap_or_default();
    let button = |action: &str, label: &str, show_when: &str, confirm: Option<&str>| {
        let visible = show_when.split(' ').any(|s| s == status);
        html! {
            form method="post" action={ "/campaigns/" (field(&c, "id")) "/" (action) }
                data-show-when=(show_when) hidden[!visible] {
                input type="hidden" name="csrf" value=(op.csrf);
                @if let Some(q) = confirm {
                    button.danger type="submit" data-confirm=(q) { (label) }
                } @else {
                    button type="submit" { (label) }
                }
            }
        }
    };
    let body = html! {
        dl.props {
            dt { "Firmware" } dd { a href={ "/firmware/" (field(&c, "firmware")) } { (field(&c, "firmware")) } }
            dt { "Product" } dd { (field(&c, "product")) }
            dt { "Target version" } dd { (field(&c, "target_version")) }
            dt { "Target" } dd { (target_text(&c["target"])) }
            dt { "Devices" } dd { (field(&c, "total")) }
            dt { "Created" } dd { (when(&c["created_at"])) }
            dt { "Finished" } dd { (when(&c["finished_at"])) }
        }
        @if !options.is_empty() {
            h2 { "Options" }
            dl.props {
                @for (k, v) in &options { dt { (k) } dd { code { (text(v)) } } }
            }
        }
        @if op.admin() {
            div.actions {
                (button("cancel", "Cancel campaign", "scheduled running paused", Some("Cancel this campaign? Unfinished devices become failed (cancelled).")))
                (button("retry", "Retry failed devices", "running paused finished", None))
                (button("resume", "Resume", "paused", None))
            }
        }
        div #live data-src={ "/campaigns/" (field(&c, "id")) "/live" } {
            (fragment)
        }
    };
    let title = format!("Campaign {}", field(&c, "id"));
    respond(StatusCode::OK, page(&title, Nav::Campaigns, &op, body))
}

/// Runs a campaign action through the API's handler.
async fn run_action(
    state: &ConsoleState,
    actor: crate::admin::actor::Actor,
    id: &str,
    action: &str,
) -> Result<(), ApiError> {
    let app = State(state.app.clone());
    match action {
        "cancel" => api::cancel(app, actor, Path(id.to_string()))
            .await
            .map(|_| ()),
        // Audited with the operator's token, like the API's.
        "retry" => rules::retry(app, actor, Path(id.to_string()))
            .await
            .map(|_| ()),
        "resume" => rules::resume(app, actor, Path(id.to_string()))
            .await
            .map(|_| ()),
        _ => Err(ApiError::not_found("not_found", "no such campaign action")),
    }
}

pub async fn action(
    State(state): State<ConsoleState>,
    op: Operator,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let back = format!("/campaigns/{}", layout::enc(&id));
    if let Err(why) = op.may_write(&headers, &form.csrf) {
        return layout::error_page(
            &op,
            &ApiError::new(StatusCode::FORBIDDEN, "forbidden", why),
            &back,
        );
    }
    match run_action(
        &state,
        crate::admin::actor::Actor(Some(op.principal.name.clone())),
        &id,
        &action,
    )
    .await
    {
        Ok(()) => {
            tracing::info!(id, action, token = %op.principal.name, "console: campaign action");
            Redirect::to(&back).into_response()
        }
        Err(e) => layout::error_page(&op, &e, &back),
    }
}

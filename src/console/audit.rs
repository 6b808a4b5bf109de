//! `/audit`: the audit log (who did what, when), read through
//! `GET /api/v1/audit` in-process: oldest first, `PAGE` entries a page,
//! the next page starting after the last id shown (the API's cursor).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use maud::html;
use serde_json::{json, Value};

use super::layout::{self, field, page, respond, text, when, Nav};
use super::session::Operator;
use super::{from_json, ConsoleState};
use crate::admin::console_api::audit as api;
use crate::admin::error::Query as ApiQuery;

/// Entries per page.
const PAGE: usize = 100;

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Paging {
    /// The page starts after this entry id.
    after: Option<u64>,
}

pub async fn list(
    State(state): State<ConsoleState>,
    op: Operator,
    Query(paging): Query<Paging>,
) -> Response {
    let query = match from_json(json!({"limit": PAGE, "after": paging.after})) {
        Ok(q) => q,
        Err(e) => return layout::error_page(&op, &e, "/audit"),
    };
    let entries = match api::list(State(state.app.clone()), ApiQuery(query)).await {
        Ok((_, Json(v))) => v.as_array().cloned().unwrap_or_default(),
        Err(e) => return layout::error_page(&op, &e, "/"),
    };
    // A full page may have a successor (the API's own rule for `Link`).
    let next = (entries.len() >= PAGE)
        .then(|| entries.last().and_then(|e| e["id"].as_u64()))
        .flatten();
    let body = html! {
        p.hint { "Oldest first. Each change made through the API or this console, with the token that made it." }
        @if entries.is_empty() {
            p { "No entries" @if paging.after.is_some() { " after this point" } "." }
        } @else {
            div.table-wrap { table {
                thead { tr {
                    th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "Action" }
                    th scope="col" { "Target" } th scope="col" { "Details" }
                } }
                tbody {
                    @for e in &entries {
                        tr {
                            td { (when(&e["at"])) }
                            td { (field(e, "actor")) }
                            td { (field(e, "action")) }
                            td { (field(e, "target")) }
                            td { code { (details(&e["details"])) } }
                        }
                    }
                }
            } }
        }
        nav.pager aria-label="Pages" {
            @if paging.after.is_some() { a href="/audit" { "First page" } }
            @if let Some(next) = next { a href={ "/audit?after=" (next) } { "Next page" } }
        }
    };
    respond(StatusCode::OK, page("Audit log", Nav::Audit, &op, body))
}

/// Details as compact JSON (an empty object as a dash).
fn details(v: &Value) -> String {
    match v {
        Value::Object(m) if m.is_empty() => "—".into(),
        other => text(other),
    }
}

//! `/audit`: the audit log (who did what, when), newest page first.

use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use super::layout::{page, respond, Nav};
use super::session::Operator;

pub async fn list(op: Operator) -> Response {
    // The audit log's API (`GET /api/v1/audit`, branch campaign-fleet) is
    // not in this build yet; the page says so instead of a dead link.
    let body = html! {
        p { "This server keeps no audit log yet." }
    };
    respond(StatusCode::OK, page("Audit log", Nav::Audit, &op, body))
}

//! `/versions`: per product, the distribution of firmware versions over
//! devices as a chart (top 5 + others) and a table of every version with
//! its device count (each a link to the device list filtered by it).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use super::chart;
use super::layout::{self, enc, page, respond, Nav};
use super::session::Operator;
use super::ConsoleState;
use crate::admin::error::ApiError;

/// Devices read per store call.
const STEP: usize = 1_000;

type Distribution = BTreeMap<String, BTreeMap<String, u64>>;

async fn distribution(state: &ConsoleState) -> Result<Distribution, ApiError> {
    // The same full scan as `GET /api/v1/versions`, grouped by product.
    Ok(state
        .app
        .store
        .scan(|tx| {
            let mut out = Distribution::new();
            let mut after: Option<String> = None;
            loop {
                let step = tx.devices(after.as_deref(), STEP)?;
                let Some((last, _)) = step.last() else {
                    return Ok(out);
                };
                after = Some(last.clone());
                for (_, device) in step {
                    *out.entry(device.product)
                        .or_default()
                        .entry(device.version)
                        .or_default() += 1;
                }
            }
        })
        .await?)
}

pub async fn page_route(State(state): State<ConsoleState>, op: Operator) -> Response {
    let products = match distribution(&state).await {
        Ok(p) => p,
        Err(e) => return layout::error_page(&op, &e, "/"),
    };
    let body = html! {
        @if products.is_empty() { p { "No devices yet." } }
        @for (product, versions) in &products {
            @let total: u64 = versions.values().sum();
            section aria-labelledby={ "p-" (enc(product)) } {
                h2 id={ "p-" (enc(product)) } { (product) " — " (total) " devices" }
                div.chart {
                    (chart::bars(&format!("Versions of {product}: top {} and others", chart::TOP),
                        &chart::top(versions.iter().map(|(v, n)| (v.clone(), *n)).collect())))
                }
                div.table-wrap { table {
                    thead { tr { th scope="col" { "Version" } th.num scope="col" { "Devices" } th.num scope="col" { "Share" } } }
                    tbody {
                        @for (version, n) in versions {
                            tr {
                                td { a href={ "/devices?product=" (enc(product)) "&version=" (enc(version)) } { (version) } }
                                td.num { (n) }
                                td.num { (n * 100 / total.max(1)) "%" }
                            }
                        }
                    }
                } }
            }
        }
    };
    respond(StatusCode::OK, page("Versions", Nav::Versions, &op, body))
}

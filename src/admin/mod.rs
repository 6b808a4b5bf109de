//! The operator API: JSON over HTTP (axum), under `/api/v1`. One file per
//! route family, each parse → apply (through `ota`) → respond.
//!
//! **API boundary:** paths and fields listed in `../shared/CONTRACT.md` and
//! `docs/ADMIN_API.md` are stable; handlers only translate, the rules live
//! in `ota/`.

pub mod actor; // issue 11 (pinned interface)
mod assignment; // issue 10 item 9
pub mod audit; // issue 10 item 13
mod campaigns;
mod devices;
pub mod error;
mod firmware;
mod firmware_edit; // issue 10 item 12
mod health; // issue 8 item 7f
pub mod http_errors; // issue 8 item 8 (admin half)
mod page;
mod stats; // issue 10 item 12
mod views;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::Router;

use crate::state::App;

/// JSON bodies (device lists of up to 100,000 names) stay under this.
pub(crate) const JSON_BODY_LIMIT: usize = 32 << 20;

pub fn router(app: App) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route(
            "/api/v1/firmware",
            post(firmware::upload)
                .get(firmware::list)
                .layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/api/v1/firmware/{id}",
            get(firmware::show)
                .delete(firmware::delete)
                .patch(firmware_edit::patch),
        )
        .route(
            "/api/v1/devices",
            post(devices::create)
                .get(devices::list)
                .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
                .layer(axum::middleware::from_fn(
                    http_errors::refuse_over_json_limit,
                )),
        )
        .route("/api/v1/devices/{name}", get(devices::show))
        .route("/api/v1/devices/{name}/history", get(devices::history))
        .route("/api/v1/versions", get(devices::versions))
        .route(
            "/api/v1/campaigns",
            post(campaigns::create)
                .get(campaigns::list)
                .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
                .layer(axum::middleware::from_fn(
                    http_errors::refuse_over_json_limit,
                )),
        )
        .route("/api/v1/campaigns/{id}", get(campaigns::show))
        .route("/api/v1/campaigns/{id}/devices", get(campaigns::devices))
        .route("/api/v1/campaigns/{id}/stats", get(stats::campaign))
        .route("/api/v1/firmware/{id}/stats", get(stats::firmware))
        .route("/api/v1/campaigns/{id}/cancel", post(campaigns::cancel))
        .route("/api/v1/metrics", get(devices::metrics))
        .route("/api/v1/audit", get(audit::list))
        .route(
            "/api/v1/products/{product}/firmware",
            put(assignment::put_product)
                .get(assignment::get_product)
                .delete(assignment::delete_product),
        )
        .route(
            "/api/v1/devices/{name}/firmware",
            put(assignment::put_device)
                .get(assignment::get_device)
                .delete(assignment::delete_device),
        )
        .fallback(|| async { error::ApiError::not_found("not_found", "no such endpoint") })
        // Errors axum writes itself (405, 413, rejections) get the JSON body too.
        .layer(axum::middleware::map_response(http_errors::json_errors))
        .with_state(app)
}

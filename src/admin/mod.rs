//! The operator API: JSON over HTTP (axum), under `/api/v1`. One file per
//! route family, each parse → apply (through `ota`) → respond.
//!
//! **API boundary:** paths and fields listed in `../shared/CONTRACT.md` and
//! `docs/ADMIN_API.md` are stable; handlers only translate, the rules live
//! in `ota/`.

pub mod actor;
mod campaigns;
mod devices;
pub mod error;
mod firmware;
mod health; // issue 8 item 7f
pub mod http_errors; // issue 8 item 8 (admin half)
mod page;
mod views;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
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
            get(firmware::show).delete(firmware::delete),
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
        .route("/api/v1/campaigns/{id}/cancel", post(campaigns::cancel))
        .route("/api/v1/metrics", get(devices::metrics))
        .fallback(|| async { error::ApiError::not_found("not_found", "no such endpoint") })
        // Errors axum writes itself (405, 413, rejections) get the JSON body too.
        .layer(axum::middleware::map_response(http_errors::json_errors))
        .with_state(app)
}

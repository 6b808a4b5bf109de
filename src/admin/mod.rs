//! The operator API: JSON over HTTP (axum), under `/api/v1`. One file per
//! route family, each parse → apply (through `ota`) → respond.
//!
//! **API boundary:** paths and fields listed in `../shared/CONTRACT.md` and
//! `docs/ADMIN_API.md` are stable; handlers only translate, the rules live
//! in `ota/`.

mod campaigns;
mod devices;
pub mod error;
mod firmware;
mod health; // issue 8 item 7f
pub mod http_errors; // issue 8 item 8 (admin half)
pub mod openapi; // issue 12 item 3
mod page;
mod psk; // issue 11: device DTLS credentials
pub mod route_table; // issue 12 item 3: the routes, listable
mod schemas; // issue 12 item 3
mod views;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

use crate::state::App;
pub use route_table::RouteTable;

/// JSON bodies (device lists of up to 100,000 names) stay under this.
pub(crate) const JSON_BODY_LIMIT: usize = 32 << 20;

pub fn router(app: App) -> Router {
    routes()
        .into_router()
        .fallback(|| async { error::ApiError::not_found("not_found", "no such endpoint") })
        // Errors axum writes itself (405, 413, rejections) get the JSON body too.
        .layer(axum::middleware::map_response(http_errors::json_errors))
        .with_state(app)
}

/// Every route of the admin listener (one table, so the OpenAPI test can
/// list them; see `route_table.rs`).
pub fn routes() -> RouteTable {
    RouteTable::new()
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
        .route("/api/v1/devices/{name}/psk", axum::routing::put(psk::put))
        .route(
            "/api/v1/psks",
            axum::routing::put(psk::put_bulk).layer(DefaultBodyLimit::max(JSON_BODY_LIMIT)),
        )
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
        .route("/api/v1/openapi.json", get(openapi::serve))
}

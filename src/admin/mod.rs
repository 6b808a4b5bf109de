//! The operator API: JSON over HTTP (axum), under `/api/v1`. One file per
//! route family, each parse → apply (through `ota`) → respond.
//!
//! **API boundary:** paths and fields listed in `../shared/CONTRACT.md` and
//! `docs/ADMIN_API.md` are stable; handlers only translate, the rules live
//! in `ota/`.

pub mod actor; // issue 11 (pinned interface)
pub mod auth; // issue 11 item 3
mod browser; // issue 11 item 6 (critical): Host, Origin, Content-Type
mod campaigns;
pub(crate) mod console_api; // issue 12: the handlers the web console calls
mod devices;
pub mod error;
mod firmware;
mod health; // issue 8 item 7f
pub mod http_errors; // issue 8 item 8 (admin half)
mod page;
pub mod route_table;
mod tokens; // issue 11 item 3
mod views;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;

use crate::state::App;

/// JSON bodies (device lists of up to 100,000 names) stay under this.
pub(crate) const JSON_BODY_LIMIT: usize = 32 << 20;

pub fn router(app: App) -> Router {
    routes()
        .into_router()
        .fallback(|| async { error::ApiError::not_found("not_found", "no such endpoint") })
        // Issue 11: every route but /healthz needs a token (auth.rs); the
        // browser checks (browser.rs) run before it.
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            auth::require_token,
        ))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            browser::guard,
        ))
        // Errors axum writes itself (405, 413, rejections) get the JSON body too.
        .layer(axum::middleware::map_response(http_errors::json_errors))
        .with_state(app)
}

/// Every admin route: the table the router is built from (tests walk it).
pub fn routes() -> route_table::RouteTable {
    route_table::RouteTable::new()
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
        .route("/api/v1/tokens", post(tokens::create).get(tokens::list))
        .route("/api/v1/tokens/{name}", delete(tokens::revoke))
}

/// The paths of [`routes`], for tests.
pub fn route_paths() -> Vec<&'static str> {
    routes().paths().to_vec()
}

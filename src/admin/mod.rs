//! The operator API: JSON over HTTP (axum), under `/api/v1`. One file per
//! route family, each parse → apply (through `ota`) → respond.
//!
//! **API boundary:** paths and fields listed in `../shared/CONTRACT.md` and
//! `docs/ADMIN_API.md` are stable; handlers only translate, the rules live
//! in `ota/`.

pub mod actor;
mod assignment; // issue 10 item 9
pub mod audit; // issue 10 item 13
pub mod auth; // issue 11 item 3
mod backup; // issue 12 item 7
mod body_timeout; // issue 11 item 6: slow request bodies
mod browser; // issue 11 item 6 (critical): Host, Origin, Content-Type
mod campaign_cleanup; // issue 11 item 6
mod campaign_options; // issue 10
mod campaign_rules; // issue 10
mod campaign_views; // issue 10
mod campaigns;
pub(crate) mod console_api; // issue 12: the handlers the web console calls
mod devices;
pub mod error;
mod firmware;
mod firmware_edit; // issue 10 item 12
mod health; // issue 8 item 7f
pub mod http_errors; // issue 8 item 8 (admin half)
pub mod openapi; // issue 12 item 3
mod page;
mod prometheus; // issue 12 item 2
mod psk; // issue 11: device DTLS credentials
mod request_span; // issue 12 item 6
pub mod route_table; // issue 12 item 3: the routes, listable
mod schemas; // issue 12 item 3
mod signing_keys; // issue 11 item 5: manifest signing keys
mod stats; // issue 10 item 12
mod tokens; // issue 11 item 3
mod views;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use axum::Router;

use crate::state::App;
pub use route_table::RouteTable;

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
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            body_timeout::limit,
        ))
        // Errors axum writes itself (405, 413, rejections) get the JSON body too.
        .layer(axum::middleware::map_response(http_errors::json_errors))
        // Issue 12 item 6: a span per request (outermost, so it sees the
        // final status).
        .layer(axum::middleware::from_fn(request_span::trace))
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
        .route(
            "/api/v1/campaigns/{id}",
            get(campaigns::show).delete(campaign_cleanup::delete),
        )
        .route(
            "/api/v1/campaigns/{id}/cancel-unseen",
            post(campaign_cleanup::cancel_unseen),
        )
        .route("/api/v1/campaigns/{id}/devices", get(campaigns::devices))
        .route("/api/v1/campaigns/{id}/stats", get(stats::campaign))
        .route("/api/v1/firmware/{id}/stats", get(stats::firmware))
        .route("/api/v1/campaigns/{id}/cancel", post(campaigns::cancel))
        .route("/api/v1/campaigns/{id}/retry", post(campaign_rules::retry))
        .route(
            "/api/v1/campaigns/{id}/resume",
            post(campaign_rules::resume),
        )
        .route(
            "/api/v1/campaigns/{id}/devices/{name}/cancel",
            post(campaign_rules::cancel_device),
        )
        .route(
            "/api/v1/campaigns/{id}/devices/{name}/retry",
            post(campaign_rules::retry_device),
        )
        .route("/api/v1/metrics", get(devices::metrics))
        .route("/api/v1/openapi.json", get(openapi::serve))
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
        .route(
            "/api/v1/products/{product}/signing-key",
            post(signing_keys::create)
                .get(signing_keys::show)
                .delete(signing_keys::delete),
        )
        .route("/api/v1/tokens", post(tokens::create).get(tokens::list))
        .route("/api/v1/tokens/{name}", delete(tokens::revoke))
        .route("/metrics", get(prometheus::metrics))
        .route("/api/v1/backup", get(backup::download))
}

/// The paths of [`routes`], for tests.
pub fn route_paths() -> Vec<&'static str> {
    routes().paths().to_vec()
}

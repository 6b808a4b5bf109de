//! The operators' web console (issue 12 item 1), served by the admin
//! listener at `/`: server-rendered HTML (maud, which escapes every
//! interpolated value, so device-supplied text cannot inject markup) and
//! one small embedded script. Pages render from the same reads and writes
//! the API uses: they call the admin handlers (`crate::admin::firmware`,
//! `campaigns`, `devices`) in-process and turn their JSON into HTML, so the
//! console shows exactly what `/api/v1` says, new fields included.
//!
//! One file per page family: `login.rs` (login form, logout, `/`),
//! `firmware.rs`, `campaigns.rs` (+ `campaign_form.rs`, `live.rs`),
//! `devices.rs`, `versions.rs` (+ `chart.rs`), `audit.rs`; `session.rs` holds the
//! sessions, cookie and CSRF rules, `layout.rs` the page shell and assets.
//!
//! **API boundary:** the paths `/`, `/firmware`, `/campaigns/{id}`,
//! `/devices/{name}` and the login form's `token` input are in
//! `../shared/CONTRACT.md`; the rest is documented in `docs/CONSOLE.md`.

mod audit;
mod auth;
mod campaign_form;
mod campaigns;
mod chart;
mod devices;
mod firmware;
mod layout;
mod live;
mod login;
pub mod session;
mod versions;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

use crate::state::App;

/// What every console handler gets.
#[derive(Clone)]
pub struct ConsoleState {
    pub app: App,
    pub sessions: Arc<session::Sessions>,
}

/// Form bodies (logins, campaign forms with up to 10,000 device names)
/// stay under this; the upload route streams and has the API's limit.
const FORM_BODY_LIMIT: usize = 2 << 20;

/// The console's routes; `server::start` merges them beside the API's.
pub fn router(app: App) -> Router {
    let state = ConsoleState {
        app,
        sessions: Arc::new(session::Sessions::default()),
    };
    Router::new()
        .route("/", get(login::home))
        .route("/login", post(login::login))
        .route("/logout", post(login::logout))
        .route("/console/console.css", get(layout::css))
        .route("/console/console.js", get(layout::js))
        .route("/firmware", get(firmware::list))
        .route("/firmware/{id}", get(firmware::show))
        .route("/firmware/{id}/delete", post(firmware::delete))
        .route(
            "/console/upload",
            post(firmware::upload).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/campaigns",
            get(campaigns::list).post(campaign_form::create),
        )
        .route("/campaigns/new", get(campaign_form::new))
        .route("/campaigns/{id}", get(campaigns::show))
        .route("/campaigns/{id}/live", get(live::fragment))
        .route("/campaigns/{id}/{action}", post(campaigns::action))
        .route("/devices", get(devices::list))
        .route("/devices/{name}", get(devices::show))
        .route("/versions", get(versions::page_route))
        .route("/audit", get(audit::list))
        .layer(DefaultBodyLimit::max(FORM_BODY_LIMIT))
        .layer(axum::middleware::map_response(layout::security_headers))
        .with_state(state)
}

/// A handler's query struct (private fields, `Deserialize`) built from
/// JSON, the way the API builds it from a query string.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
) -> Result<T, crate::admin::error::ApiError> {
    serde_json::from_value(value)
        .map_err(|e| crate::admin::error::ApiError::bad_request(e.to_string()))
}

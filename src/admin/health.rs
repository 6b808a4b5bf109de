//! `GET /healthz` (issue 8, item 7a/7f): 200 while serving and writes
//! commit; 503 with the JSON error body while the write path is down
//! (for example after a disk-full commit, until the database is reopened
//! and a probe write succeeds).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::state::App;

#[utoipa::path(get, operation_id = "health_healthz", path = "/healthz", tag = "health",
    responses(
        (status = 200, description = "Serving, and database writes commit", body = super::schemas::Health),
        (status = 503, description = "Database writes fail (e.g. disk full); recovers by itself", body = super::schemas::Health),
    ))]
pub async fn healthz(State(app): State<App>) -> (StatusCode, Json<Value>) {
    match app.store.write_health() {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({"status": "ok", "write_path": "ok"})),
        ),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "unavailable",
                "write_path": "failing",
                "error": {
                    "code": "write_path_failing",
                    "message": format!("writes to the database fail: {why}"),
                },
            })),
        ),
    }
}

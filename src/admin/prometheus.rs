//! `GET /metrics` (issue 12 item 2): every `lwota_` metric in the
//! Prometheus text format, rendered on request from the process-wide
//! recorder (`crate::telemetry`). Gauges that come from the database
//! (campaigns by status) and the writer's counters are read at scrape
//! time. Whether it needs an admin token is `[admin] metrics_public`.
//!
//! `/api/v1/metrics` (the JSON writer counters) stays as it was; the same
//! counters are here as `lwota_store_*_total`.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::error::ApiResult;
use crate::model::CampaignStatus;
use crate::ota::campaign::effective_status;
use crate::state::App;
use crate::telemetry;

/// Campaigns read per step while counting them.
const STEP: usize = 1_000;

#[utoipa::path(get, operation_id = "metrics_prometheus", path = "/metrics", tag = "metrics",
    responses(
        (status = 200, description = "Prometheus text exposition format (docs/METRICS.md)",
            content_type = "text/plain; version=0.0.4", body = String),
        (status = 500, description = "Database unreadable", body = super::schemas::ErrorBody),
    ))]
pub async fn metrics(State(app): State<App>) -> ApiResult<impl IntoResponse> {
    let by_status = app
        .store
        .scan(|tx| {
            let mut counts = [0u64; 5];
            let mut after = None;
            loop {
                let step = tx.campaigns(after, STEP)?;
                let Some(last) = step.last() else {
                    return Ok(counts);
                };
                after = Some(last.id);
                for c in &step {
                    let slot = match effective_status(c, &tx.campaign_counts(c.id)?) {
                        CampaignStatus::Running => 0,
                        CampaignStatus::Finished => 1,
                        CampaignStatus::Cancelled => 2,
                        CampaignStatus::Scheduled => 3,
                        CampaignStatus::Paused => 4,
                    };
                    counts[slot] += 1;
                }
            }
        })
        .await?;
    for (status, n) in ["running", "finished", "cancelled", "scheduled", "paused"]
        .iter()
        .zip(by_status)
    {
        metrics::gauge!(telemetry::CAMPAIGNS, "status" => *status).set(n as f64);
    }
    let stats = app.store.stats();
    metrics::gauge!(telemetry::WRITER_QUEUE).set(stats.queued.load(Ordering::Relaxed) as f64);
    metrics::counter!(telemetry::COMMITS).absolute(stats.commits.load(Ordering::Relaxed));
    metrics::counter!(telemetry::WRITE_JOBS).absolute(stats.jobs.load(Ordering::Relaxed));
    metrics::counter!(telemetry::ISOLATED_FAILURES)
        .absolute(stats.isolated_failures.load(Ordering::Relaxed));
    let body = telemetry::handle().map_or_else(String::new, |h| h.render());
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    ))
}

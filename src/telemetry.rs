//! Prometheus metrics (issue 12 item 2): the names, their help texts and
//! the process-wide recorder. Code records with the `metrics` macros
//! (`metrics::counter!(telemetry::POLLS).increment(1)`); the admin
//! listener renders `GET /metrics` from [`handle`] (no HTTP listener of
//! the exporter's own). Every name here is documented in docs/METRICS.md.
//!
//! The recorder is global to the process: two servers in one process (as
//! in tests) add into the same series.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

// CoAP transport (server shards).
pub const DATAGRAMS_RECEIVED: &str = "lwota_coap_datagrams_received_total";
pub const DATAGRAMS_SENT: &str = "lwota_coap_datagrams_sent_total";
/// Label `reason`.
pub const DATAGRAMS_DROPPED: &str = "lwota_coap_datagrams_dropped_total";
/// Labels `resource`, `code` (e.g. `2.05`).
pub const COAP_REQUESTS: &str = "lwota_coap_requests_total";
/// Per-shard gauges, label `shard`.
pub const DEDUP_ENTRIES: &str = "lwota_coap_dedup_entries";
pub const OBSERVE_RELATIONS: &str = "lwota_coap_observe_relations";
pub const BLOCK1_BODIES: &str = "lwota_coap_block1_bodies";
pub const OUTGOING_EXCHANGES: &str = "lwota_coap_outgoing_exchanges";

// OTA.
pub const BLOCK2_BLOCKS: &str = "lwota_block2_blocks_served_total";
pub const BLOCK2_BYTES: &str = "lwota_block2_bytes_served_total";
pub const POLLS: &str = "lwota_polls_total";
pub const REPORTS: &str = "lwota_reports_total";
/// Issue 11 item 5: COSE_Sign1 manifests signed for task answers (the
/// signing cache's misses).
pub const MANIFESTS_SIGNED: &str = "lwota_manifests_signed_total";
/// Label `to` (the new state).
pub const TASK_TRANSITIONS: &str = "lwota_task_transitions_total";
/// Label `status`; computed at scrape time.
pub const CAMPAIGNS: &str = "lwota_campaigns";

// Storage.
pub const WRITER_QUEUE: &str = "lwota_store_writer_queue_depth";
pub const COMMIT_SECONDS: &str = "lwota_store_commit_seconds";
pub const JOBS_PER_COMMIT: &str = "lwota_store_jobs_per_commit";
pub const COMMITS: &str = "lwota_store_commits_total";
pub const WRITE_JOBS: &str = "lwota_store_write_jobs_total";
pub const ISOLATED_FAILURES: &str = "lwota_store_isolated_write_failures_total";

// Admin HTTP.
/// Labels `method`, `status`.
pub const HTTP_REQUESTS: &str = "lwota_http_requests_total";

/// How often histograms are folded (bounds their memory when nobody
/// scrapes).
pub const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The recorder's handle, installing the recorder on first use. `None`
/// when another recorder was installed first (an embedding program's).
pub fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE.get_or_init(install).as_ref()
}

fn install() -> Option<PrometheusHandle> {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(COMMIT_SECONDS.into()),
            &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ],
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(JOBS_PER_COMMIT.into()),
                &[
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0, 4096.0,
                ],
            )
        });
    let builder = match builder {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!("metrics disabled: {e}");
            return None;
        }
    };
    match builder.install_recorder() {
        Ok(handle) => {
            describe();
            Some(handle)
        }
        Err(e) => {
            tracing::warn!("metrics: another recorder is installed: {e}");
            None
        }
    }
}

/// Runs upkeep until the returned task is aborted or the runtime ends.
pub fn spawn_upkeep() -> Option<tokio::task::JoinHandle<()>> {
    let handle = handle()?;
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_EVERY);
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    }))
}

fn describe() {
    describe_counter!(
        DATAGRAMS_RECEIVED,
        "UDP datagrams received by the CoAP shards"
    );
    describe_counter!(DATAGRAMS_SENT, "UDP datagrams sent by the CoAP shards");
    describe_counter!(
        DATAGRAMS_DROPPED,
        "Datagrams dropped without an answer, by reason"
    );
    describe_counter!(
        COAP_REQUESTS,
        "CoAP requests handled, by resource and response code"
    );
    describe_gauge!(
        DEDUP_ENTRIES,
        "Remembered exchanges (deduplication) per shard"
    );
    describe_gauge!(OBSERVE_RELATIONS, "Observe relations served per shard");
    describe_gauge!(BLOCK1_BODIES, "Block1 bodies being reassembled per shard");
    describe_gauge!(OUTGOING_EXCHANGES, "Outgoing requests in flight per shard");
    describe_counter!(BLOCK2_BLOCKS, "Firmware blocks served (Block2)");
    describe_counter!(
        BLOCK2_BYTES,
        Unit::Bytes,
        "Firmware bytes served (Block2 payloads)"
    );
    describe_counter!(POLLS, "Device polls handled");
    describe_counter!(
        MANIFESTS_SIGNED,
        "Manifests signed (COSE_Sign1) for task answers of products with a signing key (cache misses)"
    );
    describe_counter!(REPORTS, "Device reports handled");
    describe_counter!(TASK_TRANSITIONS, "Task state changes, by new state");
    describe_gauge!(CAMPAIGNS, "Campaigns by status (at scrape time)");
    describe_gauge!(WRITER_QUEUE, "Write jobs queued for the writer thread");
    describe_histogram!(
        COMMIT_SECONDS,
        Unit::Seconds,
        "Time to run and commit one write batch"
    );
    describe_histogram!(JOBS_PER_COMMIT, "Write jobs in one committed batch");
    describe_counter!(COMMITS, "Committed write transactions (fsyncs)");
    describe_counter!(WRITE_JOBS, "Write jobs submitted to the writer");
    describe_counter!(
        ISOLATED_FAILURES,
        "Write jobs that failed alone while their batch committed"
    );
    describe_counter!(HTTP_REQUESTS, "Admin HTTP requests, by method and status");
}

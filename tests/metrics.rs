//! Issue 12 item 2: `GET /metrics` after a simulated rollout. The recorder
//! is process-wide, so this file has one test (its own process) and still
//! compares deltas between two scrapes.

use crate::common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// Sum of the samples of `name` whose labels include all of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let all = labels
                .iter()
                .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")));
            all.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

#[test]
fn counters_after_a_simulated_rollout_equal_what_the_fleet_did() {
    const DEVICES: usize = 20;
    const SIZE: usize = 5000; // 5 blocks of 1024
    let server = TestServer::start();
    let devices: Vec<Value> = (0..DEVICES)
        .map(|i| json!({"name": format!("mx{i:05}"), "product": "meter", "version": "1.0"}))
        .collect();
    let (status, body) = server.post_json("/api/v1/devices", &json!(devices));
    assert_eq!(status, 201, "{body}");
    let fw = server.upload_ok("meter", "2.0", &image(SIZE, 7));
    let (status, body) = server.post_json(
        "/api/v1/campaigns",
        &json!({"firmware": fw, "target": {"all": true}}),
    );
    assert_eq!(status, 201, "{body}");

    let (status, before) = server.get_text("/metrics");
    assert_eq!(status, 200);
    let report = run_sim(sim_config(&server, DEVICES, "mx", "meter", "1.0"));
    assert_eq!(report.updated(), DEVICES, "{:?}", report.devices);
    server.wait_for("/api/v1/campaigns/1", Duration::from_secs(10), |c| {
        c["status"] == "finished"
    });
    let (status, after) = server.get_text("/metrics");
    assert_eq!(status, 200);
    let delta = |name: &str, labels: &[(&str, &str)]| {
        sample(&after, name, labels) - sample(&before, name, labels)
    };

    let polls = report.polls() as f64;
    let blocks = report.blocks() as f64;
    let reports: usize = report
        .devices
        .iter()
        .map(|d| d.acked.iter().filter(|a| a.state != "initiated").count())
        .sum();
    // At least every block of every image; more when a loaded machine
    // made a device give up a download and fetch the image again (what
    // matters below is that the server counted what the fleet fetched).
    assert!(blocks >= (DEVICES * SIZE.div_ceil(1024)) as f64, "{blocks}");
    assert_eq!(delta("lwota_polls_total", &[]), polls);
    assert_eq!(delta("lwota_reports_total", &[]), reports as f64);
    assert_eq!(delta("lwota_block2_blocks_served_total", &[]), blocks);
    let bytes = delta("lwota_block2_bytes_served_total", &[]);
    assert!(
        bytes >= (DEVICES * SIZE) as f64 && bytes <= blocks * 1024.0,
        "{bytes}"
    );
    let requests = |resource, code| {
        delta(
            "lwota_coap_requests_total",
            &[("resource", resource), ("code", code)],
        )
    };
    assert_eq!(requests("poll", "2.05"), polls);
    assert_eq!(requests("firmware", "2.05"), blocks);
    assert_eq!(requests("report", "2.04"), reports as f64);
    // Every device goes through these states exactly once; `downloading`
    // may be skipped when the `downloaded` report overtakes the block
    // progress write.
    for state in ["initiated", "downloaded", "verified", "updating", "updated"] {
        assert_eq!(
            delta("lwota_task_transitions_total", &[("to", state)]),
            DEVICES as f64,
            "transitions to {state}"
        );
    }
    assert!(delta("lwota_task_transitions_total", &[("to", "downloading")]) <= DEVICES as f64);
    assert_eq!(
        delta("lwota_task_transitions_total", &[("to", "failed")]),
        0.0
    );
    // Every request is one datagram in and (at least) one out.
    let handled = polls + blocks + reports as f64;
    assert!(delta("lwota_coap_datagrams_received_total", &[]) >= handled);
    assert!(delta("lwota_coap_datagrams_sent_total", &[]) >= handled);
    // Scrape-time and writer metrics.
    assert_eq!(
        sample(&after, "lwota_campaigns", &[("status", "finished")]),
        1.0
    );
    assert_eq!(
        sample(&after, "lwota_campaigns", &[("status", "running")]),
        0.0
    );
    assert!(delta("lwota_store_commits_total", &[]) > 0.0);
    assert!(delta("lwota_store_jobs_per_commit_count", &[]) > 0.0);
    assert!(delta("lwota_store_commit_seconds_count", &[]) > 0.0);
    assert!(after.contains("lwota_store_writer_queue_depth"));
    assert!(after.contains("lwota_coap_dedup_entries{shard=\"0\"}"));
    assert!(after.contains("# HELP lwota_polls_total"));
    assert!(delta("lwota_http_requests_total", &[("route", "/metrics")]) >= 1.0);
}

//! Issue 11 item 6 (audit) and item 4 (abuse limits) over real sockets.

mod common;

use std::time::Duration;

use coap_lite::ResponseType;
use common::device::{code, task_of, Device};
use common::*;
use serde_json::json;

/// A server with one device `d1` of product `p` that has a task for a
/// 10,000-byte image; returns the server, the device, its task id and URI.
fn with_task() -> (TestServer, Device, u64, String, String) {
    let server = TestServer::start();
    let fw = server.upload_ok("p", "2.0", &image(10_000, 7));
    let (status, body) = server.post_json(
        "/api/v1/devices",
        &json!({"name": "d1", "product": "p", "version": "1.0"}),
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = server.post_json(
        "/api/v1/campaigns",
        &json!({"firmware": fw, "target": {"devices": ["d1"]}}),
    );
    assert_eq!(status, 201, "{body}");
    let mut device = Device::new(server.coap, "d1", "p");
    let (task, uri) = task_of(&device.poll("1.0"));
    (server, device, fw, task, uri)
}

#[test]
fn task_uris_are_checked_against_the_real_task() {
    let (server, mut device, fw, task, uri) = with_task();
    assert_eq!(uri, format!("/ota/fw/{fw}/d1/{task}"));
    assert_eq!(code(&device.get_block(&uri, 0, 6)), ResponseType::Content);
    let long = "x".repeat(200);
    for bad in [
        format!("/ota/fw/{fw}/{long}/{task}"),
        format!("/ota/fw/{fw}/d2/{task}"),
        format!("/ota/fw/{fw}/d1/c99"),
        format!("/ota/fw/{fw}/d1/nope"),
        format!("/ota/fw/{fw}/d%201/{task}"),
    ] {
        let answer = device.get_block(&bad, 0, 6);
        assert_eq!(code(&answer), ResponseType::NotFound, "{bad}");
    }
    // Another firmware's id with a real task: refused too.
    let other = server.upload_ok("p", "3.0", &image(500, 8));
    let answer = device.get_block(&format!("/ota/fw/{other}/d1/{task}"), 0, 6);
    assert_eq!(code(&answer), ResponseType::NotFound);
    // The plain firmware URI needs no task.
    assert_eq!(
        code(&device.get_block(&format!("/ota/fw/{other}"), 0, 6)),
        ResponseType::Content
    );
}

#[test]
fn progress_counts_bytes_fetched_not_the_block_number() {
    let (server, mut device, _fw, _task, uri) = with_task();
    // Only the last 1024-byte block (bytes 9216..10000): 784 bytes, 7%.
    let last = device.get_block(&uri, 9, 6);
    assert_eq!(code(&last), ResponseType::Content);
    assert_eq!(last.payload.len(), 784);
    let body = server.wait_for("/api/v1/devices/d1", Duration::from_secs(5), |d| {
        d["task"]["state"] == "downloading"
    });
    let progress = body["task"]["progress"].as_u64().unwrap();
    assert!(
        progress <= 8,
        "progress from bytes, not block 9 of 10: {body}"
    );
    // The whole image: 100%.
    for n in 0..9 {
        device.get_block(&uri, n, 6);
    }
    server.wait_for("/api/v1/devices/d1", Duration::from_secs(5), |d| {
        d["task"]["progress"] == 100
    });
}

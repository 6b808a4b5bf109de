//! Issue 11 item 6 (audit) and item 4 (abuse limits) over real sockets.

use crate::common;

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

#[test]
fn control_characters_in_a_report_error_are_refused() {
    let (server, mut device, _fw, task, _uri) = with_task();
    let evil = "\u{1b}]0;pwned\u{7}\u{1b}[2J";
    let answer = device.report(&task, "failed", &[("error", coap_lite_text(evil))]);
    assert_eq!(answer, ResponseType::BadRequest);
    let (_, d) = server.get("/api/v1/devices/d1");
    assert_ne!(d["task"]["state"], "failed", "nothing changed: {d}");
    assert_eq!(
        device.report(
            &task,
            "failed",
            &[("error", coap_lite_text("flash: bad crc"))]
        ),
        ResponseType::Changed
    );
}

fn coap_lite_text(s: &str) -> ciborium::Value {
    ciborium::Value::Text(s.into())
}

#[test]
fn campaigns_are_deleted_once_over_and_unseen_devices_do_not_block_them() {
    let server = TestServer::start();
    let fw = server.upload_ok("p", "2.0", &image(2_000, 3));
    let devices: Vec<_> = ["seen", "ghost1", "ghost2"]
        .iter()
        .map(|n| json!({"name": n, "product": "p", "version": "1.0"}))
        .collect();
    assert_eq!(server.post_json("/api/v1/devices", &json!(devices)).0, 201);
    let (status, c) = server.post_json(
        "/api/v1/campaigns",
        &json!({"firmware": fw, "target": {"all": true}}),
    );
    assert_eq!(status, 201, "{c}");
    let id = c["id"].as_u64().unwrap();
    let mut seen = Device::new(server.coap, "seen", "p");
    let (task, _uri) = task_of(&seen.poll("1.0"));
    assert_eq!(seen.report(&task, "updated", &[]), ResponseType::Changed);

    // Still running (two ghosts queued): no delete, firmware in use.
    let (status, body) = server.delete(&format!("/api/v1/campaigns/{id}"));
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "campaign_running");
    assert_eq!(server.delete(&format!("/api/v1/firmware/{fw}")).0, 409);

    let (status, body) =
        server.post_json(&format!("/api/v1/campaigns/{id}/cancel-unseen"), &json!({}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cancelled"], 2);
    let (_, c) = server.get(&format!("/api/v1/campaigns/{id}"));
    assert_eq!(c["status"], "finished", "{c}");
    assert_eq!(c["counts"]["updated"], 1, "{c}");

    assert_eq!(server.delete(&format!("/api/v1/campaigns/{id}")).0, 204);
    assert_eq!(server.get(&format!("/api/v1/campaigns/{id}")).0, 404);
    assert_eq!(server.delete(&format!("/api/v1/campaigns/{id}")).0, 404);
    assert_eq!(server.delete(&format!("/api/v1/firmware/{fw}")).0, 204);
    // The devices and their history stay.
    assert_eq!(server.get("/api/v1/devices/ghost1").0, 200);
}

#[test]
fn source_version_lists_are_bounded() {
    let server = TestServer::start();
    let fw = server.upload_ok("p", "2.0", &image(100, 3));
    let many: Vec<String> = (0..1_001).map(|i| format!("1.{i}")).collect();
    for target in [
        json!({"source_versions": many}),
        json!({"source_versions": ["x".repeat(65)]}),
        json!({"source_versions": ["1.0\u{1b}[2J"]}),
    ] {
        let (status, body) = server.post_json(
            "/api/v1/campaigns",
            &json!({"firmware": fw, "target": target}),
        );
        assert_eq!(status, 400, "{body}");
    }
    let ok: Vec<String> = (0..1_000).map(|i| format!("1.{i}")).collect();
    let (status, body) = server.post_json(
        "/api/v1/campaigns",
        &json!({"firmware": fw, "target": {"source_versions": ok}}),
    );
    assert_eq!(status, 201, "{body}");
}

#[test]
fn slow_http_clients_cannot_starve_healthz() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Instant;
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.admin.header_timeout_s = 1;
    config.admin.body_timeout_s = 1;
    config.admin.max_connections = 64;
    let server = TestServer::start_with(config, None);
    // 300 requests that never finish their headers.
    let mut slow: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect(server.http).ok())
        .collect();
    for s in &mut slow {
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n");
    }
    let start = Instant::now();
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(2))
        .build();
    loop {
        if let Ok(r) = agent.get(&server.url("/healthz")).call() {
            assert_eq!(r.status(), 200);
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "/healthz never answered"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The half-sent requests were cut off (closed, or refused at once).
    let first = &mut slow[0];
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 256];
    let n = first.read(&mut buf).unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
    drop(slow);

    // A body that stalls half-way is failed, not waited for.
    let mut s = TcpStream::connect(server.http).unwrap();
    let head = format!(
        "POST /api/v1/devices HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[{{\"name\"",
        server.token
    );
    s.write_all(head.as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let n = s.read(&mut buf).unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 4") || n == 0, "{text}");
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[test]
fn self_registration_is_rate_limited_per_source() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.abuse.auto_register_per_min_per_source = 3;
    let server = TestServer::start_with(config, None);
    let mut known = Device::new(server.coap, "known", "p");
    assert!(known.poll("1.0").is_empty());
    for i in 0..2 {
        let mut d = Device::new(server.coap, &format!("fake{i}"), "p");
        assert!(d.poll("1.0").is_empty());
    }
    let mut d = Device::new(server.coap, "fake9", "p");
    let body = common::device::cbor(&[
        ("product", common::device::text("p")),
        ("version", common::device::text("1.0")),
    ]);
    let answer = d.post("poll", body);
    assert_eq!(code(&answer), ResponseType::TooManyRequests);
    assert_eq!(server.get("/api/v1/devices/fake9").0, 404, "not registered");
    // A registered device still polls.
    assert!(known.poll("1.0").is_empty());
}

#[test]
fn datagrams_per_source_are_rate_limited() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.abuse.requests_per_s = 1;
    config.abuse.burst = 3;
    let server = TestServer::start_with(config, None);
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    for mid in 0..10u8 {
        // CON GET /.well-known/core, Message ID `mid`.
        let mut datagram = vec![0x40, 0x01, 0x00, mid, 0xbb];
        datagram.extend_from_slice(b".well-known");
        datagram.push(0x04);
        datagram.extend_from_slice(b"core");
        socket.send_to(&datagram, server.coap).unwrap();
    }
    let mut answers = 0;
    let mut buf = [0u8; 2048];
    while socket.recv_from(&mut buf).is_ok() {
        answers += 1;
    }
    assert!((3..=4).contains(&answers), "answered {answers} of 10");
    // Another source is not affected.
    let mut other = Device::new(server.coap, "d", "p");
    assert!(other.poll("1.0").is_empty());
}

#[test]
fn self_registration_stops_at_the_device_cap_across_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.abuse.auto_register_max_devices = 2;
    let mut server = TestServer::start_with(config.clone(), None);
    for name in ["cap-a", "cap-b"] {
        assert!(Device::new(server.coap, name, "p").poll("1.0").is_empty());
    }
    let refused = |server: &TestServer, name: &str| {
        let mut d = Device::new(server.coap, name, "p");
        let body = common::device::cbor(&[
            ("product", common::device::text("p")),
            ("version", common::device::text("1.0")),
        ]);
        let answer = d.post("poll", body);
        assert_eq!(code(&answer), ResponseType::ServiceUnavailable);
        let text = String::from_utf8_lossy(&answer.payload).into_owned();
        assert!(text.contains("device limit"), "{text}");
        assert_eq!(server.get(&format!("/api/v1/devices/{name}")).0, 404);
    };
    refused(&server, "cap-c");
    let (_, metrics) = server.get_text("/metrics");
    assert!(
        metrics.contains("lwota_coap_registrations_capped_total"),
        "{metrics}"
    );
    // Known devices still poll.
    assert!(Device::new(server.coap, "cap-a", "p")
        .poll("1.0")
        .is_empty());

    // The count comes from the store: a restart does not reset it.
    server.stop();
    let server = TestServer::start_with(config, None);
    refused(&server, "cap-d");
    assert!(Device::new(server.coap, "cap-b", "p")
        .poll("1.0")
        .is_empty());
    drop(tmp);
}

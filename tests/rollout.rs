//! End-to-end OTA: campaigns, simulated fleets, the device task state
//! machine over real CoAP, timeouts with an injected clock, cancellation,
//! idempotent reports and bad input.

use crate::common;

use std::time::Duration;

use coap_lite::ResponseType;
use common::device::{task_of, text, Device};
use common::*;
use serde_json::{json, Value};

fn campaign(server: &TestServer, firmware: u64, target: Value) -> Value {
    let (status, c) = server.post_json(
        "/api/v1/campaigns",
        &json!({"firmware": firmware, "target": target}),
    );
    assert_eq!(status, 201, "{c}");
    c
}

fn register(server: &TestServer, prefix: &str, n: usize, product: &str, version: &str) {
    let list: Vec<Value> = (0..n)
        .map(|i| json!({"name": format!("{prefix}{i:05}"), "product": product, "version": version}))
        .collect();
    let (status, body) = server.post_json("/api/v1/devices", &json!(list));
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["created"], n);
}

fn task_state(server: &TestServer, campaign: u64, device: &str) -> Value {
    let (_, list) = server.get(&format!("/api/v1/campaigns/{campaign}/devices"));
    list.as_array()
        .unwrap()
        .iter()
        .find(|t| t["device"] == device)
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn campaign_updates_50_devices_and_leaves_the_other_5_alone() {
    let server = TestServer::start();
    register(&server, "a-", 50, "meter", "1.0");
    register(&server, "b-", 5, "meter", "2.0");
    let fw = server.upload_ok("meter", "3.0", &image(40_000, 1));
    let c = campaign(&server, fw, json!({"source_versions": ["1.0"]}));
    assert_eq!(c["total"], 50);
    assert_eq!(c["counts"]["queued"], 50);
    let cid = c["id"].as_u64().unwrap();

    let mut updaters = sim_config(&server, 50, "a-", "meter", "1.0");
    updaters.duration = Duration::from_secs(60);
    let mut bystanders = sim_config(&server, 5, "b-", "meter", "2.0");
    bystanders.duration = Duration::from_secs(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (a, b) =
        rt.block_on(async { tokio::join!(lwota::sim::run(updaters), lwota::sim::run(bystanders)) });
    assert_eq!(
        a.updated(),
        50,
        "{:?}",
        a.devices
            .iter()
            .filter(|d| d.updated == 0)
            .collect::<Vec<_>>()
    );
    assert_eq!(b.updated(), 0);
    assert!(b.blocks() == 0, "bystanders downloaded nothing");

    let c = server.wait_for(
        &format!("/api/v1/campaigns/{cid}"),
        Duration::from_secs(10),
        |c| c["status"] == "finished",
    );
    assert_eq!(c["counts"]["updated"], 50, "{c}");
    let (_, versions) = server.get("/api/v1/versions?product=meter");
    assert_eq!(versions, json!({"3.0": 50, "2.0": 5}));

    // History shows each step, oldest first.
    let (_, history) = server.get("/api/v1/devices/a-00007/history");
    let steps: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["to"].as_str())
        .collect();
    for state in [
        "queued",
        "initiated",
        "downloading",
        "downloaded",
        "verified",
        "updating",
        "updated",
    ] {
        assert!(steps.contains(&state), "{state} missing from {steps:?}");
    }
    let times: Vec<u64> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["at_ms"].as_u64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first");
    let (_, untouched) = server.get("/api/v1/devices/b-00003");
    assert_eq!(untouched["version"], "2.0");
    assert!(untouched["task"].is_null(), "{untouched}");
    // Firmware shows devices per state.
    let (_, f) = server.get(&format!("/api/v1/firmware/{fw}"));
    assert_eq!(f["counts"]["updated"], 50);
}

#[test]
fn device_that_reboots_on_the_new_version_counts_as_updated_even_if_its_report_was_lost() {
    let server = TestServer::start();
    register(&server, "d", 1, "p", "1.0");
    let fw = server.upload_ok("p", "2.0", &image(3000, 2));
    let c = campaign(&server, fw, json!({"devices": ["d00000"]}));
    let cid = c["id"].as_u64().unwrap();
    let mut dev = Device::new(server.coap, "d00000", "p");
    let (task, _uri) = task_of(&dev.poll("1.0"));
    assert_eq!(task_state(&server, cid, "d00000")["state"], "initiated");
    assert_eq!(dev.report(&task, "updating", &[]), ResponseType::Changed);
    // The `updated` report is lost; the device reboots and polls.
    assert!(dev.poll("2.0").is_empty(), "nothing more to do");
    let t = task_state(&server, cid, "d00000");
    assert_eq!(t["state"], "updated", "{t}");
    assert_eq!(t["progress"], 100);
    let (_, d) = server.get("/api/v1/devices/d00000");
    assert_eq!(d["version"], "2.0");
    // A late `updated` report is a harmless repeat; going back is refused.
    assert_eq!(dev.report(&task, "updated", &[]), ResponseType::Changed);
    assert_eq!(
        dev.report(&task, "downloading", &[]),
        ResponseType::Conflict
    );
}

#[test]
fn task_times_out_after_15_minutes_without_a_sign_of_life() {
    let server = TestServer::start_with_manual_clock();
    register(&server, "t", 2, "p", "1.0");
    let fw = server.upload_ok("p", "2.0", &image(3000, 3));
    let cid = campaign(&server, fw, json!({"all": true}))["id"]
        .as_u64()
        .unwrap();
    let mut quiet = Device::new(server.coap, "t00000", "p");
    let mut alive = Device::new(server.coap, "t00001", "p");
    let (_, _) = task_of(&quiet.poll("1.0"));
    let (task, _) = task_of(&alive.poll("1.0"));

    server.advance(Duration::from_secs(10 * 60));
    assert_eq!(
        alive.report(
            &task,
            "downloading",
            &[("progress", ciborium::Value::Integer(30.into()))]
        ),
        ResponseType::Changed
    );
    server.advance(Duration::from_secs(6 * 60)); // 16 min after the first poll
    let path = format!("/api/v1/campaigns/{cid}/devices?state=failed");
    let failed = server.wait_for(&path, Duration::from_secs(10), |l| {
        l.as_array().is_some_and(|a| !a.is_empty())
    });
    assert_eq!(failed.as_array().unwrap().len(), 1, "{failed}");
    assert_eq!(failed[0]["device"], "t00000");
    assert_eq!(failed[0]["error"], "timeout");
    assert_eq!(task_state(&server, cid, "t00001")["state"], "downloading");

    server.advance(Duration::from_secs(10 * 60)); // 16 min after the report
    server.wait_for(&path, Duration::from_secs(10), |l| {
        l.as_array().is_some_and(|a| a.len() == 2)
    });
    assert!(
        quiet.poll("1.0").is_empty(),
        "a failed task is not handed out again"
    );
}

#[test]
fn cancel_mid_download_fails_the_task_and_later_polls_get_nothing() {
    let server = TestServer::start();
    register(&server, "c", 1, "p", "1.0");
    let img = image(10_240, 4);
    let fw = server.upload_ok("p", "2.0", &img);
    let cid = campaign(&server, fw, json!({"devices": ["c00000", "ghost"]}));
    assert_eq!(
        cid["skipped"]["unknown"],
        json!(["ghost"]),
        "unknown names are reported"
    );
    let cid = cid["id"].as_u64().unwrap();
    let mut dev = Device::new(server.coap, "c00000", "p");
    let (task, uri) = task_of(&dev.poll("1.0"));
    // Five of ten 1 KiB blocks: the server infers ~50% without any report.
    for num in 0..5 {
        let block = dev.get_block(&uri, num, 6);
        assert_eq!(
            block.payload,
            img[num as usize * 1024..(num as usize + 1) * 1024]
        );
    }
    let t = server.wait_for(
        &format!("/api/v1/campaigns/{cid}/devices"),
        Duration::from_secs(5),
        |l| l[0]["progress"] == 50,
    );
    assert_eq!(t[0]["state"], "downloading");

    let (status, c) = server.post_json(&format!("/api/v1/campaigns/{cid}/cancel"), &json!({}));
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["status"], "cancelled");
    let t = task_state(&server, cid, "c00000");
    assert_eq!(
        (t["state"].as_str(), t["error"].as_str()),
        (Some("failed"), Some("cancelled"))
    );
    assert!(dev.poll("1.0").is_empty());
    assert_eq!(dev.report(&task, "downloaded", &[]), ResponseType::Conflict);
    let (status, _) = server.post_json(&format!("/api/v1/campaigns/{cid}/cancel"), &json!({}));
    assert_eq!(status, 409, "cancelling twice");
}

#[test]
fn retransmitted_report_is_applied_once_and_bad_input_changes_nothing() {
    use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
    let server = TestServer::start();
    register(&server, "r", 1, "p", "1.0");
    let fw = server.upload_ok("p", "2.0", &image(3000, 5));
    campaign(&server, fw, json!({"all": true}));
    let mut dev = Device::new(server.coap, "r00000", "p");
    let (task, _) = task_of(&dev.poll("1.0"));

    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let send = |mid: u16, path: &str, payload: Vec<u8>, cf: Option<u8>| -> Vec<u8> {
        let mut p = Packet::new();
        p.header.set_type(MessageType::Confirmable);
        p.header.code = MessageClass::Request(RequestType::Post);
        p.header.message_id = mid;
        p.set_token(vec![9, 9]);
        for seg in path.split('/') {
            p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
        }
        if let Some(cf) = cf {
            p.add_option(CoapOption::ContentFormat, vec![cf]);
        }
        p.payload = payload;
        socket.send_to(&p.to_bytes().unwrap(), server.coap).unwrap();
        let mut buf = [0u8; 1500];
        let (n, _) = socket.recv_from(&mut buf).unwrap();
        buf[..n].to_vec()
    };
    let code = |bytes: &[u8]| common::device::code(&Packet::from_bytes(bytes).unwrap());
    let snapshot = |server: &TestServer| {
        let (_, h) = server.get("/api/v1/devices/r00000/history");
        let (_, d) = server.get("/api/v1/devices/r00000");
        (
            h.as_array().unwrap().len(),
            d["task"].clone(),
            d["version"].clone(),
        )
    };

    let report = common::device::cbor(&[("task", text(&task)), ("state", text("downloaded"))]);
    let first = send(500, "ota/r00000/report", report.clone(), Some(60));
    let before = snapshot(&server);
    let again = send(500, "ota/r00000/report", report.clone(), Some(60));
    assert_eq!(first, again, "same response to the retransmission");
    assert_eq!(code(&first), ResponseType::Changed);
    assert_eq!(snapshot(&server), before, "applied once");
    // The same report with a new Message ID is a repeat: 2.04, no change.
    assert_eq!(
        code(&send(501, "ota/r00000/report", report, Some(60))),
        ResponseType::Changed
    );
    assert_eq!(snapshot(&server), before);

    let bad: Vec<(Vec<u8>, Option<u8>, ResponseType)> = vec![
        (vec![0xa1, 0x61], Some(60), ResponseType::BadRequest), // truncated CBOR
        (vec![0x83, 1, 2, 3], Some(60), ResponseType::BadRequest), // array, not map
        (
            common::device::cbor(&[
                ("task", ciborium::Value::Integer(5.into())),
                ("state", text("verified")),
            ]),
            Some(60),
            ResponseType::BadRequest,
        ),
        (
            common::device::cbor(&[("task", text(&task)), ("state", text("exploded"))]),
            Some(60),
            ResponseType::BadRequest,
        ),
        (
            common::device::cbor(&[
                ("task", text(&task)),
                ("state", text("downloading")),
                ("progress", ciborium::Value::Integer(101.into())),
            ]),
            Some(60),
            ResponseType::BadRequest,
        ),
        (
            common::device::cbor(&[("task", text("c999")), ("state", text("verified"))]),
            Some(60),
            ResponseType::NotFound,
        ),
        (
            common::device::cbor(&[("task", text(&task)), ("state", text("verified"))]),
            Some(50),
            ResponseType::UnsupportedContentFormat,
        ),
        (
            common::device::cbor(&[("task", text(&task)), ("state", text("downloading"))]),
            Some(60),
            ResponseType::Conflict,
        ),
    ];
    for (i, (payload, cf, expected)) in bad.into_iter().enumerate() {
        let resp = send(600 + i as u16, "ota/r00000/report", payload, cf);
        assert_eq!(code(&resp), expected, "case {i}");
        assert_eq!(snapshot(&server), before, "case {i} changed state");
    }
    // Unknown device, bad poll bodies.
    let resp = send(
        700,
        "ota/nobody/report",
        common::device::cbor(&[("task", text(&task)), ("state", text("verified"))]),
        Some(60),
    );
    assert_eq!(code(&resp), ResponseType::NotFound);
    let resp = send(
        701,
        "ota/r00000/poll",
        common::device::cbor(&[("product", text("p"))]),
        Some(60),
    );
    assert_eq!(code(&resp), ResponseType::BadRequest);
    let resp = send(
        702,
        "ota/r00000/poll",
        common::device::cbor(&[("product", text("other")), ("version", text("1.0"))]),
        Some(60),
    );
    assert_eq!(code(&resp), ResponseType::BadRequest, "wrong product");
    assert_eq!(snapshot(&server), before);
    // Device errors are kept verbatim.
    let err = "flash write failed at 0x0800_4000: ECC";
    assert_eq!(
        dev.report(&task, "failed", &[("error", text(err))]),
        ResponseType::Changed
    );
    let (_, d) = server.get("/api/v1/devices/r00000");
    assert_eq!(d["task"]["error"], err);
}

#[test]
fn unknown_devices_get_4_04_when_auto_register_is_off() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.devices.auto_register = false;
    let server = TestServer::start_with(config, None);
    let mut dev = Device::new(server.coap, "stranger", "p");
    let body = common::device::cbor(&[("product", text("p")), ("version", text("1"))]);
    assert_eq!(
        common::device::code(&dev.post("poll", body)),
        ResponseType::NotFound
    );
    let (status, _) = server.get("/api/v1/devices/stranger");
    assert_eq!(status, 404);
}

#[test]
fn python_aiocoap_device_updates_using_only_the_protocol_doc() {
    let server = TestServer::start();
    register(&server, "py", 1, "sensor", "0.9");
    let img = image(50_000, 6);
    let fw = server.upload_ok("sensor", "1.0", &img);
    let cid = campaign(&server, fw, json!({"devices": ["py00000"]}))["id"]
        .as_u64()
        .unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/device.py");
    let out = std::process::Command::new(python_with_aiocoap())
        .args([script, &server.coap.to_string(), "py00000", "sensor", "0.9"])
        .output()
        .expect("run device.py");
    assert!(
        out.status.success(),
        "device.py: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let t = task_state(&server, cid, "py00000");
    assert_eq!(t["state"], "updated", "{t}");
    let (_, versions) = server.get("/api/v1/versions?product=sensor");
    assert_eq!(versions, json!({"1.0": 1}));
    let (_, history) = server.get("/api/v1/devices/py00000/history");
    let version_notes: Vec<&Value> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["event"] == "version")
        .collect();
    assert_eq!(version_notes.len(), 1, "{history}");
    assert_eq!(version_notes[0]["detail"], "0.9 -> 1.0");
}

#[test]
fn a_device_may_be_called_fw() {
    let server = TestServer::start();
    let mut dev = Device::new(server.coap, "fw", "p");
    assert!(dev.poll("1.0").is_empty());
    let (status, d) = server.get("/api/v1/devices/fw");
    assert_eq!(status, 200, "{d}");
}

#[test]
fn idle_polls_are_one_history_entry_with_a_count() {
    let server = TestServer::start();
    register(&server, "i", 1, "p", "1.0");
    let mut dev = Device::new(server.coap, "i00000", "p");
    for _ in 0..5 {
        assert!(dev.poll("1.0").is_empty());
    }
    let (_, history) = server.get("/api/v1/devices/i00000/history");
    let polls: Vec<&Value> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["event"] == "poll")
        .collect();
    assert_eq!(polls.len(), 1, "{history}");
    assert_eq!(polls[0]["repeat"], 5);
    assert!(polls[0]["since"].is_string());

    // Something else in between starts a new run.
    let fw = server.upload_ok("p", "2.0", &image(100, 1));
    campaign(&server, fw, json!({"all": true}));
    let (task, _) = task_of(&dev.poll("1.0"));
    assert_eq!(
        dev.report(&task, "failed", &[("error", text("no space"))]),
        ResponseType::Changed
    );
    assert!(dev.poll("1.0").is_empty());
    assert!(dev.poll("1.0").is_empty());
    let (_, history) = server.get("/api/v1/devices/i00000/history");
    let events: Vec<String> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| format!("{}:{}", h["event"].as_str().unwrap(), h["repeat"]))
        .collect();
    assert_eq!(
        events,
        [
            "registered:null",
            "poll:5",
            "queued:null",
            "poll:null",
            "poll:null",
            "report:null",
            "poll:2"
        ],
        "{history}"
    );
    // Paging: `seq` of the last entry seen, then `after`.
    let (_, page) = server.get("/api/v1/devices/i00000/history?limit=3");
    assert_eq!(page.as_array().unwrap().len(), 3);
    let after = page[2]["seq"].as_u64().unwrap();
    let (_, rest) = server.get(&format!("/api/v1/devices/i00000/history?after={after}"));
    assert_eq!(rest.as_array().unwrap().len(), 4);
    assert_eq!(rest[0]["event"], "poll");
}

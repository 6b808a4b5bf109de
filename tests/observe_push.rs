//! Issue 10 item 10: a device holding an Observe on `/ota/{device}/task`
//! over a real UDP socket is pushed its task when a campaign hands it out,
//! `{}` when the task goes away, and falls back to polling once it stops
//! wanting notifications (RST).

use crate::common;

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use ciborium::Value;
use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use common::device::{task_of, Device};
use common::{image, TestServer};
use serde_json::json;

/// Generous: the push normally lands within milliseconds; this only keeps
/// a broken build from hanging.
const WAIT: Duration = Duration::from_secs(5);

fn observe_request(device: &str, mid: u16, token: &[u8], observe: Option<u32>) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(RequestType::Get);
    p.header.message_id = mid;
    p.set_token(token.to_vec());
    if let Some(o) = observe {
        p.set_observe_value(o);
    }
    for seg in ["ota", device, "task"] {
        p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
    }
    p.to_bytes().unwrap()
}

fn map_of(payload: &[u8]) -> BTreeMap<String, Value> {
    let value: Value = ciborium::from_reader(payload).expect("CBOR payload");
    match value {
        Value::Map(entries) => entries
            .into_iter()
            .map(|(k, v)| (k.into_text().unwrap(), v))
            .collect(),
        other => panic!("not a map: {other:?}"),
    }
}

fn recv(sock: &UdpSocket) -> Option<Packet> {
    let mut buf = [0u8; 2048];
    match sock.recv(&mut buf) {
        Ok(n) => Some(Packet::from_bytes(&buf[..n]).expect("a CoAP message")),
        Err(_) => None,
    }
}

/// Waits for the next notification on `token`, ACKing it if CON.
fn next_notification(sock: &UdpSocket, token: &[u8], within: Duration) -> Option<Packet> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        sock.set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .unwrap();
        let Some(p) = recv(sock) else { continue };
        if p.get_token() != token {
            continue;
        }
        if p.header.get_type() == MessageType::Confirmable {
            let mut ack = Packet::new();
            ack.header.set_type(MessageType::Acknowledgement);
            ack.header.code = MessageClass::Empty;
            ack.header.message_id = p.header.message_id;
            sock.send(&ack.to_bytes().unwrap()).unwrap();
        }
        return Some(p);
    }
    None
}

#[test]
fn observing_device_is_pushed_its_task_then_empty_then_falls_back_to_polling() {
    let server = TestServer::start();
    let fw = server.upload_ok("p", "2.0", &image(500, 3));
    let (s, _) = server.post_json(
        "/api/v1/devices",
        &json!({"name": "o1", "product": "p", "version": "1.0"}),
    );
    assert_eq!(s, 201);

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(server.coap).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    // Unknown device: 4.04, no relation.
    sock.send(&observe_request("ghost", 1, b"g", Some(0)))
        .unwrap();
    let reply = recv(&sock).expect("answer");
    assert_eq!(
        reply.header.code,
        MessageClass::Response(ResponseType::NotFound)
    );

    let token = b"obs1".to_vec();
    sock.send(&observe_request("o1", 2, &token, Some(0)))
        .unwrap();
    let first = recv(&sock).expect("first response");
    assert_eq!(
        first.header.code,
        MessageClass::Response(ResponseType::Content)
    );
    assert!(first.get_observe_value().is_some(), "relation accepted");
    assert!(map_of(&first.payload).is_empty(), "no task yet: {{}}");

    let (s, c) = server.post_json(
        "/api/v1/campaigns",
        &json!({"firmware": fw, "target": {"devices": ["o1"]}}),
    );
    assert_eq!(s, 201, "{c}");
    let id = c["id"].as_u64().unwrap();
    let pushed = next_notification(&sock, &token, WAIT).expect("task pushed");
    let map = map_of(&pushed.payload);
    assert_eq!(map["task"], Value::Text(format!("c{id}")));
    assert_eq!(map["version"], Value::Text("2.0".into()));
    assert_eq!(map["uri"], Value::Text(format!("/ota/fw/{fw}/o1/c{id}")));
    assert!(pushed.get_observe_value().is_some());
    // Being told is not being handed: the task waits for the device to act.
    let (_, dev) = server.get("/api/v1/devices/o1");
    assert_eq!(dev["state"], "queued");

    // Cancelled: the observer hears {}.
    server.post_json(&format!("/api/v1/campaigns/{id}/cancel"), &json!({}));
    let empty = next_notification(&sock, &token, WAIT).expect("cancellation pushed");
    assert!(map_of(&empty.payload).is_empty());

    // The device no longer wants notifications: it answers the next with
    // RST, the relation ends, and it learns of tasks by polling again.
    let (_, c2) = server.post_json(
        "/api/v1/campaigns",
        &json!({"firmware": fw, "target": {"devices": ["o1"]}}),
    );
    let id2 = c2["id"].as_u64().unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let unwanted = loop {
        let p = recv(&sock).expect("second task pushed");
        if p.get_token() == token.as_slice() {
            break p;
        }
    };
    let mut rst = Packet::new();
    rst.header.set_type(MessageType::Reset);
    rst.header.code = MessageClass::Empty;
    rst.header.message_id = unwanted.header.message_id;
    sock.send(&rst.to_bytes().unwrap()).unwrap();
    // The RST and the next HTTP call race to the server; let the RST land.
    std::thread::sleep(Duration::from_millis(300));
    server.post_json(&format!("/api/v1/campaigns/{id2}/cancel"), &json!({}));
    let after = next_notification(&sock, &token, Duration::from_millis(500));
    assert!(
        after.is_none(),
        "no notification after RST: rst'd {:?} {:?}, got {:?}",
        unwanted.header,
        map_of(&unwanted.payload),
        after.map(|p| (p.header, map_of(&p.payload)))
    );
    let (_, c3) = server.post_json(
        "/api/v1/campaigns",
        &json!({"firmware": fw, "target": {"devices": ["o1"]}}),
    );
    let mut poller = Device::new(server.coap, "o1", "p");
    let (task, _) = task_of(&poller.poll("1.0"));
    assert_eq!(task, format!("c{}", c3["id"]));

    // A plain GET (no Observe) answers the current task and makes no relation.
    sock.send(&observe_request("o1", 9, b"plain", None))
        .unwrap();
    let plain = loop {
        let p = recv(&sock).expect("plain answer");
        if p.get_token() == b"plain" {
            break p;
        }
    };
    assert!(plain.get_observe_value().is_none());
    assert_eq!(map_of(&plain.payload)["task"], Value::Text(task));
}

#[test]
fn observe_resource_is_listed_and_refuses_other_methods() {
    let server = TestServer::start();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(server.coap).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(RequestType::Post);
    p.header.message_id = 5;
    p.set_token(b"t".to_vec());
    for seg in ["ota", "x", "task"] {
        p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
    }
    sock.send(&p.to_bytes().unwrap()).unwrap();
    let reply = recv(&sock).unwrap();
    assert_eq!(
        reply.header.code,
        MessageClass::Response(ResponseType::MethodNotAllowed)
    );
}

/// `lwota sim --observe`: idle devices hold an Observe instead of polling,
/// so with a poll interval longer than the whole run they still update as
/// soon as the campaign exists.
#[test]
fn simulated_fleet_with_observe_updates_without_waiting_for_its_poll_interval() {
    let server = TestServer::start();
    let fw = server.upload_ok("p", "2.0", &image(3000, 4));
    let mut config = common::sim_config(&server, 3, "ob-", "p", "1.0");
    config.observe = true;
    config.poll_interval = Duration::from_secs(600);
    config.duration = Duration::from_secs(30);
    let sim = std::thread::spawn(move || common::run_sim(config));
    // Wait for the fleet to register (first poll) before the campaign.
    server.wait_for("/api/v1/devices?product=p", WAIT, |d| {
        d.as_array().is_some_and(|a| a.len() == 3)
    });
    let (s, c) = server.post_json(
        "/api/v1/campaigns",
        &json!({"firmware": fw, "target": {"all": true}}),
    );
    assert_eq!(s, 201, "{c}");
    let report = sim.join().unwrap();
    assert_eq!(report.updated(), 3, "{:?}", report.devices);
    assert!(
        report.devices.iter().all(|d| d.pushed >= 1),
        "{:?}",
        report.devices
    );
    assert!(report.elapsed < Duration::from_secs(30));
}

/// Interop: aiocoap's client-side Observe gets the pushed task.
#[test]
fn aiocoap_observation_gets_the_task_when_the_campaign_is_created() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let server = TestServer::start();
    let fw = server.upload_ok("p", "2.0", &image(700, 5));
    server.post_json(
        "/api/v1/devices",
        &json!({"name": "aio1", "product": "p", "version": "1.0"}),
    );
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/aiocoap_observe.py"
    );
    let mut child = Command::new(common::python_with_aiocoap())
        .arg(script)
        .arg(format!("coap://{}/ota/aio1/task", server.coap))
        .arg("20")
        .stdout(Stdio::piped())
        .spawn()
        .expect("run python");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.next().expect("a line").unwrap();
    assert!(ready.starts_with("READY {}"), "{ready}");
    let (s, c) = server.post_json(
        "/api/v1/campaigns",
        &json!({"firmware": fw, "target": {"devices": ["aio1"]}}),
    );
    assert_eq!(s, 201, "{c}");
    let task = lines.next().expect("a task line").unwrap();
    assert_eq!(task, format!("TASK c{} 2.0", c["id"]));
    assert!(child.wait().unwrap().success());
}

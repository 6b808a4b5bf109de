//! kill -9 of the server in the middle of a 200-device rollout: after a
//! restart the rollout completes and every transition a device saw
//! acknowledged is in the server's history.

use crate::common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(server: &ChildServer, path: &str) -> (u16, Value) {
    common::http(server.request("GET", path).call())
}

#[test]
fn kill_9_mid_rollout_loses_no_acknowledged_transition() {
    let dir = tempfile::tempdir().unwrap();
    let coap = format!("127.0.0.1:{}", free_udp_port());
    let mut server = ChildServer::spawn(dir.path(), &coap, "127.0.0.1:0");

    let devices: Vec<Value> = (0..200)
        .map(|i| json!({"name": format!("k{i:05}"), "product": "p", "version": "1.0"}))
        .collect();
    let r = common::http(
        server
            .request("POST", "/api/v1/devices")
            .send_json(json!(devices)),
    );
    assert_eq!(r.0, 201, "{}", r.1);
    let r = common::http(
        server
            .request("POST", "/api/v1/firmware?product=p&version=2.0")
            .send_bytes(&image(256 * 1024, 1)),
    );
    assert_eq!(r.0, 201, "{}", r.1);
    let fw = r.1["id"].as_u64().unwrap();
    let r = common::http(
        server
            .request("POST", "/api/v1/campaigns")
            .send_json(json!({"firmware": fw, "target": {"all": true}})),
    );
    assert_eq!(r.0, 201, "{}", r.1);
    let cid = r.1["id"].as_u64().unwrap();

    let sim = lwota::sim::SimConfig {
        server: coap.parse().unwrap(),
        devices: 200,
        product: "p".into(),
        version: "1.0".into(),
        prefix: "k".into(),
        block: 512,
        poll_interval: Duration::from_millis(200),
        failure_rate: 0.0,
        client: lwota::sim::ClientConfig {
            ack_timeout: Duration::from_millis(300),
            max_retransmit: 4,
            loss: 0.0,
        },
        duration: Duration::from_secs(120),
        stop_when_done: true,
        observe: false,
        verify_key: None,
    };
    let fleet = std::thread::spawn(move || run_sim(sim));

    // Let the rollout get going, then pull the plug.
    let mut at_kill = Value::Null;
    for _ in 0..400 {
        let (_, c) = get(&server, &format!("/api/v1/campaigns/{cid}"));
        let n = |s: &str| c["counts"][s].as_u64().unwrap_or(0);
        if n("downloading") + n("downloaded") + n("verified") + n("updating") + n("updated") > 20 {
            at_kill = c["counts"].clone();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    server.kill9();
    assert!(!at_kill.is_null(), "rollout did not start");
    assert!(
        at_kill["updated"].as_u64().unwrap() < 200,
        "killed mid-rollout: {at_kill}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let server = ChildServer::spawn(dir.path(), &coap, "127.0.0.1:0");

    let report = fleet.join().unwrap();
    assert_eq!(
        report.updated(),
        200,
        "every device updated after the restart"
    );
    let (_, c) = get(&server, &format!("/api/v1/campaigns/{cid}"));
    assert_eq!(c["counts"]["updated"], 200, "{c}");

    let mut missing = Vec::new();
    for device in &report.devices {
        let (_, history) = get(&server, &format!("/api/v1/devices/{}/history", device.name));
        let recorded: HashSet<(String, String)> = history
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|h| {
                Some((
                    h["task"].as_str()?.to_string(),
                    h["to"].as_str()?.to_string(),
                ))
            })
            .collect();
        for acked in &device.acked {
            if !recorded.contains(&(acked.task.clone(), acked.state.clone())) {
                missing.push(format!("{} {} {}", device.name, acked.task, acked.state));
            }
        }
    }
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    let acked: usize = report.devices.iter().map(|d| d.acked.len()).sum();
    assert!(
        acked >= 200 * 4,
        "each device acknowledged several transitions ({acked})"
    );
}

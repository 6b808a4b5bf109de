//! LwM2M interop, end to end over real sockets against a real server:
//! an independent aiocoap client (tests/interop/lwm2m_device.py) updated
//! by pull and by push, the third-party npm `lwm2m-node-lib` 1.4.0 client
//! (tests/interop/node/client.js), and fleets of `lwota sim --lwm2m`
//! clients with queue mode and failures. Written against CONTRACT.md
//! "v2: LwM2M devices". A missing python/aiocoap or node is a failure,
//! never a skip (scripts/test.sh installs them).

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::TestServer;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const WAIT: Duration = Duration::from_secs(90);
/// lwm2m-node-lib sends notifications on its own schedule; its update
/// takes over a minute on this machine.
const NODE_WAIT: Duration = Duration::from_secs(180);

fn interop(file: &str) -> String {
    format!("{}/tests/interop/{file}", env!("CARGO_MANIFEST_DIR"))
}

/// Registers `name` as an operator would and starts a campaign to a new
/// firmware for it; returns (campaign id, image).
fn campaign_for(
    server: &TestServer,
    names: &[&str],
    product: &str,
    image_seed: u8,
) -> (u64, Vec<u8>) {
    let devices: Vec<Value> = names
        .iter()
        .map(|n| json!({"name": n, "product": product, "version": "1.0"}))
        .collect();
    let (status, body) = server.post_json("/api/v1/devices", &json!(devices));
    assert!(status == 201 || status == 200, "{status} {body}");
    let image = common::image(20_000, image_seed);
    let fw = server.upload_ok(product, "2.0", &image);
    let (status, body) = server.post_json(
        "/api/v1/campaigns",
        &json!({"firmware": fw, "target": {"devices": names}}),
    );
    assert_eq!(status, 201, "{body}");
    (body["id"].as_u64().expect("campaign id"), image)
}

fn task_state(server: &TestServer, campaign: u64, name: &str) -> Value {
    let (_, devices) = server.get(&format!("/api/v1/campaigns/{campaign}/devices"));
    let list = devices
        .as_array()
        .cloned()
        .or_else(|| devices["devices"].as_array().cloned())
        .unwrap_or_default();
    list.into_iter()
        .find(|d| d["name"] == name || d["device"] == name)
        .unwrap_or(Value::Null)
}

/// Runs the aiocoap client to completion and checks the server's view.
fn aiocoap_update(delivery: &str) {
    let python = common::python_with_aiocoap();
    let server = TestServer::start();
    let name = format!("py-{delivery}");
    let (campaign, image) = campaign_for(&server, &[&name], "sensor", 3);
    let sha = hex::encode(Sha256::digest(&image));
    let child = Command::new(python)
        .arg(interop("lwm2m_device.py"))
        .arg(server.coap.to_string())
        .args([&name, "1.0", "--new-version", "2.0", "--delivery", delivery])
        .args(["--sha256", &sha, "--timeout", "80", "--lifetime", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 runs");

    // Registered and visible to the operator while the update runs.
    let device = server.wait_for(&format!("/api/v1/devices/{name}"), WAIT, |d| {
        d["lwm2m"]["registered"] == true || d["lwm2m"]["lwm2m_version"].is_string()
    });
    assert_eq!(device["lwm2m"]["lwm2m_version"], "1.1", "{device}");

    let output = child.wait_with_output().expect("client ran");
    let log = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "client failed:\n{log}");
    assert!(
        log.contains(&format!("\"how\": \"{delivery}\"")),
        "{delivery} delivery used:\n{log}"
    );
    assert!(log.contains(&sha), "the image arrived intact:\n{log}");

    let task = server.wait_for(
        &format!("/api/v1/campaigns/{campaign}/devices"),
        WAIT,
        |_| task_state(&server, campaign, &name)["state"] == "updated",
    );
    let device = server.wait_for(&format!("/api/v1/devices/{name}"), WAIT, |d| {
        d["version"] == "2.0"
    });
    // De-registered by now: the last registration stays, not registered.
    assert_eq!(device["lwm2m"]["registered"], false, "{device} {task}");
    assert_eq!(device["lwm2m"]["lwm2m_version"], "1.1", "{device}");
    let (_, history) = server.get(&format!("/api/v1/devices/{name}/history"));
    let text = history.to_string();
    assert!(text.contains("regist"), "registration in history: {text}");
    assert!(text.contains("updated"), "final state in history: {text}");
}

#[test]
fn aiocoap_client_is_updated_by_pull() {
    aiocoap_update("pull");
}

#[test]
fn aiocoap_client_is_updated_by_push() {
    aiocoap_update("push");
}

/// node + the lwm2m-node-lib install of scripts/test.sh.
fn node_with_lwm2m_lib() -> String {
    let ok = Command::new("node")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "node not found: install nodejs (scripts/test.sh needs it)"
    );
    let lib = interop("node/node_modules/lwm2m-node-lib/package.json");
    assert!(
        std::path::Path::new(&lib).exists(),
        "lwm2m-node-lib not installed: run scripts/test.sh (npm ci in tests/interop/node)"
    );
    "node".into()
}

#[test]
fn lwm2m_node_lib_client_registers_and_takes_write_and_execute() {
    let node = node_with_lwm2m_lib();
    let server = TestServer::start();
    let name = "node-lib-1";
    let (campaign, _) = campaign_for(&server, &[name], "nodeprod", 4);
    let mut child = Command::new(node)
        .arg(interop("node/client.js"))
        .args([
            "127.0.0.1",
            &server.coap.port().to_string(),
            name,
            "1.0",
            "2.0",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node runs");
    let (tx, rx) = mpsc::channel::<Value>();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(event) = serde_json::from_str::<Value>(&line) {
                if event.get("event").is_some() && tx.send(event).is_err() {
                    return;
                }
            }
        }
    });
    let mut seen = Vec::new();
    let next_until = |what: &dyn Fn(&Value) -> bool, seen: &mut Vec<Value>| loop {
        let event = rx
            .recv_timeout(NODE_WAIT)
            .unwrap_or_else(|_| panic!("lwm2m-node-lib events so far: {seen:?}"));
        seen.push(event.clone());
        assert_ne!(event["event"], "error", "{seen:?}");
        if what(&event) {
            return event;
        }
    };
    next_until(&|e| e["event"] == "registered", &mut seen);
    let device = server.wait_for(&format!("/api/v1/devices/{name}"), WAIT, |d| {
        d["lwm2m"]["registered"] == true
    });
    assert_eq!(device["lwm2m"]["lwm2m_version"], "1.0", "{device}");
    let write = next_until(
        &|e| e["event"] == "write" && e["uri"] == "/5/0/1",
        &mut seen,
    );
    let uri = write["value"].as_str().unwrap_or_default();
    assert!(
        uri.starts_with(&format!("coap://127.0.0.1:{}/", server.coap.port())),
        "the Package URI names the address the client registered to: {uri}"
    );
    next_until(
        &|e| e["event"] == "execute" && e["uri"] == "/5/0/2",
        &mut seen,
    );
    // The client reports Update Result 1 by its observations: updated.
    server.wait_for(
        &format!("/api/v1/campaigns/{campaign}/devices"),
        WAIT,
        |_| task_state(&server, campaign, name)["state"] == "updated",
    );
    // Closing stdin de-registers.
    drop(child.stdin.take());
    next_until(&|e| e["event"] == "deregistered", &mut seen);
    let _ = child.wait();
    server.wait_for(&format!("/api/v1/devices/{name}"), WAIT, |d| {
        d["lwm2m"]["registered"] == false && d["lwm2m"]["ended_by"] == "deregistered"
    });
}

fn sim_config(server: &TestServer, devices: usize, prefix: &str) -> lwota::sim::lwm2m::Lwm2mConfig {
    common::lwm2m::fleet_config(server.coap, devices, prefix, Duration::from_secs(90))
}

#[test]
fn simulated_fleet_pull_with_queue_mode_and_failures() {
    let server = TestServer::start();
    let mut config = sim_config(&server, 12, "lw-pull-");
    config.delivery = lwota::sim::lwm2m::Delivery::Pull;
    config.queue_share = 0.25;
    config.fail_result = Some(5);
    config.fail_share = 0.25;
    run_fleet(&server, config, 3, 5, "integrity");
}

#[test]
fn simulated_fleet_push_with_update_failures() {
    let server = TestServer::start();
    let mut config = sim_config(&server, 8, "lw-push-");
    config.delivery = lwota::sim::lwm2m::Delivery::Push;
    config.queue_share = 0.5;
    config.fail_result = Some(8);
    config.fail_share = 0.25;
    run_fleet(&server, config, 2, 8, "update failed");
}

/// LwM2M 1.0 clients that speak TLV only (the issue: "LwM2M 1.0 clients
/// (TLV only) must work").
#[test]
fn simulated_fleet_lwm2m_10_tlv_only_push_with_update_failures() {
    let server = TestServer::start();
    let mut config = sim_config(&server, 8, "lw-v10-");
    config.delivery = lwota::sim::lwm2m::Delivery::Push;
    config.v10 = true;
    config.queue_share = 0.5;
    config.fail_result = Some(8);
    config.fail_share = 0.25;
    run_fleet(&server, config, 2, 8, "update failed");
}

/// Runs the simulated fleet against `server` and checks that the
/// campaign's counts match what the devices themselves saw.
fn run_fleet(
    server: &TestServer,
    config: lwota::sim::lwm2m::Lwm2mConfig,
    failing: usize,
    code: u8,
    meaning: &str,
) {
    let n = config.devices;
    let names: Vec<String> = (0..n).map(|i| format!("{}{i:05}", config.prefix)).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (campaign, _) = campaign_for(server, &refs, "simprod", 5);
    let report = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(lwota::sim::lwm2m::run(config));
    assert_eq!(report.registered(), n, "{:?}", report.devices);
    assert_eq!(report.updated(), n - failing, "{:?}", report.devices);
    assert_eq!(report.failed(), failing, "{:?}", report.devices);
    assert_eq!(
        report.failures_by_result().get(&code).copied().unwrap_or(0),
        failing
    );
    let body = server.wait_for(&format!("/api/v1/campaigns/{campaign}"), WAIT, |c| {
        c["counts"]["updated"].as_u64() == Some((n - failing) as u64)
            && c["counts"]["failed"].as_u64() == Some(failing as u64)
    });
    for d in report.devices.iter().filter(|d| d.updated > 0) {
        assert_eq!(d.version, "2.0", "{d:?}");
        let (_, device) = server.get(&format!("/api/v1/devices/{}", d.name));
        assert_eq!(device["version"], "2.0", "{device}");
    }
    let failed = report
        .devices
        .iter()
        .find(|d| d.updated == 0)
        .expect("a failing device");
    let task = task_state(server, campaign, &failed.name);
    let error = task["error"].as_str().unwrap_or_default().to_lowercase();
    assert!(
        error.contains(&code.to_string()) && error.contains(meaning),
        "error names result {code} ({meaning}): {task} / {body}"
    );
}

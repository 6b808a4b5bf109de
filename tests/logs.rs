//! Issue 12 item 6: `lwota serve --log-format json` writes one JSON object
//! per line, and lines logged while handling a device's CoAP request or an
//! admin request carry the request span with the device (and task) ids.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::device::Device;
use serde_json::Value;

#[test]
fn json_log_lines_carry_the_device_of_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lwota"))
        .args(["serve", "--log-format", "json", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--coap-bind", "127.0.0.1:0", "--http-bind", "127.0.0.1:0"])
        .args(["--coaps-bind", "127.0.0.1:0"])
        .env("RUST_LOG", "lwota=debug")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("spawn lwota serve");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut coap, mut http) = (None, None);
    while coap.is_none() || http.is_none() {
        let line = lines.next().expect("addresses").unwrap();
        if let Some(a) = line.strip_prefix("coap listening on ") {
            coap = Some(a.trim().parse().unwrap());
        }
        if let Some(a) = line.strip_prefix("http listening on ") {
            http = Some(a.trim().to_string());
        }
    }
    let http = http.unwrap();
    let token = common::read_token(&dir.path().join("data"));

    // A campaign for the device, so its poll is handed a task.
    let post = |path: &str, body: serde_json::Value| {
        common::http(
            common::with_token(ureq::post(&format!("http://{http}{path}")), &token).send_json(body),
        )
    };
    let devices = serde_json::json!({"name": "log-dev-1", "product": "meter", "version": "1.0"});
    assert_eq!(post("/api/v1/devices", devices).0, 201);
    let (status, fw) = common::http(
        common::with_token(
            ureq::post(&format!(
                "http://{http}/api/v1/firmware?product=meter&version=2.0"
            )),
            &token,
        )
        .send_bytes(&common::image(100, 1)),
    );
    assert_eq!(status, 201, "{fw}");
    let target = serde_json::json!({"firmware": fw["id"], "target": {"all": true}});
    assert_eq!(post("/api/v1/campaigns", target).0, 201);

    let mut device = Device::new(coap.unwrap(), "log-dev-1", "meter");
    let (task, _) = common::device::task_of(&device.poll("1.0"));
    let (status, _) = common::http(
        common::with_token(
            ureq::get(&format!("http://{http}/api/v1/devices/log-dev-1")),
            &token,
        )
        .call(),
    );
    assert_eq!(status, 200);

    // Both requests logged (the log is written as events happen).
    let deadline = Instant::now() + Duration::from_secs(10);
    let (coap_line, http_line) = loop {
        let text = std::fs::read_to_string(&log_path).unwrap();
        let parsed: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        let find = |name: &str| {
            parsed
                .iter()
                .find(|v| {
                    v["span"]["name"] == name
                        && v["span"]["device"] == "log-dev-1"
                        && (name != "coap" || v["span"]["task"] == task.as_str())
                })
                .cloned()
        };
        if let (Some(c), Some(h)) = (find("coap"), find("http")) {
            break (c, h);
        }
        assert!(
            Instant::now() < deadline,
            "no span with the device in:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(coap_line["span"]["resource"], "poll", "{coap_line}");
    assert_eq!(coap_line["span"]["task"], task.as_str(), "{coap_line}");
    assert!(coap_line["timestamp"].is_string() && coap_line["level"].is_string());
    assert_eq!(
        http_line["span"]["route"], "/api/v1/devices/{name}",
        "{http_line}"
    );
}

//! Issue 12 item 3: `GET /api/v1/openapi.json` is valid OpenAPI 3.1
//! (checked by Python's `openapi-spec-validator`, installed by
//! scripts/test.sh), lists every route of the router's route table with
//! every method it answers, and describes real response bodies.

use crate::common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::TestServer;
use serde_json::{json, Value};

/// A concrete URL path for a route pattern (`{id}` → `1`).
fn concrete(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|seg| if seg.starts_with('{') { "1" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn every_route_of_the_router_is_in_the_openapi_document() {
    let server = TestServer::start();
    let (status, doc) = server.get("/api/v1/openapi.json");
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["openapi"], "3.1.0");
    let described = doc["paths"].as_object().expect("paths");

    let table = lwota::admin::routes();
    assert!(
        table.paths().len() >= 10,
        "route table: {:?}",
        table.paths()
    );
    let mut missing = Vec::new();
    for path in table.paths() {
        // The router itself says which methods a path answers: a 405 with
        // `Allow` for a method no route has.
        let methods = server.allowed_methods(&concrete(path));
        assert!(!methods.is_empty(), "{path}: no Allow header");
        for method in methods {
            // axum answers HEAD wherever it answers GET.
            if method == "HEAD" {
                continue;
            }
            let has = described
                .get(*path)
                .and_then(|item| item.get(method.to_lowercase()))
                .is_some();
            if !has {
                missing.push(format!("{method} {path}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "routes not in the OpenAPI document; annotate their handlers with \
         #[utoipa::path] and list them in src/admin/openapi.rs: {missing:?}"
    );
    let stale: Vec<&String> = described
        .keys()
        .filter(|p| !table.paths().contains(&p.as_str()))
        .collect();
    assert!(stale.is_empty(), "documented but not routed: {stale:?}");
}

/// The document validates, and real bodies of every kind match their
/// schemas (closed to unknown fields).
#[test]
fn openapi_document_validates_and_describes_real_bodies() {
    let server = TestServer::start();
    let (_, doc) = server.get("/api/v1/openapi.json");
    let mut samples: BTreeMap<&str, Vec<Value>> = BTreeMap::new();

    let (status, fw) = server.upload(
        "product=meter&version=2.0&name=Meter&description=d",
        &common::image(3000, 1),
    );
    assert_eq!(status, 201, "{fw}");
    samples.entry("Firmware").or_default().push(fw.clone());
    samples
        .entry("Firmware")
        .or_default()
        .push(server.get("/api/v1/firmware/1").1);

    let (status, one) = server.post_json(
        "/api/v1/devices",
        &json!({"name": "m-1", "product": "meter", "version": "1.0"}),
    );
    assert_eq!(status, 201, "{one}");
    let (status, many) = server.post_json(
        "/api/v1/devices",
        &json!([{"name": "m-2", "product": "meter", "version": "1.0"}, {"name": "m-1", "product": "meter"}]),
    );
    assert_eq!(status, 201, "{many}");
    samples
        .entry("DevicesCreateAnswer")
        .or_default()
        .extend([one, many]);

    let (status, campaign) = server.post_json(
        "/api/v1/campaigns",
        &json!({"firmware": 1, "target": {"devices": ["m-1", "m-2", "ghost"]}}),
    );
    assert_eq!(status, 201, "{campaign}");
    samples.entry("Campaign").or_default().push(campaign);

    // A device takes its task, so device and history bodies carry one.
    let mut device = common::device::Device::new(server.coap, "m-1", "meter");
    let answer = device.poll("1.0");
    assert!(answer.contains_key("task"), "{answer:?}");
    server.wait_for("/api/v1/devices/m-1", Duration::from_secs(5), |d| {
        d["state"] == "initiated"
    });

    for d in server.get("/api/v1/devices").1.as_array().unwrap() {
        samples.entry("Device").or_default().push(d.clone());
    }
    for h in server
        .get("/api/v1/devices/m-1/history")
        .1
        .as_array()
        .unwrap()
    {
        samples.entry("HistoryEntry").or_default().push(h.clone());
    }
    for t in server
        .get("/api/v1/campaigns/1/devices")
        .1
        .as_array()
        .unwrap()
    {
        samples.entry("Task").or_default().push(t.clone());
    }
    samples
        .entry("Campaign")
        .or_default()
        .push(server.get("/api/v1/campaigns/1").1);
    let (_, cancelled) = server.post_json("/api/v1/campaigns/1/cancel", &json!({}));
    samples.entry("Campaign").or_default().push(cancelled);
    samples
        .entry("StoreCounters")
        .or_default()
        .push(server.get("/api/v1/metrics").1);
    samples
        .entry("Health")
        .or_default()
        .push(server.get("/healthz").1);
    let (status, edited) = server.patch_json("/api/v1/firmware/1", &json!({"name": "Meter_2"}));
    assert_eq!(status, 200, "{edited}");
    samples.entry("Firmware").or_default().push(edited);
    for e in server.get("/api/v1/audit").1.as_array().unwrap() {
        samples.entry("AuditEntry").or_default().push(e.clone());
    }
    assert!(samples.contains_key("AuditEntry"), "the upload is audited");
    for t in server.get("/api/v1/tokens").1.as_array().unwrap() {
        samples.entry("Token").or_default().push(t.clone());
    }
    assert!(samples.contains_key("Token"), "the test token is listed");
    let (status, error) = server.get("/api/v1/firmware/99");
    assert_eq!(status, 404);
    samples.entry("ErrorBody").or_default().push(error);

    let dir = tempfile::tempdir().unwrap();
    let doc_file = dir.path().join("openapi.json");
    let samples_file = dir.path().join("samples.json");
    std::fs::write(&doc_file, serde_json::to_vec(&doc).unwrap()).unwrap();
    std::fs::write(&samples_file, serde_json::to_vec(&samples).unwrap()).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/openapi_check.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .arg(&doc_file)
        .arg(&samples_file)
        .output()
        .expect("python3 not found (scripts/test.sh installs what this test needs)");
    assert!(
        out.status.success(),
        "OpenAPI check failed (needs `pip install openapi-spec-validator`, which \
         scripts/test.sh does):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

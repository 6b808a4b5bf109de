//! Issue 11 item 5: signed manifests. The admin routes and their audit
//! trail, the CLI, an independent verifier in Python (cryptography +
//! cbor2 + aiocoap, tests/interop/verify_manifest.py, the script of
//! docs/PROTOCOL.md) over real UDP, and the simulator's `--verify-key`.

use crate::common;
use common::cli::lwota;

use std::process::{Command, Output};

use ciborium::Value as Cbor;
use common::device::Device;
use common::*;
use serde_json::{json, Value};

const KEY_PATH: &str = "/api/v1/products/meter/signing-key";

fn python_with_cryptography() -> String {
    let python = python_with_aiocoap();
    let ok = Command::new(&python)
        .args(["-c", "import cryptography"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "python3 with cryptography not found: pip install cryptography (scripts/setup.sh does)"
    );
    python
}

/// A server with firmware 2.0 of `meter` (`size` bytes) and a campaign
/// for every `meter` device named in `devices` (on 1.0).
fn server_with_campaign(devices: &[&str], size: usize) -> (TestServer, u64) {
    let server = TestServer::start();
    let fw = server.upload_ok("meter", "2.0", &image(size, 7));
    let list: Vec<Value> = devices
        .iter()
        .map(|d| json!({"name": d, "product": "meter", "version": "1.0"}))
        .collect();
    assert_eq!(server.post_json("/api/v1/devices", &json!(list)).0, 201);
    let (status, body) = server.post_json(
        "/api/v1/campaigns",
        &json!({"firmware": fw, "target": {"all": true}}),
    );
    assert_eq!(status, 201, "{body}");
    (server, fw)
}

fn create_key(server: &TestServer, path: &str) -> Value {
    let (status, key) = server.post_json(path, &json!({}));
    assert_eq!(status, 201, "{key}");
    key
}

fn verify_script(server: &TestServer, device: &str, key: &str, extra: &[&str]) -> Output {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/verify_manifest.py"
    );
    Command::new(python_with_cryptography())
        .arg(script)
        .arg(server.coap.to_string())
        .args([device, "meter", "1.0", key])
        .args(extra)
        .output()
        .expect("run python")
}

fn task_of_device(server: &TestServer, device: &str) -> Value {
    let (status, body) = server.get("/api/v1/campaigns/1/devices");
    assert_eq!(status, 200, "{body}");
    let list = body
        .as_array()
        .or_else(|| body["devices"].as_array())
        .cloned()
        .unwrap_or_default();
    list.into_iter()
        .find(|d| d["name"] == device || d["device"] == device)
        .unwrap_or_else(|| panic!("{device} not in {body}"))
}

#[test]
fn signing_key_routes_create_rotate_show_delete_and_audit() {
    let server = TestServer::start();
    assert_eq!(server.get(KEY_PATH).0, 404);
    let key = create_key(&server, KEY_PATH);
    let mut fields: Vec<&str> = key
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "algorithm",
            "created_at",
            "kid",
            "product",
            "public_key",
            "public_key_pem"
        ],
        "the public key and nothing else: {key}"
    );
    assert_eq!(key["algorithm"], "Ed25519");
    assert_eq!(key["product"], "meter");
    let public = hex::decode(key["public_key"].as_str().unwrap()).unwrap();
    assert_eq!(public.len(), 32);
    let kid = &<sha2::Sha256 as sha2::Digest>::digest(&public)[..8];
    assert_eq!(key["kid"], hex::encode(kid));
    assert!(key["public_key_pem"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));

    // A second create is refused and changes nothing.
    let (status, err) = server.post_json(KEY_PATH, &json!({}));
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "signing_key_exists");
    assert_eq!(server.get(KEY_PATH).1, key);

    // A read token may fetch the public key but not make one.
    let (_, viewer) =
        server.post_json("/api/v1/tokens", &json!({"name": "viewer", "role": "read"}));
    let viewer = viewer["token"].as_str().unwrap().to_string();
    let url = server.url(KEY_PATH);
    assert_eq!(
        http(with_token(ureq::get(&url), &viewer).call()),
        (200, key.clone())
    );
    let as_viewer = with_token(ureq::post(&format!("{url}?rotate=true")), &viewer);
    assert_eq!(http(as_viewer.send_json(json!({}))).0, 403);
    assert_eq!(http(ureq::get(&url).call()).0, 401);

    // Rotation: a new key, the old id named.
    let rotated = create_key(&server, &format!("{KEY_PATH}?rotate=true"));
    assert_ne!(rotated["public_key"], key["public_key"]);
    assert_eq!(rotated["replaced_kid"], key["kid"]);
    assert_eq!(server.get(KEY_PATH).1["public_key"], rotated["public_key"]);

    // Bad input: 400, nothing stored.
    assert_eq!(
        server
            .post_json(&format!("{KEY_PATH}?rotate=maybe"), &json!({}))
            .0,
        400
    );
    assert_eq!(server.get("/api/v1/products/bad%20name/signing-key").0, 400);

    assert_eq!(server.delete(KEY_PATH).0, 204);
    assert_eq!(server.get(KEY_PATH).0, 404);
    assert_eq!(server.delete(KEY_PATH).0, 404);

    let (_, audit) = server.get("/api/v1/audit");
    let ours: Vec<(String, String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("signing_key."))
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["target"].as_str().unwrap().to_string(),
                e["actor"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let expect = |a: &str| {
        (
            a.to_string(),
            "product/meter".to_string(),
            "admin".to_string(),
        )
    };
    assert_eq!(
        ours,
        [
            expect("signing_key.create"),
            expect("signing_key.rotate"),
            expect("signing_key.delete")
        ]
    );
    assert_eq!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["details"]["kid"] == key["kid"])
            .count(),
        1
    );
}

#[test]
fn poll_answer_carries_a_manifest_only_when_the_product_has_a_key() {
    let (server, _) = server_with_campaign(&["m1"], 3000);
    let mut device = Device::new(server.coap, "m1", "meter");
    let unsigned = device.poll("1.0");
    let mut keys: Vec<&str> = unsigned.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["sha256", "size", "task", "uri", "version"],
        "v1 answer unchanged"
    );

    // Firmware uploaded before the key existed is signed at hand-out.
    let key = create_key(&server, KEY_PATH);
    let signed = device.poll("1.0");
    let Some(Cbor::Bytes(manifest)) = signed.get("manifest") else {
        panic!("no manifest in {signed:?}")
    };
    let public: [u8; 32] = hex::decode(key["public_key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let m = lwota::ota::signing::verify(manifest, &public).expect("verifies");
    assert_eq!(
        (m.product.as_str(), m.version.as_str(), m.size),
        ("meter", "2.0", 3000)
    );
    assert_eq!(Some(&Cbor::Bytes(m.sha256)), signed.get("sha256"));
    // Same key, same firmware: the same bytes on every poll.
    assert_eq!(
        device.poll("1.0").get("manifest"),
        Some(&Cbor::Bytes(manifest.clone()))
    );
    let metrics = server.get_text("/metrics").1;
    assert!(
        metrics.contains("lwota_manifests_signed_total"),
        "metric listed"
    );

    assert_eq!(server.delete(KEY_PATH).0, 204);
    assert!(!device.poll("1.0").contains_key("manifest"));
}

#[test]
fn python_device_verifies_the_manifest_and_the_image_over_udp() {
    let (server, _) = server_with_campaign(&["py-ok", "py-wrong", "py-tamper"], 5000);
    let key = create_key(&server, KEY_PATH);
    // The PEM exactly as exported by the admin API (what a device vendor
    // would bake in).
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("meter.pem");
    std::fs::write(&pem, key["public_key_pem"].as_str().unwrap()).unwrap();

    let o = verify_script(&server, "py-ok", pem.to_str().unwrap(), &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("manifest verified: meter 2.0 5000 bytes"),
        "{out}"
    );
    assert!(
        out.contains(&format!("kid {}", key["kid"].as_str().unwrap())),
        "{out}"
    );
    assert_eq!(task_of_device(&server, "py-ok")["state"], "verified");

    // Another product's key: refused by key id, reported as failed.
    let other = create_key(&server, "/api/v1/products/other/signing-key");
    let o = verify_script(
        &server,
        "py-wrong",
        other["public_key"].as_str().unwrap(),
        &[],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(out.contains("REJECTED: signed by key id"), "{out}");
    let task = task_of_device(&server, "py-wrong");
    assert_eq!(task["state"], "failed");
    assert!(
        task["error"].as_str().unwrap().contains("manifest"),
        "{task}"
    );

    // The right key, a changed payload: the signature does not verify.
    let o = verify_script(
        &server,
        "py-tamper",
        key["public_key"].as_str().unwrap(),
        &["--tamper"],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(out.contains("REJECTED: bad signature"), "{out}");
}

#[test]
fn simulator_verifies_manifests_and_fails_on_a_bad_signature() {
    let names = [
        "good-00000",
        "good-00001",
        "good-00002",
        "bad-00000",
        "bad-00001",
        "unsigned-00000",
    ];
    let (server, _) = server_with_campaign(&names, 4000);
    let key = create_key(&server, KEY_PATH);
    let good = lwota::sim::parse_public_key(key["public_key"].as_str().unwrap()).unwrap();
    let mut config = sim_config(&server, 3, "good-", "meter", "1.0");
    config.verify_key = Some(good);
    let report = run_sim(config);
    assert_eq!((report.updated(), report.failed()), (3, 0), "{report:?}");
    assert_eq!(report.manifest_rejected(), 0);

    // Another key: every device refuses before downloading a block.
    let other = create_key(&server, "/api/v1/products/other/signing-key");
    let wrong = lwota::sim::parse_public_key(other["public_key"].as_str().unwrap()).unwrap();
    let mut config = sim_config(&server, 2, "bad-", "meter", "1.0");
    config.verify_key = Some(wrong);
    let report = run_sim(config);
    assert_eq!((report.updated(), report.failed()), (0, 2), "{report:?}");
    assert_eq!(report.manifest_rejected(), 2);
    assert_eq!(report.blocks(), 0);
    let why = report.devices[0].last_error.clone().unwrap();
    assert!(
        why.starts_with("manifest rejected: manifest is signed by key id"),
        "{why}"
    );

    // No key on the server while the device expects one: refused too.
    assert_eq!(server.delete(KEY_PATH).0, 204);
    let mut config = sim_config(&server, 1, "unsigned-", "meter", "1.0");
    config.verify_key = Some(good);
    let report = run_sim(config);
    assert_eq!(report.manifest_rejected(), 1, "{report:?}");
    let why = report.devices[0].last_error.clone().unwrap();
    assert!(why.contains("no \"manifest\""), "{why}");

    assert!(lwota::sim::parse_public_key("abcd").is_err());
    assert!(lwota::sim::parse_public_key(&"zz".repeat(32)).is_err());
}

#[test]
fn cli_creates_shows_rotates_and_deletes_a_key() {
    let server = TestServer::start();
    let o = lwota(&server, &["key", "create", "--product", "meter"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let public = server.get(KEY_PATH).1;
    assert!(
        out.contains(public["public_key"].as_str().unwrap()),
        "{out}"
    );
    assert!(out.contains("Ed25519"), "{out}");

    let o = lwota(&server, &["key", "create", "--product", "meter"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("rotate"), "{err}");

    let o = lwota(&server, &["key", "show", "--product", "meter", "--pem"]);
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        public["public_key_pem"].as_str().unwrap()
    );

    let o = lwota(
        &server,
        &[
            "--output",
            "json",
            "key",
            "create",
            "--product",
            "meter",
            "--rotate",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rotated: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rotated["replaced_kid"], public["kid"]);

    let o = lwota(&server, &["key", "delete", "--product", "meter"]);
    assert!(o.status.success());
    assert_eq!(server.get(KEY_PATH).0, 404);
    let o = lwota(&server, &["key", "show", "--product", "meter"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no signing key"));
}

/// docs/PROTOCOL.md shows the script this file runs, verbatim.
#[test]
fn protocol_doc_shows_the_tested_python_verifier() {
    let root = env!("CARGO_MANIFEST_DIR");
    let doc = std::fs::read_to_string(format!("{root}/docs/PROTOCOL.md")).unwrap();
    let script =
        std::fs::read_to_string(format!("{root}/tests/interop/verify_manifest.py")).unwrap();
    let section = &doc[doc.find("## Signed manifests").expect("section")..];
    let start = section.find("```python\n").expect("python block") + "```python\n".len();
    let end = start + section[start..].find("```\n").unwrap();
    assert_eq!(
        &section[start..end],
        script,
        "docs/PROTOCOL.md and verify_manifest.py differ"
    );
}

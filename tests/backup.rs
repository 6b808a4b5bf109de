//! Issue 12 item 7: `lwota backup --out FILE` against a running server
//! makes a copy that, untarred into a fresh data dir, starts a server
//! with the same firmware (blobs included), devices and campaigns, and
//! holds every table of the original with the same number of rows.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use redb::{ReadableDatabase, ReadableTableMetadata, TableHandle};
use serde_json::{json, Value};

/// Every table of a redb file: name → rows.
fn tables(file: &Path) -> BTreeMap<String, u64> {
    let db = redb::Database::open(file).unwrap();
    let tx = db.begin_read().unwrap();
    tx.list_tables()
        .unwrap()
        .map(|handle| {
            let name = handle.name().to_string();
            let rows = tx.open_untyped_table(handle).unwrap().len().unwrap();
            (name, rows)
        })
        .collect()
}

#[test]
fn backup_of_a_running_server_restores_into_a_working_server() {
    let mut server = TestServer::start();
    let fw1 = server.upload_ok("meter", "2.0", &image(5000, 1));
    let _fw2 = server.upload_ok("meter", "3.0", &image(7000, 2));
    let devices: Vec<Value> = (0..30)
        .map(|i| json!({"name": format!("b{i:03}"), "product": "meter", "version": "1.0"}))
        .collect();
    assert_eq!(server.post_json("/api/v1/devices", &json!(devices)).0, 201);
    let (status, body) = server.post_json(
        "/api/v1/campaigns",
        &json!({"firmware": fw1, "target": {"devices": ["b000", "b001"]}}),
    );
    assert_eq!(status, 201, "{body}");
    let mut device = common::device::Device::new(server.coap, "b000", "meter");
    assert!(device.poll("1.0").contains_key("task"));
    // Issue 11 item 5: the product's signing key is in the backup.
    let key_path = "/api/v1/products/meter/signing-key";
    let (status, key) = server.post_json(key_path, &json!({}));
    assert_eq!(status, 201, "{key}");

    let out_dir = tempfile::tempdir().unwrap();
    let archive = out_dir.path().join("backup.tar");
    let output = Command::new(env!("CARGO_BIN_EXE_lwota"))
        .args(["backup", "--server", &server.url(""), "--out"])
        .arg(&archive)
        .env("LWOTA_TOKEN", &server.token)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "lwota backup failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("backup written to"));
    assert!(!out_dir.path().join("backup.tar.partial").exists());

    let firmware = server.get("/api/v1/firmware").1;
    let listed = server.get("/api/v1/devices").1;
    let campaigns = server.get("/api/v1/campaigns").1;
    // No staging directory is left in the data dir.
    let leftovers: Vec<_> = std::fs::read_dir(&server.dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".backup-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let original_dir = server.keep_dir();
    // The restored server keeps the tokens (stored hashed in the database);
    // its data dir has no admin.token file, so the original token is used.
    let token = server.token.clone();
    server.stop();

    // Restore: untar into a fresh data dir.
    let restored = tempfile::tempdir().unwrap();
    let file = std::fs::File::open(&archive).unwrap();
    tar::Archive::new(file).unpack(restored.path()).unwrap();
    let mut copied = tables(&restored.path().join("lwota.redb"));
    let mut original = tables(&original_dir.path().join("lwota.redb"));
    // A clean stop writes the clock floor into `counters` after the
    // backup; the id sequences there are checked below by use.
    assert!(copied.remove("counters").is_some() && original.remove("counters").is_some());
    assert_eq!(copied, original, "every table, with as many rows");

    let mut again = TestServer::start_with(test_config(restored.path()), None);
    again.token = token;
    assert_eq!(again.get("/api/v1/firmware").1, firmware);
    assert_eq!(again.get("/api/v1/devices").1, listed);
    assert_eq!(again.get("/api/v1/campaigns").1, campaigns);
    // The blobs came along: the image is served.
    let mut device = common::device::Device::new(again.coap, "b001", "meter");
    let block = device.get_block(&format!("/ota/fw/{fw1}"), 0, 6);
    assert_eq!(block.payload, image(5000, 1)[..1024].to_vec());
    // The restored server signs with the same key: same public key, and
    // b001's answer carries a manifest that verifies with it.
    assert_eq!(again.get(key_path).1, key);
    let public: [u8; 32] = hex::decode(key["public_key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let answer = device.poll("1.0");
    let Some(ciborium::Value::Bytes(manifest)) = answer.get("manifest") else {
        panic!("no manifest after restore: {answer:?}")
    };
    let signed = lwota::ota::signing::verify(manifest, &public).expect("verifies");
    assert_eq!(signed.version, "2.0");
    again.wait_for("/healthz", Duration::from_secs(5), |h| h["status"] == "ok");
    // The id sequences came along: ids go on, never reused.
    let (status, body) = again.post_json(
        "/api/v1/campaigns",
        &json!({"firmware": fw1, "target": {"devices": ["b002"]}}),
    );
    assert_eq!((status, body["id"].as_u64()), (201, Some(2)), "{body}");
    assert_eq!(again.upload_ok("meter", "4.0", &image(100, 3)), 3);
}

#[test]
fn backup_to_a_directory_is_refused_with_the_reason() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_lwota"))
        .args(["backup", "--server", &server.url(""), "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is a directory"), "{stderr}");
}

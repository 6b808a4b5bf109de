//! Firmware catalogue over the admin API: validation, limits, restart,
//! crash leftovers.

use crate::common;

use std::io::{Read, Write};

use common::*;
use serde_json::json;

#[test]
fn upload_list_show_delete() {
    let server = TestServer::start();
    let img = image(3000, 1);
    let (status, fw) = server.upload(
        "product=meter&version=1.2.3&name=Meter_fw(a)&kind=software&signature=md5&description=first&filename=m.bin",
        &img,
    );
    assert_eq!(status, 201, "{fw}");
    for key in [
        "id",
        "product",
        "name",
        "version",
        "kind",
        "filename",
        "size",
        "sha256",
        "md5",
        "signature",
        "description",
        "created_at",
    ] {
        assert!(!fw[key].is_null(), "missing {key}: {fw}");
    }
    assert_eq!(fw["size"], 3000);
    assert_eq!(fw["kind"], "software");
    assert_eq!(fw["signature"], "md5");
    use sha2::Digest;
    assert_eq!(fw["sha256"], hex::encode(sha2::Sha256::digest(&img)));
    assert_eq!(fw["md5"], hex::encode(md5::Md5::digest(&img)));

    let id = fw["id"].as_u64().unwrap();
    let (status, list) = server.get("/api/v1/firmware?product=meter");
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (_, none) = server.get("/api/v1/firmware?product=other");
    assert_eq!(none.as_array().unwrap().len(), 0);
    let (status, one) = server.get(&format!("/api/v1/firmware/{id}"));
    assert_eq!(status, 200);
    assert_eq!(one["counts"]["updated"], 0);

    let (status, _) = server.delete(&format!("/api/v1/firmware/{id}"));
    assert_eq!(status, 204);
    let (status, err) = server.get(&format!("/api/v1/firmware/{id}"));
    assert_eq!(status, 404);
    assert!(err["error"]["code"].is_string() && err["error"]["message"].is_string());
    assert_eq!(blob_files(&server.dir), 0, "blob removed with its record");
}

fn blob_files(dir: &std::path::Path) -> usize {
    let count = |p: std::path::PathBuf| {
        std::fs::read_dir(p)
            .map(|d| {
                d.filter(|e| e.as_ref().unwrap().file_type().unwrap().is_file())
                    .count()
            })
            .unwrap_or(0)
    };
    count(dir.join("blobs")) + count(dir.join("blobs/tmp"))
}

#[test]
fn every_validation_rule_is_a_400_with_a_clear_message() {
    let server = TestServer::start();
    let img = image(100, 2);
    let cases: Vec<(String, &str)> = vec![
        ("version=1".into(), "product"),
        ("product=p".into(), "version"),
        ("product=p&version=1&name=".into(), "name"),
        ("product=p&version=1&name=_starts_badly".into(), "name"),
        (
            format!("product=p&version=1&name={}", "a".repeat(33)),
            "name",
        ),
        ("product=p&version=1&name=has%20space".into(), "name"),
        ("product=p&version=1&name=dot.ted".into(), "name"),
        (format!("product=p&version={}", "1".repeat(65)), "version"),
        ("product=p&version=1%2F2".into(), "version"),
        ("product=p&version=1&kind=driver".into(), "kind"),
        ("product=p&version=1&signature=crc32".into(), "signature"),
        (
            format!("product=p&version=1&description={}", "d".repeat(101)),
            "description",
        ),
    ];
    for (query, field) in &cases {
        let (status, body) = server.upload(query, &img);
        assert_eq!(status, 400, "{query}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(field),
            "{query}: message {message:?} should name {field}"
        );
    }
    // Boundaries that are allowed.
    let ok = format!(
        "product=p&version={}&name={}&description={}",
        "v".repeat(64),
        "N".repeat(32),
        "d".repeat(100)
    );
    assert_eq!(server.upload(&ok, &img).0, 201);
    // Empty image.
    let (status, body) = server.upload("product=p&version=2", &[]);
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("empty"));
    // Same product version again: 409; same version, other product: fine.
    assert_eq!(server.upload("product=p&version=3", &img).0, 201);
    let (status, body) = server.upload("product=p&version=3", &image(50, 9));
    assert_eq!(status, 409, "{body}");
    assert_eq!(server.upload("product=q&version=3", &img).0, 201);
    let (_, list) = server.get("/api/v1/firmware");
    assert_eq!(
        list.as_array().unwrap().len(),
        3,
        "rejected uploads left no record"
    );
}

#[test]
fn oversize_is_rejected_mid_stream_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.firmware.max_size = 10_000;
    config.firmware.max_per_product = 2;
    let server = TestServer::start_with(config, None);

    // Chunked upload without Content-Length: only the stream can tell.
    let mut stream = std::net::TcpStream::connect(server.http).unwrap();
    let head = format!("POST /api/v1/firmware?product=p&version=1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n", server.token);
    stream.write_all(head.as_bytes()).unwrap();
    let chunk = image(4096, 3);
    for _ in 0..4 {
        let _ = stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes());
        let _ = stream.write_all(&chunk);
        let _ = stream.write_all(b"\r\n");
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(response.contains("image_too_large"), "{response}");

    // Declared too large: refused before reading.
    let (status, _) = server.upload("product=p&version=2", &image(10_001, 4));
    assert_eq!(status, 400);
    assert_eq!(blob_files(&server.dir), 0, "nothing left on disk");
    let (_, list) = server.get("/api/v1/firmware");
    assert_eq!(list.as_array().unwrap().len(), 0);

    // Exactly the limit is fine; the per-product count limit holds.
    assert_eq!(
        server.upload("product=p&version=3", &image(10_000, 5)).0,
        201
    );
    assert_eq!(server.upload("product=p&version=4", &image(10, 5)).0, 201);
    let (status, body) = server.upload("product=p&version=5", &image(10, 6));
    assert_eq!(status, 409, "{body}");
}

#[test]
fn restart_keeps_catalogue_and_start_up_removes_orphan_blobs() {
    let mut server = TestServer::start();
    let id = server.upload_ok("p", "1.0", &image(5000, 7));
    let dir = server.keep_dir();
    server.stop();

    // A crash between blob rename and record commit leaves an orphan blob;
    // one during upload leaves a temp file.
    let orphan = dir.path().join("blobs").join("ab".repeat(32));
    std::fs::write(&orphan, b"orphan").unwrap();
    std::fs::write(dir.path().join("blobs/tmp/upload-dead"), b"partial").unwrap();

    let server = TestServer::start_with(test_config(dir.path()), None);
    let (status, fw) = server.get(&format!("/api/v1/firmware/{id}"));
    assert_eq!(status, 200);
    assert_eq!(fw["size"], 5000);
    assert!(!orphan.exists(), "orphan blob removed at start-up");
    assert_eq!(
        blob_files(dir.path()),
        1,
        "only the referenced blob is left"
    );
    // Ids keep counting after a restart.
    let next = server.upload_ok("p", "2.0", &image(10, 8));
    assert!(next > id);
}

#[test]
fn delete_is_refused_while_an_unfinished_campaign_uses_the_firmware() {
    let server = TestServer::start();
    let id = server.upload_ok("p", "2.0", &image(2000, 1));
    let (status, _) = server.post_json(
        "/api/v1/devices",
        &json!({"name": "d1", "product": "p", "version": "1.0"}),
    );
    assert_eq!(status, 201);
    let (status, c) = server.post_json(
        "/api/v1/campaigns",
        &json!({"firmware": id, "target": {"all": true}}),
    );
    assert_eq!(status, 201, "{c}");
    let r = server.delete(&format!("/api/v1/firmware/{id}"));
    assert_eq!(r.0, 409, "{}", r.1);
    assert_eq!(r.1["error"]["code"], "firmware_in_use");
    let cid = c["id"].as_u64().unwrap();
    assert_eq!(
        server
            .post_json(&format!("/api/v1/campaigns/{cid}/cancel"), &json!({}))
            .0,
        200
    );
    let r = server.delete(&format!("/api/v1/firmware/{id}"));
    assert_eq!(r.0, 204);
}

//! Issue 11 item 3: admin tokens. Every route of the router (walked from
//! the route table it is built from, `lwota::admin::routes`) needs a
//! token; a read token is refused on every mutating method; revocation
//! takes effect at once. Item 6 (critical): Host, Origin, Content-Type.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;
use serde_json::json;

/// Every route path with its parameters filled in, but `/healthz`.
fn concrete_paths() -> Vec<(String, &'static str)> {
    lwota::admin::route_paths()
        .into_iter()
        .filter(|p| *p != "/healthz")
        .map(|p| {
            let mut out = String::new();
            let mut rest = p;
            while let Some(start) = rest.find('{') {
                out.push_str(&rest[..start]);
                let end = rest[start..].find('}').unwrap() + start;
                out.push('1');
                rest = &rest[end + 1..];
            }
            out.push_str(rest);
            (out, p)
        })
        .collect()
}

/// The methods a route answers, from the `Allow` header of a 405.
fn methods_of(server: &TestServer, path: &str) -> Vec<String> {
    let response = server.request("BREW", path).call();
    let response = match response {
        Err(ureq::Error::Status(405, r)) => r,
        other => panic!("{path}: expected 405, got {other:?}"),
    };
    let allow = response.header("allow").unwrap_or_default().to_string();
    allow
        .split(',')
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect()
}

#[test]
fn every_route_needs_a_token_and_read_tokens_cannot_write() {
    let server = TestServer::start();
    let (status, read) =
        server.post_json("/api/v1/tokens", &json!({"name": "viewer", "role": "read"}));
    assert_eq!(status, 201, "{read}");
    let read_token = read["token"].as_str().unwrap().to_string();
    assert!(read_token.starts_with("lwota_"));

    let paths = concrete_paths();
    assert!(paths.len() >= 12, "{paths:?}");
    let mut writes = 0;
    for (path, template) in &paths {
        let methods = methods_of(&server, path);
        assert!(!methods.is_empty(), "{template}: no methods");
        for method in &methods {
            let url = server.url(path);
            // No token, a bad token: 401 with the JSON error body.
            let (status, body) = http(ureq::request(method, &url).call());
            assert_eq!(status, 401, "{method} {template} without a token: {body}");
            if method == "HEAD" {
                continue; // no body
            }
            assert_eq!(body["error"]["code"], "unauthorized");
            let (status, body) = http(with_token(ureq::request(method, &url), "lwota_nope").call());
            assert_eq!(status, 401, "{method} {template} bad token: {body}");
            assert_eq!(body["error"]["code"], "invalid_token");
            if matches!(method.as_str(), "GET" | "HEAD" | "OPTIONS") {
                continue;
            }
            writes += 1;
            let (status, body) = http(
                with_token(ureq::request(method, &url), &read_token)
                    .set("Content-Type", "application/json")
                    .send_string("{}"),
            );
            assert_eq!(status, 403, "{method} {template} with a read token: {body}");
            assert_eq!(body["error"]["code"], "forbidden");
        }
    }
    assert!(writes >= 6, "mutating routes found: {writes}");
    // The read token reads.
    let (status, _) =
        http(with_token(ureq::get(&server.url("/api/v1/devices")), &read_token).call());
    assert_eq!(status, 200);
    // /healthz stays open.
    assert_eq!(http(ureq::get(&server.url("/healthz")).call()).0, 200);
}

#[test]
fn tokens_are_listed_without_secrets_and_revoked_at_once() {
    let server = TestServer::start();
    let (status, made) =
        server.post_json("/api/v1/tokens", &json!({"name": "ci", "role": "admin"}));
    assert_eq!(status, 201, "{made}");
    let token = made["token"].as_str().unwrap().to_string();
    let devices = server.url("/api/v1/devices");
    assert_eq!(http(with_token(ureq::get(&devices), &token).call()).0, 200);

    let (status, list) = server.get("/api/v1/tokens");
    assert_eq!(status, 200);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "ci"]);
    assert!(!list.to_string().contains(&token), "no secret listed");
    assert!(list[1].get("token").is_none() && list[1]["role"] == "admin");

    // Same name twice, bad role, unknown field.
    assert_eq!(
        server
            .post_json("/api/v1/tokens", &json!({"name": "ci", "role": "read"}))
            .0,
        409
    );
    for bad in [
        json!({"name": "x", "role": "root"}),
        json!({"name": "x", "role": "read", "extra": 1}),
        json!({"name": "bad name", "role": "read"}),
    ] {
        assert_eq!(server.post_json("/api/v1/tokens", &bad).0, 400, "{bad}");
    }

    assert_eq!(server.delete("/api/v1/tokens/ci").0, 204);
    let (status, body) = http(with_token(ureq::get(&devices), &token).call());
    assert_eq!(status, 401, "revoked at once: {body}");
    assert_eq!(server.delete("/api/v1/tokens/ci").0, 404);
}

#[test]
fn first_start_writes_a_private_token_file_and_logs_only_its_path() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lwota"))
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args(["--coap-bind", "127.0.0.1:0", "--http-bind", "127.0.0.1:0"])
        .args(["--coaps-bind", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = String::new();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        log.push_str(&line);
        log.push('\n');
        if line.contains("http listening on") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let file = dir.path().join("admin.token");
    let token = read_token(dir.path());
    assert!(token.starts_with("lwota_") && token.len() == 70, "{token}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(log.contains("admin.token"), "the path is logged: {log}");
    assert!(!log.contains(&token), "the token is never logged");

    // A restart keeps the token.
    let server = ChildServer::spawn(dir.path(), "127.0.0.1:0", "127.0.0.1:0");
    assert_eq!(server.token, token);
    assert_eq!(http(server.request("GET", "/api/v1/devices").call()).0, 200);
}

#[test]
fn browsers_cannot_drive_the_api() {
    let server = TestServer::start();
    let devices = "/api/v1/devices";
    let body = json!({"name": "d1", "product": "p"});
    // DNS rebinding: a name we do not serve.
    let (status, answer) = http(
        server
            .request("GET", devices)
            .set("Host", "evil.example:8080")
            .call(),
    );
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["error"]["code"], "host_not_allowed");
    // Another page's origin, or none ("null").
    for origin in ["http://evil.example", "null", "http://127.0.0.1:1"] {
        let (status, answer) = http(
            server
                .request("POST", devices)
                .set("Origin", origin)
                .send_json(body.clone()),
        );
        assert_eq!(status, 403, "{origin}: {answer}");
        assert_eq!(answer["error"]["code"], "origin_not_allowed");
    }
    // Form content types on a JSON route.
    for ctype in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ] {
        let (status, answer) = http(
            server
                .request("POST", devices)
                .set("Content-Type", ctype)
                .send_string(&body.to_string()),
        );
        assert_eq!(status, 415, "{ctype}: {answer}");
    }
    let (status, _) = http(
        server
            .request("POST", "/api/v1/firmware?product=p&version=1")
            .set("Content-Type", "text/plain")
            .send_bytes(b"abc"),
    );
    assert_eq!(status, 415);
    // Nothing was created; the same request from the page's own origin works.
    assert_eq!(server.get("/api/v1/devices/d1").0, 404);
    let own = format!("http://{}", server.http);
    let (status, answer) = http(
        server
            .request("POST", devices)
            .set("Origin", &own)
            .send_json(body),
    );
    assert_eq!(status, 201, "{answer}");
}

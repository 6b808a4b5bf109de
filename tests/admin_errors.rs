//! Issue 8 item 8 (admin half): every admin error carries the JSON error
//! body, and path ids are read strictly. Raw HTTP over a real listener, so
//! what is checked is exactly what a client receives.

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{image, TestServer};
use serde_json::{json, Value};

struct Answer {
    status: u16,
    head: String,
    body: Value,
    raw_body: String,
}

/// Sends `request` as is and reads the answer until the server closes.
fn raw(addr: SocketAddr, request: &[u8]) -> Answer {
    raw_with(addr, request, false)
}

/// `end_early`: close our sending side after the request (a client that
/// goes away mid-body).
fn raw_with(addr: SocketAddr, request: &[u8], end_early: bool) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The server may answer (and close) before it read all of a body it
    // refuses: a failed write here is fine.
    let _ = stream.write_all(request);
    if end_early {
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
        }
        if complete(&bytes) {
            break;
        }
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    Answer {
        status,
        head: head.to_string(),
        body: serde_json::from_str(body).unwrap_or(Value::Null),
        raw_body: body.to_string(),
    }
}

/// Whether a response with a Content-Length has fully arrived.
fn complete(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .is_some_and(|len| body.len() >= len)
}

/// A request with the admin token (issue 11).
fn request(token: &str, method: &str, path: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n{headers}\r\n"
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn assert_json_error(answer: &Answer, status: u16, code: &str) {
    assert_eq!(
        answer.status, status,
        "{}\n{}",
        answer.head, answer.raw_body
    );
    assert!(
        answer
            .head
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{}",
        answer.head
    );
    assert_eq!(answer.body["error"]["code"], code, "{}", answer.raw_body);
    assert!(
        answer.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        answer.raw_body
    );
}

#[test]
fn wrong_method_is_a_json_405() {
    let server = TestServer::start();
    let answer = raw(
        server.http,
        &request(&server.token, "DELETE", "/api/v1/devices", "", b""),
    );
    assert_json_error(&answer, 405, "method_not_allowed");
    assert!(
        answer.head.to_ascii_lowercase().contains("allow:"),
        "the Allow header stays: {}",
        answer.head
    );
    let answer = raw(
        server.http,
        &request(&server.token, "PUT", "/api/v1/campaigns/1", "", b""),
    );
    assert_json_error(&answer, 405, "method_not_allowed");
}

#[test]
fn body_over_the_limit_is_a_json_413() {
    let server = TestServer::start();
    // Announced larger than the 32 MiB JSON limit: refused on the header.
    let answer = raw(
        server.http,
        &request(
            &server.token,
            "POST",
            "/api/v1/devices",
            "Content-Type: application/json\r\nContent-Length: 40000000\r\n",
            b"[",
        ),
    );
    assert_json_error(&answer, 413, "payload_too_large");
}

#[test]
fn bad_content_length_and_bad_json_are_json_400s() {
    let server = TestServer::start();
    let answer = raw(
        server.http,
        &request(
            &server.token,
            "POST",
            "/api/v1/devices",
            "Content-Type: application/json\r\n",
            b"",
        ),
    );
    // No body at all: not JSON.
    assert_json_error(&answer, 400, "invalid_request");
    // A body shorter than announced, then the client stops sending.
    let answer = raw_with(
        server.http,
        &request(
            &server.token,
            "POST",
            "/api/v1/campaigns",
            "Content-Type: application/json\r\nContent-Length: 9\r\n",
            b"{\"firmwa",
        ),
        true,
    );
    assert_json_error(&answer, 400, "invalid_request");
    let answer = raw(
        server.http,
        &request(
            &server.token,
            "POST",
            "/api/v1/campaigns",
            "Content-Type: application/json\r\nContent-Length: 5\r\n",
            b"{nope",
        ),
    );
    assert_json_error(&answer, 400, "invalid_request");
}

#[test]
fn unparsable_content_length_is_a_json_400() {
    let server = TestServer::start();
    for headers in [
        "Content-Length: abc\r\n",
        "Content-Length: -1\r\n",
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Content-Length: 99999999999999999999999\r\n",
    ] {
        let answer = raw(
            server.http,
            &request(&server.token, "POST", "/api/v1/devices", headers, b"{}"),
        );
        assert_json_error(&answer, 400, "invalid_request");
    }
    // The listener still serves normally afterwards.
    assert_eq!(server.get("/healthz").0, 200);
}

#[test]
fn unknown_routes_are_json_404s() {
    let server = TestServer::start();
    for path in [
        "/nope",
        "/api/v1",
        "/api/v1/firmware/1/extra",
        "/api/v2/devices",
    ] {
        let answer = raw(server.http, &request(&server.token, "GET", path, "", b""));
        assert_json_error(&answer, 404, "not_found");
    }
}

#[test]
fn ids_are_canonical_decimal_only() {
    let server = TestServer::start();
    let fw = server.upload_ok("p", "2.0", &image(1000, 9));
    assert_eq!(fw, 1);
    assert_eq!(
        server
            .post_json(
                "/api/v1/devices",
                &json!({"name": "d1", "product": "p", "version": "1.0"})
            )
            .0,
        201
    );
    let (status, campaign) = server.post_json(
        "/api/v1/campaigns",
        &json!({"firmware": 1, "target": {"all": true}}),
    );
    assert_eq!(status, 201, "{campaign}");
    assert_eq!(campaign["id"], 1);

    for (base, code) in [
        ("/api/v1/firmware/", "unknown_firmware"),
        ("/api/v1/campaigns/", "unknown_campaign"),
    ] {
        let answer = raw(
            server.http,
            &request(&server.token, "GET", &format!("{base}1"), "", b""),
        );
        assert_eq!(answer.status, 200, "{base}1: {}", answer.raw_body);
        for id in ["+1", "01", "%201", "1.0", "%2B1", "0x1", "1%20"] {
            let answer = raw(
                server.http,
                &request(&server.token, "GET", &format!("{base}{id}"), "", b""),
            );
            assert_json_error(&answer, 404, code);
        }
    }
    for id in ["+1", "01"] {
        let answer = raw(
            server.http,
            &request(
                &server.token,
                "POST",
                &format!("/api/v1/campaigns/{id}/cancel"),
                "",
                b"",
            ),
        );
        assert_json_error(&answer, 404, "unknown_campaign");
        let answer = raw(
            server.http,
            &request(
                &server.token,
                "DELETE",
                &format!("/api/v1/firmware/{id}"),
                "",
                b"",
            ),
        );
        assert_json_error(&answer, 404, "unknown_firmware");
    }
    // Nothing was cancelled or deleted through a lookalike id.
    assert_eq!(server.get("/api/v1/campaigns/1").1["status"], "running");
    assert_eq!(server.get("/api/v1/firmware/1").0, 200);
}

#[test]
fn healthz_is_json() {
    let server = TestServer::start();
    let answer = raw(
        server.http,
        &request(&server.token, "GET", "/healthz", "", b""),
    );
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["status"], "ok", "{}", answer.raw_body);
}

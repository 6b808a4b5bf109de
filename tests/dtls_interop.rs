//! CoAPS (DTLS 1.2 PSK) end to end: libcoap's coap-client-openssl and
//! Python aiocoap[tinydtls] as independent stacks, our own OpenSSL client
//! for refusals, and a ClientHello flood. Missing tools fail the test
//! (scripts/test.sh installs them).

use crate::common;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use coap_lite::{ContentFormat, MessageClass, Packet, RequestType, ResponseType};
use common::device::{cbor, text};
use common::*;
use lwota::sim::dtls_client::{client_stream, DtlsClient};
use serde_json::json;
use sha2::{Digest, Sha256};

const KEY: &[u8] = b"secretPSK-0123";

fn coaps(server: &TestServer) -> SocketAddr {
    server.coaps.expect("coaps listening")
}

/// A registered device with a PSK.
fn device_with_psk(server: &TestServer, name: &str, product: &str, identity: &str, key: &[u8]) {
    let (status, body) = server.post_json(
        "/api/v1/devices",
        &json!({"name": name, "product": product, "version": "1.0"}),
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = server.put_json(
        &format!("/api/v1/devices/{name}/psk"),
        &json!({"identity": identity, "key": hex::encode(key)}),
    );
    assert_eq!(status, 204, "{body}");
}

fn coap_client_openssl() -> &'static str {
    let ok = Command::new("sh")
        .args(["-c", "command -v coap-client-openssl"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "coap-client-openssl not found: install libcoap3-bin (scripts/test.sh does)"
    );
    "coap-client-openssl"
}

fn post(path: &str, body: Vec<u8>) -> Packet {
    let mut p = Packet::new();
    p.header.code = MessageClass::Request(RequestType::Post);
    for seg in path.trim_start_matches('/').split('/') {
        p.add_option(coap_lite::CoapOption::UriPath, seg.as_bytes().to_vec());
    }
    p.set_content_format(ContentFormat::ApplicationCBOR);
    p.payload = body;
    p
}

fn code(p: &Packet) -> MessageClass {
    p.header.code
}

#[test]
fn libcoap_downloads_an_image_blockwise_over_coaps() {
    let server = TestServer::start();
    device_with_psk(&server, "dev-a", "p", "dev-a-id", KEY);
    let img = image(100_000, 3);
    let id = server.upload_ok("p", "2.0", &img);
    for block in [64, 1024] {
        let out = tempfile::NamedTempFile::new().unwrap();
        let status = Command::new(coap_client_openssl())
            .args(["-u", "dev-a-id", "-k", std::str::from_utf8(KEY).unwrap()])
            .args(["-m", "get", "-b", &block.to_string(), "-o"])
            .arg(out.path())
            .arg(format!("coaps://{}/ota/fw/{id}", coaps(&server)))
            .status()
            .expect("run coap-client-openssl");
        assert!(status.success(), "coap-client-openssl -b {block}");
        let got = std::fs::read(out.path()).unwrap();
        assert_eq!(
            Sha256::digest(&got),
            Sha256::digest(&img),
            "digest at -b {block}"
        );
    }
    // Identity bound to dev-a: another device's poll is a 4.03, no device made.
    let out = Command::new(coap_client_openssl())
        .args(["-u", "dev-a-id", "-k", std::str::from_utf8(KEY).unwrap()])
        .args(["-m", "post", "-t", "60", "-e", "x"])
        .arg(format!("coaps://{}/ota/intruder/poll", coaps(&server)))
        .output()
        .unwrap();
    let printed =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(printed.contains("4.03"), "{printed}");
    assert_eq!(server.get("/api/v1/devices/intruder").0, 404);
}

#[test]
fn aiocoap_tinydtls_device_updates_over_coaps() {
    let server = TestServer::start();
    device_with_psk(&server, "tiny-1", "ptiny", "tiny-1-id", KEY);
    let img = image(20_000, 9);
    let fw = server.upload_ok("ptiny", "2.0", &img);
    let (status, body) = server.post_json(
        "/api/v1/campaigns",
        &json!({"firmware": fw, "target": {"devices": ["tiny-1"]}}),
    );
    assert_eq!(status, 201, "{body}");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/dtls_device.py");
    let ok = Command::new("python3")
        .args(["-c", "import aiocoap, cbor2, DTLSSocket"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "python3 with aiocoap[tinydtls] not found (scripts/test.sh installs it)"
    );
    let out = Command::new("python3")
        .arg(script)
        .arg(coaps(&server).to_string())
        .args([
            "tiny-1",
            "ptiny",
            "1.0",
            "tiny-1-id",
            std::str::from_utf8(KEY).unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "aiocoap device failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, device) = server.get("/api/v1/devices/tiny-1");
    assert_eq!(device["version"], "2.0", "{device}");
    assert_eq!(server.get("/api/v1/devices/someone-else").0, 404);
}

#[test]
fn both_contract_suites_and_identity_binding_with_our_client() {
    let server = TestServer::start();
    device_with_psk(&server, "dev-b", "p", "dev-b-id", KEY);
    device_with_psk(&server, "dev-c", "p", "dev-c-id", b"other-key");
    for cipher in ["PSK-AES128-CCM8", "PSK-AES128-GCM-SHA256"] {
        let mut c = DtlsClient::connect(
            coaps(&server),
            "127.0.0.1:0",
            "dev-b-id",
            KEY,
            cipher,
            Duration::from_secs(10),
        )
        .expect("handshake");
        let body = cbor(&[("product", text("p")), ("version", text("1.0"))]);
        let r = c
            .request(post("/ota/dev-b/poll", body.clone()))
            .expect("answer");
        assert_eq!(
            code(&r),
            MessageClass::Response(ResponseType::Content),
            "{cipher}"
        );
        // dev-c over dev-b's session: 4.03, and dev-c's record is untouched.
        let (_, before) = server.get("/api/v1/devices/dev-c");
        let r = c
            .request(post("/ota/dev-c/poll", body.clone()))
            .expect("answer");
        assert_eq!(code(&r), MessageClass::Response(ResponseType::Forbidden));
        let report = cbor(&[("task", text("c1")), ("state", text("failed"))]);
        let r = c
            .request(post("/ota/dev-c/report", report))
            .expect("answer");
        assert_eq!(code(&r), MessageClass::Response(ResponseType::Forbidden));
        assert_eq!(server.get("/api/v1/devices/dev-c").1, before);
    }
    // Wrong key and unknown identity: no session.
    for (identity, key) in [("dev-b-id", &b"wrong-key!"[..]), ("nobody", KEY)] {
        let r = DtlsClient::connect(
            coaps(&server),
            "127.0.0.1:0",
            identity,
            key,
            "PSK-AES128-CCM8",
            Duration::from_secs(3),
        );
        assert!(r.is_err(), "{identity} must be refused");
    }
}

#[test]
fn psk_route_validates_and_keys_are_never_returned() {
    let server = TestServer::start();
    device_with_psk(&server, "dev-d", "p", "dev-d-id", KEY);
    device_with_psk(&server, "dev-e", "p", "dev-e-id", KEY);
    for body in [
        json!({"identity": "", "key": "00112233"}),
        json!({"identity": "x", "key": "001122"}),
        json!({"identity": "x", "key": "zz112233"}),
        json!({"identity": "x\u{1b}", "key": "00112233"}),
        json!({"identity": "x", "key": "00112233", "extra": 1}),
        json!({"identity": "x"}),
    ] {
        let (status, _) = server.put_json("/api/v1/devices/dev-d/psk", &body);
        assert_eq!(status, 400, "{body}");
    }
    let (status, body) = server.put_json(
        "/api/v1/devices/dev-d/psk",
        &json!({"identity": "dev-e-id", "key": "00112233"}),
    );
    assert_eq!(status, 409, "{body}");
    let (status, _) = server.put_json(
        "/api/v1/devices/ghost/psk",
        &json!({"identity": "g", "key": "00112233"}),
    );
    assert_eq!(status, 404);
    let (_, device) = server.get("/api/v1/devices/dev-d");
    assert!(!device.to_string().contains(&hex::encode(KEY)), "{device}");
    // Rotation: the new key works for a new session, the old one does not.
    let (status, _) = server.put_json(
        "/api/v1/devices/dev-d/psk",
        &json!({"identity": "dev-d-id", "key": hex::encode(b"rotated-key")}),
    );
    assert_eq!(status, 204);
    let connect = |key: &[u8]| {
        DtlsClient::connect(
            coaps(&server),
            "127.0.0.1:0",
            "dev-d-id",
            key,
            "PSK-AES128-CCM8",
            Duration::from_secs(3),
        )
    };
    assert!(connect(b"rotated-key").is_ok());
    assert!(connect(KEY).is_err());
}

#[test]
fn require_dtls_products_are_refused_on_plain_coap() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.dtls.require_dtls = vec!["secure".into()];
    let server = TestServer::start_with(config, None);
    device_with_psk(&server, "s1", "secure", "s1-id", KEY);
    let mut plain = common::device::Device::new(server.coap, "s1", "secure");
    let body = cbor(&[("product", text("secure")), ("version", text("1.0"))]);
    let r = plain.post("poll", body.clone());
    assert_eq!(code(&r), MessageClass::Response(ResponseType::Unauthorized));
    let mut c = DtlsClient::connect(
        coaps(&server),
        "127.0.0.1:0",
        "s1-id",
        KEY,
        "PSK-AES128-GCM-SHA256",
        Duration::from_secs(10),
    )
    .expect("handshake");
    let r = c.request(post("/ota/s1/poll", body)).expect("answer");
    assert_eq!(code(&r), MessageClass::Response(ResponseType::Content));
}

/// A flood of ClientHellos from many ports (no cookie: stateless answers),
/// plus clients that complete the cookie exchange and then stall (half-open
/// state, capped per address): a real device on another address still
/// completes its handshake.
#[test]
fn client_hello_flood_stays_under_the_caps() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.dtls.max_half_open = 64;
    config.dtls.max_half_open_per_ip = 4;
    config.coap.shards = 1;
    let server = TestServer::start_with(config, None);
    device_with_psk(&server, "real", "p", "real-id", KEY);
    let target = coaps(&server);
    // One ClientHello without a cookie, sent from 300 ports.
    let mut hello = client_stream("flood", b"x", "PSK-AES128-CCM8");
    let _ = hello.do_handshake();
    let first = hello.get_mut().pop().expect("a ClientHello");
    let mut answered = 0;
    for _ in 0..300 {
        let s = UdpSocket::bind("127.0.0.2:0").unwrap();
        s.send_to(&first, target).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 2048];
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            assert_eq!(buf[13], 3, "HelloVerifyRequest");
            assert!(n < 64, "a HelloVerifyRequest is small ({n} bytes)");
            answered += 1;
        }
    }
    assert!(answered > 250, "{answered} HelloVerifyRequests");
    // 12 stalled handshakes past the cookie from one address: only 4 get a
    // ServerHello (half-open per address).
    let mut got_server_hello = 0;
    for _ in 0..12 {
        let s = UdpSocket::bind("127.0.0.2:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut stream = client_stream("real-id", KEY, "PSK-AES128-CCM8");
        let _ = stream.do_handshake();
        let ch = stream.get_mut().pop().unwrap();
        s.send_to(&ch, target).unwrap();
        let mut buf = [0u8; 2048];
        let (n, _) = s.recv_from(&mut buf).expect("HelloVerifyRequest");
        stream.get_mut().push(&buf[..n]);
        let _ = stream.do_handshake();
        let ch2 = stream.get_mut().pop().unwrap();
        s.send_to(&ch2, target).unwrap();
        if let Ok((_, _)) = s.recv_from(&mut buf) {
            if buf[0] == 22 && buf[13] == 2 {
                got_server_hello += 1;
            }
        }
        // ... and never answer: the handshake stays half-open.
        std::mem::forget(s);
    }
    assert_eq!(got_server_hello, 4, "half-open per address capped at 4");
    let mut c = DtlsClient::connect(
        target,
        "127.0.0.1:0",
        "real-id",
        KEY,
        "PSK-AES128-CCM8",
        Duration::from_secs(10),
    )
    .expect("a real device still completes its handshake");
    let body = cbor(&[("product", text("p")), ("version", text("1.0"))]);
    let r = c.request(post("/ota/real/poll", body)).expect("answer");
    assert_eq!(code(&r), MessageClass::Response(ResponseType::Content));
}

/// Refusals are logged with who tried and why, never with a key.
#[test]
fn refusals_are_logged_without_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("server.toml");
    std::fs::write(&config, "[dtls]\nhandshake_timeout = 1\n").unwrap();
    let log = tmp.path().join("server.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lwota"))
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .args(["--coap-bind", "127.0.0.1:0", "--http-bind", "127.0.0.1:0"])
        .args(["--coaps-bind", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut coaps, mut http) = (None, None);
    while coaps.is_none() || http.is_none() {
        let line = lines.next().expect("addresses").unwrap();
        if let Some(a) = line.strip_prefix("coaps listening on ") {
            coaps = Some(a.trim().parse::<SocketAddr>().unwrap());
        }
        if let Some(a) = line.strip_prefix("http listening on ") {
            http = Some(a.trim().to_string());
        }
    }
    let (coaps, http) = (coaps.unwrap(), http.unwrap());
    let url = |p: &str| format!("http://{http}{p}");
    let token = read_token(&tmp.path().join("data"));
    http_ok(
        with_token(ureq::post(&url("/api/v1/devices")), &token)
            .send_json(json!({"name": "lg", "product": "p"})),
    );
    http_ok(
        with_token(ureq::put(&url("/api/v1/devices/lg/psk")), &token)
            .send_json(json!({"identity": "lg-id", "key": hex::encode(KEY)})),
    );
    let connect = |identity: &str, key: &[u8]| {
        DtlsClient::connect(
            coaps,
            "127.0.0.1:0",
            identity,
            key,
            "PSK-AES128-CCM8",
            Duration::from_secs(3),
        )
    };
    assert!(connect("stranger", KEY).is_err());
    assert!(connect("lg-id", b"wrong-key-123").is_err());
    let mut c = connect("lg-id", KEY).expect("handshake");
    let body = cbor(&[("product", text("p")), ("version", text("1.0"))]);
    let r = c.request(post("/ota/other/poll", body)).expect("answer");
    assert_eq!(code(&r), MessageClass::Response(ResponseType::Forbidden));
    std::thread::sleep(Duration::from_millis(2500)); // handshake_timeout = 1 s
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("unknown PSK identity") && text.contains("stranger"),
        "{text}"
    );
    assert!(
        text.contains("wrong key?") && text.contains("lg-id"),
        "{text}"
    );
    assert!(text.contains("another device"), "{text}");
    for secret in [
        hex::encode(KEY),
        String::from_utf8_lossy(KEY).into_owned(),
        "wrong-key-123".into(),
    ] {
        assert!(!text.contains(&secret), "a key in the log:\n{text}");
    }
}

fn http_ok(result: Result<ureq::Response, ureq::Error>) {
    let (status, body) = http(result);
    assert!((200..300).contains(&status), "{status} {body}");
}

/// `server.coap_enabled = false`: CoAPS only, nothing on plain CoAP.
#[test]
fn plain_coap_can_be_switched_off() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.server.coap_enabled = false;
    let server = TestServer::start_with(config, None);
    device_with_psk(&server, "only-s", "p", "only-s-id", KEY);
    assert_eq!(
        Some(server.coap),
        server.coaps,
        "the CoAP handle is the CoAPS one"
    );
    let mut c = DtlsClient::connect(
        coaps(&server),
        "127.0.0.1:0",
        "only-s-id",
        KEY,
        "PSK-AES128-CCM8",
        Duration::from_secs(10),
    )
    .expect("handshake");
    let body = cbor(&[("product", text("p")), ("version", text("1.0"))]);
    let r = c.request(post("/ota/only-s/poll", body)).expect("answer");
    assert_eq!(code(&r), MessageClass::Response(ResponseType::Content));
}

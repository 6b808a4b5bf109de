//! Replays datagrams recorded from third-party CoAP clients (libcoap's
//! coap-client, Python aiocoap; see `scripts/record_fixtures.py`) against
//! a real server, byte for byte, as regression cases: whatever we change in
//! the codec or the endpoint, what those clients really send keeps working.

use crate::common;

use std::net::UdpSocket;
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, ResponseType};
use common::TestServer;
use serde_json::json;

/// The bytes of `fixtures/datagrams/NAME.hex` (lines starting with `#`
/// are comments).
fn fixture(name: &str) -> Vec<u8> {
    let path = common::fixture(&format!("datagrams/{name}.hex"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let hex: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .concat();
    hex::decode(hex.trim()).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// Sends the datagram from a fresh socket and returns the parsed answer.
fn replay(server: &TestServer, socket: &UdpSocket, bytes: &[u8]) -> Packet {
    socket.send_to(bytes, server.coap).unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = socket.recv_from(&mut buf).expect("an answer");
    Packet::from_bytes(&buf[..n]).expect("a decodable answer")
}

/// Proves 127.0.0.1 to the server (RFC 9175 Echo): the recordings were
/// made against a server whose clients had, so full-size answers follow.
fn verify_loopback(server: &TestServer) {
    let socket = client();
    let mut probe = Packet::new();
    probe.header.set_type(MessageType::Confirmable);
    probe.header.code = MessageClass::Request(coap_lite::RequestType::Get);
    probe.header.message_id = 1;
    probe.add_option(CoapOption::UriPath, b".well-known".to_vec());
    probe.add_option(CoapOption::UriPath, b"core".to_vec());
    let first = replay(server, &socket, &probe.to_bytes().unwrap());
    let echo = first
        .get_first_option(CoapOption::Unknown(252))
        .expect("Echo offered")
        .clone();
    probe.header.message_id = 2;
    probe.add_option(CoapOption::Unknown(252), echo);
    let second = replay(server, &socket, &probe.to_bytes().unwrap());
    assert!(second.get_first_option(CoapOption::Unknown(252)).is_none());
}

fn client() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket
}

fn code(p: &Packet) -> MessageClass {
    p.header.code
}

fn content() -> MessageClass {
    MessageClass::Response(ResponseType::Content)
}

fn cbor_map(p: &Packet) -> ciborium::Value {
    ciborium::from_reader(p.payload.as_slice()).expect("CBOR payload")
}

fn map_get<'a>(map: &'a ciborium::Value, key: &str) -> Option<&'a ciborium::Value> {
    map.as_map()?
        .iter()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
}

#[test]
fn recorded_client_datagrams_get_the_documented_answers() {
    let server = TestServer::start();
    let image = common::image(5_000, 7);
    let (status, _) = server.post_json(
        "/api/v1/devices",
        &json!({"name": "fixture-dev", "product": "sensor", "version": "1.0"}),
    );
    assert_eq!(status, 201);
    let fw = server.upload_ok("sensor", "2.0", &image);
    assert_eq!(fw, 1, "the recordings ask for firmware 1");
    let (status, body) = server.post_json(
        "/api/v1/campaigns",
        &json!({"firmware": fw, "target": {"devices": ["fixture-dev"]}}),
    );
    assert_eq!(status, 201, "{body}");
    verify_loopback(&server);

    // Block2 downloads at the sizes each client asked for.
    for (name, size) in [
        ("libcoap-get-fw-block2-szx2", 64),
        ("aiocoap-get-fw-block2-szx6", 1024),
    ] {
        let bytes = fixture(name);
        let request = Packet::from_bytes(&bytes).unwrap();
        let answer = replay(&server, &client(), &bytes);
        assert_eq!(code(&answer), content(), "{name}");
        assert_eq!(answer.header.get_type(), MessageType::Acknowledgement);
        assert_eq!(answer.header.message_id, request.header.message_id);
        assert_eq!(answer.get_token(), request.get_token());
        assert_eq!(answer.payload, image[..size], "{name}");
        assert!(answer.get_first_option(CoapOption::Size2).is_some());
    }

    // A NON request gets a NON answer with the same token.
    let bytes = fixture("libcoap-non-get-fw");
    let answer = replay(&server, &client(), &bytes);
    assert_eq!(code(&answer), content());
    assert_eq!(answer.header.get_type(), MessageType::NonConfirmable);
    assert_eq!(
        answer.get_token(),
        Packet::from_bytes(&bytes).unwrap().get_token()
    );

    let answer = replay(&server, &client(), &fixture("libcoap-get-well-known-core"));
    assert_eq!(code(&answer), content());
    let links = String::from_utf8(answer.payload.clone()).unwrap();
    assert!(links.contains("</ota/fw/1>"), "{links}");
    assert!(links.contains("</ota>;rt=\"lwota.device\""), "{links}");

    // Both clients' polls are handed the task; the campaign's task is c1.
    for name in ["libcoap-post-poll-cbor", "aiocoap-post-poll-cbor"] {
        let answer = replay(&server, &client(), &fixture(name));
        assert_eq!(code(&answer), content(), "{name}");
        let map = cbor_map(&answer);
        assert_eq!(
            map_get(&map, "task").and_then(|v| v.as_text()),
            Some("c1"),
            "{name}: {map:?}"
        );
    }

    // The first 16-byte Block1 piece of libcoap's block-wise POST: the
    // server takes pieces (2.31 Continue, Block1 echoed) rather than
    // mistaking the piece for the whole body.
    let bytes = fixture("libcoap-post-poll-block1-first");
    let request = Packet::from_bytes(&bytes).unwrap();
    let answer = replay(&server, &client(), &bytes);
    assert_eq!(
        code(&answer),
        MessageClass::Response(ResponseType::Continue),
        "{:?}",
        String::from_utf8_lossy(&answer.payload)
    );
    assert_eq!(
        answer.get_first_option(CoapOption::Block1),
        request.get_first_option(CoapOption::Block1),
        "Block1 echoed"
    );

    // The report applies, and the same datagram again (a retransmission:
    // same source, same Message ID) gets the same bytes and changes nothing.
    let socket = client();
    let report = fixture("aiocoap-post-report-cbor");
    let first = replay(&server, &socket, &report);
    assert_eq!(
        code(&first),
        MessageClass::Response(ResponseType::Changed),
        "{:?}",
        String::from_utf8_lossy(&first.payload)
    );
    let again = replay(&server, &socket, &report);
    assert_eq!(first.to_bytes().unwrap(), again.to_bytes().unwrap());
    let (_, devices) = server.get("/api/v1/campaigns/1/devices");
    let text = devices.to_string();
    assert!(text.contains("downloading"), "{text}");
    let (_, history) = server.get("/api/v1/devices/fixture-dev/history");
    let reports = history
        .as_array()
        .expect("history is a list")
        .iter()
        .filter(|e| e["event"] == "report")
        .count();
    assert_eq!(reports, 1, "one report applied: {history}");
}

/// Every datagram of `fixtures/datagrams/lwm2m/NAME.hex`, one per line.
fn lwm2m_fixtures(name: &str) -> Vec<Vec<u8>> {
    let path = common::fixture(&format!("datagrams/lwm2m/{name}.hex"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| hex::decode(l.trim()).unwrap_or_else(|e| panic!("{path:?}: {e}")))
        .collect()
}

/// Sends `bytes` and returns the answer to it (the ACK with its Message
/// ID): after a registration the server also sends its own requests
/// (reads of /3/0/3) to the same socket, which are skipped here.
fn exchange(server: &TestServer, socket: &UdpSocket, bytes: &[u8]) -> Packet {
    let mid = Packet::from_bytes(bytes)
        .expect("a recorded request")
        .header
        .message_id;
    socket.send_to(bytes, server.coap).unwrap();
    let mut buf = [0u8; 2048];
    loop {
        let (n, _) = socket.recv_from(&mut buf).expect("an answer");
        let p = Packet::from_bytes(&buf[..n]).expect("a decodable answer");
        if p.header.get_type() == MessageType::Acknowledgement && p.header.message_id == mid {
            return p;
        }
    }
}

/// The recorded request with its Uri-Path replaced by `location` (the
/// recordings were answered with rd/7; this server picks its own id).
fn to_location(bytes: &[u8], location: &[Vec<u8>]) -> Vec<u8> {
    let mut p = Packet::from_bytes(bytes).unwrap();
    p.clear_option(CoapOption::UriPath);
    for segment in location {
        p.add_option(CoapOption::UriPath, segment.clone());
    }
    p.to_bytes().unwrap()
}

fn location_of(p: &Packet) -> Vec<Vec<u8>> {
    let location: Vec<Vec<u8>> = p
        .get_option(CoapOption::LocationPath)
        .map(|v| v.iter().cloned().collect())
        .unwrap_or_default();
    assert_eq!(location.first().map(Vec::as_slice), Some(&b"rd"[..]));
    location
}

fn is(p: &Packet, code: ResponseType) -> bool {
    p.header.code == MessageClass::Response(code)
}

#[test]
fn recorded_lwm2m_client_datagrams_register_update_and_deregister() {
    let server = TestServer::start();
    for name in ["fixture-node", "fixture-py", "fixture-block1"] {
        let (status, body) = server.post_json(
            "/api/v1/devices",
            &json!({"name": name, "product": "lwm2m-fixture", "version": "1.0"}),
        );
        assert_eq!(status, 201, "{body}");
    }

    // lwm2m-node-lib: Register, Update, De-register from one socket.
    let socket = client();
    let [register, update, deregister] = [
        "node-lib-register",
        "node-lib-update",
        "node-lib-deregister",
    ]
    .map(|n| lwm2m_fixtures(n).remove(0));
    let created = exchange(&server, &socket, &register);
    assert!(is(&created, ResponseType::Created), "{created:?}");
    let location = location_of(&created);
    let changed = exchange(&server, &socket, &to_location(&update, &location));
    assert!(is(&changed, ResponseType::Changed), "{changed:?}");
    let (_, device) = server.get("/api/v1/devices/fixture-node");
    assert_eq!(device["lwm2m"]["lwm2m_version"], "1.0", "{device}");
    let deleted = exchange(&server, &socket, &to_location(&deregister, &location));
    assert!(is(&deleted, ResponseType::Deleted), "{deleted:?}");
    // De-registered: a second Update of that location is 4.04.
    let again = exchange(&server, &client(), &to_location(&update, &location));
    assert!(is(&again, ResponseType::NotFound), "{again:?}");

    // aiocoap's LwM2M 1.1 Register.
    let created = exchange(&server, &client(), &lwm2m_fixtures("aiocoap-register")[0]);
    assert!(is(&created, ResponseType::Created), "{created:?}");

    // libcoap's 221-byte Register in 16-byte Block1 pieces: 2.31 for each
    // piece but the last, then 2.01.
    let socket = client();
    let pieces = lwm2m_fixtures("libcoap-register-block1");
    assert_eq!(pieces.len(), 14);
    for (i, piece) in pieces.iter().enumerate() {
        let answer = exchange(&server, &socket, piece);
        if i + 1 < pieces.len() {
            assert!(is(&answer, ResponseType::Continue), "piece {i}: {answer:?}");
        } else {
            assert!(is(&answer, ResponseType::Created), "last piece: {answer:?}");
        }
    }
    server.wait_for(
        "/api/v1/devices/fixture-block1",
        Duration::from_secs(10),
        |d| d["lwm2m"]["registered"] == true,
    );
}

#[test]
fn recorded_lwm2m_read_answers_decode_with_our_codecs() {
    use lwota::lwm2m::content::{decode, Path};
    for (name, path) in [
        ("aiocoap-read-3-0-3-text", "/3/0/3"),
        ("aiocoap-read-3-0-3-tlv", "/3/0/3"),
        ("aiocoap-read-3-0-3-senml-json", "/3/0/3"),
        ("aiocoap-read-3-0-3-senml-cbor", "/3/0/3"),
    ] {
        let answer = Packet::from_bytes(&lwm2m_fixtures(name)[0]).unwrap();
        assert_eq!(code(&answer), content(), "{name}");
        let format = answer
            .get_content_format()
            .map(|f| usize::from(f) as u16)
            .expect("a Content-Format");
        let base: Path = path.parse().unwrap();
        let values =
            decode(format, &base, &answer.payload).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(values.len(), 1, "{name}: {values:?}");
        assert_eq!(values[0].value.as_str(), Some("1.0"), "{name}");
    }
    for name in ["aiocoap-read-5-0-tlv", "aiocoap-read-5-0-senml-json"] {
        let answer = Packet::from_bytes(&lwm2m_fixtures(name)[0]).unwrap();
        let format = answer
            .get_content_format()
            .map(|f| usize::from(f) as u16)
            .expect("a Content-Format");
        let values = decode(format, &"/5/0".parse().unwrap(), &answer.payload)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let state = values
            .iter()
            .find(|v| v.path.to_string() == "/5/0/3")
            .unwrap_or_else(|| panic!("{name}: no State in {values:?}"));
        assert_eq!(state.value.as_int(), Some(0), "{name}");
        let delivery = values.iter().find(|v| v.path.to_string() == "/5/0/9");
        assert_eq!(delivery.and_then(|v| v.value.as_int()), Some(2), "{name}");
    }
}

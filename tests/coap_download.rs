//! Block-wise download over real UDP: libcoap's coap-client and aiocoap as
//! independent peers, plus our own checks of Block2 details and
//! deduplication.

use crate::common;

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use common::*;
use sha2::{Digest, Sha256};

const MIB: usize = 1 << 20;

/// RFC 9175 Echo.
const ECHO: CoapOption = CoapOption::Unknown(252);

fn coap_client_get(server: &TestServer, id: u64, block: usize, expected: &[u8]) {
    let out = tempfile::NamedTempFile::new().unwrap();
    let status = Command::new(coap_client())
        .args(["-m", "get", "-b", &block.to_string(), "-o"])
        .arg(out.path())
        .arg(format!("coap://{}/ota/fw/{id}", server.coap))
        .status()
        .expect("run coap-client");
    assert!(status.success(), "coap-client -b {block} failed");
    let got = std::fs::read(out.path()).unwrap();
    assert_eq!(got.len(), expected.len(), "size at block {block}");
    assert_eq!(
        Sha256::digest(&got),
        Sha256::digest(expected),
        "sha256 at block {block}"
    );
}

fn aiocoap_get(server: &TestServer, id: u64, szx: Option<u8>, expected: &[u8]) {
    let out = tempfile::NamedTempFile::new().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/aiocoap_get.py");
    let mut cmd = Command::new(python_with_aiocoap());
    cmd.arg(script)
        .arg(format!("coap://{}/ota/fw/{id}", server.coap))
        .arg(out.path());
    if let Some(szx) = szx {
        cmd.arg(szx.to_string());
    }
    let status = cmd.status().expect("run python");
    assert!(status.success(), "aiocoap download failed");
    let got = std::fs::read(out.path()).unwrap();
    assert_eq!(
        Sha256::digest(&got),
        Sha256::digest(expected),
        "aiocoap sha256"
    );
}

#[test]
fn libcoap_client_downloads_1_and_3_mib_at_every_block_size() {
    let server = TestServer::start();
    // 3 MiB + 123 is not a multiple of any block size.
    let small = image(MIB, 1);
    let large = image(3 * MIB + 123, 2);
    let small_id = server.upload_ok("p", "1", &small);
    let large_id = server.upload_ok("p", "3", &large);
    // First contact: the server's first answer is bounded and offers Echo;
    // libcoap echoes it in its next request, which verifies 127.0.0.1.
    coap_client_get(&server, small_id, 1024, &small);
    assert_address_verified(&server, small_id, &small);
    for block in [16, 64, 256, 1024] {
        coap_client_get(&server, small_id, block, &small);
        coap_client_get(&server, large_id, block, &large);
    }
}

#[test]
fn aiocoap_downloads_both_images() {
    let server = TestServer::start();
    let small = image(MIB, 3);
    let large = image(3 * MIB + 123, 4);
    let small_id = server.upload_ok("p", "1", &small);
    let large_id = server.upload_ok("p", "3", &large);
    aiocoap_get(&server, small_id, None, &small);
    assert_address_verified(&server, small_id, &small);
    aiocoap_get(&server, large_id, None, &large);
    // Small blocks on a smaller image: 64-byte blocks of the 1 MiB image
    // were 16,384 Python round trips, most of the suite's run time, and
    // test nothing 1,024 of them do not.
    let tiny = image(64 * 1024 + 7, 5);
    let tiny_id = server.upload_ok("p", "4", &tiny);
    aiocoap_get(&server, tiny_id, Some(2), &tiny);
}

/// 127.0.0.1 is verified: a new socket gets a full-size block, no Echo.
fn assert_address_verified(server: &TestServer, id: u64, img: &[u8]) {
    let full = Raw::unverified(server).get(9, &format!("ota/fw/{id}"), &[]);
    assert_eq!(full.payload, img[..1024], "full-size block");
    assert!(full.get_first_option(ECHO).is_none(), "no Echo: verified");
}

/// A tiny raw client for protocol details.
struct Raw {
    socket: UdpSocket,
    server: std::net::SocketAddr,
}

impl Raw {
    /// A client whose address is verified (it echoed the server's Echo
    /// value), so responses come at full size.
    fn new(server: &TestServer) -> Raw {
        let raw = Raw::unverified(server);
        let first = raw.get(60_000, ".well-known/core", &[]);
        let echo = first.get_first_option(ECHO).expect("Echo offered").clone();
        let second = raw.get(60_001, ".well-known/core", &[(ECHO, echo)]);
        assert!(second.get_first_option(ECHO).is_none(), "verified");
        raw
    }

    fn unverified(server: &TestServer) -> Raw {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        Raw {
            socket,
            server: server.coap,
        }
    }

    fn send(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        self.socket.send_to(bytes, self.server).unwrap();
        let mut buf = [0u8; 2048];
        match self.socket.recv_from(&mut buf) {
            Ok((n, _)) => Some(buf[..n].to_vec()),
            Err(_) => None,
        }
    }

    fn get(&self, mid: u16, path: &str, options: &[(CoapOption, Vec<u8>)]) -> Packet {
        let bytes = request(mid, RequestType::Get, path, options, vec![]);
        Packet::from_bytes(&self.send(&bytes).expect("response")).unwrap()
    }
}

fn request(
    mid: u16,
    method: RequestType,
    path: &str,
    options: &[(CoapOption, Vec<u8>)],
    payload: Vec<u8>,
) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(method);
    p.header.message_id = mid;
    p.set_token(vec![0xaa, (mid & 0xff) as u8]);
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
    }
    for (o, v) in options {
        p.add_option(*o, v.clone());
    }
    p.payload = payload;
    p.to_bytes().unwrap()
}

fn block2(num: u32, szx: u8) -> (CoapOption, Vec<u8>) {
    (
        CoapOption::Block2,
        lwota::coap::block::Block {
            num,
            more: false,
            szx,
        }
        .encode(),
    )
}

#[test]
fn block2_details_out_of_order_etag_size2_and_errors() {
    let server = TestServer::start();
    let img = image(5000, 5);
    let id = server.upload_ok("p", "1", &img);
    let other = server.upload_ok("p", "2", &image(5000, 6));
    let raw = Raw::new(&server);
    let path = format!("ota/fw/{id}");

    // Blocks in any order, each SZX 0..6.
    for szx in 0..=6u8 {
        let size = 16usize << szx;
        let last = (img.len() - 1) / size;
        for num in [last, 0, last / 2] {
            let resp = raw.get(
                100 + u16::from(szx) * 3 + num as u16 % 3,
                &path,
                &[block2(num as u32, szx)],
            );
            assert_eq!(
                resp.header.code,
                MessageClass::Response(ResponseType::Content)
            );
            let start = num * size;
            let end = (start + size).min(img.len());
            assert_eq!(resp.payload, img[start..end], "szx {szx} num {num}");
            let b = lwota::coap::block::Block::parse(
                resp.get_first_option(CoapOption::Block2).unwrap(),
            )
            .unwrap();
            assert_eq!((b.num as usize, b.more, b.szx), (num, end < img.len(), szx));
            let size2 = resp.get_first_option(CoapOption::Size2);
            assert_eq!(size2.is_some(), num == 0, "Size2 only on block 0");
        }
    }
    // Size2 asked for with Size2=0 on a later block.
    let resp = raw.get(300, &path, &[block2(2, 6), (CoapOption::Size2, vec![])]);
    assert_eq!(
        resp.get_first_option(CoapOption::Size2).unwrap(),
        &vec![0x13, 0x88]
    );
    // ETag stable per image, different across images.
    let e1 = raw
        .get(301, &path, &[block2(0, 6)])
        .get_first_option(CoapOption::ETag)
        .cloned();
    let e2 = raw
        .get(302, &path, &[block2(3, 6)])
        .get_first_option(CoapOption::ETag)
        .cloned();
    let e3 = raw
        .get(303, &format!("ota/fw/{other}"), &[])
        .get_first_option(CoapOption::ETag)
        .cloned();
    assert!(e1.is_some());
    assert_eq!(e1, e2);
    assert_ne!(e1, e3);
    // Larger than the server's max block (1024): capped, same offset.
    // (SZX 6 is the max on UDP, so ask the default with no Block2.)
    let resp = raw.get(304, &path, &[]);
    assert_eq!(resp.payload.len(), 1024);
    // Past the end: 4.02; BERT (SZX 7): 4.02; unknown id: 4.04; POST: 4.05.
    let resp = raw.get(305, &path, &[block2(5, 6)]);
    assert_eq!(
        resp.header.code,
        MessageClass::Response(ResponseType::BadOption)
    );
    let resp = raw.get(306, &path, &[(CoapOption::Block2, vec![0x07])]);
    assert_eq!(
        resp.header.code,
        MessageClass::Response(ResponseType::BadOption)
    );
    let resp = raw.get(307, "ota/fw/999", &[]);
    assert_eq!(
        resp.header.code,
        MessageClass::Response(ResponseType::NotFound)
    );
    let resp = raw.get(308, "nope", &[]);
    assert_eq!(
        resp.header.code,
        MessageClass::Response(ResponseType::NotFound)
    );
    let bytes = request(309, RequestType::Post, &path, &[], vec![]);
    let resp = Packet::from_bytes(&raw.send(&bytes).unwrap()).unwrap();
    assert_eq!(
        resp.header.code,
        MessageClass::Response(ResponseType::MethodNotAllowed)
    );
    // Undecodable bytes: silence, and the server keeps serving.
    assert!(raw.send(&[0xff, 0x00]).is_none());
    assert_eq!(raw.get(310, &path, &[block2(0, 0)]).payload, img[..16]);
}

#[test]
fn duplicate_con_gets_the_identical_response() {
    let server = TestServer::start();
    let raw = Raw::new(&server);
    let mut poll = Vec::new();
    ciborium::into_writer(
        &ciborium::Value::Map(vec![
            (
                ciborium::Value::Text("product".into()),
                ciborium::Value::Text("p".into()),
            ),
            (
                ciborium::Value::Text("version".into()),
                ciborium::Value::Text("1".into()),
            ),
        ]),
        &mut poll,
    )
    .unwrap();
    let bytes = request(
        4242,
        RequestType::Post,
        "ota/dup-dev/poll",
        &[(CoapOption::ContentFormat, vec![60])],
        poll,
    );
    let first = raw.send(&bytes).unwrap();
    let second = raw.send(&bytes).unwrap();
    assert_eq!(first, second, "byte-identical replay");
    let (_, history) = server.get("/api/v1/devices/dup-dev/history");
    let polls: Vec<_> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["event"] == "poll")
        .collect();
    assert_eq!(polls.len(), 1, "applied once: {history}");
    assert!(
        polls[0]["repeat"].is_null(),
        "applied once, not twice: {history}"
    );
    // GET duplicates are answered again identically too (re-served).
    let id = server.upload_ok("p", "2", &image(3000, 1));
    let get = request(
        7,
        RequestType::Get,
        &format!("ota/fw/{id}"),
        &[block2(1, 4)],
        vec![],
    );
    assert_eq!(raw.send(&get), raw.send(&get));
}

#[test]
fn well_known_core_lists_resources() {
    let server = TestServer::start();
    let id = server.upload_ok("p", "1", &image(100, 1));
    let raw = Raw::new(&server);
    let resp = raw.get(1, ".well-known/core", &[]);
    let body = String::from_utf8(resp.payload).unwrap();
    assert!(body.contains(&format!("</ota/fw/{id}>")), "{body}");
    assert!(body.contains("</ota>"), "{body}");
}

/// Bytes on the wire of a UDP/IPv4 datagram with `coap` bytes of CoAP
/// (Ethernet 14 + IP 20 + UDP 8, as RFC 9175 §2.4 counts).
fn wire(coap: usize) -> usize {
    coap + 42
}

fn metric(server: &TestServer, line_start: &str) -> u64 {
    let (_, text) = server.get_text("/metrics");
    text.lines()
        .filter(|l| l.starts_with(line_start))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[test]
fn unverified_addresses_get_at_most_three_times_their_bytes() {
    let server = TestServer::start();
    let img = image(3000, 9);
    let id = server.upload_ok("p", "1", &img);
    let raw = Raw::unverified(&server);

    // The audit's 13-byte probe: CON GET /ota/fw/ID with no token.
    let mut probe = Packet::new();
    probe.header.set_type(MessageType::Confirmable);
    probe.header.code = MessageClass::Request(RequestType::Get);
    for seg in ["ota", "fw", &id.to_string()] {
        probe.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
    }
    let wk = request(7, RequestType::Get, ".well-known/core", &[], vec![]);
    for (mid, mut bytes) in (1..=20u16).map(|mid| {
        let mut p = probe.clone();
        p.header.message_id = mid;
        (mid, p.to_bytes().unwrap())
    }) {
        if mid % 2 == 0 {
            bytes = wk.clone();
            bytes[3] = mid as u8;
        }
        let answer = raw.send(&bytes).expect("answered");
        assert!(
            wire(answer.len()) <= 3 * wire(bytes.len()),
            "{} bytes for a {}-byte request",
            answer.len(),
            bytes.len()
        );
        let p = Packet::from_bytes(&answer).unwrap();
        assert!(p.get_first_option(ECHO).is_some(), "Echo offered");
        assert_eq!(p.header.code, MessageClass::Response(ResponseType::Content));
    }
    assert!(metric(&server, "lwota_coap_amplification_bounded_total") >= 20);

    // A client that ignores Echo still gets the whole image, in the
    // smaller blocks the server picked, each within the bound.
    let mut got = Vec::new();
    let mut next: Option<(u32, u8)> = None;
    for mid in 100u16.. {
        let options: Vec<_> = next.map(|(n, s)| block2(n, s)).into_iter().collect();
        let req = request(
            mid,
            RequestType::Get,
            &format!("ota/fw/{id}"),
            &options,
            vec![],
        );
        let answer = raw.send(&req).expect("block");
        assert!(wire(answer.len()) <= 3 * wire(req.len()));
        let p = Packet::from_bytes(&answer).unwrap();
        let b = lwota::coap::block::Block::parse(p.get_first_option(CoapOption::Block2).unwrap())
            .unwrap();
        assert!(b.szx < 6, "smaller than the server's 1024-byte blocks");
        assert_eq!(b.num as usize * b.size(), got.len());
        got.extend_from_slice(&p.payload);
        if !b.more {
            break;
        }
        next = Some((b.num + 1, b.szx));
    }
    assert_eq!(got, img, "the whole image, block by block");

    // A forged Echo value verifies nothing.
    let forged = request(
        300,
        RequestType::Get,
        &format!("ota/fw/{id}"),
        &[(ECHO, vec![0u8; 12])],
        vec![],
    );
    let answer = raw.send(&forged).unwrap();
    assert!(wire(answer.len()) <= 3 * wire(forged.len()));
    assert!(metric(&server, "lwota_coap_echo_received_total{result=\"invalid\"") >= 1);

    // Echoing the server's value verifies the address: full-size blocks,
    // no more Echo, for every port of this IP address.
    let echo = Packet::from_bytes(&answer)
        .unwrap()
        .get_first_option(ECHO)
        .unwrap()
        .clone();
    let full = raw.get(301, &format!("ota/fw/{id}"), &[(ECHO, echo)]);
    assert_eq!(full.payload, img[..1024]);
    assert!(full.get_first_option(ECHO).is_none());
    let other_port = Raw::unverified(&server);
    // The other port may land on another shard, which learns of the
    // verification by a message from this one: on a loaded machine that
    // can take a moment.
    let mut full = other_port.get(302, &format!("ota/fw/{id}"), &[]);
    for mid in 303..323 {
        if full.payload.len() == 1024 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        full = other_port.get(mid, &format!("ota/fw/{id}"), &[]);
    }
    assert_eq!(full.payload, img[..1024], "verification is per IP address");
    assert!(metric(&server, "lwota_coap_addresses_verified_total{how=\"echo\"") >= 1);
}

#[test]
fn amplification_bound_can_be_switched_off() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(tmp.path());
    config.coap.amplification_factor = 0;
    let server = TestServer::start_with(config, None);
    let img = image(3000, 3);
    let id = server.upload_ok("p", "1", &img);
    let raw = Raw::unverified(&server);
    let full = raw.get(1, &format!("ota/fw/{id}"), &[]);
    assert_eq!(full.payload, img[..1024]);
    assert!(full.get_first_option(ECHO).is_none());
}

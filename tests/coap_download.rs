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
    aiocoap_get(&server, large_id, None, &large);
    // Small blocks on a smaller image: 64-byte blocks of the 1 MiB image
    // were 16,384 Python round trips, most of the suite's run time, and
    // test nothing 1,024 of them do not.
    let tiny = image(64 * 1024 + 7, 5);
    let tiny_id = server.upload_ok("p", "4", &tiny);
    aiocoap_get(&server, tiny_id, Some(2), &tiny);
}

/// A tiny raw client for protocol details.
struct Raw {
    socket: UdpSocket,
    server: std::net::SocketAddr,
}

impl Raw {
    fn new(server: &TestServer) -> Raw {
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

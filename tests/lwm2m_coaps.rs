//! LwM2M over CoAPS, end to end over real sockets: a device with a PSK
//! registers over the DTLS listener and a campaign updates it through its
//! DTLS session (the server's reads, observes, write and execute all
//! arrive on that session; the Package URI is `coaps://` on the CoAPS
//! port). A PSK identity registering another endpoint gets 4.03.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use common::TestServer;
use lwota::sim::dtls_client::DtlsClient;
use serde_json::json;

const KEY: &[u8] = b"lwm2m-secret-key";

fn register(name: &str) -> Packet {
    let mut p = Packet::new();
    p.header.code = MessageClass::Request(RequestType::Post);
    p.add_option(CoapOption::UriPath, b"rd".to_vec());
    for q in [
        format!("ep={name}"),
        "lt=300".into(),
        "lwm2m=1.1".into(),
        "b=U".into(),
    ] {
        p.add_option(CoapOption::UriQuery, q.into_bytes());
    }
    p.add_option(CoapOption::ContentFormat, vec![40]);
    p.payload = b"</1/0>,</3/0>,</5/0>".to_vec();
    p
}

fn path(p: &Packet) -> String {
    p.get_option(CoapOption::UriPath)
        .map(|segs| {
            segs.iter()
                .map(|s| format!("/{}", String::from_utf8_lossy(s)))
                .collect()
        })
        .unwrap_or_default()
}

/// A piggybacked answer to `request`.
fn answer(request: &Packet, code: ResponseType, body: &str, observe: Option<u32>) -> Packet {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Acknowledgement);
    p.header.message_id = request.header.message_id;
    p.header.code = MessageClass::Response(code);
    p.set_token(request.get_token().to_vec());
    if let Some(seq) = observe {
        p.set_observe_value(seq);
    }
    if !body.is_empty() || code == ResponseType::Content {
        p.add_option(CoapOption::ContentFormat, vec![]);
    }
    p.payload = body.as_bytes().to_vec();
    p
}

/// The Object 5 device behind the DTLS session.
struct SecureDevice {
    client: DtlsClient,
    state_token: Option<Vec<u8>>,
    result_token: Option<Vec<u8>>,
    seq: u32,
    mid: u16,
    package_uri: Option<String>,
    executed: bool,
    version: &'static str,
    seen: Vec<String>,
}

impl SecureDevice {
    fn notify(&mut self, state: bool, value: &str) {
        let token = if state {
            &self.state_token
        } else {
            &self.result_token
        };
        let Some(token) = token.clone() else { return };
        self.seq += 1;
        self.mid = self.mid.wrapping_add(1);
        let mut p = Packet::new();
        p.header.set_type(MessageType::Confirmable);
        p.header.message_id = self.mid;
        p.header.code = MessageClass::Response(ResponseType::Content);
        p.set_token(token);
        p.set_observe_value(self.seq);
        p.add_option(CoapOption::ContentFormat, vec![]);
        p.payload = value.as_bytes().to_vec();
        self.client.send(&p);
    }

    /// Answers one request of the server.
    fn serve(&mut self, req: &Packet) {
        let MessageClass::Request(method) = req.header.code else {
            return;
        };
        let what = format!("{method:?} {}", path(req));
        self.seen.push(what.clone());
        let observing = req.get_observe_value().is_some();
        let reply = match (method, path(req).as_str()) {
            (RequestType::Get, "/3/0/3") => answer(req, ResponseType::Content, self.version, None),
            (RequestType::Get, "/5/0/9") => answer(req, ResponseType::Content, "0", None),
            (RequestType::Get, "/5/0/3") if observing => {
                self.state_token = Some(req.get_token().to_vec());
                answer(req, ResponseType::Content, "0", Some(1))
            }
            (RequestType::Get, "/5/0/5") if observing => {
                self.result_token = Some(req.get_token().to_vec());
                answer(req, ResponseType::Content, "0", Some(1))
            }
            (RequestType::Get, "/5/0/3") => answer(req, ResponseType::Content, "0", None),
            (RequestType::Put, "/5/0/1") => {
                self.package_uri = Some(String::from_utf8_lossy(&req.payload).into_owned());
                answer(req, ResponseType::Changed, "", None)
            }
            (RequestType::Post, "/5/0/2") => answer(req, ResponseType::Changed, "", None),
            _ => answer(req, ResponseType::NotFound, "", None),
        };
        self.client.send(&reply);
        // What a real client does next: download (not needed to see the
        // URI), report Downloaded, then after Update report success.
        if method == RequestType::Put && path(req) == "/5/0/1" && self.package_uri.is_some() {
            self.notify(true, "1");
            self.notify(true, "2");
        }
        if method == RequestType::Post && path(req) == "/5/0/2" && !self.executed {
            self.executed = true;
            self.version = "2.0";
            self.notify(true, "3");
            self.notify(false, "1");
            self.notify(true, "0");
        }
    }
}

#[test]
fn a_device_registered_over_coaps_is_updated_through_its_dtls_session() {
    let server = TestServer::start();
    let coaps: SocketAddr = server.coaps.expect("coaps listening");
    for (name, identity) in [("lw-sec", "lw-sec-id"), ("lw-other", "lw-other-id")] {
        let (status, body) = server.post_json(
            "/api/v1/devices",
            &json!({"name": name, "product": "secprod", "version": "1.0"}),
        );
        assert_eq!(status, 201, "{body}");
        let (status, body) = server.put_json(
            &format!("/api/v1/devices/{name}/psk"),
            &json!({"identity": identity, "key": hex::encode(KEY)}),
        );
        assert_eq!(status, 204, "{body}");
    }
    let fw = server.upload_ok("secprod", "2.0", &common::image(4_000, 9));
    let (status, c) = server.post_json(
        "/api/v1/campaigns",
        &json!({"firmware": fw, "target": {"devices": ["lw-sec"]}}),
    );
    assert_eq!(status, 201, "{c}");
    let campaign = c["id"].as_u64().unwrap();

    let client = DtlsClient::connect(
        coaps,
        "127.0.0.1:0",
        "lw-sec-id",
        KEY,
        "PSK-AES128-CCM8",
        Duration::from_secs(10),
    )
    .expect("handshake");
    let mut dev = SecureDevice {
        client,
        state_token: None,
        result_token: None,
        seq: 1,
        mid: 40_000,
        package_uri: None,
        executed: false,
        version: "1.0",
        seen: Vec::new(),
    };
    // Another device's endpoint over this session: 4.03, nothing stored.
    let r = dev.client.request(register("lw-other")).expect("answer");
    assert_eq!(
        r.header.code,
        MessageClass::Response(ResponseType::Forbidden)
    );
    let (_, other) = server.get("/api/v1/devices/lw-other");
    assert!(other.get("lwm2m").is_none(), "{other}");

    let r = dev.client.request(register("lw-sec")).expect("answer");
    assert_eq!(r.header.code, MessageClass::Response(ResponseType::Created));

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut updated = false;
    while Instant::now() < deadline && !updated {
        if let Some(p) = dev.client.receive(Duration::from_millis(200)) {
            dev.serve(&p);
        }
        if dev.executed {
            let (_, tasks) = server.get(&format!("/api/v1/campaigns/{campaign}/devices"));
            updated = tasks[0]["state"] == "updated";
        }
    }
    assert!(updated, "requests seen over DTLS: {:?}", dev.seen);
    let uri = dev.package_uri.clone().unwrap_or_default();
    assert!(
        uri.starts_with(&format!("coaps://{coaps}/")),
        "the Package URI is on the CoAPS port: {uri}"
    );
    for request in ["Get /3/0/3", "Put /5/0/1", "Post /5/0/2"] {
        assert!(
            dev.seen.iter().any(|s| s == request),
            "{request} in {:?}",
            dev.seen
        );
    }
    let (_, device) = server.get("/api/v1/devices/lw-sec");
    assert_eq!(device["version"], "2.0", "{device}");
    assert_eq!(device["lwm2m"]["registered"], true, "{device}");
}

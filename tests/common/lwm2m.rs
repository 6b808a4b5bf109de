//! A scripted LwM2M client for tests: coap-lite packets on a real UDP
//! socket, Objects 3 and 5 in memory, answering the server's reads,
//! writes, executes and observes, and downloading a pulled package from
//! a second socket (a new source port, as real clients do).

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};

pub struct Lwm2mDevice {
    pub name: String,
    pub socket: UdpSocket,
    pub server: SocketAddr,
    pub location: Option<String>,
    pub version: String,
    /// Object 5: State, Update Result, Delivery Method (None: absent).
    pub state: i64,
    pub result: i64,
    pub delivery: Option<i64>,
    /// The Update Result the device ends with after execute (1 = success).
    pub outcome: i64,
    pub package_uri: String,
    pub package: Vec<u8>,
    /// Observe tokens per resource path.
    observers: HashMap<String, Vec<u8>>,
    observe_seq: u32,
    mid: u16,
    /// What the server asked, in order (`GET /3/0/3`, `PUT /5/0/1`, ...).
    pub log: Vec<String>,
    /// Block1 pieces of a push being assembled.
    push: Vec<u8>,
    /// `lt=` of the Register, seconds.
    pub lifetime: u64,
}

fn code_of(p: &Packet) -> String {
    p.header.get_code()
}

pub fn response(code: ResponseType) -> Packet {
    let mut p = Packet::new();
    p.header.code = MessageClass::Response(code);
    p
}

fn path_of(p: &Packet) -> String {
    let segments: Vec<String> = p
        .get_option(CoapOption::UriPath)
        .map(|s| {
            s.iter()
                .map(|x| String::from_utf8_lossy(x).into_owned())
                .collect()
        })
        .unwrap_or_default();
    format!("/{}", segments.join("/"))
}

fn uint(v: u32) -> Vec<u8> {
    let b = v.to_be_bytes();
    let skip = b.iter().take_while(|x| **x == 0).count();
    b[skip..].to_vec()
}

impl Lwm2mDevice {
    pub fn new(server: SocketAddr, name: &str, version: &str) -> Lwm2mDevice {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        Lwm2mDevice {
            name: name.into(),
            socket,
            server,
            location: None,
            version: version.into(),
            state: 0,
            result: 0,
            delivery: Some(0),
            outcome: 1,
            package_uri: String::new(),
            package: Vec::new(),
            observers: HashMap::new(),
            observe_seq: 2,
            mid: 100,
            log: Vec::new(),
            push: Vec::new(),
            lifetime: 300,
        }
    }

    fn next_mid(&mut self) -> u16 {
        self.mid = self.mid.wrapping_add(1);
        self.mid
    }

    /// Sends a CON request from the registration socket and waits for
    /// its response, serving the server's requests meanwhile.
    pub fn request(&mut self, mut packet: Packet) -> Packet {
        let mid = self.next_mid();
        packet.header.set_type(MessageType::Confirmable);
        packet.header.message_id = mid;
        packet.set_token(vec![0xAB, (mid >> 8) as u8, mid as u8]);
        let bytes = packet.to_bytes().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut next_send = Instant::now();
        loop {
            assert!(
                Instant::now() < deadline,
                "no response to {}",
                path_of(&packet)
            );
            if Instant::now() >= next_send {
                self.socket.send_to(&bytes, self.server).unwrap();
                next_send = Instant::now() + Duration::from_secs(2);
            }
            let Some(p) = self.recv() else { continue };
            if matches!(p.header.code, MessageClass::Response(_))
                && (p.header.message_id == mid || p.get_token() == packet.get_token())
            {
                return p;
            }
            self.serve(p);
        }
    }

    fn recv(&mut self) -> Option<Packet> {
        let mut buf = [0u8; 2048];
        let (n, _) = self.socket.recv_from(&mut buf).ok()?;
        Packet::from_bytes(&buf[..n]).ok()
    }

    fn post_rd(&self, path: &[&str], queries: &[String]) -> Packet {
        let mut p = Packet::new();
        p.header.code = MessageClass::Request(RequestType::Post);
        for s in path {
            p.add_option(CoapOption::UriPath, s.as_bytes().to_vec());
        }
        for q in queries {
            p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
        }
        p
    }

    /// Registers; returns the response code.
    pub fn register(&mut self, version: &str, binding: &str, payload: &str) -> ResponseType {
        let mut p = self.post_rd(
            &["rd"],
            &[
                format!("ep={}", self.name),
                format!("lt={}", self.lifetime),
                format!("lwm2m={version}"),
                format!("b={binding}"),
            ],
        );
        p.add_option(CoapOption::ContentFormat, vec![40]);
        p.payload = payload.as_bytes().to_vec();
        let resp = self.request(p);
        self.take_location(&resp);
        code(&resp)
    }

    fn take_location(&mut self, resp: &Packet) {
        if code(resp) == ResponseType::Created {
            let loc: Vec<String> = resp
                .get_option(CoapOption::LocationPath)
                .unwrap()
                .iter()
                .map(|x| String::from_utf8_lossy(x).into_owned())
                .collect();
            assert_eq!(loc[0], "rd");
            self.location = Some(loc[1].clone());
        }
    }

    /// Registers with the payload in 16-byte Block1 pieces.
    pub fn register_in_blocks(&mut self, payload: &str) -> ResponseType {
        let bytes = payload.as_bytes();
        let pieces: Vec<&[u8]> = bytes.chunks(16).collect();
        let mut last = None;
        for (num, piece) in pieces.iter().enumerate() {
            let more = num + 1 < pieces.len();
            let mut p = self.post_rd(
                &["rd"],
                &[
                    format!("ep={}", self.name),
                    "lt=300".into(),
                    "lwm2m=1.1".into(),
                ],
            );
            p.add_option(CoapOption::ContentFormat, vec![40]);
            let block = ((num as u32) << 4) | (u32::from(more) << 3);
            p.add_option(CoapOption::Block1, uint(block));
            p.payload = piece.to_vec();
            let resp = self.request(p);
            if more {
                assert_eq!(code(&resp), ResponseType::Continue, "piece {num}");
            }
            last = Some(resp);
        }
        let resp = last.unwrap();
        self.take_location(&resp);
        code(&resp)
    }

    pub fn update(&mut self) -> ResponseType {
        let loc = self.location.clone().expect("registered");
        let p = self.post_rd(&["rd", &loc], &[]);
        code(&self.request(p))
    }

    /// An Update with query parameters (`lt=300`, `b=UQ`).
    #[allow(dead_code)]
    pub fn update_with(&mut self, queries: &[&str]) -> ResponseType {
        let loc = self.location.clone().expect("registered");
        let queries: Vec<String> = queries.iter().map(|q| q.to_string()).collect();
        let p = self.post_rd(&["rd", &loc], &queries);
        code(&self.request(p))
    }

    pub fn deregister(&mut self) -> ResponseType {
        let loc = self.location.clone().expect("registered");
        let mut p = self.post_rd(&["rd", &loc], &[]);
        p.header.code = MessageClass::Request(RequestType::Delete);
        code(&self.request(p))
    }

    /// Serves the server's requests for `d`, or until `until` holds.
    pub fn serve_until(&mut self, d: Duration, until: impl Fn(&Lwm2mDevice) -> bool) -> bool {
        let deadline = Instant::now() + d;
        while Instant::now() < deadline {
            if until(self) {
                return true;
            }
            if let Some(p) = self.recv() {
                self.serve(p);
            }
        }
        until(self)
    }

    fn reply(&mut self, request: &Packet, mut resp: Packet) {
        resp.header
            .set_type(if request.header.get_type() == MessageType::Confirmable {
                MessageType::Acknowledgement
            } else {
                MessageType::NonConfirmable
            });
        resp.header.message_id = request.header.message_id;
        resp.set_token(request.get_token().to_vec());
        self.socket
            .send_to(&resp.to_bytes().unwrap(), self.server)
            .unwrap();
    }

    fn text(&self, body: &str) -> Packet {
        let mut p = response(ResponseType::Content);
        p.add_option(CoapOption::ContentFormat, vec![]);
        p.payload = body.as_bytes().to_vec();
        p
    }

    fn value(&self, path: &str) -> Option<String> {
        match path {
            "/3/0/3" => Some(self.version.clone()),
            "/5/0/3" => Some(self.state.to_string()),
            "/5/0/5" => Some(self.result.to_string()),
            "/5/0/9" => self.delivery.map(|d| d.to_string()),
            _ => None,
        }
    }

    fn serve(&mut self, p: Packet) {
        let MessageClass::Request(method) = p.header.code else {
            return; // ACKs of our notifications, RSTs
        };
        let path = path_of(&p);
        self.log.push(format!("{method:?} {path}"));
        match (method, path.as_str()) {
            (RequestType::Get, _) => {
                // Reads must carry Accept (real clients answer 5.00 otherwise).
                if p.get_first_option(CoapOption::Accept).is_none() {
                    return self.reply(&p, response(ResponseType::InternalServerError));
                }
                let Some(v) = self.value(&path) else {
                    return self.reply(&p, response(ResponseType::NotFound));
                };
                let mut resp = self.text(&v);
                if p.get_observe_value().is_some() {
                    self.observers.insert(path.clone(), p.get_token().to_vec());
                    resp.set_observe_value(self.observe_seq);
                    self.observe_seq += 1;
                }
                self.reply(&p, resp);
            }
            (RequestType::Put, "/5/0/1") => {
                if p.get_first_option(CoapOption::ContentFormat).is_none() {
                    return self.reply(&p, response(ResponseType::Changed)); // write-attributes
                }
                let uri = String::from_utf8_lossy(&p.payload).into_owned();
                if !uri.is_empty() && self.state == 2 {
                    return self.reply(&p, response(ResponseType::BadRequest));
                }
                self.package_uri = uri.clone();
                self.reply(&p, response(ResponseType::Changed));
                if !uri.is_empty() {
                    self.result = 0;
                    self.set_state(1);
                    self.notify("/5/0/5");
                    self.package = self.download(&uri);
                    self.set_state(2);
                }
            }
            (RequestType::Put, "/5/0/0") => {
                let block = p
                    .get_first_option(CoapOption::Block1)
                    .map(|b| b.iter().fold(0u32, |a, x| (a << 8) | u32::from(*x)));
                self.push.extend_from_slice(&p.payload);
                let more = block.is_some_and(|b| b & 0x8 != 0);
                let mut resp = response(if more {
                    ResponseType::Continue
                } else {
                    ResponseType::Changed
                });
                if let Some(b) = block {
                    resp.add_option(CoapOption::Block1, uint(b));
                }
                self.reply(&p, resp);
                if !more {
                    self.package = std::mem::take(&mut self.push);
                    self.result = 0;
                    self.set_state(2);
                }
            }
            (RequestType::Post, "/5/0/2") if self.state == 2 => {
                self.reply(&p, response(ResponseType::Changed));
                self.set_state(3);
                self.result = self.outcome;
                self.set_state(if self.outcome == 8 { 2 } else { 0 });
                self.notify("/5/0/5");
            }
            (RequestType::Post, "/5/0/2") => {
                self.reply(&p, response(ResponseType::MethodNotAllowed))
            }
            _ => self.reply(&p, response(ResponseType::NotFound)),
        }
    }

    fn set_state(&mut self, s: i64) {
        self.state = s;
        self.notify("/5/0/3");
    }

    fn notify(&mut self, path: &str) {
        let Some(token) = self.observers.get(path).cloned() else {
            return;
        };
        let mut n = self.text(&self.value(path).unwrap());
        n.header.set_type(MessageType::NonConfirmable);
        n.header.message_id = self.next_mid();
        n.set_token(token);
        n.set_observe_value(self.observe_seq);
        self.observe_seq += 1;
        self.socket
            .send_to(&n.to_bytes().unwrap(), self.server)
            .unwrap();
    }

    /// GETs `uri` block by block (64-byte blocks) from a new socket.
    fn download(&mut self, uri: &str) -> Vec<u8> {
        let rest = uri.strip_prefix("coap://").expect("coap uri");
        let (host, path) = rest.split_once('/').unwrap();
        let addr: SocketAddr = host.parse().unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut out = Vec::new();
        for num in 0u32.. {
            let mut p = Packet::new();
            p.header.set_type(MessageType::Confirmable);
            p.header.code = MessageClass::Request(RequestType::Get);
            p.header.message_id = self.next_mid();
            for s in path.split('/') {
                p.add_option(CoapOption::UriPath, s.as_bytes().to_vec());
            }
            p.add_option(CoapOption::Block2, uint((num << 4) | 2));
            let bytes = p.to_bytes().unwrap();
            let resp = loop {
                socket.send_to(&bytes, addr).unwrap();
                let mut buf = [0u8; 2048];
                if let Ok((n, _)) = socket.recv_from(&mut buf) {
                    break Packet::from_bytes(&buf[..n]).unwrap();
                }
            };
            assert_eq!(code_of(&resp), "2.05", "block {num}");
            out.extend_from_slice(&resp.payload);
            let b = resp.get_first_option(CoapOption::Block2).unwrap();
            let b = b.iter().fold(0u32, |a, x| (a << 8) | u32::from(*x));
            if b & 0x8 == 0 {
                break;
            }
        }
        out
    }
}

pub fn code(p: &Packet) -> ResponseType {
    match p.header.code {
        MessageClass::Response(r) => r,
        other => panic!("not a response: {other:?}"),
    }
}

pub const PAYLOAD: &str = "</1/0>,</3/0>,</5/0>";

/// A simulated LwM2M 1.0 fleet against `server`: Updates every second,
/// short queue windows and installs, fast retransmissions, for `duration`.
pub fn fleet_config(
    server: SocketAddr,
    devices: usize,
    prefix: &str,
    duration: Duration,
) -> lwota::sim::lwm2m::Lwm2mConfig {
    lwota::sim::lwm2m::Lwm2mConfig {
        server,
        devices,
        prefix: prefix.into(),
        version: "1.0".into(),
        new_version: Some("2.0".into()),
        update_interval: Duration::from_secs(1),
        queue_window: Duration::from_millis(500),
        install_time: Duration::from_millis(200),
        duration,
        params: lwota::coap::TransmissionParams {
            ack_timeout: Duration::from_millis(500),
            ..Default::default()
        },
        ..Default::default()
    }
}

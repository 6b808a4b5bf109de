//! The sans-IO CoAP server endpoint.
//!
//! Driving contract (the shell in `server/coap_shell.rs` follows it):
//!
//! 1. For every received datagram call [`Endpoint::handle_datagram`]. It
//!    answers protocol-level matters itself (duplicate → cached response,
//!    ping → RST, unsupported critical option → 4.02) and returns an
//!    [`IncomingRequest`] only for a new request the application must
//!    answer.
//! 2. For every `IncomingRequest`, sooner or later, call
//!    [`Endpoint::respond`] with the response (code, options, payload).
//!    The endpoint fills in type, Message ID and token, and remembers the
//!    encoded response for deduplication.
//! 3. After any input, drain [`Endpoint::poll_transmit`] until `None` and
//!    send each datagram.
//! 4. Call [`Endpoint::handle_timeout`] when [`Endpoint::poll_timeout`]'s
//!    instant is reached.
//!
//! Garbage is dropped and logged at `debug!`; nothing a peer sends can make
//! this struct return an error or panic.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};

use super::dedup::{DedupCache, Seen, EXCHANGE_LIFETIME};

/// Bound on remembered exchanges (≈ 100 bytes each plus the response of a
/// non-idempotent request, which is small: poll and report answers).
pub const DEDUP_CAPACITY: usize = 200_000;

/// Critical options (odd numbers) this endpoint acts on or may ignore
/// safely: If-Match, Uri-Host, If-None-Match, Uri-Port, Uri-Path,
/// Uri-Query, Block2. Block1 is not among them: request bodies here are
/// small CBOR maps, and a body split into blocks must not be mistaken for
/// its first block (4.02 tells the client).
const UNDERSTOOD_CRITICAL: [u16; 7] = [1, 3, 5, 7, 11, 15, 23];

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub peer: SocketAddr,
    pub bytes: Arc<[u8]>,
}

/// What the endpoint needs to address a response to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestMeta {
    pub peer: SocketAddr,
    pub message_id: u16,
    pub token: Vec<u8>,
    pub confirmable: bool,
    /// Whether the response is remembered for deduplication. Safe methods
    /// (GET/FETCH) are not: re-running them yields the same bytes, and not
    /// caching block responses keeps memory flat during downloads.
    pub remembered: bool,
}

#[derive(Debug)]
pub struct IncomingRequest {
    pub meta: RequestMeta,
    pub method: RequestType,
    pub packet: Packet,
}

#[derive(Debug)]
pub struct Endpoint {
    dedup: DedupCache,
    next_message_id: u16,
    transmits: VecDeque<Transmit>,
}

impl Default for Endpoint {
    fn default() -> Self {
        Endpoint::new(DEDUP_CAPACITY)
    }
}

impl Endpoint {
    pub fn new(dedup_capacity: usize) -> Endpoint {
        Endpoint {
            dedup: DedupCache::new(dedup_capacity, EXCHANGE_LIFETIME),
            next_message_id: rand::random(),
            transmits: VecDeque::new(),
        }
    }

    /// Feeds one received datagram. See the module docs for the contract.
    #[must_use]
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        datagram: &[u8],
    ) -> Option<IncomingRequest> {
        let packet = match Packet::from_bytes(datagram) {
            Ok(packet) => packet,
            Err(e) => {
                tracing::debug!(%peer, "undecodable datagram dropped: {e:?}");
                return None;
            }
        };
        if packet.header.get_version() != 1 {
            tracing::debug!(%peer, "CoAP version {} dropped", packet.header.get_version());
            return None;
        }
        let kind = packet.header.get_type();
        let message_id = packet.header.message_id;
        let method = match packet.header.code {
            MessageClass::Empty => {
                // A CON ping is answered with RST (RFC 7252 §4.3); empty
                // ACK/RST need nothing, this server sends no CON requests.
                if kind == MessageType::Confirmable {
                    self.queue_empty(peer, MessageType::Reset, message_id);
                }
                return None;
            }
            MessageClass::Request(method) => method,
            other => {
                if kind == MessageType::Confirmable {
                    self.queue_empty(peer, MessageType::Reset, message_id);
                }
                tracing::debug!(%peer, "unexpected message class {other:?}");
                return None;
            }
        };
        if matches!(kind, MessageType::Acknowledgement | MessageType::Reset) {
            tracing::debug!(%peer, "request in ACK/RST dropped");
            return None;
        }
        let remembered = !matches!(method, RequestType::Get | RequestType::Fetch);
        let meta = RequestMeta {
            peer,
            message_id,
            token: packet.get_token().to_vec(),
            confirmable: kind == MessageType::Confirmable,
            remembered,
        };
        if remembered {
            match self.dedup.check(now, peer, message_id) {
                Seen::New => {}
                Seen::InProgress => return None,
                Seen::Answered(bytes) => {
                    self.transmits.push_back(Transmit { peer, bytes });
                    return None;
                }
            }
        }
        if let Some(number) = unsupported_critical_option(&packet) {
            let code = if number == 35 || number == 39 {
                ResponseType::ProxyingNotSupported
            } else {
                ResponseType::BadOption
            };
            self.respond(
                now,
                meta,
                error_response(code, "unsupported critical option"),
            );
            return None;
        }
        if method == RequestType::UnKnown {
            self.respond(
                now,
                meta,
                error_response(ResponseType::MethodNotAllowed, ""),
            );
            return None;
        }
        Some(IncomingRequest {
            meta,
            method,
            packet,
        })
    }

    /// Answers a request returned by [`handle_datagram`](Self::handle_datagram).
    /// `response` carries code, options and payload; the rest is filled in.
    pub fn respond(&mut self, _now: Instant, meta: RequestMeta, mut response: Packet) {
        response.header.set_version(1);
        if meta.confirmable {
            response.header.set_type(MessageType::Acknowledgement);
            response.header.message_id = meta.message_id;
        } else {
            response.header.set_type(MessageType::NonConfirmable);
            response.header.message_id = self.allocate_message_id();
        }
        response.set_token(meta.token.clone());
        let bytes: Arc<[u8]> = match response.to_bytes() {
            Ok(bytes) => bytes.into(),
            Err(e) => {
                tracing::warn!("response could not be encoded: {e:?}");
                let mut fallback = error_response(ResponseType::InternalServerError, "");
                fallback.header = response.header.clone();
                fallback.set_token(meta.token.clone());
                match fallback.to_bytes() {
                    Ok(bytes) => bytes.into(),
                    Err(_) => return,
                }
            }
        };
        if meta.remembered {
            self.dedup
                .complete(meta.peer, meta.message_id, bytes.clone());
        }
        self.transmits.push_back(Transmit {
            peer: meta.peer,
            bytes,
        });
    }

    /// The next datagram to send, if any. Drain after every input.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.dedup.next_expiry()
    }

    /// Expires deduplication state whose time is over.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.dedup.expire(now);
    }

    /// Number of remembered exchanges (for metrics and tests).
    pub fn remembered_exchanges(&self) -> usize {
        self.dedup.len()
    }

    fn allocate_message_id(&mut self) -> u16 {
        self.next_message_id = self.next_message_id.wrapping_add(1);
        self.next_message_id
    }

    fn queue_empty(&mut self, peer: SocketAddr, kind: MessageType, message_id: u16) {
        let mut packet = Packet::new();
        packet.header.set_version(1);
        packet.header.set_type(kind);
        packet.header.code = MessageClass::Empty;
        packet.header.message_id = message_id;
        if let Ok(bytes) = packet.to_bytes() {
            self.transmits.push_back(Transmit {
                peer,
                bytes: bytes.into(),
            });
        }
    }
}

fn unsupported_critical_option(packet: &Packet) -> Option<u16> {
    packet
        .options()
        .map(|(number, _)| *number)
        .find(|n| n % 2 == 1 && !UNDERSTOOD_CRITICAL.contains(n))
}

/// Diagnostics echo parts of the request; this bound keeps every error
/// response (and its copy in the dedup cache) small.
const MAX_DIAGNOSTIC: usize = 128;

/// An error response with a diagnostic payload (RFC 7252 §5.5.2), cut to
/// `MAX_DIAGNOSTIC` bytes on a character boundary.
pub fn error_response(code: ResponseType, diagnostic: &str) -> Packet {
    let mut end = diagnostic.len().min(MAX_DIAGNOSTIC);
    while !diagnostic.is_char_boundary(end) {
        end -= 1;
    }
    let mut packet = Packet::new();
    packet.header.code = MessageClass::Response(code);
    packet.payload = diagnostic.as_bytes()[..end].to_vec();
    packet
}

/// Convenience for handlers: the Uri-Path segments as strings (lossy).
pub fn uri_path(packet: &Packet) -> Vec<String> {
    packet
        .get_option(CoapOption::UriPath)
        .map(|segments| {
            segments
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 40000))
    }

    fn request(kind: MessageType, method: RequestType, mid: u16, path: &str) -> Vec<u8> {
        let mut p = Packet::new();
        p.header.set_type(kind);
        p.header.code = MessageClass::Request(method);
        p.header.message_id = mid;
        p.set_token(vec![1, 2, 3]);
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
        }
        p.to_bytes().unwrap()
    }

    /// The endpoint answers `p` itself with 4.02 and hands nothing up.
    fn assert_rejected_with_bad_option(ep: &mut Endpoint, now: Instant, p: &Packet) {
        assert!(ep
            .handle_datagram(now, peer(), &p.to_bytes().unwrap())
            .is_none());
        let resp = Packet::from_bytes(&ep.poll_transmit().unwrap().bytes).unwrap();
        assert_eq!(
            resp.header.code,
            MessageClass::Response(ResponseType::BadOption)
        );
    }

    fn content(payload: &[u8]) -> Packet {
        let mut p = Packet::new();
        p.header.code = MessageClass::Response(ResponseType::Content);
        p.payload = payload.to_vec();
        p
    }

    #[test]
    fn duplicate_post_gets_identical_response_and_is_not_redelivered() {
        let now = Instant::now();
        let mut ep = Endpoint::default();
        let dgram = request(
            MessageType::Confirmable,
            RequestType::Post,
            42,
            "ota/d/report",
        );
        let req = ep
            .handle_datagram(now, peer(), &dgram)
            .expect("new request");
        assert_eq!(req.method, RequestType::Post);
        assert!(
            ep.handle_datagram(now, peer(), &dgram).is_none(),
            "in progress"
        );
        assert!(ep.poll_transmit().is_none());
        ep.respond(now, req.meta, content(b"ok"));
        let first = ep.poll_transmit().unwrap();
        assert!(ep.handle_datagram(now, peer(), &dgram).is_none());
        let second = ep.poll_transmit().unwrap();
        assert_eq!(first, second);
        let parsed = Packet::from_bytes(&first.bytes).unwrap();
        assert_eq!(parsed.header.get_type(), MessageType::Acknowledgement);
        assert_eq!(parsed.header.message_id, 42);
        assert_eq!(parsed.get_token(), &[1, 2, 3]);
    }

    #[test]
    fn ping_gets_rst_and_unknown_critical_option_gets_4_02() {
        let now = Instant::now();
        let mut ep = Endpoint::default();
        let mut ping = Packet::new();
        ping.header.set_type(MessageType::Confirmable);
        ping.header.message_id = 9;
        ping.header.code = MessageClass::Empty;
        assert!(ep
            .handle_datagram(now, peer(), &ping.to_bytes().unwrap())
            .is_none());
        let rst = Packet::from_bytes(&ep.poll_transmit().unwrap().bytes).unwrap();
        assert_eq!(rst.header.get_type(), MessageType::Reset);
        assert_eq!(rst.header.message_id, 9);

        // Block1 (a request body in blocks) is not supported: 4.02, not a
        // first block taken for the whole body.
        let mut p = Packet::from_bytes(&request(
            MessageType::Confirmable,
            RequestType::Post,
            4,
            "x",
        ))
        .unwrap();
        p.add_option(CoapOption::Block1, vec![0x0e]);
        assert_rejected_with_bad_option(&mut ep, now, &p);

        let mut p =
            Packet::from_bytes(&request(MessageType::Confirmable, RequestType::Get, 3, "x"))
                .unwrap();
        p.add_option(CoapOption::Unknown(2049), vec![1]);
        assert_rejected_with_bad_option(&mut ep, now, &p);
    }

    #[test]
    fn non_request_gets_non_response_with_same_token() {
        let now = Instant::now();
        let mut ep = Endpoint::default();
        let dgram = request(MessageType::NonConfirmable, RequestType::Get, 5, "x");
        let req = ep.handle_datagram(now, peer(), &dgram).unwrap();
        ep.respond(now, req.meta, content(b""));
        let resp = Packet::from_bytes(&ep.poll_transmit().unwrap().bytes).unwrap();
        assert_eq!(resp.header.get_type(), MessageType::NonConfirmable);
        assert_eq!(resp.get_token(), &[1, 2, 3]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]
        #[test]
        fn random_datagrams_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let now = Instant::now();
            let mut ep = Endpoint::new(64);
            if let Some(req) = ep.handle_datagram(now, peer(), &bytes) {
                ep.respond(now, req.meta, content(b"x"));
            }
            while ep.poll_transmit().is_some() {}
        }

        #[test]
        fn mutated_valid_datagrams_never_panic(flips in proptest::collection::vec((0usize..64, any::<u8>()), 1..6)) {
            let now = Instant::now();
            let mut ep = Endpoint::new(64);
            let mut bytes = request(MessageType::Confirmable, RequestType::Post, 1, "ota/dev/poll");
            bytes.extend_from_slice(&[0xff, 0xa1, 0x61, 0x61, 0x01]);
            for (i, b) in flips {
                let n = bytes.len();
                bytes[i % n] = b;
            }
            if let Some(req) = ep.handle_datagram(now, peer(), &bytes) {
                ep.respond(now, req.meta, content(b"x"));
            }
            while ep.poll_transmit().is_some() {}
        }
    }
}

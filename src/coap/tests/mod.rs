//! Unit tests of the endpoint, one datagram at a time. Two endpoints over
//! a lossy simulated link are tested in `tests/coap_sim.rs`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use proptest::prelude::*;

use super::block::Block;
use super::endpoint::*;

mod client;

fn peer() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 40000))
}

fn local() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5683))
}

fn endpoint() -> Endpoint {
    Endpoint::new(EndpointConfig::default(), 7)
}

fn small_endpoint() -> Endpoint {
    Endpoint::new(
        EndpointConfig {
            dedup_capacity: 64,
            ..EndpointConfig::default()
        },
        1,
    )
}

fn request_packet(kind: MessageType, method: RequestType, mid: u16, path: &str) -> Packet {
    let mut p = Packet::new();
    p.header.set_type(kind);
    p.header.code = MessageClass::Request(method);
    p.header.message_id = mid;
    p.set_token(vec![1, 2, 3]);
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
    }
    p
}

fn request(kind: MessageType, method: RequestType, mid: u16, path: &str) -> Vec<u8> {
    request_packet(kind, method, mid, path).to_bytes().unwrap()
}

/// Feeds `bytes`; returns the request handed up, if any.
fn feed(ep: &mut Endpoint, now: Instant, bytes: &[u8]) -> Option<IncomingRequest> {
    ep.handle(now, local(), peer(), bytes);
    let mut found = None;
    while let Some(event) = ep.poll_event() {
        if let Event::Request(r) = event {
            assert!(found.is_none(), "one request per datagram");
            found = Some(r);
        }
    }
    found
}

fn sent(ep: &mut Endpoint) -> Packet {
    Packet::from_bytes(&ep.poll_transmit().expect("a datagram").bytes).unwrap()
}

fn code(p: &Packet) -> MessageClass {
    p.header.code
}

fn content(payload: &[u8]) -> Packet {
    let mut p = Packet::new();
    p.header.code = MessageClass::Response(ResponseType::Content);
    p.payload = payload.to_vec();
    p
}

/// The endpoint answers `p` itself with 4.02 and hands nothing up.
fn assert_rejected_with_bad_option(ep: &mut Endpoint, now: Instant, p: &Packet) {
    assert!(feed(ep, now, &p.to_bytes().unwrap()).is_none());
    let resp = sent(ep);
    assert_eq!(code(&resp), MessageClass::Response(ResponseType::BadOption));
}

#[test]
fn duplicate_post_gets_identical_response_and_is_not_redelivered() {
    let now = Instant::now();
    let mut ep = endpoint();
    let dgram = request(
        MessageType::Confirmable,
        RequestType::Post,
        42,
        "ota/d/report",
    );
    let req = feed(&mut ep, now, &dgram).expect("new request");
    assert_eq!(req.method, RequestType::Post);
    assert_eq!(req.local, local());
    assert!(feed(&mut ep, now, &dgram).is_none(), "in progress");
    assert!(ep.poll_transmit().is_none());
    ep.respond(now, req.meta, content(b"ok"));
    let first = ep.poll_transmit().unwrap();
    assert!(feed(&mut ep, now, &dgram).is_none());
    let second = ep.poll_transmit().unwrap();
    assert_eq!(first, second);
    let parsed = Packet::from_bytes(&first.bytes).unwrap();
    assert_eq!(parsed.header.get_type(), MessageType::Acknowledgement);
    assert_eq!(parsed.header.message_id, 42);
    assert_eq!(parsed.get_token(), &[1, 2, 3]);
    // The dedup entry expires with EXCHANGE_LIFETIME, through the timer.
    let at = ep.poll_timeout().expect("dedup expiry");
    assert_eq!(at, now + Duration::from_secs(247));
    ep.handle_timeout(at);
    assert_eq!(ep.remembered_exchanges(), 0);
    assert!(
        feed(&mut ep, at, &dgram).is_some(),
        "new again after expiry"
    );
}

#[test]
fn ping_gets_rst_and_unknown_critical_option_gets_4_02() {
    let now = Instant::now();
    let mut ep = endpoint();
    let mut ping = Packet::new();
    ping.header.set_type(MessageType::Confirmable);
    ping.header.message_id = 9;
    ping.header.code = MessageClass::Empty;
    assert!(feed(&mut ep, now, &ping.to_bytes().unwrap()).is_none());
    let rst = sent(&mut ep);
    assert_eq!(rst.header.get_type(), MessageType::Reset);
    assert_eq!(rst.header.message_id, 9);

    let mut p = request_packet(MessageType::Confirmable, RequestType::Get, 3, "x");
    p.add_option(CoapOption::Unknown(2049), vec![1]);
    assert_rejected_with_bad_option(&mut ep, now, &p);
}

#[test]
fn non_request_gets_non_response_with_same_token() {
    let now = Instant::now();
    let mut ep = endpoint();
    let dgram = request(MessageType::NonConfirmable, RequestType::Get, 5, "x");
    let req = feed(&mut ep, now, &dgram).unwrap();
    ep.respond(now, req.meta, content(b""));
    let resp = sent(&mut ep);
    assert_eq!(resp.header.get_type(), MessageType::NonConfirmable);
    assert_eq!(resp.get_token(), &[1, 2, 3]);
}

#[test]
fn rfc_7252_format_errors_get_rst_for_con_and_silence_for_non() {
    let now = Instant::now();
    let mut ep = endpoint();
    let base = request(MessageType::Confirmable, RequestType::Get, 0x0102, "x");
    // Token length 9 (reserved).
    let mut tkl = base.clone();
    tkl[0] = (tkl[0] & 0xf0) | 9;
    tkl.extend_from_slice(&[0; 8]);
    // Option delta nibble 15 and length nibble 15.
    let mut nibble = base.clone();
    nibble.extend_from_slice(&[0xf1, 0]);
    let mut length = base.clone();
    length.extend_from_slice(&[0x1f, 0]);
    // Truncated option value.
    let mut truncated = base.clone();
    truncated.extend_from_slice(&[0xd3, 0x01, b'a']);
    // Payload marker with no payload.
    let mut marker = base.clone();
    marker.push(0xff);
    for bytes in [&tkl, &nibble, &length, &truncated, &marker] {
        assert!(feed(&mut ep, now, bytes).is_none());
        let rst = sent(&mut ep);
        assert_eq!(rst.header.get_type(), MessageType::Reset);
        assert_eq!(rst.header.message_id, 0x0102);
        assert!(ep.poll_transmit().is_none());
        let mut non = bytes.clone();
        non[0] = (non[0] & 0xcf) | 0x10;
        assert!(feed(&mut ep, now, &non).is_none());
        assert!(ep.poll_transmit().is_none(), "NON format error: silence");
    }
    // Undecodable garbage: silence.
    assert!(feed(&mut ep, now, &[0xff, 0x00]).is_none());
    assert!(ep.poll_transmit().is_none());
}

#[test]
fn unknown_method_codes_get_4_05_and_options_rules_hold() {
    let now = Instant::now();
    let mut ep = endpoint();
    // §5.8: 0.08-0.31 are methods we do not know: 4.05, not RST.
    for (i, c) in [0x08u8, 0x1f].into_iter().enumerate() {
        let mut bytes = request(
            MessageType::Confirmable,
            RequestType::Get,
            200 + i as u16,
            "x",
        );
        bytes[1] = c;
        assert!(feed(&mut ep, now, &bytes).is_none());
        let resp = sent(&mut ep);
        assert_eq!(resp.header.get_type(), MessageType::Acknowledgement);
        assert_eq!(
            code(&resp),
            MessageClass::Response(ResponseType::MethodNotAllowed)
        );
    }
    // §5.4.5: two Block2 options: 4.02.
    let mut p = request_packet(MessageType::Confirmable, RequestType::Get, 210, "x");
    p.add_option(CoapOption::Block2, vec![0x06]);
    p.add_option(CoapOption::Block2, vec![0x16]);
    assert_rejected_with_bad_option(&mut ep, now, &p);
    // §5.4.1: a NON with an unknown critical option: silence.
    let mut p = request_packet(MessageType::NonConfirmable, RequestType::Get, 211, "x");
    p.add_option(CoapOption::Unknown(2049), vec![1]);
    assert!(feed(&mut ep, now, &p.to_bytes().unwrap()).is_none());
    assert!(ep.poll_transmit().is_none());
    // Repeated Uri-Path is fine.
    let p = request_packet(MessageType::Confirmable, RequestType::Get, 212, "a/b/c");
    assert!(feed(&mut ep, now, &p.to_bytes().unwrap()).is_some());
}

fn block1_piece(mid: u16, num: u32, more: bool, szx: u8, body: &[u8]) -> Vec<u8> {
    let size = Block::size_of(szx);
    let start = num as usize * size;
    let end = (start + size).min(body.len());
    let mut p = request_packet(MessageType::Confirmable, RequestType::Post, mid, "rd");
    p.set_token(vec![mid as u8]);
    p.add_option(CoapOption::Block1, Block { num, more, szx }.encode());
    p.payload = body[start..end].to_vec();
    p.to_bytes().unwrap()
}

#[test]
fn block1_body_in_16_byte_pieces_arrives_whole_once() {
    let now = Instant::now();
    let mut ep = endpoint();
    let body: Vec<u8> = (0..100u8).collect();
    let pieces = body.len().div_ceil(16);
    for num in 0..pieces as u32 {
        let more = (num as usize) < pieces - 1;
        let bytes = block1_piece(10 + num as u16, num, more, 0, &body);
        let delivered = feed(&mut ep, now, &bytes);
        if more {
            assert!(delivered.is_none());
            let resp = sent(&mut ep);
            assert_eq!(code(&resp), MessageClass::Response(ResponseType::Continue));
            let echo = Block::parse(resp.get_first_option(CoapOption::Block1).unwrap()).unwrap();
            assert_eq!(
                echo,
                Block {
                    num,
                    more: true,
                    szx: 0
                }
            );
            // A retransmission of the piece gets the same 2.31 again.
            assert!(feed(&mut ep, now, &bytes).is_none());
            assert_eq!(sent(&mut ep), resp);
        } else {
            let req = delivered.expect("whole body");
            assert_eq!(req.packet.payload, body);
            assert!(req.packet.get_first_option(CoapOption::Block1).is_none());
            ep.respond(now, req.meta, content(b""));
            let resp = sent(&mut ep);
            let echo = Block::parse(resp.get_first_option(CoapOption::Block1).unwrap()).unwrap();
            assert_eq!(
                echo,
                Block {
                    num,
                    more: false,
                    szx: 0
                }
            );
        }
    }
    assert_eq!(ep.load().2, 0, "nothing left being reassembled");
}

#[test]
fn block1_gap_is_4_08_and_oversize_is_4_13_with_size1() {
    let now = Instant::now();
    let mut ep = endpoint();
    let body = vec![7u8; 4096];
    assert!(feed(&mut ep, now, &block1_piece(1, 0, true, 0, &body)).is_none());
    let _ = sent(&mut ep);
    assert!(feed(&mut ep, now, &block1_piece(2, 2, true, 0, &body)).is_none());
    assert_eq!(
        code(&sent(&mut ep)),
        MessageClass::Response(ResponseType::RequestEntityIncomplete)
    );
    // Size1 announcing more than the cap (64 KiB by default).
    let mut p = Packet::from_bytes(&block1_piece(3, 0, true, 6, &vec![0; 2048])).unwrap();
    p.add_option(CoapOption::Size1, super::message::uint(1 << 20));
    assert!(feed(&mut ep, now, &p.to_bytes().unwrap()).is_none());
    let resp = sent(&mut ep);
    assert_eq!(
        code(&resp),
        MessageClass::Response(ResponseType::RequestEntityTooLarge)
    );
    assert_eq!(
        resp.get_first_option(CoapOption::Size1).unwrap(),
        &super::message::uint(65536)
    );
    // Unfinished bodies expire.
    assert!(feed(&mut ep, now, &block1_piece(4, 0, true, 0, &body)).is_none());
    let _ = sent(&mut ep);
    assert_eq!(ep.load().2, 1);
    ep.handle_timeout(now + Duration::from_secs(248));
    assert_eq!(ep.load().2, 0);
}

/// Sends a 16-byte first Block1 piece from `port`; returns the answer code.
fn open_body_from_port(ep: &mut Endpoint, now: Instant, port: u16) -> MessageClass {
    let from = SocketAddr::from(([127, 0, 0, 1], port));
    ep.handle(now, local(), from, &block1_piece(1, 0, true, 0, &[0u8; 32]));
    while ep.poll_event().is_some() {}
    code(&sent(ep))
}

#[test]
fn block1_open_bodies_are_bounded_in_number_and_charged_an_overhead() {
    // Fails without the count limit: every source port opened a body.
    let now = Instant::now();
    let mut ep = endpoint();
    let continue_ = MessageClass::Response(ResponseType::Continue);
    let busy = MessageClass::Response(ResponseType::ServiceUnavailable);
    for port in 0..4096u16 {
        assert_eq!(open_body_from_port(&mut ep, now, 10_000 + port), continue_);
    }
    assert_eq!(open_body_from_port(&mut ep, now, 20_000), busy);
    assert_eq!(ep.load().2, 4096);

    // Fails without the overhead: 16-byte bodies would fit 256 at a time.
    let mut ep = Endpoint::new(
        EndpointConfig {
            block1: super::block1::Block1Limits {
                max_total_bytes: 4 * super::block1::ASSEMBLY_OVERHEAD,
                ..Default::default()
            },
            ..EndpointConfig::default()
        },
        7,
    );
    for port in 0..4u16 {
        assert_eq!(open_body_from_port(&mut ep, now, 10_000 + port), continue_);
    }
    assert_eq!(open_body_from_port(&mut ep, now, 20_000), busy);
    ep.handle_timeout(now + Duration::from_secs(248));
    assert_eq!(ep.load().2, 0);
    assert_eq!(open_body_from_port(&mut ep, now, 20_000), continue_);
}

#[test]
fn observe_relation_notifies_in_sequence_and_ends_on_rst() {
    let now = Instant::now();
    let mut ep = endpoint();
    let mut p = request_packet(MessageType::Confirmable, RequestType::Get, 1, "5/0/3");
    p.set_observe_value(0);
    let req = feed(&mut ep, now, &p.to_bytes().unwrap()).unwrap();
    assert!(req.meta.observe);
    let rel = ep
        .accept_observe(now, req.meta, content(b"0"))
        .expect("relation");
    let first = sent(&mut ep);
    assert_eq!(first.get_observe_value().unwrap().unwrap(), 0);
    ep.notify(now, rel, content(b"1")).unwrap();
    let n1 = sent(&mut ep);
    assert_eq!(n1.header.get_type(), MessageType::NonConfirmable);
    assert_eq!(n1.get_observe_value().unwrap().unwrap(), 1);
    assert_eq!(n1.get_token(), &[1, 2, 3]);
    // After 24 h a notification is CON.
    let later = now + Duration::from_secs(24 * 3600);
    ep.notify(later, rel, content(b"2")).unwrap();
    let n2 = sent(&mut ep);
    assert_eq!(n2.header.get_type(), MessageType::Confirmable);
    assert_eq!(n2.get_observe_value().unwrap().unwrap(), 2);
    // The client rejects it: the relation ends, once.
    let rst = super::message::empty(MessageType::Reset, n2.header.message_id);
    ep.handle(later, local(), peer(), &rst);
    assert!(matches!(
        ep.poll_event(),
        Some(Event::RelationEnded { relation, why: Why::Reset }) if relation == rel
    ));
    assert!(ep.poll_event().is_none());
    assert_eq!(
        ep.notify(later, rel, content(b"3")),
        Err(NotifyError::NoRelation)
    );
}

#[test]
fn con_notification_never_acked_ends_the_relation() {
    let now = Instant::now();
    let mut ep = endpoint();
    let mut p = request_packet(MessageType::Confirmable, RequestType::Get, 1, "x");
    p.set_observe_value(0);
    let req = feed(&mut ep, now, &p.to_bytes().unwrap()).unwrap();
    let rel = ep.accept_observe(now, req.meta, content(b"0")).unwrap();
    let _ = sent(&mut ep);
    ep.notify_confirmable(now, rel, content(b"1")).unwrap();
    let mut transmissions = 0;
    let mut t = now;
    let mut ended = false;
    for _ in 0..20 {
        while ep.poll_transmit().is_some() {
            transmissions += 1;
        }
        match ep.poll_timeout() {
            Some(at) => {
                t = at;
                ep.handle_timeout(t);
            }
            None => break,
        }
        while let Some(e) = ep.poll_event() {
            assert!(matches!(
                e,
                Event::RelationEnded {
                    why: Why::TimedOut,
                    ..
                }
            ));
            ended = true;
        }
        if ended {
            break;
        }
    }
    assert!(ended);
    assert_eq!(transmissions, 5, "1 + MAX_RETRANSMIT");
    assert!(t - now <= Duration::from_secs(93));
}

#[test]
fn deregistration_ends_the_relation() {
    let now = Instant::now();
    let mut ep = endpoint();
    let mut p = request_packet(MessageType::Confirmable, RequestType::Get, 1, "x");
    p.set_observe_value(0);
    let req = feed(&mut ep, now, &p.to_bytes().unwrap()).unwrap();
    let rel = ep.accept_observe(now, req.meta, content(b"0")).unwrap();
    let _ = sent(&mut ep);
    let mut p = request_packet(MessageType::Confirmable, RequestType::Get, 2, "x");
    p.set_observe_value(1);
    ep.handle(now, local(), peer(), &p.to_bytes().unwrap());
    assert!(matches!(
        ep.poll_event(),
        Some(Event::RelationEnded { relation, why: Why::Deregistered }) if relation == rel
    ));
    assert!(matches!(ep.poll_event(), Some(Event::Request(_))));
}

#[test]
fn dedup_full_of_requests_in_progress_refuses_posts_and_keeps_them_once() {
    // Fails without the fix: the 65th POST evicted the oldest unanswered
    // one, whose retransmission was then handed up a second time.
    let now = Instant::now();
    let mut ep = small_endpoint();
    let mut pending = Vec::new();
    for mid in 0..64u16 {
        let req = feed(
            &mut ep,
            now,
            &request(MessageType::Confirmable, RequestType::Post, mid, "rd"),
        );
        pending.push(req.expect("handed up"));
    }
    let refused = request(MessageType::Confirmable, RequestType::Post, 64, "rd");
    assert!(feed(&mut ep, now, &refused).is_none());
    let resp = sent(&mut ep);
    assert_eq!(
        code(&resp),
        MessageClass::Response(ResponseType::ServiceUnavailable)
    );
    assert!(resp.get_first_option(CoapOption::MaxAge).is_some());
    // The oldest is still known to be in progress: not applied twice.
    let again = request(MessageType::Confirmable, RequestType::Post, 0, "rd");
    assert!(feed(&mut ep, now, &again).is_none());
    assert!(ep.poll_transmit().is_none());
    // An idempotent request still goes through, unrecorded.
    let put = request(MessageType::Confirmable, RequestType::Put, 65, "rd");
    assert!(feed(&mut ep, now, &put).is_some());
    // Once one is answered, a new POST takes its place.
    let first = pending.remove(0);
    ep.respond(now, first.meta, content(b""));
    let _ = sent(&mut ep);
    assert!(feed(&mut ep, now, &refused).is_some());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]
    #[test]
    fn random_datagrams_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let now = Instant::now();
        let mut ep = small_endpoint();
        if let Some(req) = feed(&mut ep, now, &bytes) {
            ep.respond(now, req.meta, content(b"x"));
        }
        while ep.poll_transmit().is_some() {}
    }

    #[test]
    fn mutated_valid_datagrams_never_panic(flips in proptest::collection::vec((0usize..64, any::<u8>()), 1..6)) {
        let now = Instant::now();
        let mut ep = small_endpoint();
        let mut bytes = request(MessageType::Confirmable, RequestType::Post, 1, "ota/dev/poll");
        bytes.extend_from_slice(&[0xff, 0xa1, 0x61, 0x61, 0x01]);
        for (i, b) in flips {
            let n = bytes.len();
            bytes[i % n] = b;
        }
        if let Some(req) = feed(&mut ep, now, &bytes) {
            ep.respond(now, req.meta, content(b"x"));
        }
        while ep.poll_transmit().is_some() {}
    }
}

#[test]
fn retransmitted_fetch_block1_piece_is_not_a_gap() {
    let now = Instant::now();
    let mut ep = endpoint();
    let mut p = request_packet(MessageType::Confirmable, RequestType::Fetch, 70, "x");
    p.add_option(
        CoapOption::Block1,
        Block {
            num: 0,
            more: true,
            szx: 0,
        }
        .encode(),
    );
    p.payload = vec![1; 16];
    let bytes = p.to_bytes().unwrap();
    assert!(feed(&mut ep, now, &bytes).is_none());
    let first = sent(&mut ep);
    assert!(feed(&mut ep, now, &bytes).is_none());
    assert_eq!(sent(&mut ep), first, "the same 2.31 again");
    assert_eq!(code(&first), MessageClass::Response(ResponseType::Continue));
}

/// RFC 7252 §11.3: an Observe registration from an address that has not
/// proven it receives our datagrams (its source may be spoofed) gets CON
/// notifications until one is acknowledged; after the ACK they are NON
/// again, like any relation's.
#[test]
fn unverified_observer_gets_con_notifications_until_one_is_acked() {
    let now = Instant::now();
    let mut ep = Endpoint::new(
        EndpointConfig {
            amplification: Some(super::amplification::AmplificationConfig {
                factor: 3,
                verified_for: Duration::from_secs(3600),
                max_verified: 16,
                secret: [7; 32],
                epoch: now,
            }),
            ..EndpointConfig::default()
        },
        7,
    );
    let mut p = request_packet(MessageType::Confirmable, RequestType::Get, 1, "x");
    p.set_observe_value(0);
    let req = feed(&mut ep, now, &p.to_bytes().unwrap()).unwrap();
    assert!(req.meta.response_limit.is_some(), "the peer is unverified");
    let rel = ep.accept_observe(now, req.meta, content(b"0")).unwrap();
    let _ = sent(&mut ep);
    ep.notify(now, rel, content(b"1")).unwrap();
    let n1 = sent(&mut ep);
    assert_eq!(n1.header.get_type(), MessageType::Confirmable);
    let ack = super::message::empty(MessageType::Acknowledgement, n1.header.message_id);
    ep.handle(now, local(), peer(), &ack);
    while ep.poll_event().is_some() {}
    ep.notify(now, rel, content(b"2")).unwrap();
    let n2 = sent(&mut ep);
    assert_eq!(n2.header.get_type(), MessageType::NonConfirmable);
}

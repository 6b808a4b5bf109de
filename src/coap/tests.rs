//! Unit tests of the endpoint, one datagram at a time. Two endpoints over
//! a lossy simulated link are tested in `tests/coap_sim.rs`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use proptest::prelude::*;

use super::block::Block;
use super::endpoint::*;

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
fn client_con_request_retransmits_then_times_out_exactly_once() {
    let now = Instant::now();
    let mut ep = endpoint();
    let id = ep.request(
        now,
        peer(),
        request_packet(MessageType::Confirmable, RequestType::Get, 0, "3/0/3"),
    );
    let first = sent(&mut ep);
    assert_eq!(first.header.get_type(), MessageType::Confirmable);
    assert_eq!(first.get_token().len(), 8);
    // A second request to the same peer waits (NSTART = 1).
    let id2 = ep.request(
        now,
        peer(),
        request_packet(MessageType::Confirmable, RequestType::Get, 0, "3/0/4"),
    );
    assert!(ep.poll_transmit().is_none());
    let mut retransmissions = 0;
    let mut failed = Vec::new();
    let mut t = now;
    while failed.is_empty() {
        t = ep.poll_timeout().unwrap();
        ep.handle_timeout(t);
        while let Some(e) = ep.poll_event() {
            if let Event::Failed { id, why } = e {
                failed.push((id, why));
            }
        }
        while let Some(tx) = ep.poll_transmit() {
            let p = Packet::from_bytes(&tx.bytes).unwrap();
            if p.header.message_id == first.header.message_id {
                retransmissions += 1;
            }
        }
    }
    assert_eq!(failed, vec![(id, Why::TimedOut)]);
    assert_eq!(retransmissions, 4);
    let waited = t - now;
    assert!(
        waited >= Duration::from_secs(62) && waited <= Duration::from_secs(93),
        "{waited:?}"
    );
    // The queued one went out when the slot freed; answer it piggybacked.
    let _ = id2;
}

#[test]
fn unencodable_request_frees_its_nstart_slot() {
    // Fails without the fix: the slot stayed taken, the second request
    // queued forever and nothing was sent.
    let now = Instant::now();
    let mut ep = endpoint();
    let mut huge = request_packet(MessageType::Confirmable, RequestType::Get, 0, "3/0/3");
    // Larger than coap-lite encodes (1,280 bytes per message).
    huge.add_option(CoapOption::UriQuery, vec![b'q'; 2000]);
    let bad = ep.request(now, peer(), huge);
    let mut failed = Vec::new();
    while let Some(e) = ep.poll_event() {
        if let Event::Failed { id, why } = e {
            failed.push((id, why));
        }
    }
    assert_eq!(failed, vec![(bad, Why::Unencodable)]);
    assert!(ep.poll_transmit().is_none());
    let _good = ep.request(
        now,
        peer(),
        request_packet(MessageType::Confirmable, RequestType::Get, 0, "3/0/4"),
    );
    let out = sent(&mut ep);
    assert_eq!(out.header.code, MessageClass::Request(RequestType::Get));

    // Also when the unencodable one was queued behind another request.
    let mut ep = endpoint();
    let first = ep.request(
        now,
        peer(),
        request_packet(MessageType::Confirmable, RequestType::Get, 0, "3/0/1"),
    );
    let first_out = sent(&mut ep);
    let mut huge = request_packet(MessageType::Confirmable, RequestType::Get, 0, "3/0/3");
    huge.add_option(CoapOption::UriQuery, vec![b'q'; 2000]);
    let _bad = ep.request(now, peer(), huge);
    let _third = ep.request(
        now,
        peer(),
        request_packet(MessageType::Confirmable, RequestType::Get, 0, "3/0/5"),
    );
    assert!(ep.poll_transmit().is_none());
    let mut ack = content(b"ok");
    ack.header.set_type(MessageType::Acknowledgement);
    ack.header.message_id = first_out.header.message_id;
    ack.set_token(first_out.get_token().to_vec());
    ep.handle(now, local(), peer(), &ack.to_bytes().unwrap());
    while ep.poll_event().is_some() {}
    let _ = first;
    let out = sent(&mut ep);
    assert_eq!(out.get_first_option(CoapOption::UriPath).unwrap(), b"3");
    assert!(out.get_first_option(CoapOption::UriQuery).is_none());
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

#[test]
fn separate_response_is_acked_and_delivered_once() {
    let now = Instant::now();
    let mut ep = endpoint();
    let id = ep.request(
        now,
        peer(),
        request_packet(MessageType::Confirmable, RequestType::Post, 0, "5/0/2"),
    );
    let req = sent(&mut ep);
    ep.handle(
        now,
        local(),
        peer(),
        &super::message::empty(MessageType::Acknowledgement, req.header.message_id),
    );
    assert!(ep.poll_event().is_none());
    let mut resp = content(b"later");
    resp.header.set_type(MessageType::Confirmable);
    resp.header.message_id = 999;
    resp.set_token(req.get_token().to_vec());
    let bytes = resp.to_bytes().unwrap();
    ep.handle(now, local(), peer(), &bytes);
    let ack = sent(&mut ep);
    assert_eq!(ack.header.get_type(), MessageType::Acknowledgement);
    assert_eq!(ack.header.message_id, 999);
    assert!(
        matches!(ep.poll_event(), Some(Event::Response { id: got, packet }) if got == id && packet.payload == b"later")
    );
    // Its retransmission (our ACK was lost) is ACKed again, not delivered.
    ep.handle(now, local(), peer(), &bytes);
    assert_eq!(sent(&mut ep).header.message_id, 999);
    assert!(ep.poll_event().is_none());
    // An unknown CON response is rejected with RST.
    resp.set_token(vec![9; 8]);
    resp.header.message_id = 1000;
    ep.handle(now, local(), peer(), &resp.to_bytes().unwrap());
    assert_eq!(sent(&mut ep).header.get_type(), MessageType::Reset);
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
fn client_follows_block2_and_delivers_the_whole_body() {
    let now = Instant::now();
    let mut ep = endpoint();
    let body: Vec<u8> = (0..40u8).collect();
    let id = ep.request(
        now,
        peer(),
        request_packet(MessageType::Confirmable, RequestType::Get, 0, "5/0"),
    );
    let mut num = 0u32;
    loop {
        let req = sent(&mut ep);
        let asked = req
            .get_first_option(CoapOption::Block2)
            .map(|v| Block::parse(v).unwrap().num)
            .unwrap_or(0);
        assert_eq!(asked, num);
        let start = num as usize * 16;
        let end = (start + 16).min(body.len());
        let mut resp = content(&body[start..end]);
        resp.header.set_type(MessageType::Acknowledgement);
        resp.header.message_id = req.header.message_id;
        resp.set_token(req.get_token().to_vec());
        resp.add_option(
            CoapOption::Block2,
            Block {
                num,
                more: end < body.len(),
                szx: 0,
            }
            .encode(),
        );
        ep.handle(now, local(), peer(), &resp.to_bytes().unwrap());
        if let Some(event) = ep.poll_event() {
            match event {
                Event::Response { id: got, packet } => {
                    assert_eq!(got, id);
                    assert_eq!(packet.payload, body);
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        num += 1;
        assert!(num < 10);
    }
    assert_eq!(num, 2);
    assert_eq!(ep.load().0, 0);
}

#[test]
fn client_block1_sends_pieces_and_follows_a_smaller_size() {
    let now = Instant::now();
    let mut ep = Endpoint::new(
        EndpointConfig {
            client: ClientLimits {
                block_szx: 2,
                ..ClientLimits::default()
            },
            ..EndpointConfig::default()
        },
        3,
    );
    let body: Vec<u8> = (0..150u8).collect();
    let mut p = request_packet(MessageType::Confirmable, RequestType::Put, 0, "5/0/0");
    p.payload = body.clone();
    let id = ep.request(now, peer(), p);
    let mut received = Vec::new();
    for _ in 0..20 {
        let req = sent(&mut ep);
        let b = Block::parse(req.get_first_option(CoapOption::Block1).unwrap()).unwrap();
        assert_eq!(b.num as usize * b.size(), received.len());
        received.extend_from_slice(&req.payload);
        let mut resp = Packet::new();
        resp.header.set_type(MessageType::Acknowledgement);
        resp.header.message_id = req.header.message_id;
        resp.set_token(req.get_token().to_vec());
        let answer = if b.more {
            ResponseType::Continue
        } else {
            ResponseType::Changed
        };
        resp.header.code = MessageClass::Response(answer);
        // The server asks for 16-byte pieces from the first answer on.
        resp.add_option(
            CoapOption::Block1,
            Block {
                num: b.num,
                more: b.more,
                szx: 0,
            }
            .encode(),
        );
        ep.handle(now, local(), peer(), &resp.to_bytes().unwrap());
        if let Some(Event::Response { id: got, packet }) = ep.poll_event() {
            assert_eq!(got, id);
            assert_eq!(code(&packet), MessageClass::Response(ResponseType::Changed));
            break;
        }
    }
    assert_eq!(received, body);
}

#[test]
fn unnamed_response_code_still_answers_the_exchange() {
    let now = Instant::now();
    let mut ep = endpoint();
    let id = ep.request(
        now,
        peer(),
        request_packet(MessageType::Confirmable, RequestType::Get, 0, "x"),
    );
    let req = sent(&mut ep);
    // 4.07 has no name in coap-lite.
    let mut bytes = vec![0x68, 0x87];
    bytes.extend_from_slice(&req.header.message_id.to_be_bytes());
    bytes.extend_from_slice(req.get_token());
    ep.handle(now, local(), peer(), &bytes);
    assert!(matches!(ep.poll_event(), Some(Event::Response { id: got, .. }) if got == id));
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

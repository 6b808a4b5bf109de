//! The endpoint as a client: retransmission, NSTART, separate responses,
//! Block1/Block2 followed for the application.

use super::*;

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
        &crate::coap::message::empty(MessageType::Acknowledgement, req.header.message_id),
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
fn a_woken_peer_gets_waiting_cons_at_once_within_the_retransmit_bound() {
    let now = Instant::now();
    let mut ep = endpoint();
    let id = ep.request(
        now,
        peer(),
        request_packet(MessageType::Confirmable, RequestType::Get, 0, "5/0/3"),
    );
    let first = sent(&mut ep);
    let backoff = ep.poll_timeout().unwrap();
    // Another peer waking changes nothing.
    let other: SocketAddr = "127.0.0.1:9".parse().unwrap();
    ep.peer_awake(now + Duration::from_millis(10), other);
    assert!(ep.poll_transmit().is_none());
    // The peer wakes before the back-off: the same message goes out now.
    let mut t = now + Duration::from_millis(100);
    let mut kicks = 0;
    loop {
        ep.peer_awake(t, peer());
        match ep.poll_transmit() {
            Some(tx) => {
                let p = Packet::from_bytes(&tx.bytes).unwrap();
                assert_eq!(p.header.message_id, first.header.message_id);
                kicks += 1;
            }
            None => break,
        }
        assert!(ep.poll_timeout().unwrap() > t);
        t += Duration::from_millis(100);
    }
    // Each wake-up counts as a retransmission: MAX_RETRANSMIT of them,
    // then the exchange still gives up on its timer, once.
    assert_eq!(kicks, 4);
    assert!(backoff < ep.poll_timeout().unwrap());
    let mut failed = Vec::new();
    while failed.is_empty() {
        let due = ep.poll_timeout().unwrap();
        ep.handle_timeout(due);
        while let Some(e) = ep.poll_event() {
            if let Event::Failed { id, why } = e {
                failed.push((id, why));
            }
        }
        assert!(ep.poll_transmit().is_none(), "no retransmission left");
    }
    assert_eq!(failed, vec![(id, Why::TimedOut)]);
}

#[test]
fn a_woken_peer_with_its_con_acked_gets_nothing_again() {
    let now = Instant::now();
    let mut ep = endpoint();
    let _ = ep.request(
        now,
        peer(),
        request_packet(MessageType::Confirmable, RequestType::Get, 0, "5/0/3"),
    );
    let first = sent(&mut ep);
    // An empty ACK: now waiting for the separate response, not an ACK.
    ep.handle(
        now,
        local(),
        peer(),
        &crate::coap::message::empty(MessageType::Acknowledgement, first.header.message_id),
    );
    ep.peer_awake(now + Duration::from_millis(10), peer());
    assert!(ep.poll_transmit().is_none());
}

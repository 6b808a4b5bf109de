//! Shards over real UDP sockets: two endpoints bound with SO_REUSEPORT to
//! one port, several peers, server-initiated requests through the
//! `CoapHandle` all answered: peers the server has heard (their shard is
//! known) and peers it never heard (their answers may land on the other
//! shard and are passed on), piggybacked and separate responses.

use crate::common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use lwota::server::SystemClock;

/// A device: answers every CON request from the server with 2.05 and a
/// payload naming itself and the path; `separate` answers with an empty
/// ACK first and the response in a CON of its own.
fn device(socket: UdpSocket, name: String, separate: bool, requests: usize) {
    let mut buf = [0u8; 2048];
    let mut answered = 0;
    let mut mid = 1000u16;
    while answered < requests {
        let Ok((len, from)) = socket.recv_from(&mut buf) else {
            return;
        };
        let Ok(req) = Packet::from_bytes(&buf[..len]) else {
            continue;
        };
        if !matches!(req.header.code, MessageClass::Request(_)) {
            continue; // the ACK of our separate response
        }
        let path: Vec<String> = req
            .get_option(CoapOption::UriPath)
            .map(|l| {
                l.iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let mut resp = Packet::new();
        resp.header.code = MessageClass::Response(ResponseType::Content);
        resp.set_token(req.get_token().to_vec());
        resp.payload = format!("{name}:{}", path.join("/")).into_bytes();
        if separate {
            let mut ack = Packet::new();
            ack.header.set_type(MessageType::Acknowledgement);
            ack.header.code = MessageClass::Empty;
            ack.header.message_id = req.header.message_id;
            socket.send_to(&ack.to_bytes().unwrap(), from).unwrap();
            mid += 1;
            resp.header.set_type(MessageType::Confirmable);
            resp.header.message_id = mid;
        } else {
            resp.header.set_type(MessageType::Acknowledgement);
            resp.header.message_id = req.header.message_id;
        }
        socket.send_to(&resp.to_bytes().unwrap(), from).unwrap();
        answered += 1;
    }
}

/// A server in its own two-thread runtime, for tests that drive its
/// `CoapHandle` from outside.
fn serve(config: lwota::config::Config) -> (tokio::runtime::Runtime, lwota::server::Running) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let running = runtime
        .block_on(lwota::server::start(config, Arc::new(SystemClock::new())))
        .expect("server starts");
    (runtime, running)
}

fn get(path: &str) -> Packet {
    let mut p = Packet::new();
    p.header.code = MessageClass::Request(RequestType::Get);
    for seg in path.split('/') {
        p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
    }
    p
}

#[test]
fn server_initiated_requests_reach_every_peer_through_two_shards() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = common::test_config(tmp.path());
    config.coap.shards = 2;
    // Short retransmission timeouts so the silent peer fails in seconds.
    config.coap.ack_timeout_ms = 200;
    let (runtime, running) = serve(config);
    let handle = running.coap.clone();
    assert_eq!(handle.shards(), 2);
    let server = running.coap_addr;
    // The port is taken: another group may not join it through SO_REUSEPORT.
    assert!(lwota::server::coap_shell::bind(server, 2).is_err());

    const PEERS: usize = 12;
    const REQUESTS: usize = 4;
    let mut threads = Vec::new();
    let mut peers: Vec<SocketAddr> = Vec::new();
    for i in 0..PEERS {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        peers.push(socket.local_addr().unwrap());
        // Half the peers talk first (the server learns their shard), half
        // never do before the server asks them something.
        if i % 2 == 0 {
            let hello = {
                let mut p = get(".well-known/core");
                p.header.message_id = 1;
                p.to_bytes().unwrap()
            };
            socket.send_to(&hello, server).unwrap();
            let mut buf = [0u8; 2048];
            socket
                .recv_from(&mut buf)
                .expect("server answers the hello");
        }
        let separate = i % 3 == 0;
        threads.push(std::thread::spawn(move || {
            device(socket, format!("d{i}"), separate, REQUESTS)
        }));
    }
    let answers = runtime.block_on(async {
        let mut tasks = Vec::new();
        for (i, peer) in peers.iter().enumerate() {
            for r in 0..REQUESTS {
                let handle = handle.clone();
                let peer = *peer;
                tasks.push(tokio::spawn(async move {
                    let resp = handle.request(peer, get(&format!("3/0/{r}"))).await;
                    (i, r, resp)
                }));
            }
        }
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.unwrap());
        }
        answers
    });
    for (i, r, resp) in answers {
        let packet = resp.unwrap_or_else(|e| panic!("peer {i} request {r}: {e}"));
        assert_eq!(
            packet.header.code,
            MessageClass::Response(ResponseType::Content)
        );
        assert_eq!(packet.payload, format!("d{i}:3/0/{r}").into_bytes());
    }
    for t in threads {
        t.join().unwrap();
    }
    // A peer that never answers: the exchange fails, it does not hang.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let result = runtime.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(30),
            handle.request(silent.local_addr().unwrap(), get("x")),
        )
        .await
    });
    assert!(matches!(
        result,
        Ok(Err(lwota::server::coap_shell::RequestError::Failed(
            lwota::coap::Why::TimedOut
        )))
    ));
    runtime.block_on(running.stop());
}

#[test]
fn observe_through_the_handle_delivers_notifications_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = common::test_config(tmp.path());
    config.coap.shards = 2;
    let (runtime, running) = serve(config);
    let handle = running.coap.clone();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let device_addr = socket.local_addr().unwrap();
    let device = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let (len, server) = socket.recv_from(&mut buf).unwrap();
        let req = Packet::from_bytes(&buf[..len]).unwrap();
        assert_eq!(req.get_observe_value().unwrap().unwrap(), 0);
        let notification = |kind: MessageType, mid: u16, seq: Option<u32>, body: &str| {
            let mut p = Packet::new();
            p.header.set_type(kind);
            p.header.message_id = mid;
            p.header.code = MessageClass::Response(match seq {
                Some(_) => ResponseType::Content,
                None => ResponseType::NotFound,
            });
            p.set_token(req.get_token().to_vec());
            if let Some(seq) = seq {
                p.set_observe_value(seq);
            }
            p.payload = body.as_bytes().to_vec();
            p.to_bytes().unwrap()
        };
        let first = notification(
            MessageType::Acknowledgement,
            req.header.message_id,
            Some(10),
            "0",
        );
        socket.send_to(&first, server).unwrap();
        // 11, 12, then a stale 9 (must be dropped), then 13 as CON, then the end.
        for (mid, seq, body) in [(1, 11, "1"), (2, 12, "2"), (3, 9, "stale"), (4, 13, "3")] {
            let kind = if seq == 13 {
                MessageType::Confirmable
            } else {
                MessageType::NonConfirmable
            };
            socket
                .send_to(&notification(kind, mid, Some(seq), body), server)
                .unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        // The CON notification is ACKed.
        let (len, _) = socket.recv_from(&mut buf).unwrap();
        let ack = Packet::from_bytes(&buf[..len]).unwrap();
        assert_eq!(ack.header.get_type(), MessageType::Acknowledgement);
        assert_eq!(ack.header.message_id, 4);
        socket
            .send_to(
                &notification(MessageType::NonConfirmable, 5, None, "gone"),
                server,
            )
            .unwrap();
    });
    let mut p = get("3/0/9");
    p.header.message_id = 0;
    let seen = runtime.block_on(async {
        let mut observation = handle.observe(device_addr, p).await.unwrap();
        let mut seen = Vec::new();
        while let Some(item) = tokio::time::timeout(Duration::from_secs(30), observation.next())
            .await
            .expect("observation ends")
        {
            let packet = item.expect("no failure");
            seen.push(String::from_utf8(packet.payload).unwrap());
        }
        seen
    });
    device.join().unwrap();
    assert_eq!(seen, ["0", "1", "2", "3", "gone"]);
    runtime.block_on(running.stop());
}

/// A request whose requester gave up (an LwM2M flow that ended) is
/// cancelled by `cancel_abandoned`: it is not retransmitted, and the next
/// request to the same peer (NSTART 1) goes out at once instead of
/// waiting out the abandoned one's retransmissions.
#[test]
fn abandoned_requests_are_cancelled_and_free_their_slot() {
    let tmp = tempfile::tempdir().unwrap();
    let config = common::test_config(tmp.path());
    assert_eq!(
        config.coap.nstart, 1,
        "the test relies on one slot per peer"
    );
    let (runtime, running) = serve(config);
    let handle = running.coap.clone();
    // A device that hears but never answers.
    let device = UdpSocket::bind("127.0.0.1:0").unwrap();
    device
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let peer = device.local_addr().unwrap();
    let path_of = |bytes: &[u8]| {
        let p = Packet::from_bytes(bytes).unwrap();
        p.get_option(CoapOption::UriPath)
            .and_then(|v| v.front().cloned())
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default()
    };
    let mut buf = [0u8; 2048];
    let abandoned = {
        let handle = handle.clone();
        runtime.spawn(async move { handle.request(peer, get("abandoned")).await })
    };
    let first = std::time::Instant::now();
    let (n, _) = loop {
        if let Ok(got) = device.recv_from(&mut buf) {
            break got;
        }
        assert!(first.elapsed() < Duration::from_secs(10), "no request came");
    };
    assert_eq!(path_of(&buf[..n]), "abandoned");
    abandoned.abort();
    assert!(runtime.block_on(abandoned).is_err(), "aborted");
    let next = {
        let handle = handle.clone();
        runtime.spawn(async move { handle.request(peer, get("next")).await })
    };
    handle.cancel_abandoned(peer);
    // Until past the abandoned request's first retransmission (due 2-3 s
    // after it was sent): the next request arrives, the abandoned one
    // never again.
    let mut seen_next = false;
    while first.elapsed() < Duration::from_millis(3_500) {
        if let Ok((n, _)) = device.recv_from(&mut buf) {
            match path_of(&buf[..n]).as_str() {
                "next" => seen_next = true,
                other => panic!("{other} was sent again after it was cancelled"),
            }
        }
    }
    assert!(
        seen_next,
        "the next request waited behind the abandoned one"
    );
    next.abort();
    runtime.block_on(running.stop());
}

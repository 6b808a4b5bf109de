//! Two CoAP endpoints over a simulated lossy link (tests/simnet), in
//! virtual time, across thousands of seeds: every exchange ends exactly
//! once, requests are delivered once despite duplication, Block1 bodies
//! arrive intact, notifications arrive in order.

use crate::simnet;

use std::collections::HashMap;
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use lwota::coap::{ClientLimits, EndpointConfig, Event, ExchangeId, RelationId};
use proptest::prelude::*;
use simnet::{LinkConfig, Net, Rng};

/// FNV-1a, to answer with a digest of the body the server received.
fn digest(bytes: &[u8]) -> Vec<u8> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    h.to_be_bytes().to_vec()
}

fn body_for(n: u32, len: usize) -> Vec<u8> {
    let mut body = n.to_be_bytes().to_vec();
    body.extend((0..len).map(|i| (i as u32 * 31 + n) as u8));
    body
}

fn content(payload: Vec<u8>) -> Packet {
    let mut p = Packet::new();
    p.header.code = MessageClass::Response(ResponseType::Content);
    p.payload = payload;
    p
}

/// How an exchange ended: the response payload or why it failed.
type Outcome = Result<Vec<u8>, String>;

struct Planned {
    n: u32,
    method: RequestType,
    body: Vec<u8>,
}

/// Answers every request at node `server` with the digest of its body and
/// records each delivery by request number.
fn serve(net: &mut Net, server: usize, deliveries: &mut HashMap<u32, Vec<Vec<u8>>>) {
    for (_, event) in net.take_events(server) {
        let Event::Request(req) = event else { continue };
        let n = req
            .packet
            .get_first_option(CoapOption::UriQuery)
            .and_then(|q| std::str::from_utf8(q).ok()?.parse::<u32>().ok())
            .expect("request number");
        deliveries
            .entry(n)
            .or_default()
            .push(req.packet.payload.clone());
        let now = net.now();
        net.nodes[server]
            .endpoint
            .respond(now, req.meta, content(digest(&req.packet.payload)));
        net.drain(server);
    }
}

fn exchanges_end_exactly_once(seed: u64, perfect: bool) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let link = if perfect {
        LinkConfig::perfect()
    } else {
        LinkConfig::random(&mut rng)
    };
    let mut net = Net::new(seed, link.clone());
    let server = net.add(EndpointConfig::default());
    // One to three clients, each with its own Block1 size, all talking to
    // the one server (NSTART queues per client, dedup per client address).
    let clients: Vec<usize> = (0..1 + rng.below(3))
        .map(|_| {
            net.add(EndpointConfig {
                client: ClientLimits {
                    block_szx: rng.below(7) as u8,
                    ..ClientLimits::default()
                },
                ..EndpointConfig::default()
            })
        })
        .collect();
    let count = 1 + rng.below(8) as u32;
    let mut planned = HashMap::new();
    for n in 0..count {
        let method = if rng.chance(0.5) {
            RequestType::Post
        } else {
            RequestType::Get
        };
        let body = match method {
            RequestType::Post if rng.chance(0.5) => body_for(n, rng.below(1500) as usize),
            RequestType::Post => body_for(n, rng.below(8) as usize),
            _ => Vec::new(),
        };
        let mut p = Packet::new();
        p.header.code = MessageClass::Request(method);
        if rng.chance(0.3) {
            p.header.set_type(MessageType::NonConfirmable);
        }
        p.add_option(CoapOption::UriPath, b"x".to_vec());
        p.add_option(CoapOption::UriQuery, n.to_string().into_bytes());
        p.payload = body.clone();
        let client = clients[rng.below(clients.len() as u64) as usize];
        let (now, to) = (net.now(), net.addr(server));
        let id = net.nodes[client].endpoint.request(now, to, p);
        net.drain(client);
        planned.insert((client, id), Planned { n, method, body });
    }
    let mut outcomes: HashMap<(usize, ExchangeId), Vec<Outcome>> = HashMap::new();
    let mut deliveries: HashMap<u32, Vec<Vec<u8>>> = HashMap::new();
    let limit = Duration::from_secs(4 * 3600);
    net.drive(limit, 500_000, |net| {
        serve(net, server, &mut deliveries);
        for &client in &clients {
            for (_, event) in net.take_events(client) {
                match event {
                    Event::Response { id, packet } => outcomes
                        .entry((client, id))
                        .or_default()
                        .push(Ok(packet.payload)),
                    Event::Failed { id, why } => outcomes
                        .entry((client, id))
                        .or_default()
                        .push(Err(why.to_string())),
                    other => panic!("unexpected client event {other:?}"),
                }
            }
        }
        outcomes.len() == planned.len()
    })
    .map_err(|e| format!("{e} (link {link:?})"))?;
    // Let late duplicates arrive and timers run out: nothing may change.
    let until = net.elapsed + Duration::from_secs(300);
    while net.step(until) {
        serve(&mut net, server, &mut deliveries);
        for &client in &clients {
            if let Some((_, event)) = net.take_events(client).into_iter().next() {
                return Err(format!("event after the end: {event:?}"));
            }
        }
    }
    for (id, plan) in &planned {
        let got = outcomes.get(id).ok_or("no outcome")?;
        if got.len() != 1 {
            return Err(format!("exchange {id:?} ended {} times", got.len()));
        }
        let delivered = deliveries.get(&plan.n).map_or(0, Vec::len);
        for body in deliveries.get(&plan.n).into_iter().flatten() {
            if *body != plan.body {
                return Err(format!("request {} body arrived damaged", plan.n));
            }
        }
        if plan.method == RequestType::Post && delivered > 1 {
            return Err(format!("POST {} delivered {delivered} times", plan.n));
        }
        if perfect && got[0].is_err() {
            return Err(format!(
                "request {} failed on a perfect link: {:?}",
                plan.n, got[0]
            ));
        }
        if let Ok(payload) = &got[0] {
            if *payload != digest(&plan.body) {
                return Err(format!("request {}: wrong response", plan.n));
            }
            if delivered == 0 {
                return Err(format!("request {} answered but never delivered", plan.n));
            }
        }
    }
    for &node in clients.iter().chain([&server]) {
        let (exchanges, _, assemblies) = net.nodes[node].endpoint.load();
        if exchanges != 0 || assemblies != 0 {
            return Err(format!("state left behind at node {node}"));
        }
    }
    Ok(())
}

fn notifications_in_order(seed: u64, perfect: bool) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let link = if perfect {
        LinkConfig::perfect()
    } else {
        LinkConfig::random(&mut rng)
    };
    let mut net = Net::new(seed, link.clone());
    let server = net.add(EndpointConfig::default());
    let client = net.add(EndpointConfig::default());
    let mut p = Packet::new();
    p.header.code = MessageClass::Request(RequestType::Get);
    p.add_option(CoapOption::UriPath, b"obs".to_vec());
    let (now, to) = (net.now(), net.addr(server));
    let obs = net.nodes[client].endpoint.observe(now, to, p);
    net.drain(client);
    const COUNT: u32 = 30;
    for i in 1..=COUNT {
        net.wake_at(Duration::from_millis(700 * u64::from(i)));
    }
    let mut relation: Option<RelationId> = None;
    let mut relation_over = false;
    let mut sent = 0u32;
    let mut seen: Vec<u32> = Vec::new();
    let mut ended = false;
    let end = Duration::from_millis(700 * u64::from(COUNT)) + Duration::from_secs(200);
    let result = net.drive(end, 200_000, |net| {
        let now = net.now();
        for (_, event) in net.take_events(server) {
            match event {
                Event::Request(req) => {
                    if req.meta.observe && relation.is_none() {
                        relation = net.nodes[server].endpoint.accept_observe(
                            now,
                            req.meta,
                            content(0u32.to_be_bytes().to_vec()),
                        );
                    } else {
                        net.nodes[server].endpoint.respond(
                            now,
                            req.meta,
                            content(0u32.to_be_bytes().to_vec()),
                        );
                    }
                    net.drain(server);
                }
                Event::RelationEnded { .. } => relation_over = true,
                other => panic!("unexpected server event {other:?}"),
            }
        }
        if let (Some(rel), false) = (relation, relation_over) {
            let due = (net.elapsed.as_millis() / 700) as u32;
            while sent < due.min(COUNT) {
                sent += 1;
                let packet = content(sent.to_be_bytes().to_vec());
                let r = if sent.is_multiple_of(5) {
                    net.nodes[server]
                        .endpoint
                        .notify_confirmable(now, rel, packet)
                } else {
                    net.nodes[server].endpoint.notify(now, rel, packet)
                };
                if r.is_err() {
                    relation_over = true;
                    break;
                }
                net.drain(server);
            }
        }
        for (_, event) in net.take_events(client) {
            match event {
                Event::Notification { id, packet } if id == obs => {
                    let v = u32::from_be_bytes(packet.payload[..4].try_into().unwrap());
                    seen.push(v);
                }
                Event::Response { id, .. } | Event::Failed { id, .. } if id == obs => {
                    ended = true;
                }
                other => panic!("unexpected client event {other:?}"),
            }
        }
        net.elapsed >= end
    });
    if let Err(e) = result {
        // Nothing left to happen before the end is fine here.
        if !e.starts_with("stuck") {
            return Err(e);
        }
    }
    if seen.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!("out of order: {seen:?} (link {link:?})"));
    }
    if link.drop == 0.0 && !ended && seen.len() as u32 != COUNT + 1 {
        return Err(format!("lossless link lost notifications: {seen:?}"));
    }
    Ok(())
}

#[test]
fn perfect_link_smoke() {
    for seed in 0..20 {
        exchanges_end_exactly_once(seed, true).unwrap();
        notifications_in_order(seed, true).unwrap();
    }
}

#[test]
fn lwm2m_registration_in_16_byte_blocks_arrives_whole() {
    let mut net = Net::new(1, LinkConfig::perfect());
    let server = net.add(EndpointConfig::default());
    let client = net.add(EndpointConfig {
        client: ClientLimits {
            block_szx: 0,
            ..ClientLimits::default()
        },
        ..EndpointConfig::default()
    });
    let links = b"</1/0>,</3/0>,</5/0>,</3303/0>;ver=1.1".to_vec();
    let mut p = Packet::new();
    p.header.code = MessageClass::Request(RequestType::Post);
    p.add_option(CoapOption::UriPath, b"rd".to_vec());
    p.add_option(CoapOption::UriQuery, b"7".to_vec());
    p.payload = links.clone();
    let (now, to) = (net.now(), net.addr(server));
    let id = net.nodes[client].endpoint.request(now, to, p);
    net.drain(client);
    let mut deliveries = HashMap::new();
    let mut response = None;
    net.drive(Duration::from_secs(60), 10_000, |net| {
        serve(net, server, &mut deliveries);
        for (_, e) in net.take_events(client) {
            if let Event::Response { id: got, packet } = e {
                assert_eq!(got, id);
                response = Some(packet);
            }
        }
        response.is_some()
    })
    .unwrap();
    assert_eq!(deliveries[&7], vec![links.clone()]);
    assert_eq!(response.unwrap().payload, digest(&links));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]
    #[test]
    fn every_exchange_ends_exactly_once_and_posts_apply_once(seed in any::<u64>()) {
        prop_assert_eq!(exchanges_end_exactly_once(seed, false), Ok(()));
    }

    #[test]
    fn notifications_are_never_delivered_out_of_order(seed in any::<u64>()) {
        prop_assert_eq!(notifications_in_order(seed, false), Ok(()));
    }
}

#[test]
fn cancelled_observation_is_ended_by_the_servers_next_notification() {
    let mut net = Net::new(5, LinkConfig::perfect());
    let server = net.add(EndpointConfig::default());
    let client = net.add(EndpointConfig::default());
    let mut p = Packet::new();
    p.header.code = MessageClass::Request(RequestType::Get);
    p.add_option(CoapOption::UriPath, b"obs".to_vec());
    let (now, to) = (net.now(), net.addr(server));
    let obs = net.nodes[client].endpoint.observe(now, to, p);
    net.drain(client);
    let mut relation = None;
    let mut ended = None;
    let mut notified = 0;
    net.drive(Duration::from_secs(60), 1_000, |net| {
        let now = net.now();
        for (_, e) in net.take_events(server) {
            match e {
                Event::Request(req) => {
                    relation = net.nodes[server].endpoint.accept_observe(
                        now,
                        req.meta,
                        content(b"0".to_vec()),
                    );
                    net.drain(server);
                }
                Event::RelationEnded { relation: r, why } => ended = Some((r, why)),
                other => panic!("unexpected {other:?}"),
            }
        }
        for (_, e) in net.take_events(client) {
            if let Event::Notification { id, .. } = e {
                assert_eq!(id, obs);
                notified += 1;
                // Cancel after the first; the next notification gets RST.
                assert!(net.nodes[client].endpoint.cancel_observe(now, obs));
                let rel = relation.expect("relation");
                net.nodes[server]
                    .endpoint
                    .notify(now, rel, content(b"1".to_vec()))
                    .unwrap();
                net.drain(server);
            }
        }
        ended.is_some()
    })
    .unwrap();
    assert_eq!(notified, 1);
    assert_eq!(ended, Some((relation.unwrap(), lwota::coap::Why::Reset)));
}

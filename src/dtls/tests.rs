//! The session table with the OpenSSL engine against an OpenSSL DTLS
//! client, both over in-memory pipes: no sockets, datagrams passed by hand
//! so a test can drop a flight.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use openssl::ssl::{ErrorCode, Ssl, SslContextBuilder, SslMethod, SslStream, SslVersion};

use super::keys::PskDirectory;
use super::openssl::{EngineConfig, OpensslEngine, Pipe};
use super::table::{Limits, SessionTable};
use crate::model::PskRecord;
use crate::time::Timestamp;

const KEY: &[u8] = b"secretPSK";

fn directory() -> PskDirectory {
    let keys = PskDirectory::default();
    let record = PskRecord {
        identity: "dev-1-id".into(),
        key: KEY.to_vec(),
        updated_at: Timestamp::from_millis(0),
    };
    keys.set("dev-1", &record);
    keys
}

fn table(limits: Limits) -> SessionTable<OpensslEngine> {
    let engine = OpensslEngine::new(
        directory(),
        EngineConfig {
            mtu: 1200,
            cookie_secret: [7; 32],
        },
    )
    .expect("engine");
    SessionTable::new(engine, limits)
}

struct Client {
    stream: SslStream<Pipe>,
    peer: SocketAddr,
    connected: bool,
}

fn client(port: u16, identity: &str, key: &[u8], ciphers: &str) -> Client {
    let mut b = SslContextBuilder::new(SslMethod::dtls()).unwrap();
    b.set_min_proto_version(Some(SslVersion::DTLS1_2)).unwrap();
    b.set_max_proto_version(Some(SslVersion::DTLS1_2)).unwrap();
    b.set_security_level(0);
    b.set_cipher_list(ciphers).unwrap();
    let (identity, key) = (identity.as_bytes().to_vec(), key.to_vec());
    b.set_psk_client_callback(move |_ssl, _hint, id_out, psk_out| {
        id_out[..identity.len()].copy_from_slice(&identity);
        id_out[identity.len()] = 0;
        psk_out[..key.len()].copy_from_slice(&key);
        Ok(key.len())
    });
    let ctx = b.build();
    let mut ssl = Ssl::new(&ctx).unwrap();
    ssl.set_connect_state();
    ssl.set_mtu(1200).unwrap();
    Client {
        stream: SslStream::new(ssl, Pipe::default()).unwrap(),
        peer: SocketAddr::from(([10, 0, 0, 1], port)),
        connected: false,
    }
}

impl Client {
    fn step(&mut self) {
        if self.connected {
            return;
        }
        match self.stream.do_handshake() {
            Ok(()) => self.connected = true,
            Err(e) if e.code() == ErrorCode::WANT_READ => {}
            Err(e) => panic!("client handshake: {e}"),
        }
    }

    fn outgoing(&mut self) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| self.stream.get_mut().pop()).collect()
    }
}

/// Passes datagrams both ways until nothing moves; `drop_client_flight`
/// loses the client's n-th flight (0 = first ClientHello).
fn exchange(
    table: &mut SessionTable<OpensslEngine>,
    client: &mut Client,
    mut drop_client_flight: Option<usize>,
) {
    let mut flight = 0;
    for _ in 0..50 {
        client.step();
        let out = client.outgoing();
        let mut moved = !out.is_empty();
        if !out.is_empty() {
            if drop_client_flight == Some(flight) {
                drop_client_flight = None;
            } else {
                for d in out {
                    table.handle(Instant::now(), client.peer, &d);
                }
            }
            flight += 1;
        }
        while let Some((peer, d)) = table.poll_transmit() {
            assert_eq!(peer, client.peer);
            client.stream.get_mut().push(&d);
            moved = true;
        }
        if !moved {
            return;
        }
    }
    panic!("handshake did not settle");
}

#[test]
fn psk_handshake_with_cookie_then_data_both_ways() {
    for (ciphers, expect) in [
        ("PSK-AES128-CCM8", "PSK-AES128-CCM8"),
        ("PSK-AES128-GCM-SHA256", "PSK-AES128-GCM-SHA256"),
    ] {
        let mut table = table(Limits::default());
        let mut c = client(4000, "dev-1-id", KEY, ciphers);
        exchange(&mut table, &mut c, None);
        assert!(c.connected, "{ciphers}: client connected");
        assert_eq!(table.stats().sessions, 1);
        assert_eq!(table.stats().half_open, 0);
        assert_eq!(c.stream.ssl().current_cipher().unwrap().name(), expect);
        c.stream.ssl_write(b"ping").unwrap();
        for d in c.outgoing() {
            table.handle(Instant::now(), c.peer, &d);
        }
        let p = table.poll_plaintext().expect("plaintext");
        assert_eq!(p.data, b"ping");
        assert_eq!(p.identity.device, "dev-1");
        assert_eq!(p.identity.identity, "dev-1-id");
        assert!(table.send(Instant::now(), c.peer, b"pong"));
        let (_, d) = table.poll_transmit().unwrap();
        c.stream.get_mut().push(&d);
        let mut buf = [0u8; 64];
        let n = c.stream.ssl_read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"pong");
    }
}

#[test]
fn first_client_hello_gets_a_stateless_hello_verify_request() {
    let mut table = table(Limits::default());
    let mut c = client(4001, "dev-1-id", KEY, "PSK-AES128-CCM8");
    c.step();
    for d in c.outgoing() {
        table.handle(Instant::now(), c.peer, &d);
    }
    let (_, hvr) = table.poll_transmit().expect("HelloVerifyRequest");
    assert_eq!(hvr[0], 22, "handshake record");
    assert_eq!(hvr[13], 3, "hello_verify_request");
    assert_eq!(table.stats(), Default::default(), "nothing kept");
}

#[test]
fn wrong_key_and_unknown_identity_are_refused() {
    let mut table = table(Limits::default());
    let mut c = client(4002, "dev-1-id", b"wrongkey", "PSK-AES128-CCM8");
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        exchange(&mut table, &mut c, None)
    }));
    assert!(!c.connected);
    // DTLS drops records that fail to decrypt silently (RFC 6347
    // §4.1.2.7): a wrong key shows as a handshake that never finishes.
    assert_eq!(table.stats().half_open, 1);
    table.handle_timeout(Instant::now() + Duration::from_secs(31));
    assert_eq!(table.stats(), Default::default());
    let mut c = client(4003, "nobody", KEY, "PSK-AES128-CCM8");
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        exchange(&mut table, &mut c, None)
    }));
    assert!(!c.connected);
    assert_eq!(table.stats(), Default::default());
}

#[test]
fn a_lost_client_flight_is_recovered_by_the_server_retransmission() {
    let mut table = table(Limits::default());
    let mut c = client(4004, "dev-1-id", KEY, "PSK-AES128-CCM8");
    // Flights: 0 ClientHello, 1 ClientHello+cookie, 2 ClientKeyExchange..Finished.
    exchange(&mut table, &mut c, Some(2));
    assert!(!c.connected);
    assert_eq!(table.stats().half_open, 1);
    // OpenSSL times its flights with the real clock (module docs): wait
    // for the deadline the table reports, then let it retransmit.
    let started = Instant::now();
    while !c.connected {
        assert!(started.elapsed() < Duration::from_secs(20), "no recovery");
        let at = table.poll_timeout().expect("a retransmission timer");
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        table.handle_timeout(Instant::now());
        while let Some((_, d)) = table.poll_transmit() {
            c.stream.get_mut().push(&d);
        }
        exchange(&mut table, &mut c, None);
    }
    assert_eq!(table.stats().sessions, 1);
}

#[test]
fn half_open_handshakes_are_capped_per_address() {
    let limits = Limits {
        max_half_open_per_ip: 2,
        ..Limits::default()
    };
    let mut table = table(limits);
    for port in 0..5 {
        let mut c = client(5000 + port, "dev-1-id", KEY, "PSK-AES128-CCM8");
        // Cookie exchange done, then the client's key exchange is lost.
        exchange(&mut table, &mut c, Some(2));
    }
    assert_eq!(table.stats().half_open, 2);
}

#[test]
fn idle_sessions_expire() {
    let limits = Limits {
        idle_timeout: Duration::from_millis(1),
        ..Limits::default()
    };
    let mut table = table(limits);
    let mut c = client(4005, "dev-1-id", KEY, "PSK-AES128-CCM8");
    exchange(&mut table, &mut c, None);
    assert_eq!(table.stats().sessions, 1);
    table.handle_timeout(Instant::now() + Duration::from_secs(1));
    assert_eq!(table.stats().sessions, 0);
}

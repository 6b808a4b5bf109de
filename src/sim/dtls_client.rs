//! A blocking DTLS-PSK CoAP client (a CoAPS device for tests and `lwota
//! bench --only dtls`): OpenSSL over a real UDP socket, driven through the
//! same in-memory datagram pipe the server's engine uses.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::dtls::openssl::Pipe;
use coap_lite::Packet;
use openssl::ssl::{ErrorCode, Ssl, SslContextBuilder, SslMethod, SslStream, SslVersion};

pub struct DtlsClient {
    pub socket: UdpSocket,
    stream: SslStream<Pipe>,
    server: SocketAddr,
    next_mid: u16,
}

/// Makes a client SSL object for `identity`/`key` offering `ciphers`.
///
/// # Panics
/// On an OpenSSL build without DTLS-PSK (tests and bench only).
pub fn client_stream(identity: &str, key: &[u8], ciphers: &str) -> SslStream<Pipe> {
    try_client_stream(identity, key, ciphers).expect("OpenSSL DTLS-PSK client")
}

fn try_client_stream(
    identity: &str,
    key: &[u8],
    ciphers: &str,
) -> Result<SslStream<Pipe>, openssl::error::ErrorStack> {
    let mut b = SslContextBuilder::new(SslMethod::dtls())?;
    b.set_min_proto_version(Some(SslVersion::DTLS1_2))?;
    b.set_max_proto_version(Some(SslVersion::DTLS1_2))?;
    b.set_security_level(0);
    b.set_cipher_list(ciphers)?;
    let (identity, key) = (identity.as_bytes().to_vec(), key.to_vec());
    b.set_psk_client_callback(move |_ssl, _hint, id_out, psk_out| {
        id_out[..identity.len()].copy_from_slice(&identity);
        id_out[identity.len()] = 0;
        psk_out[..key.len()].copy_from_slice(&key);
        Ok(key.len())
    });
    let ctx = b.build();
    let mut ssl = Ssl::new(&ctx)?;
    ssl.set_connect_state();
    ssl.set_mtu(1200)?;
    SslStream::new(ssl, Pipe::default())
}

impl DtlsClient {
    /// Handshakes with `server` from a socket bound to `local`; `Err` when
    /// no session came up within `timeout`.
    pub fn connect(
        server: SocketAddr,
        local: &str,
        identity: &str,
        key: &[u8],
        ciphers: &str,
        timeout: Duration,
    ) -> Result<DtlsClient, String> {
        let socket = UdpSocket::bind(local).map_err(|e| format!("bind {local}: {e}"))?;
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        let stream = try_client_stream(identity, key, ciphers).map_err(|e| e.to_string())?;
        let mut client = DtlsClient {
            socket,
            stream,
            server,
            next_mid: 1,
        };
        let started = Instant::now();
        loop {
            match client.stream.do_handshake() {
                Ok(()) => return Ok(client),
                Err(e) if e.code() == ErrorCode::WANT_READ => {}
                Err(e) => return Err(format!("handshake: {e}")),
            }
            client.flush();
            if started.elapsed() > timeout {
                return Err("handshake timed out".into());
            }
            if !client.receive_one() {
                // Let OpenSSL retransmit a lost flight.
                client.handle_timeout();
            }
        }
    }

    fn handle_timeout(&mut self) {
        use foreign_types::ForeignTypeRef;
        // SAFETY: DTLSv1_handle_timeout (ctrl 74) on the stream's live SSL.
        unsafe {
            openssl_sys::SSL_ctrl(self.stream.ssl().as_ptr(), 74, 0, std::ptr::null_mut());
        }
    }

    /// Sends close_notify (the server drops the session at once).
    pub fn close(mut self) {
        let _ = self.stream.shutdown();
        self.flush();
    }

    fn flush(&mut self) {
        while let Some(d) = self.stream.get_mut().pop() {
            let _ = self.socket.send_to(&d, self.server);
        }
    }

    fn receive_one(&mut self) -> bool {
        let mut buf = vec![0u8; 65_535];
        match self.socket.recv_from(&mut buf) {
            Ok((n, _)) => {
                self.stream.get_mut().push(&buf[..n]);
                true
            }
            Err(_) => false,
        }
    }

    /// Sends `packet` as it is (an answer to the server's request, a
    /// notification): the LwM2M-over-CoAPS test device.
    pub fn send(&mut self, packet: &Packet) -> bool {
        let Ok(bytes) = packet.to_bytes() else {
            return false;
        };
        let sent = self.stream.ssl_write(&bytes).is_ok();
        self.flush();
        sent
    }

    /// The next message from the server within `timeout` (a request of
    /// the server, an ACK), if any.
    pub fn receive(&mut self, timeout: Duration) -> Option<Packet> {
        let until = Instant::now() + timeout;
        let mut buf = vec![0u8; 65_535];
        loop {
            if let Ok(n) = self.stream.ssl_read(&mut buf) {
                if let Ok(p) = Packet::from_bytes(&buf[..n]) {
                    return Some(p);
                }
                continue;
            }
            // Records OpenSSL wants to send (a retransmitted flight).
            self.flush();
            if Instant::now() >= until {
                return None;
            }
            self.receive_one();
        }
    }

    /// Sends a CON request and waits for its piggybacked response.
    pub fn request(&mut self, mut packet: Packet) -> Option<Packet> {
        let mid = self.next_mid;
        self.next_mid += 1;
        packet.header.message_id = mid;
        packet.header.set_type(coap_lite::MessageType::Confirmable);
        if packet.get_token().is_empty() {
            packet.set_token(vec![mid as u8, (mid >> 8) as u8]);
        }
        let bytes = packet.to_bytes().ok()?;
        for _attempt in 0..4 {
            self.stream.ssl_write(&bytes).ok()?;
            self.flush();
            let until = Instant::now() + Duration::from_secs(2);
            while Instant::now() < until {
                if !self.receive_one() {
                    continue;
                }
                let mut buf = vec![0u8; 65_535];
                while let Ok(n) = self.stream.ssl_read(&mut buf) {
                    if let Ok(p) = Packet::from_bytes(&buf[..n]) {
                        if p.header.message_id == mid {
                            return Some(p);
                        }
                    }
                }
            }
        }
        None
    }
}

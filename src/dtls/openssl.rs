//! The DTLS engine: OpenSSL (libssl 3) driven sans-IO.
//!
//! Each session's SSL object reads from and writes to a [`Pipe`], two
//! in-memory queues of whole datagrams (a `Read` that yields one queued
//! datagram per call and `WouldBlock` when empty, a `Write` that queues
//! each call as one datagram), so record boundaries survive exactly as on
//! a UDP socket and no byte touches the network here.
//!
//! Cookies (RFC 6347 §4.2.1): datagrams from peers without a session go
//! through one reusable listener SSL in `DTLSv1_listen`, which is
//! stateless: it answers a ClientHello without a valid cookie with a
//! HelloVerifyRequest and allocates nothing; only a ClientHello with a
//! valid cookie (HMAC-SHA256 of the peer's address under a per-engine
//! secret) turns the listener into a half-open session.
//!
//! Suites: exactly TLS_PSK_WITH_AES_128_CCM_8 (RFC 7925's mandatory one,
//! all tinydtls devices offer) and TLS_PSK_WITH_AES_128_GCM_SHA256, DTLS
//! 1.2 only, no session tickets, no renegotiation.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use foreign_types::ForeignTypeRef;
use openssl::error::ErrorStack;
use openssl::ex_data::Index;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;
use openssl::ssl::{
    ErrorCode, Ssl, SslContext, SslContextBuilder, SslMethod, SslMode, SslOptions, SslRef,
    SslSessionCacheMode, SslStream, SslVersion,
};

use super::keys::PskDirectory;
use super::{is_client_hello, Accept, Engine, Failure, PeerIdentity, Session};

/// OpenSSL names of the two suites, in server preference order.
pub const CIPHERS: &str = "PSK-AES128-CCM8:PSK-AES128-GCM-SHA256";

/// Largest DTLS record payload we read in one go (TLS max plaintext).
const READ_BUF: usize = 16_384 + 2048;

/// Datagrams queued in a pipe before the oldest is dropped (a flight is
/// at most a handful; the table drains after every call).
const PIPE_DEPTH: usize = 64;

// From <openssl/ssl.h>; the openssl crates do not wrap these.
const DTLS_CTRL_GET_TIMEOUT: libc::c_int = 73;
const DTLS_CTRL_HANDLE_TIMEOUT: libc::c_int = 74;

extern "C" {
    fn DTLSv1_listen(s: *mut openssl_sys::SSL, client: *mut libc::c_void) -> libc::c_int;
    fn BIO_ADDR_new() -> *mut libc::c_void;
    fn BIO_ADDR_free(addr: *mut libc::c_void);
}

/// Whole datagrams in, whole datagrams out.
#[derive(Debug, Default)]
pub struct Pipe {
    inbox: VecDeque<Vec<u8>>,
    outbox: VecDeque<Vec<u8>>,
}

impl Pipe {
    /// Queues a datagram for the SSL object to read.
    pub fn push(&mut self, datagram: &[u8]) {
        self.inbox.push_back(datagram.to_vec());
    }

    /// The next datagram the SSL object wrote.
    pub fn pop(&mut self) -> Option<Vec<u8>> {
        self.outbox.pop_front()
    }
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.inbox.pop_front() {
            Some(datagram) => {
                let n = datagram.len().min(buf.len());
                buf[..n].copy_from_slice(&datagram[..n]);
                Ok(n)
            }
            None => Err(std::io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.outbox.len() >= PIPE_DEPTH {
            self.outbox.pop_front();
        }
        self.outbox.push_back(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What the PSK callback learnt about the peer.
#[derive(Debug, Clone)]
enum Auth {
    Known(Arc<PeerIdentity>),
    Unknown(String),
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Path MTU assumed for handshake flights (OpenSSL fragments to it).
    pub mtu: u32,
    /// Secret for HelloVerifyRequest cookies (random per server run, from
    /// the caller: nothing here reads the OS's randomness on its own).
    pub cookie_secret: [u8; 32],
}

pub struct OpensslEngine {
    ctx: SslContext,
    listener: Option<SslStream<Pipe>>,
    peer_index: Index<Ssl, SocketAddr>,
    auth_index: Index<Ssl, Auth>,
    mtu: u32,
}

impl OpensslEngine {
    pub fn new(keys: PskDirectory, config: EngineConfig) -> Result<OpensslEngine, ErrorStack> {
        let mut b = SslContextBuilder::new(SslMethod::dtls())?;
        b.set_min_proto_version(Some(SslVersion::DTLS1_2))?;
        b.set_max_proto_version(Some(SslVersion::DTLS1_2))?;
        // CCM_8's 64-bit tag is below OpenSSL 3's default security level 1
        // for some builds; the suite list below is the whole policy.
        b.set_security_level(0);
        b.set_cipher_list(CIPHERS)?;
        b.set_options(
            SslOptions::NO_TICKET
                | SslOptions::NO_QUERY_MTU
                | SslOptions::COOKIE_EXCHANGE
                | SslOptions::NO_RENEGOTIATION,
        );
        b.set_session_cache_mode(SslSessionCacheMode::OFF);
        // Idle sessions give their record buffers back (memory per idle
        // session, docs/BENCHMARKS.md).
        b.set_mode(SslMode::RELEASE_BUFFERS);
        let peer_index = Ssl::new_ex_index::<SocketAddr>()?;
        let auth_index = Ssl::new_ex_index::<Auth>()?;
        let hmac_key = PKey::hmac(&config.cookie_secret)?;
        let gen_key = hmac_key.clone();
        b.set_cookie_generate_cb(move |ssl, out| {
            let peer = ssl.ex_data(peer_index).copied();
            let cookie = cookie_for(&gen_key, peer)?;
            let n = cookie.len().min(out.len());
            out[..n].copy_from_slice(&cookie[..n]);
            Ok(n)
        });
        b.set_cookie_verify_cb(move |ssl, cookie| {
            let peer = ssl.ex_data(peer_index).copied();
            match cookie_for(&hmac_key, peer) {
                Ok(expected) => {
                    expected.len() == cookie.len() && openssl::memcmp::eq(&expected, cookie)
                }
                Err(_) => false,
            }
        });
        b.set_psk_server_callback(move |ssl, identity, psk| {
            let identity = String::from_utf8_lossy(identity.unwrap_or_default()).into_owned();
            match keys.lookup(&identity) {
                Some(entry) if entry.key.len() <= psk.len() => {
                    psk[..entry.key.len()].copy_from_slice(&entry.key);
                    let peer = PeerIdentity {
                        identity,
                        device: entry.device.to_string(),
                    };
                    ssl.set_ex_data(auth_index, Auth::Known(Arc::new(peer)));
                    Ok(entry.key.len())
                }
                _ => {
                    ssl.set_ex_data(auth_index, Auth::Unknown(identity));
                    Err(ErrorStack::get())
                }
            }
        });
        Ok(OpensslEngine {
            ctx: b.build(),
            listener: None,
            peer_index,
            auth_index,
            mtu: config.mtu,
        })
    }

    fn new_stream(&self) -> Result<SslStream<Pipe>, ErrorStack> {
        let mut ssl = Ssl::new(&self.ctx)?;
        ssl.set_accept_state();
        ssl.set_mtu(self.mtu)?;
        SslStream::new(ssl, Pipe::default())
    }
}

/// HMAC-SHA256 of the peer's address, truncated to 16 bytes.
fn cookie_for(key: &PKey<Private>, peer: Option<SocketAddr>) -> Result<Vec<u8>, ErrorStack> {
    let mut signer = Signer::new(openssl::hash::MessageDigest::sha256(), key)?;
    let peer = peer.map(|p| p.to_string()).unwrap_or_default();
    signer.update(peer.as_bytes())?;
    let mut mac = signer.sign_to_vec()?;
    mac.truncate(16);
    Ok(mac)
}

/// The `SslRef` of a stream, mutably: the crate only lends it shared, and
/// ex_data needs `&mut`. Sound because we hold the stream by `&mut`.
fn ssl_mut(stream: &mut SslStream<Pipe>) -> &mut SslRef {
    // SAFETY: the pointer is the stream's live SSL object, and the
    // exclusive borrow of the stream is held for the returned lifetime.
    unsafe { SslRef::from_ptr_mut(stream.ssl().as_ptr()) }
}

impl Engine for OpensslEngine {
    type Session = OpensslSession;

    fn accept(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        datagram: &[u8],
    ) -> Accept<OpensslSession> {
        if !is_client_hello(datagram) {
            return Accept::Drop("not_client_hello");
        }
        let mut listener = match self.listener.take() {
            Some(l) => l,
            None => match self.new_stream() {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!("dtls: cannot create an SSL object: {e}");
                    return Accept::Drop("engine_error");
                }
            },
        };
        {
            let pipe = listener.get_mut();
            pipe.inbox.clear();
            pipe.outbox.clear();
            pipe.inbox.push_back(datagram.to_vec());
        }
        ssl_mut(&mut listener).set_ex_data(self.peer_index, peer);
        // SAFETY: a live SSL object with its BIOs set, and a BIO_ADDR
        // OpenSSL may write the (unused) client address into, freed here.
        let rc = unsafe {
            let addr = BIO_ADDR_new();
            if addr.is_null() {
                return Accept::Drop("engine_error");
            }
            let rc = DTLSv1_listen(listener.ssl().as_ptr(), addr);
            BIO_ADDR_free(addr);
            rc
        };
        match rc {
            1 => {
                listener.get_mut().outbox.clear();
                let mut session = OpensslSession {
                    stream: listener,
                    established: false,
                    plaintext: VecDeque::new(),
                    auth_index: self.auth_index,
                };
                // Handles the buffered ClientHello: ServerHello flight.
                match session.drive() {
                    Ok(()) => Accept::Session(session),
                    Err(e) => {
                        tracing::debug!(%peer, "dtls: handshake start failed: {e}");
                        Accept::Drop("handshake_start")
                    }
                }
            }
            0 => {
                let reply = listener.get_mut().outbox.pop_front();
                self.listener = Some(listener);
                let _ = now;
                match reply {
                    Some(hvr) => Accept::Reply(hvr),
                    None => Accept::Drop("bad_client_hello"),
                }
            }
            _ => {
                // The listener is in an unknown state: make a new one next time.
                tracing::debug!(%peer, "dtls: ClientHello rejected: {}", ErrorStack::get());
                Accept::Drop("bad_client_hello")
            }
        }
    }
}

pub struct OpensslSession {
    stream: SslStream<Pipe>,
    established: bool,
    plaintext: VecDeque<Vec<u8>>,
    auth_index: Index<Ssl, Auth>,
}

thread_local! {
    /// One read buffer per thread, not per session: an idle session then
    /// holds no 16 KiB buffer of ours.
    static READ: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; READ_BUF]);
}

impl OpensslSession {
    /// Advances the handshake, then decrypts every queued record.
    fn drive(&mut self) -> Result<(), Failure> {
        if !self.established {
            match self.stream.accept() {
                Ok(()) => {
                    self.established = true;
                    if self.identity().is_none() {
                        return Err(Failure::Handshake("no PSK identity".into()));
                    }
                }
                Err(e) if e.code() == ErrorCode::WANT_READ => return Ok(()),
                Err(e) => return Err(self.failure(&e)),
            }
        }
        READ.with(|buf| {
            let mut buf = buf.borrow_mut();
            loop {
                match self.stream.ssl_read(&mut buf) {
                    Ok(0) => return Err(Failure::Closed),
                    Ok(n) => {
                        if self.plaintext.len() >= PIPE_DEPTH {
                            self.plaintext.pop_front();
                        }
                        self.plaintext.push_back(buf[..n].to_vec());
                    }
                    Err(e) if e.code() == ErrorCode::WANT_READ => return Ok(()),
                    Err(e) if e.code() == ErrorCode::ZERO_RETURN => return Err(Failure::Closed),
                    Err(e) => return Err(Failure::Handshake(e.to_string())),
                }
            }
        })
    }

    fn failure(&self, e: &openssl::ssl::Error) -> Failure {
        match self.stream.ssl().ex_data(self.auth_index) {
            Some(Auth::Unknown(identity)) => Failure::UnknownIdentity(identity.clone()),
            _ => Failure::Handshake(match e.ssl_error() {
                Some(stack) => stack.to_string(),
                None => e.to_string(),
            }),
        }
    }

    fn ssl_ptr(&self) -> *mut openssl_sys::SSL {
        self.stream.ssl().as_ptr()
    }
}

impl Session for OpensslSession {
    fn handle(&mut self, _now: Instant, datagram: &[u8]) -> Result<(), Failure> {
        let pipe = self.stream.get_mut();
        if pipe.inbox.len() >= PIPE_DEPTH {
            pipe.inbox.pop_front();
        }
        pipe.inbox.push_back(datagram.to_vec());
        let result = self.drive();
        // Whatever OpenSSL did not consume (a failed session) is garbage.
        self.stream.get_mut().inbox.clear();
        result
    }

    fn send(&mut self, _now: Instant, plaintext: &[u8]) -> Result<(), Failure> {
        if !self.established {
            return Err(Failure::Handshake("not established".into()));
        }
        match self.stream.ssl_write(plaintext) {
            Ok(_) => Ok(()),
            Err(e) => Err(Failure::Handshake(e.to_string())),
        }
    }

    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.stream.get_mut().outbox.pop_front()
    }

    fn poll_plaintext(&mut self) -> Option<Vec<u8>> {
        self.plaintext.pop_front()
    }

    fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        if self.established {
            return None;
        }
        let mut tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        };
        // SAFETY: DTLSv1_get_timeout writes one timeval through the pointer.
        let active = unsafe {
            openssl_sys::SSL_ctrl(
                self.ssl_ptr(),
                DTLS_CTRL_GET_TIMEOUT,
                0,
                &mut tv as *mut libc::timeval as *mut libc::c_void,
            )
        };
        if active <= 0 {
            return None;
        }
        let left = Duration::from_secs(tv.tv_sec.max(0) as u64)
            + Duration::from_micros(tv.tv_usec.max(0) as u64);
        Some(now + left)
    }

    fn handle_timeout(&mut self, _now: Instant) -> Result<(), Failure> {
        if self.established {
            return Ok(());
        }
        // SAFETY: DTLSv1_handle_timeout takes no pointer argument.
        let rc = unsafe {
            openssl_sys::SSL_ctrl(
                self.ssl_ptr(),
                DTLS_CTRL_HANDLE_TIMEOUT,
                0,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            return Err(Failure::Handshake("too many retransmissions".into()));
        }
        Ok(())
    }

    fn is_established(&self) -> bool {
        self.established
    }

    fn identity(&self) -> Option<Arc<PeerIdentity>> {
        match self.stream.ssl().ex_data(self.auth_index) {
            Some(Auth::Known(peer)) => Some(peer.clone()),
            _ => None,
        }
    }

    fn cipher(&self) -> Option<String> {
        self.stream
            .ssl()
            .current_cipher()
            .map(|c| c.name().to_string())
    }
}

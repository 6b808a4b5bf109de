//! Amplification bound for unverified source addresses (RFC 7252 §11.3,
//! RFC 9175 §2.4 item 3), sans-IO.
//!
//! A response to an address that has not shown it receives our datagrams
//! is kept within `factor` × the request's size, counted on the wire
//! (Ethernet, IP and UDP headers included, as RFC 9175 §2.4 does for its
//! 136-byte example). Such a response carries a server-chosen Echo option
//! (a MAC of the address and a timestamp, so no state is kept for
//! unverified addresses). What does not fit is made to fit, in this order:
//!
//! 1. a Block2 response (or a GET's 2.05 body) is cut to the largest block
//!    size that fits: clients that know nothing of Echo still complete,
//!    in smaller blocks;
//! 2. an error response loses its diagnostic payload;
//! 3. anything else is replaced by 4.01 Unauthorized with the Echo option
//!    (RFC 9175 §2.3: the client repeats the request with it).
//!
//! An address becomes verified for `verified_for` when a request echoes a
//! valid Echo value, when it answers a request we sent it (token matched,
//! `exchange.rs`), or when the application says so
//! ([`Endpoint::mark_verified`](super::Endpoint::mark_verified)). Requests
//! over DTLS are never bounded: the handshake's cookie exchange verified
//! the address. Verification is per IP address, not per port: an LwM2M
//! client downloads its Package URI from a new source port.
//!
//! The table of verified addresses is bounded (`max_verified`); when full
//! the entry closest to expiry makes room (`lwota_coap_verified_evicted_total`).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, Packet, ResponseType};
use sha2::{Digest, Sha256};

use super::block::Block;

/// The Echo option (RFC 9175 §2.2.1): elective, safe to forward.
pub const ECHO: CoapOption = CoapOption::Unknown(252);

/// How long an Echo value we hand out stays valid.
pub const ECHO_LIFETIME: Duration = Duration::from_secs(300);

/// Bytes of Ethernet, IP and UDP header around a datagram (RFC 9175 §2.4).
const OVERHEAD_V4: usize = 14 + 20 + 8;
const OVERHEAD_V6: usize = 14 + 40 + 8;

/// Newly verified addresses waiting for [`Guard::poll_verified`]; more are
/// dropped (other shards then verify the address themselves).
const NEWLY_VERIFIED_CAPACITY: usize = 1024;

pub const BOUNDED: &str = "lwota_coap_amplification_bounded_total";
pub const ECHO_RECEIVED: &str = "lwota_coap_echo_received_total";
pub const VERIFIED: &str = "lwota_coap_addresses_verified_total";
pub const VERIFIED_EVICTED: &str = "lwota_coap_verified_evicted_total";

#[derive(Debug, Clone)]
pub struct AmplificationConfig {
    /// Wire bytes sent per wire byte received, for unverified addresses.
    pub factor: usize,
    /// How long a verification lasts (renewed by every new proof).
    pub verified_for: Duration,
    /// Verified addresses remembered at most.
    pub max_verified: usize,
    /// Key of the Echo MAC; every endpoint of one listener shares it, so
    /// an Echo value from one shard is good at every other.
    pub secret: [u8; 32],
    /// Time zero of Echo timestamps (shared like `secret`).
    pub epoch: Instant,
}

/// How an address came to be verified (the `how` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    Echo,
    Response,
    Application,
}

impl Proof {
    fn label(self) -> &'static str {
        match self {
            Proof::Echo => "echo",
            Proof::Response => "response",
            Proof::Application => "application",
        }
    }
}

/// What [`fit`] did to a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fitted {
    /// It fitted (with the Echo option added).
    AsIs,
    /// A smaller Block2 block.
    Shrunk,
    /// An error response without its diagnostic payload.
    Trimmed,
    /// Replaced by 4.01 Unauthorized + Echo.
    Challenged,
}

#[derive(Debug)]
pub struct Guard {
    config: AmplificationConfig,
    /// Address → end of its verification.
    verified: HashMap<IpAddr, Instant>,
    /// The same entries by expiry: eviction and expiry in O(log n).
    by_expiry: BTreeSet<(Instant, IpAddr)>,
    newly_verified: VecDeque<IpAddr>,
}

impl Guard {
    pub fn new(config: AmplificationConfig) -> Guard {
        Guard {
            config,
            verified: HashMap::new(),
            by_expiry: BTreeSet::new(),
            newly_verified: VecDeque::new(),
        }
    }

    /// The most bytes (CoAP message) a response to this request may take,
    /// or `None` if `peer` is verified. A valid `echo` verifies it now.
    pub fn limit(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        request_len: usize,
        echo: Option<&[u8]>,
    ) -> Option<usize> {
        let ip = peer.ip();
        if let Some(value) = echo {
            if self.echo_is_valid(now, ip, value) {
                metrics::counter!(ECHO_RECEIVED, "result" => "valid").increment(1);
                self.verify(now, ip, Proof::Echo);
                return None;
            }
            metrics::counter!(ECHO_RECEIVED, "result" => "invalid").increment(1);
        }
        if self.is_verified(now, ip) {
            return None;
        }
        let overhead = if ip.is_ipv4() {
            OVERHEAD_V4
        } else {
            OVERHEAD_V6
        };
        let allowed = self.config.factor.saturating_mul(request_len + overhead);
        Some(allowed.saturating_sub(overhead))
    }

    pub fn is_verified(&self, now: Instant, ip: IpAddr) -> bool {
        self.verified.get(&ip).is_some_and(|until| *until > now)
    }

    /// Records that `ip` receives our datagrams, for `verified_for`.
    pub fn verify(&mut self, now: Instant, ip: IpAddr, how: Proof) {
        let until = now + self.config.verified_for;
        match self.verified.insert(ip, until) {
            Some(old) => {
                self.by_expiry.remove(&(old, ip));
            }
            None => {
                metrics::counter!(VERIFIED, "how" => how.label()).increment(1);
                if how != Proof::Application && self.newly_verified.len() < NEWLY_VERIFIED_CAPACITY
                {
                    self.newly_verified.push_back(ip);
                }
            }
        }
        self.by_expiry.insert((until, ip));
        while self.verified.len() > self.config.max_verified.max(1) {
            let Some((at, oldest)) = self.by_expiry.pop_first() else {
                break;
            };
            self.verified.remove(&oldest);
            if at > now {
                metrics::counter!(VERIFIED_EVICTED).increment(1);
            }
        }
        self.expire(now);
    }

    /// Drops verifications that ended.
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(at, ip)) = self.by_expiry.first() {
            if at > now {
                break;
            }
            self.by_expiry.pop_first();
            self.verified.remove(&ip);
        }
    }

    pub fn len(&self) -> usize {
        self.verified.len()
    }

    pub fn is_empty(&self) -> bool {
        self.verified.is_empty()
    }

    /// An address this endpoint verified itself (by Echo or a response),
    /// for the shell to tell its other endpoints.
    pub fn poll_verified(&mut self) -> Option<IpAddr> {
        self.newly_verified.pop_front()
    }

    /// The Echo value for `ip` now: 4 bytes of seconds since the epoch and
    /// 8 bytes of SHA-256(secret, address, seconds).
    pub fn echo_value(&self, now: Instant, ip: IpAddr) -> Vec<u8> {
        let secs = now.saturating_duration_since(self.config.epoch).as_secs() as u32;
        let mut value = secs.to_be_bytes().to_vec();
        value.extend_from_slice(&self.mac(ip, secs));
        value
    }

    fn echo_is_valid(&self, now: Instant, ip: IpAddr, value: &[u8]) -> bool {
        let Ok(stamp) = <[u8; 4]>::try_from(value.get(..4).unwrap_or_default()) else {
            return false;
        };
        let secs = u32::from_be_bytes(stamp);
        let issued = self.config.epoch + Duration::from_secs(u64::from(secs));
        let fresh = issued <= now && now.saturating_duration_since(issued) < ECHO_LIFETIME;
        fresh && value.len() == 12 && value[4..] == self.mac(ip, secs)
    }

    fn mac(&self, ip: IpAddr, secs: u32) -> [u8; 8] {
        let address = match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        let digest = Sha256::new()
            .chain_update(self.config.secret)
            .chain_update(address)
            .chain_update(secs.to_be_bytes())
            .finalize();
        let mut mac = [0u8; 8];
        mac.copy_from_slice(&digest[..8]);
        mac
    }
}

/// Makes `response` (header and token already set) fit in `limit` bytes
/// and adds `echo` to it. `block2_asked` is the request's Block2 option;
/// `safe` says whether the request was a GET/FETCH, whose 2.05 body may be
/// served block-wise even when the application did not (RFC 7959 §2.4).
pub fn fit(
    response: &mut Packet,
    limit: usize,
    echo: &[u8],
    block2_asked: Option<Block>,
    safe: bool,
) -> Fitted {
    response.clear_option(ECHO);
    response.add_option(ECHO, echo.to_vec());
    if encoded_len(response) <= limit {
        return Fitted::AsIs;
    }
    let success = super::message::is_success(response.header.code);
    let block = response
        .get_first_option(CoapOption::Block2)
        .and_then(|v| Block::parse(v).ok());
    let content = response.header.code == MessageClass::Response(ResponseType::Content);
    let whole_body = match block {
        Some(_) => None,
        None if safe && content && !response.payload.is_empty() => {
            Some(block2_asked.map_or(0, |b| b.num))
        }
        None => None,
    };
    if success && (block.is_some() || whole_body.is_some()) {
        if let Some(shrunk) = smaller_block(response, block, whole_body, block2_asked, limit) {
            *response = shrunk;
            return Fitted::Shrunk;
        }
    }
    if !success && !response.payload.is_empty() {
        response.payload.clear();
        if encoded_len(response) <= limit {
            return Fitted::Trimmed;
        }
    }
    let mut challenge = Packet::new();
    challenge.header = response.header.clone();
    challenge.header.code = MessageClass::Response(ResponseType::Unauthorized);
    challenge.set_token(response.get_token().to_vec());
    challenge.add_option(ECHO, echo.to_vec());
    *response = challenge;
    Fitted::Challenged
}

/// The largest Block2 piece of `response` that fits in `limit`, at the
/// same offset (RFC 7959 §2.4: a server may answer with a smaller block;
/// the block number scales). `whole_body` is set when the response is a
/// whole representation: then the request's block `num` is cut from it.
fn smaller_block(
    response: &Packet,
    block: Option<Block>,
    whole_body: Option<u32>,
    asked: Option<Block>,
    limit: usize,
) -> Option<Packet> {
    // (offset of the payload in the representation, payload, more after it)
    let (start, body, more_after, top) = match (block, whole_body) {
        (Some(b), _) => (
            b.num as usize * b.size(),
            &response.payload[..],
            b.more,
            b.szx,
        ),
        (None, Some(num)) => {
            let szx = asked.map_or(6, |b| b.szx);
            let offset = num as usize * Block::size_of(szx);
            let body = response.payload.get(offset..)?;
            (offset, body, false, szx)
        }
        (None, None) => return None,
    };
    for szx in (0..=top).rev() {
        let size = Block::size_of(szx);
        if start % size != 0 {
            continue;
        }
        let len = body.len().min(size);
        let piece = Block {
            num: (start / size) as u32,
            more: more_after || body.len() > size,
            szx,
        };
        let mut candidate = response.clone();
        candidate.clear_option(CoapOption::Block2);
        candidate.add_option(CoapOption::Block2, piece.encode());
        candidate.payload = body[..len].to_vec();
        if encoded_len(&candidate) <= limit {
            return Some(candidate);
        }
    }
    None
}

fn encoded_len(packet: &Packet) -> usize {
    packet.to_bytes().map_or(usize::MAX, |b| b.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use coap_lite::MessageType;

    fn guard(max_verified: usize) -> (Guard, Instant) {
        let t0 = Instant::now();
        let config = AmplificationConfig {
            factor: 3,
            verified_for: Duration::from_secs(60),
            max_verified,
            secret: [7; 32],
            epoch: t0,
        };
        (Guard::new(config), t0)
    }

    fn block_response(num: u32, szx: u8, payload: usize) -> Packet {
        let mut p = Packet::new();
        p.header.set_type(MessageType::Acknowledgement);
        p.header.code = MessageClass::Response(ResponseType::Content);
        p.add_option(
            CoapOption::Block2,
            Block {
                num,
                more: true,
                szx,
            }
            .encode(),
        );
        p.payload = vec![0xab; payload];
        p
    }

    #[test]
    fn echo_values_verify_only_their_address_and_only_while_fresh() {
        let (mut g, t0) = guard(10);
        let a: SocketAddr = "192.0.2.1:5683".parse().unwrap();
        let b: SocketAddr = "192.0.2.2:5683".parse().unwrap();
        let value = g.echo_value(t0, a.ip());
        assert_eq!(value.len(), 12);
        assert!(g.limit(t0, b, 20, Some(&value)).is_some(), "other address");
        let late = t0 + ECHO_LIFETIME + Duration::from_secs(1);
        assert!(g.limit(late, a, 20, Some(&value)).is_some(), "stale");
        assert_eq!(g.limit(t0, a, 20, Some(&value)), None, "valid");
        let other_port = SocketAddr::new(a.ip(), 9999);
        assert_eq!(g.limit(t0, other_port, 20, None), None, "per IP");
        assert!(
            g.limit(t0 + Duration::from_secs(61), a, 20, None).is_some(),
            "expired"
        );
        assert_eq!(g.poll_verified(), Some(a.ip()));
    }

    #[test]
    fn limit_counts_wire_headers_like_rfc_9175() {
        let (mut g, t0) = guard(10);
        let v4: SocketAddr = "192.0.2.1:1".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:1".parse().unwrap();
        assert_eq!(g.limit(t0, v4, 13, None), Some(3 * (13 + 42) - 42));
        // RFC 9175 §2.4: a 4-byte request may get 136 bytes over IPv6.
        assert_eq!(g.limit(t0, v6, 4, None), Some(136));
    }

    #[test]
    fn table_is_bounded_and_evicts_the_closest_to_expiry() {
        let (mut g, t0) = guard(3);
        for i in 0..10u8 {
            let ip = IpAddr::from([10, 0, 0, i]);
            g.verify(t0 + Duration::from_secs(u64::from(i)), ip, Proof::Echo);
            assert!(g.len() <= 3);
        }
        assert!(g.is_verified(t0 + Duration::from_secs(9), IpAddr::from([10, 0, 0, 9])));
        assert!(!g.is_verified(t0 + Duration::from_secs(9), IpAddr::from([10, 0, 0, 0])));
    }

    #[test]
    fn blocks_shrink_at_the_same_offset_errors_lose_text_the_rest_is_challenged() {
        let echo = [1u8; 12];
        // Block 3 of 1024 bytes, 123 bytes allowed: 64-byte block 48.
        let mut r = block_response(3, 6, 1024);
        assert_eq!(fit(&mut r, 123, &echo, None, true), Fitted::Shrunk);
        let b = Block::parse(r.get_first_option(CoapOption::Block2).unwrap()).unwrap();
        assert_eq!((b.num, b.szx, b.more), (48, 2, true));
        assert_eq!(r.payload.len(), 64);
        assert!(r.to_bytes().unwrap().len() <= 123);
        assert_eq!(r.get_first_option(ECHO).unwrap().as_slice(), &echo);

        let mut small = block_response(0, 6, 10);
        assert_eq!(fit(&mut small, 123, &echo, None, true), Fitted::AsIs);

        let mut err = Packet::new();
        err.header.code = MessageClass::Response(ResponseType::NotFound);
        err.payload = vec![b'x'; 200];
        assert_eq!(fit(&mut err, 60, &echo, None, true), Fitted::Trimmed);
        assert!(err.payload.is_empty());

        let mut answer = Packet::new();
        answer.header.code = MessageClass::Response(ResponseType::Content);
        answer.set_token(vec![1, 2]);
        answer.payload = vec![0; 300];
        assert_eq!(fit(&mut answer, 60, &echo, None, false), Fitted::Challenged);
        assert_eq!(
            answer.header.code,
            MessageClass::Response(ResponseType::Unauthorized)
        );
        assert_eq!(answer.get_token(), &[1, 2]);
        assert!(answer.to_bytes().unwrap().len() <= 60);

        // A GET's whole 2.05 body becomes block 0.
        let mut whole = Packet::new();
        whole.header.code = MessageClass::Response(ResponseType::Content);
        whole.payload = vec![5; 500];
        assert_eq!(fit(&mut whole, 123, &echo, None, true), Fitted::Shrunk);
        let b = Block::parse(whole.get_first_option(CoapOption::Block2).unwrap()).unwrap();
        assert_eq!((b.num, b.more), (0, true));
    }
}

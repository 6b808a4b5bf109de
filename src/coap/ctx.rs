//! What every part of the endpoint writes to: the outgoing datagrams, the
//! events for the application, the one timer table, the generator and the
//! Message ID counter. The parts (`exchange`, `observe`, `block1`) keep
//! their own state and borrow this for output, so none needs the others.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use coap_lite::MessageType;

use super::dedup::DedupCache;
use super::endpoint::{Event, Transmit};
use super::message;
use super::rng::Rng;
use super::timer::{Timer, Timers, TransmissionParams};

#[derive(Debug)]
pub struct Ctx {
    pub params: TransmissionParams,
    pub transmits: VecDeque<Transmit>,
    pub events: VecDeque<Event>,
    pub timers: Timers,
    pub rng: Rng,
    pub dedup: DedupCache,
    next_message_id: u16,
}

impl Ctx {
    pub fn new(params: TransmissionParams, dedup_capacity: usize, seed: u64) -> Ctx {
        let mut rng = Rng::new(seed);
        let next_message_id = rng.next_u64() as u16;
        let lifetime = params.exchange_lifetime();
        Ctx {
            params,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            timers: Timers::default(),
            rng,
            dedup: DedupCache::new(dedup_capacity, lifetime),
            next_message_id,
        }
    }

    pub fn message_id(&mut self) -> u16 {
        self.next_message_id = self.next_message_id.wrapping_add(1);
        self.next_message_id
    }

    pub fn send(&mut self, peer: SocketAddr, bytes: Arc<[u8]>) {
        self.transmits.push_back(Transmit { peer, bytes });
    }

    pub fn send_empty(&mut self, peer: SocketAddr, kind: MessageType, message_id: u16) {
        self.send(peer, message::empty(kind, message_id).into());
    }

    /// ACKs a CON response or notification and remembers the ACK, so a
    /// retransmission (our ACK was lost) is acknowledged again (§4.5).
    pub fn ack_and_remember(&mut self, now: Instant, peer: SocketAddr, message_id: u16) {
        let ack: Arc<[u8]> = message::empty(MessageType::Acknowledgement, message_id).into();
        self.dedup.insert_done(now, peer, message_id, ack.clone());
        self.refresh_dedup_timer();
        self.send(peer, ack);
    }

    /// Keeps the one dedup timer at the dedup cache's next expiry.
    pub fn refresh_dedup_timer(&mut self) {
        match self.dedup.next_expiry() {
            Some(at) => self.timers.set(Timer::DedupExpiry, at),
            None => self.timers.cancel(Timer::DedupExpiry),
        }
    }
}

//! Every deadline of the endpoint in one table (RFC 7252 timing, RFC 7641
//! notification retransmission, RFC 7959 reassembly expiry).
//!
//! One closed [`Timer`] enum, one ordered set of `(deadline, timer)`:
//! [`Timers::next`] is the earliest deadline, which is all
//! `Endpoint::poll_timeout` reports. Each timer is set at most once (setting
//! it again moves it), so the table is bounded by the number of exchanges,
//! relations and reassemblies, which are bounded themselves.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use super::exchange::ExchangeId;
use super::observe::RelationId;

/// Reassembly of one Block1 request body (server side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AssemblyId(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// Retransmit the outgoing CON of an exchange, or give up (§4.2).
    Retransmit(ExchangeId),
    /// Stop waiting for a response: a NON request, or a CON request whose
    /// empty ACK promised a separate response (§5.2.2).
    ResponseDeadline(ExchangeId),
    /// Retransmit a CON notification, or end the relation (RFC 7641 §4.5).
    NotificationRetransmit(RelationId),
    /// Forget deduplication entries whose EXCHANGE_LIFETIME is over (§4.5).
    DedupExpiry,
    /// Drop a Block1 body that stopped arriving (RFC 7959 §2.5).
    Block1Expiry(AssemblyId),
}

#[derive(Debug, Default)]
pub struct Timers {
    order: BTreeSet<(Instant, Timer)>,
    at: HashMap<Timer, Instant>,
}

impl Timers {
    /// Sets (or moves) `timer` to fire at `deadline`.
    pub fn set(&mut self, timer: Timer, deadline: Instant) {
        if self.at.get(&timer) == Some(&deadline) {
            return;
        }
        if let Some(old) = self.at.insert(timer, deadline) {
            self.order.remove(&(old, timer));
        }
        self.order.insert((deadline, timer));
    }

    pub fn cancel(&mut self, timer: Timer) {
        if let Some(old) = self.at.remove(&timer) {
            self.order.remove(&(old, timer));
        }
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.order.first().map(|(at, _)| *at)
    }

    /// Removes and returns one timer due at `now`, earliest first.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let &(at, timer) = self.order.first()?;
        if at > now {
            return None;
        }
        self.order.remove(&(at, timer));
        self.at.remove(&timer);
        Some(timer)
    }

    pub fn len(&self) -> usize {
        self.at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }
}

/// RFC 7252 §4.8 transmission parameters; the derived times of §4.8.2
/// follow from them.
#[derive(Debug, Clone, PartialEq)]
pub struct TransmissionParams {
    pub ack_timeout: Duration,
    pub ack_random_factor: f64,
    pub max_retransmit: u32,
    /// Outstanding interactions per peer (§4.7); the rest wait in a queue.
    pub nstart: usize,
    /// Longest time a datagram is assumed to take through the network.
    pub max_latency: Duration,
}

impl Default for TransmissionParams {
    fn default() -> Self {
        TransmissionParams {
            ack_timeout: Duration::from_secs(2),
            ack_random_factor: 1.5,
            max_retransmit: 4,
            nstart: 1,
            max_latency: Duration::from_secs(100),
        }
    }
}

impl TransmissionParams {
    /// MAX_TRANSMIT_SPAN: first to last transmission of a CON (45 s).
    pub fn max_transmit_span(&self) -> Duration {
        let n = (1u32 << self.max_retransmit.min(20)) - 1;
        self.ack_timeout
            .mul_f64(f64::from(n) * self.ack_random_factor)
    }

    /// MAX_TRANSMIT_WAIT: first transmission to giving up on an ACK (93 s).
    pub fn max_transmit_wait(&self) -> Duration {
        let n = (1u32 << (self.max_retransmit.min(20) + 1)) - 1;
        self.ack_timeout
            .mul_f64(f64::from(n) * self.ack_random_factor)
    }

    /// EXCHANGE_LIFETIME: how long a Message ID may be answered again (247 s).
    pub fn exchange_lifetime(&self) -> Duration {
        self.max_transmit_span() + 2 * self.max_latency + self.ack_timeout
    }

    /// The first retransmission timeout: random in
    /// [ACK_TIMEOUT, ACK_TIMEOUT * ACK_RANDOM_FACTOR].
    pub fn initial_timeout(&self, unit: f64) -> Duration {
        let factor = 1.0 + (self.ack_random_factor - 1.0).max(0.0) * unit;
        self.ack_timeout.mul_f64(factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_times_match_rfc_7252_defaults() {
        let p = TransmissionParams::default();
        assert_eq!(p.max_transmit_span(), Duration::from_secs(45));
        assert_eq!(p.max_transmit_wait(), Duration::from_secs(93));
        assert_eq!(p.exchange_lifetime(), Duration::from_secs(247));
    }

    #[test]
    fn earliest_first_and_moving_a_timer() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        timers.set(Timer::DedupExpiry, t0 + Duration::from_secs(5));
        timers.set(
            Timer::Block1Expiry(AssemblyId(1)),
            t0 + Duration::from_secs(3),
        );
        assert_eq!(timers.next(), Some(t0 + Duration::from_secs(3)));
        timers.set(
            Timer::Block1Expiry(AssemblyId(1)),
            t0 + Duration::from_secs(9),
        );
        assert_eq!(timers.next(), Some(t0 + Duration::from_secs(5)));
        assert_eq!(timers.pop_due(t0 + Duration::from_secs(4)), None);
        assert_eq!(
            timers.pop_due(t0 + Duration::from_secs(10)),
            Some(Timer::DedupExpiry)
        );
        timers.cancel(Timer::Block1Expiry(AssemblyId(1)));
        assert!(timers.is_empty());
    }
}

//! A simulated network for sans-IO CoAP endpoints, in the style of
//! quinn-proto's `tests/util.rs`: several endpoints in one test, virtual
//! time (a base `Instant` plus offsets, no sleeping), a link that drops,
//! duplicates, delays and reorders datagrams by a seeded generator, and a
//! bounded drive loop that fails instead of hanging.

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lwota::coap::{Endpoint, EndpointConfig, Event};

/// The endpoint's own seeded generator (SplitMix64), so one seed replays
/// a whole run.
pub use lwota::coap::rng::Rng;

/// How the link misbehaves. Delays are uniform in [min, max], which
/// reorders datagrams whenever max > min.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    pub drop: f64,
    pub duplicate: f64,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl LinkConfig {
    pub fn perfect() -> LinkConfig {
        LinkConfig {
            drop: 0.0,
            duplicate: 0.0,
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(10),
        }
    }

    /// A bad link drawn from `rng`: up to 30 % loss, 30 % duplication,
    /// up to 3 s of delay (reordering included).
    pub fn random(rng: &mut Rng) -> LinkConfig {
        LinkConfig {
            drop: rng.unit() * 0.3,
            duplicate: rng.unit() * 0.3,
            min_delay: Duration::from_millis(rng.below(50)),
            max_delay: Duration::from_millis(50 + rng.below(3000)),
        }
    }
}

pub struct Node {
    pub addr: SocketAddr,
    pub endpoint: Endpoint,
    /// Every event, with the virtual time it was polled.
    pub events: Vec<(Duration, Event)>,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: Duration,
    seq: u64,
    to: usize,
    from: SocketAddr,
    bytes: Vec<u8>,
}

pub struct Net {
    pub base: Instant,
    pub elapsed: Duration,
    pub nodes: Vec<Node>,
    pub link: LinkConfig,
    pub rng: Rng,
    queue: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    pub delivered: u64,
    alarms: BinaryHeap<Reverse<Duration>>,
}

impl Net {
    pub fn new(seed: u64, link: LinkConfig) -> Net {
        Net {
            base: Instant::now(),
            elapsed: Duration::ZERO,
            nodes: Vec::new(),
            link,
            rng: Rng::new(seed),
            queue: BinaryHeap::new(),
            seq: 0,
            delivered: 0,
            alarms: BinaryHeap::new(),
        }
    }

    pub fn now(&self) -> Instant {
        self.base + self.elapsed
    }

    /// Adds an endpoint at 10.0.0.N:5683; returns its index.
    pub fn add(&mut self, config: EndpointConfig) -> usize {
        let i = self.nodes.len();
        let seed = self.rng.next_u64();
        self.nodes.push(Node {
            addr: SocketAddr::from(([10, 0, 0, i as u8 + 1], 5683)),
            endpoint: Endpoint::new(config, seed),
            events: Vec::new(),
        });
        i
    }

    pub fn addr(&self, i: usize) -> SocketAddr {
        self.nodes[i].addr
    }

    /// Moves node `i`'s datagrams onto the link and its events into
    /// `events` (the drain rule); call after any call into an endpoint.
    pub fn drain(&mut self, i: usize) {
        let now = self.now();
        let _ = now;
        while let Some(t) = self.nodes[i].endpoint.poll_transmit() {
            let Some(to) = self.nodes.iter().position(|n| n.addr == t.peer) else {
                continue;
            };
            let copies = if self.rng.chance(self.link.duplicate) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                if self.rng.chance(self.link.drop) {
                    continue;
                }
                let span = self.link.max_delay.saturating_sub(self.link.min_delay);
                let delay = self.link.min_delay + span.mul_f64(self.rng.unit());
                self.seq += 1;
                self.queue.push(Reverse(InFlight {
                    at: self.elapsed + delay,
                    seq: self.seq,
                    to,
                    from: self.nodes[i].addr,
                    bytes: t.bytes.to_vec(),
                }));
            }
        }
        let elapsed = self.elapsed;
        while let Some(e) = self.nodes[i].endpoint.poll_event() {
            self.nodes[i].events.push((elapsed, e));
        }
    }

    /// The next thing that happens: a delivery or a timer, or `None` when
    /// the network is idle.
    fn next_at(&self) -> Option<Duration> {
        let delivery = self.queue.peek().map(|Reverse(f)| f.at);
        let alarm = self.alarms.peek().map(|Reverse(at)| *at);
        let delivery = match (delivery, alarm) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timer = self
            .nodes
            .iter()
            .filter_map(|n| n.endpoint.poll_timeout())
            .map(|at| at.saturating_duration_since(self.base))
            .min();
        match (delivery, timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Advances virtual time to the next happening and runs it. Returns
    /// false when nothing is scheduled or `limit` is reached.
    pub fn step(&mut self, limit: Duration) -> bool {
        let Some(at) = self.next_at() else {
            return false;
        };
        if at > limit {
            return false;
        }
        self.elapsed = self.elapsed.max(at);
        let now = self.now();
        while self
            .alarms
            .peek()
            .is_some_and(|Reverse(a)| *a <= self.elapsed)
        {
            self.alarms.pop();
        }
        while let Some(Reverse(f)) = self.queue.peek() {
            if f.at > self.elapsed {
                break;
            }
            let Some(Reverse(f)) = self.queue.pop() else {
                break;
            };
            let local = self.nodes[f.to].addr;
            self.nodes[f.to]
                .endpoint
                .handle(now, local, f.from, &f.bytes);
            self.delivered += 1;
            self.drain(f.to);
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i]
                .endpoint
                .poll_timeout()
                .is_some_and(|t| t <= now)
            {
                self.nodes[i].endpoint.handle_timeout(now);
                self.drain(i);
            }
        }
        true
    }

    /// Runs until `react` says it is done; `react` runs before every step
    /// (to answer requests, record outcomes). Fails after `max_steps`
    /// steps, or when nothing more can happen before `limit` of virtual
    /// time, instead of hanging.
    pub fn drive(
        &mut self,
        limit: Duration,
        max_steps: usize,
        mut react: impl FnMut(&mut Net) -> bool,
    ) -> Result<(), String> {
        for _ in 0..max_steps {
            if react(self) {
                return Ok(());
            }
            if !self.step(limit) {
                return if react(self) {
                    Ok(())
                } else {
                    Err(format!(
                        "stuck at {:?}: nothing due before the limit",
                        self.elapsed
                    ))
                };
            }
        }
        Err(format!(
            "not done after {max_steps} steps ({:?})",
            self.elapsed
        ))
    }

    /// Makes sure a step happens at `at` (virtual time since the start),
    /// so a test can act then even if no endpoint has anything due.
    pub fn wake_at(&mut self, at: Duration) {
        self.alarms.push(Reverse(at));
    }

    /// Takes node `i`'s events recorded so far.
    pub fn take_events(&mut self, i: usize) -> Vec<(Duration, Event)> {
        std::mem::take(&mut self.nodes[i].events)
    }
}

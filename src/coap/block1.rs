//! Server side of RFC 7959 Block1: a request body sent in pieces is
//! reassembled here and handed to the application as ONE request.
//!
//! Pieces of one body are matched by (peer, method, Uri-Host, Uri-Port,
//! Uri-Path, Uri-Query): tokens and Message IDs may differ per piece
//! (§2.5). Bodies are bounded per body (4.13 with Size1), per peer, in
//! number and in total bytes (5.03), and dropped when they stop arriving (`Timer::Block1Expiry`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use coap_lite::{CoapOption, Packet, ResponseType};

use super::block::Block;
use super::ctx::Ctx;
use super::message::{self, error_response};
use super::timer::{AssemblyId, Timer};

#[derive(Debug, Clone)]
pub struct Block1Limits {
    /// Largest reassembled body; larger ones get 4.13 with Size1.
    pub max_body: usize,
    /// Bodies being reassembled per peer.
    pub max_per_peer: usize,
    /// Bytes held in all bodies being reassembled; each body is charged
    /// at least [`ASSEMBLY_OVERHEAD`] so tiny first pieces cannot open
    /// bodies by the million.
    pub max_total_bytes: usize,
    /// Bodies being reassembled in all (one peer can use many source
    /// ports, so `max_per_peer` alone does not bound the count).
    pub max_assemblies: usize,
}

/// What one open body is charged against `max_total_bytes` at least: it
/// also costs map keys, a timer entry and a dedup entry, whatever its size.
pub const ASSEMBLY_OVERHEAD: usize = 1024;

/// Bytes a body of `len` bytes is charged.
fn charge(len: usize) -> usize {
    len.max(ASSEMBLY_OVERHEAD)
}

impl Default for Block1Limits {
    fn default() -> Self {
        Block1Limits {
            max_body: 64 * 1024,
            max_per_peer: 4,
            max_total_bytes: 16 << 20,
            max_assemblies: 4096,
        }
    }
}

/// What to do with one piece.
#[derive(Debug)]
pub enum Piece {
    /// Answer the piece with this (2.31 Continue, 4.08, 4.13, 5.03...).
    Respond(Packet),
    /// The body is whole: deliver the request with it.
    Complete(Vec<u8>),
}

type Key = (SocketAddr, Vec<u8>);

#[derive(Debug)]
struct Assembly {
    key: Key,
    body: Vec<u8>,
}

#[derive(Debug, Default)]
pub struct Assemblies {
    limits: Block1Limits,
    map: HashMap<AssemblyId, Assembly>,
    by_key: HashMap<Key, AssemblyId>,
    per_peer: HashMap<SocketAddr, usize>,
    total_bytes: usize,
    next_id: u64,
}

impl Assemblies {
    pub fn new(limits: Block1Limits) -> Assemblies {
        Assemblies {
            limits,
            ..Assemblies::default()
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Takes one piece (`block` is its Block1 option).
    pub fn offer(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        peer: SocketAddr,
        packet: &Packet,
        block: Block,
    ) -> Piece {
        let key = (peer, request_key(packet));
        let size = block.size();
        let offset = block.num as usize * size;
        let payload = &packet.payload;
        let announced = packet
            .get_first_option(CoapOption::Size1)
            .and_then(|v| message::read_uint(v));
        let existing = self.by_key.get(&key).copied();
        if announced.is_some_and(|total| total as usize > self.limits.max_body) {
            if let Some(id) = existing {
                self.drop_assembly(ctx, id);
            }
            return Piece::Respond(self.too_large());
        }
        if block.more && payload.len() != size {
            // Only the last piece may be shorter than the block size.
            if let Some(id) = existing {
                self.drop_assembly(ctx, id);
            }
            return Piece::Respond(error_response(
                ResponseType::BadRequest,
                "Block1 piece shorter than its block size",
            ));
        }
        let id = if offset == 0 {
            if let Some(id) = existing {
                self.drop_assembly(ctx, id);
            }
            if !block.more {
                return Piece::Complete(payload.clone());
            }
            if payload.len() > self.limits.max_body {
                return Piece::Respond(self.too_large());
            }
            let count = self.per_peer.get(&peer).copied().unwrap_or(0);
            if count >= self.limits.max_per_peer
                || self.map.len() >= self.limits.max_assemblies
                || self.total_bytes + charge(payload.len()) > self.limits.max_total_bytes
            {
                tracing::debug!(%peer, open = self.map.len(), "Block1 body refused: limits reached");
                return Piece::Respond(busy());
            }
            self.next_id += 1;
            let id = AssemblyId(self.next_id);
            self.map.insert(
                id,
                Assembly {
                    key: key.clone(),
                    body: Vec::new(),
                },
            );
            self.by_key.insert(key, id);
            *self.per_peer.entry(peer).or_default() += 1;
            self.total_bytes += charge(0);
            id
        } else {
            let Some(id) = existing else {
                return Piece::Respond(incomplete());
            };
            let expected = self.map.get(&id).map_or(0, |a| a.body.len());
            if offset != expected {
                self.drop_assembly(ctx, id);
                return Piece::Respond(incomplete());
            }
            if expected + payload.len() > self.limits.max_body {
                self.drop_assembly(ctx, id);
                return Piece::Respond(self.too_large());
            }
            let growth = charge(expected + payload.len()) - charge(expected);
            if self.total_bytes + growth > self.limits.max_total_bytes {
                self.drop_assembly(ctx, id);
                return Piece::Respond(busy());
            }
            id
        };
        let Some(assembly) = self.map.get_mut(&id) else {
            return Piece::Respond(incomplete());
        };
        let before = charge(assembly.body.len());
        assembly.body.extend_from_slice(payload);
        self.total_bytes += charge(assembly.body.len()) - before;
        if block.more {
            ctx.timers.set(
                Timer::Block1Expiry(id),
                now + ctx.params.exchange_lifetime(),
            );
            let mut reply = error_response(ResponseType::Continue, "");
            reply.add_option(
                CoapOption::Block1,
                Block {
                    num: block.num,
                    more: true,
                    szx: block.szx,
                }
                .encode(),
            );
            return Piece::Respond(reply);
        }
        let body = self.take(ctx, id).map(|a| a.body).unwrap_or_default();
        Piece::Complete(body)
    }

    pub fn on_timer(&mut self, ctx: &mut Ctx, id: AssemblyId) {
        if self.take(ctx, id).is_some() {
            tracing::debug!(?id, "incomplete Block1 body expired");
        }
    }

    fn drop_assembly(&mut self, ctx: &mut Ctx, id: AssemblyId) {
        self.take(ctx, id);
    }

    fn take(&mut self, ctx: &mut Ctx, id: AssemblyId) -> Option<Assembly> {
        let assembly = self.map.remove(&id)?;
        self.by_key.remove(&assembly.key);
        self.total_bytes -= charge(assembly.body.len());
        let peer = assembly.key.0;
        if let Some(count) = self.per_peer.get_mut(&peer) {
            *count -= 1;
            if *count == 0 {
                self.per_peer.remove(&peer);
            }
        }
        ctx.timers.cancel(Timer::Block1Expiry(id));
        Some(assembly)
    }

    fn too_large(&self) -> Packet {
        let mut reply = error_response(
            ResponseType::RequestEntityTooLarge,
            "request body too large",
        );
        reply.add_option(
            CoapOption::Size1,
            message::uint(self.limits.max_body as u32),
        );
        reply
    }
}

fn incomplete() -> Packet {
    error_response(
        ResponseType::RequestEntityIncomplete,
        "Block1 piece out of sequence",
    )
}

fn busy() -> Packet {
    let mut reply = error_response(ResponseType::ServiceUnavailable, "too many request bodies");
    reply.add_option(CoapOption::MaxAge, vec![5]);
    reply
}

/// What identifies the request a piece belongs to (RFC 7959 §2.5).
fn request_key(packet: &Packet) -> Vec<u8> {
    let mut key = vec![u8::from(packet.header.code)];
    for option in [
        CoapOption::UriHost,
        CoapOption::UriPort,
        CoapOption::UriPath,
        CoapOption::UriQuery,
    ] {
        key.push(u8::try_from(u16::from(option)).unwrap_or(0));
        if let Some(values) = packet.get_option(option) {
            for value in values {
                key.extend_from_slice(&(value.len() as u16).to_be_bytes());
                key.extend_from_slice(value);
            }
        }
    }
    key
}

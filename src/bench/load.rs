//! Load generators built on the simulator's CoAP client: block-wise
//! downloads by N concurrent devices, and closed-loop durable polls. Every
//! loop is bounded in count or time and talks to loopback only.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, RequestType, ResponseType};
use serde::Serialize;

use super::order::Order;
use crate::coap::block::Block;
use crate::sim::{ClientConfig, CoapClient};

#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub requests: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub per_second: f64,
    pub mb_per_second: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub errors: u64,
}

impl Throughput {
    fn from(latencies: &mut [u32], bytes: u64, seconds: f64, errors: u64) -> Throughput {
        latencies.sort_unstable();
        let pct = |p: f64| -> u64 {
            if latencies.is_empty() {
                return 0;
            }
            let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
            u64::from(latencies[i])
        };
        let requests = latencies.len() as u64;
        Throughput {
            requests,
            bytes,
            seconds,
            per_second: requests as f64 / seconds.max(1e-9),
            mb_per_second: bytes as f64 / seconds.max(1e-9) / 1e6,
            p50_us: pct(0.50),
            p99_us: pct(0.99),
            errors,
        }
    }
}

fn client_config() -> ClientConfig {
    ClientConfig {
        ack_timeout: Duration::from_secs(1),
        max_retransmit: 4,
        loss: 0.0,
    }
}

/// `devices` clients each download `path` (of `size` bytes) once, in
/// `block`-byte blocks, all at the same time.
pub async fn block2(
    server: SocketAddr,
    path: &str,
    size: u64,
    block: usize,
    devices: usize,
) -> Throughput {
    let szx = Block::szx_of(block);
    let blocks = size.div_ceil(block as u64) as u32;
    let started = Instant::now();
    let mut handles = Vec::with_capacity(devices);
    for _ in 0..devices {
        let path = path.to_string();
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(blocks as usize);
            let mut bytes = 0u64;
            let mut errors = 0u64;
            let Ok(mut client) = CoapClient::connect(server, client_config()).await else {
                return (latencies, bytes, 1);
            };
            // The server bounds answers to an address it has not verified
            // (RFC 9175 Echo, `coap/amplification.rs`): one small request
            // picks up its Echo value, the next carries it, and from then
            // on blocks come at full size. Measured: verified clients.
            let probe = Block {
                num: 0,
                more: false,
                szx: 0,
            }
            .encode();
            let _ = client
                .request(
                    RequestType::Get,
                    &path,
                    &[(CoapOption::Block2, probe)],
                    Vec::new(),
                )
                .await;
            for num in 0..blocks {
                let option = Block {
                    num,
                    more: false,
                    szx,
                }
                .encode();
                let t = Instant::now();
                match client
                    .request(
                        RequestType::Get,
                        &path,
                        &[(CoapOption::Block2, option)],
                        Vec::new(),
                    )
                    .await
                {
                    Ok(p) if p.header.code == MessageClass::Response(ResponseType::Content) => {
                        latencies.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                        bytes += p.payload.len() as u64;
                    }
                    _ => errors += 1,
                }
            }
            (latencies, bytes, errors)
        }));
    }
    let mut latencies = Vec::new();
    let (mut bytes, mut errors) = (0, 0);
    for h in handles {
        if let Ok((l, b, e)) = h.await {
            latencies.extend(l);
            bytes += b;
            errors += e;
        }
    }
    Throughput::from(
        &mut latencies,
        bytes,
        started.elapsed().as_secs_f64(),
        errors,
    )
}

/// `workers` clients poll as fast as answers come back, each cycling
/// through its share of `devices` device names in `order`, for `duration`.
pub async fn polls(
    server: SocketAddr,
    devices: usize,
    workers: usize,
    duration: Duration,
    product: &str,
    order: Order,
) -> Throughput {
    let started = Instant::now();
    let deadline = started + duration;
    let mut handles = Vec::with_capacity(workers);
    for w in 0..workers {
        let product = product.to_string();
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let Ok(mut client) = CoapClient::connect(server, client_config()).await else {
                return (latencies, 1);
            };
            let mut i = w;
            let mut body = Vec::new();
            let map = ciborium::Value::Map(vec![
                (
                    ciborium::Value::Text("product".into()),
                    ciborium::Value::Text(product),
                ),
                (
                    ciborium::Value::Text("version".into()),
                    ciborium::Value::Text("1.0".into()),
                ),
            ]);
            let _ = ciborium::into_writer(&map, &mut body);
            while Instant::now() < deadline {
                let path = format!("/ota/{}/poll", device_name(order.index(i, devices)));
                let t = Instant::now();
                match client
                    .request(
                        RequestType::Post,
                        &path,
                        &[(CoapOption::ContentFormat, vec![60])],
                        body.clone(),
                    )
                    .await
                {
                    Ok(p) if p.header.code == MessageClass::Response(ResponseType::Content) => {
                        latencies.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                    }
                    _ => errors += 1,
                }
                i += workers;
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for h in handles {
        if let Ok((l, e)) = h.await {
            latencies.extend(l);
            errors += e;
        }
    }
    Throughput::from(&mut latencies, 0, started.elapsed().as_secs_f64(), errors)
}

pub fn device_name(i: usize) -> String {
    format!("bench-{i:07}")
}

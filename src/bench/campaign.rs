//! `campaign` scenario (issue 10): time to create a campaign over a
//! 10,000-name list and over every device of a product by source
//! version, on a database filled in sequential name order and on one
//! filled in scattered order (sequential inserts flatter a B-tree).

use std::path::Path;
use std::time::Instant;

use serde_json::{json, Value};

use super::order::Order;
use super::{load, post_json, target::ServerProcess, upload};

/// Registers devices `0..n` (names from `load::device_name`, version 1.0)
/// in `order`.
pub fn register_in_order(
    server: &ServerProcess,
    n: usize,
    product: &str,
    order: Order,
) -> anyhow::Result<()> {
    const CHUNK: usize = 50_000;
    let mut start = 0;
    while start < n {
        let end = (start + CHUNK).min(n);
        let list: Vec<Value> = (start..end)
            .map(|i| {
                let name = load::device_name(order.index(i, n));
                json!({"name": name, "product": product, "version": "1.0"})
            })
            .collect();
        post_json(server, "/api/v1/devices", &json!(list))?;
        start = end;
    }
    Ok(())
}

/// One order's run: a fresh server and data dir, `all` devices, then the
/// two campaigns. Returns the JSON row.
pub fn run(
    dir: &Path,
    shards: Option<usize>,
    image: &Path,
    listed: usize,
    all: usize,
    order: Order,
) -> anyhow::Result<Value> {
    let server = ServerProcess::start(dir, shards)?;
    let t = Instant::now();
    register_in_order(&server, all, "bench", order)?;
    let import_s = t.elapsed().as_secs_f64();
    let fw = upload(&server, "bench", "9.0", image)?;
    let names: Vec<String> = (0..listed).map(load::device_name).collect();
    let t = Instant::now();
    let c = post_json(
        &server,
        "/api/v1/campaigns",
        &json!({"firmware": fw, "target": {"devices": names}}),
    )?;
    let listed_s = t.elapsed().as_secs_f64();
    let first = c["id"].as_u64().unwrap_or(0);
    post_json(
        &server,
        &format!("/api/v1/campaigns/{first}/cancel"),
        &json!({}),
    )?;
    let t = Instant::now();
    let c = post_json(
        &server,
        "/api/v1/campaigns",
        // Every device registered is on 1.0: the whole product by source
        // version (issue 10's benchmark).
        &json!({"firmware": fw, "target": {"source_versions": ["1.0"]}}),
    )?;
    let all_s = t.elapsed().as_secs_f64();
    server.stop();
    println!(
        "{:<11} {:>9} {:>12.1} s {:>10} {:>9.3} s {:>10} {:>9.3} s",
        order.name(),
        all,
        import_s,
        listed,
        listed_s,
        c["total"],
        all_s
    );
    Ok(json!({
        "order": order.name(), "import_seconds": import_s,
        "listed_devices": listed, "listed_seconds": listed_s,
        "all_devices": all, "all_seconds": all_s, "all_tasks": c["total"],
    }))
}

pub fn print_header() {
    println!(
        "{:<11} {:>9} {:>14} {:>10} {:>11} {:>10} {:>11}",
        "order", "devices", "import", "listed", "create", "by version", "create"
    );
}

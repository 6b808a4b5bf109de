//! One simulated device.

use std::collections::BTreeMap;
use std::time::Instant;

use ciborium::Value;
use coap_lite::{CoapOption, MessageClass, Packet, RequestType, ResponseType};
use rand::Rng;
use sha2::{Digest, Sha256};

use super::client::CoapClient;
use super::SimConfig;
use crate::coap::block::Block;

/// A transition the server acknowledged (a 2.xx answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    pub task: String,
    /// `initiated` for a poll that handed out the task, else the reported state.
    pub state: String,
}

#[derive(Debug, Clone, Default)]
pub struct DeviceOutcome {
    pub name: String,
    pub version: String,
    pub polls: u64,
    pub blocks: u64,
    pub updated: u32,
    pub failed: u32,
    pub errors: u32,
    /// The run's deadline cut a request or a pause short.
    pub timed_out: bool,
    /// The last error this device met, for the CLI's summary.
    pub last_error: Option<String>,
    /// Tasks pushed to it through its Observe (`--observe`).
    pub pushed: u32,
    /// Offers refused because their signed manifest did not verify
    /// (`--verify-key`); each is also a failed update.
    pub manifest_rejected: u32,
    pub acked: Vec<Acked>,
}

struct Offer {
    task: String,
    version: String,
    uri: String,
    size: u64,
    sha256: Vec<u8>,
    /// The COSE_Sign1 manifest, when the answer carries one.
    manifest: Option<Vec<u8>>,
}

pub async fn run(config: &SimConfig, name: String, until: Instant) -> DeviceOutcome {
    let mut out = DeviceOutcome {
        name: name.clone(),
        version: config.version.clone(),
        ..Default::default()
    };
    let mut client = match CoapClient::connect(config.server, config.client).await {
        Ok(c) => c,
        Err(e) => {
            out.errors += 1;
            out.last_error = Some(format!("cannot open a UDP socket: {e}"));
            return out;
        }
    };
    // The deadline also bounds a request in flight: without it one
    // request to a silent server retransmits for a minute past `until`.
    let deadline = tokio::time::Instant::from_std(until);
    if tokio::time::timeout_at(
        deadline,
        lifecycle(&mut client, config, &name, until, &mut out),
    )
    .await
    .is_err()
    {
        out.timed_out = true;
    }
    out
}

/// Polls, updates and reports until `until` or, with `stop_when_done`,
/// until a task reached a final state.
async fn lifecycle(
    client: &mut CoapClient,
    config: &SimConfig,
    name: &str,
    until: Instant,
    out: &mut DeviceOutcome,
) {
    let mut done = false;
    let mut observing: Option<Vec<u8>> = None;
    while Instant::now() < until {
        match poll(client, config, name, &out.version).await {
            Ok(Some(offer)) => {
                out.polls += 1;
                out.acked.push(Acked {
                    task: offer.task.clone(),
                    state: "initiated".into(),
                });
                match update(client, config, name, &offer, out).await {
                    Ok(true) => {
                        // "Reboot" into the new version; the next poll confirms it.
                        out.version = offer.version.clone();
                        out.updated += 1;
                        done = true;
                    }
                    Ok(false) => {
                        out.failed += 1;
                        done = true;
                    }
                    Err(e) => {
                        out.errors += 1;
                        out.last_error = Some(e);
                    }
                }
                continue;
            }
            Ok(None) => {
                out.polls += 1;
                if done && config.stop_when_done {
                    break;
                }
                if config.observe {
                    match wait_for_push(client, config, name, until, &mut observing).await {
                        Ok(true) => {
                            out.pushed += 1;
                            continue;
                        }
                        Ok(false) if observing.is_some() => continue,
                        Ok(false) => {}
                        Err(e) => {
                            observing = None;
                            out.errors += 1;
                            out.last_error = Some(e);
                        }
                    }
                }
            }
            Err(e) => {
                out.errors += 1;
                out.last_error = Some(e);
            }
        }
        let jitter = rand::thread_rng().gen_range(0.8..1.2);
        tokio::time::sleep(config.poll_interval.mul_f64(jitter)).await;
    }
}

/// Waits, holding an Observe on `/ota/{name}/task`, until a task is
/// pushed (`Ok(true)`: poll now) or 10 poll intervals pass (`Ok(false)`:
/// poll as a heartbeat). `observing` keeps the relation's token between
/// calls; it is `None` after the server declined or ended the relation,
/// and the caller then falls back to polling every interval.
async fn wait_for_push(
    client: &mut CoapClient,
    config: &SimConfig,
    name: &str,
    until: Instant,
    observing: &mut Option<Vec<u8>>,
) -> Result<bool, String> {
    let path = format!("/ota/{name}/task");
    let token = match observing.clone() {
        Some(token) => token,
        None => {
            let first = client
                .request(
                    RequestType::Get,
                    &path,
                    &[(CoapOption::Observe, vec![])],
                    vec![],
                )
                .await
                .map_err(|e| e.to_string())?;
            if !is_success(&first) || first.get_observe_value().is_none() {
                return Ok(false);
            }
            *observing = Some(first.get_token().to_vec());
            if has_task(&first) {
                return Ok(true);
            }
            first.get_token().to_vec()
        }
    };
    let wait = config.poll_interval.saturating_mul(10);
    let limit = tokio::time::Instant::from_std(until.min(Instant::now() + wait));
    loop {
        match client.next_notification(&token, limit).await {
            Ok(None) => return Ok(false),
            Ok(Some(p)) if !is_success(&p) => {
                *observing = None;
                return Ok(false);
            }
            Ok(Some(p)) if has_task(&p) => return Ok(true),
            Ok(Some(_)) => continue,
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Whether a task answer carries a task (not `{}`).
fn has_task(packet: &Packet) -> bool {
    matches!(
        ciborium::from_reader::<Value, _>(packet.payload.as_slice()),
        Ok(Value::Map(m)) if !m.is_empty()
    )
}

fn cbor_map(entries: Vec<(&str, Value)>) -> Vec<u8> {
    let map = Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::Text(k.into()), v))
            .collect(),
    );
    let mut out = Vec::new();
    let _ = ciborium::into_writer(&map, &mut out);
    out
}

fn cbor_options() -> Vec<(CoapOption, Vec<u8>)> {
    vec![(CoapOption::ContentFormat, vec![60])]
}

fn is_success(packet: &Packet) -> bool {
    matches!(
        packet.header.code,
        MessageClass::Response(ResponseType::Content | ResponseType::Changed)
    )
}

async fn poll(
    client: &mut CoapClient,
    config: &SimConfig,
    name: &str,
    version: &str,
) -> Result<Option<Offer>, String> {
    let body = cbor_map(vec![
        ("product", Value::Text(config.product.clone())),
        ("version", Value::Text(version.to_string())),
        ("battery", Value::Integer(87.into())),
        ("block", Value::Integer((config.block as u64).into())),
    ]);
    let reply = client
        .request(
            RequestType::Post,
            &format!("/ota/{name}/poll"),
            &cbor_options(),
            body,
        )
        .await
        .map_err(|e| e.to_string())?;
    if !is_success(&reply) {
        return Err(format!("poll answered {}", reply.header.get_code()));
    }
    let value: Value =
        ciborium::from_reader(reply.payload.as_slice()).map_err(|e| e.to_string())?;
    let Value::Map(entries) = value else {
        return Err("poll answer is not a map".into());
    };
    let map: BTreeMap<String, Value> = entries
        .into_iter()
        .filter_map(|(k, v)| k.into_text().ok().map(|k| (k, v)))
        .collect();
    if map.is_empty() {
        return Ok(None);
    }
    let text = |k: &str| map.get(k).and_then(|v| v.as_text()).map(str::to_string);
    Ok(Some(Offer {
        task: text("task").ok_or("no task")?,
        version: text("version").ok_or("no version")?,
        uri: text("uri").ok_or("no uri")?,
        size: map
            .get("size")
            .and_then(|v| v.as_integer())
            .and_then(|i| u64::try_from(i128::from(i)).ok())
            .ok_or("no size")?,
        sha256: map
            .get("sha256")
            .and_then(|v| v.as_bytes())
            .cloned()
            .ok_or("no sha256")?,
        manifest: map.get("manifest").and_then(|v| v.as_bytes()).cloned(),
    }))
}

/// Downloads, verifies and reports; Ok(true) when updated, Ok(false)
/// when the device reported failure.
async fn update(
    client: &mut CoapClient,
    config: &SimConfig,
    name: &str,
    offer: &Offer,
    out: &mut DeviceOutcome,
) -> Result<bool, String> {
    // A device holding its product's public key checks the manifest
    // before it fetches a byte, and trusts size and digest only from it.
    if let Some(key) = &config.verify_key {
        if let Err(why) = check_manifest(config, offer, key) {
            out.manifest_rejected += 1;
            let error = format!("manifest rejected: {why}");
            out.last_error = Some(error.clone());
            // Reports carry at most 256 bytes of error text.
            let short: String = error.chars().take(200).collect();
            report(client, name, &offer.task, "failed", Some(&short), out).await?;
            return Ok(false);
        }
    }
    let image = download(client, config, offer, out).await?;
    report(client, name, &offer.task, "downloaded", None, out).await?;
    let digest = Sha256::digest(&image);
    if digest.as_slice() != offer.sha256.as_slice() || image.len() as u64 != offer.size {
        report(
            client,
            name,
            &offer.task,
            "failed",
            Some("sha256 mismatch"),
            out,
        )
        .await?;
        return Ok(false);
    }
    report(client, name, &offer.task, "verified", None, out).await?;
    if config.failure_rate > 0.0 && rand::thread_rng().gen_bool(config.failure_rate.min(1.0)) {
        report(
            client,
            name,
            &offer.task,
            "failed",
            Some("simulated flash error"),
            out,
        )
        .await?;
        return Ok(false);
    }
    // From here on the device installs whatever the server says: a real
    // device that verified its image flashes and reboots even when these
    // reports get no answer (server restarting, link down). Its next poll,
    // with the new version, tells the server (the contract counts that as
    // `updated`), so a lost report is an error to count, not an abort.
    if let Err(e) = report(client, name, &offer.task, "updating", None, out).await {
        out.errors += 1;
        out.last_error = Some(e);
    }
    // A real device reboots here; half the fleet reports `updated` before
    // rebooting, the rest lets the next poll's version speak for it.
    if rand::random::<bool>() {
        if let Err(e) = report(client, name, &offer.task, "updated", None, out).await {
            out.errors += 1;
            out.last_error = Some(e);
        }
    }
    Ok(true)
}

/// Verifies the offer's manifest with `key` and that it names this
/// product and exactly the offered image.
fn check_manifest(config: &SimConfig, offer: &Offer, key: &[u8; 32]) -> Result<(), String> {
    let bytes = offer
        .manifest
        .as_deref()
        .ok_or("the task answer has no \"manifest\" (does the product have a signing key?)")?;
    let m = crate::ota::signing::verify(bytes, key).map_err(|e| e.to_string())?;
    if m.product != config.product {
        return Err(format!(
            "manifest is for product {:?}, not {:?}",
            m.product, config.product
        ));
    }
    if m.version != offer.version || m.size != offer.size || m.sha256 != offer.sha256 {
        return Err("manifest does not match the offered version, size and sha256".into());
    }
    Ok(())
}

/// Fetches the image block by block, following the server if it answers
/// with a smaller block size than asked (RFC 7959 §2.4).
async fn download(
    client: &mut CoapClient,
    config: &SimConfig,
    offer: &Offer,
    out: &mut DeviceOutcome,
) -> Result<Vec<u8>, String> {
    let mut image = Vec::with_capacity(offer.size as usize);
    let mut szx = Block::szx_of(config.block);
    loop {
        let size = 1usize << (szx + 4);
        let block = Block {
            num: (image.len() / size) as u32,
            more: false,
            szx,
        };
        let reply = client
            .request(
                RequestType::Get,
                &offer.uri,
                &[(CoapOption::Block2, block.encode())],
                Vec::new(),
            )
            .await
            .map_err(|e| e.to_string())?;
        if !is_success(&reply) {
            return Err(format!(
                "block {} answered {}",
                block.num,
                reply.header.get_code()
            ));
        }
        out.blocks += 1;
        image.extend_from_slice(&reply.payload);
        let got = reply
            .get_first_option(CoapOption::Block2)
            .map(|raw| Block::parse(raw).map_err(|e| e.to_string()))
            .transpose()?;
        match got {
            Some(b) if b.more => szx = b.szx,
            _ => return Ok(image),
        }
    }
}

async fn report(
    client: &mut CoapClient,
    name: &str,
    task: &str,
    state: &str,
    error: Option<&str>,
    out: &mut DeviceOutcome,
) -> Result<(), String> {
    let mut entries = vec![
        ("task", Value::Text(task.into())),
        ("state", Value::Text(state.into())),
    ];
    if let Some(e) = error {
        entries.push(("error", Value::Text(e.into())));
    }
    let reply = client
        .request(
            RequestType::Post,
            &format!("/ota/{name}/report"),
            &cbor_options(),
            cbor_map(entries),
        )
        .await
        .map_err(|e| e.to_string())?;
    if !is_success(&reply) {
        return Err(format!(
            "report {state} answered {}",
            reply.header.get_code()
        ));
    }
    out.acked.push(Acked {
        task: task.into(),
        state: state.into(),
    });
    Ok(())
}

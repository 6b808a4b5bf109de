//! `lwota device add|import|ls|show|history` and `lwota versions`.

use std::path::PathBuf;

use serde_json::{json, Value};

use super::client::{append_query, encode, Paging};
use super::csv_input::read_devices_csv_with_keys;
use super::output::{cell, escape, print_fields, print_json, print_list, print_table};
use super::Ctx;

/// Devices asked for per request by `device ls` (the API's default page
/// is 10,000; smaller pages keep each answer quick).
const LS_PAGE: usize = 1_000;
/// History entries asked for per request.
const HISTORY_PAGE: usize = 1_000;

#[derive(Debug, clap::Subcommand)]
pub enum DeviceCmd {
    /// Register one device.
    Add {
        /// Device name (CoAP path segment / LwM2M endpoint): 1-64 of letters, digits, . _ - :.
        #[arg(value_name = "NAME")]
        name: String,
        /// Product the device belongs to.
        #[arg(long, value_name = "PRODUCT")]
        product: String,
        /// Version it runs now (optional; its first poll reports it).
        #[arg(long, value_name = "VERSION")]
        version: Option<String>,
    },
    /// Register devices from a CSV file with columns
    /// name,product[,version[,identity,key]]; identity and key (hex) set
    /// the device's DTLS pre-shared key.
    Import {
        /// CSV file; a header row (name,product,version,identity,key) is optional.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// List devices (every page of them).
    Ls {
        /// Only devices of this product.
        #[arg(long, value_name = "PRODUCT")]
        product: Option<String>,
        /// Only devices currently on this version.
        #[arg(long, value_name = "VERSION")]
        version: Option<String>,
        /// Show at most N devices (default: all).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// Show one device and its current task.
    Show {
        /// Device name.
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// A device's history, oldest first.
    History {
        /// Device name.
        #[arg(value_name = "NAME")]
        name: String,
        /// Show at most N entries (oldest first; the rest with --after).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Only entries after this SEQ (the first column).
        #[arg(long, value_name = "SEQ")]
        after: Option<u64>,
    },
}

#[derive(Debug, clap::Args)]
pub struct VersionsArgs {
    /// Product whose devices to count (default: every product).
    #[arg(long, value_name = "PRODUCT")]
    product: Option<String>,
}

pub fn run(cmd: DeviceCmd, ctx: &Ctx) -> anyhow::Result<()> {
    match cmd {
        DeviceCmd::Add {
            name,
            product,
            version,
        } => {
            let body = json!({"name": name, "product": product, "version": version});
            let device = ctx.client.post_json("/api/v1/devices", &body)?;
            if ctx.json() {
                print_json(&device, true);
            } else {
                println!("device {} registered", escape(&name));
            }
            Ok(())
        }
        DeviceCmd::Import { file } => {
            let (devices, credentials) = read_devices_csv_with_keys(&file)?;
            let count = devices.len();
            let body = serde_json::to_value(
                devices
                    .iter()
                    .map(|d| json!({"name": d.name, "product": d.product, "version": d.version}))
                    .collect::<Vec<_>>(),
            )?;
            let out = ctx.client.post_json("/api/v1/devices", &body)?;
            // Keys after the devices exist; one all-or-nothing request per
            // 10,000 (the server's bulk limit).
            let mut keys_set = 0;
            for chunk in credentials.chunks(10_000) {
                let list: Vec<_> = chunk
                    .iter()
                    .map(|c| json!({"device": c.device, "identity": c.identity, "key": c.key}))
                    .collect();
                ctx.client
                    .put_json("/api/v1/psks", &json!({ "credentials": list }))?;
                keys_set += chunk.len();
            }
            if ctx.json() {
                print_json(&out, true);
                return Ok(());
            }
            if keys_set > 0 {
                println!("{keys_set} DTLS keys set");
            }
            let existing = out["existing"].as_array().map(Vec::len).unwrap_or(0);
            println!(
                "{} of {count} devices registered, {existing} already existed",
                cell(&out["created"])
            );
            print_names("already existed", &out["existing"]);
            Ok(())
        }
        DeviceCmd::Ls {
            product,
            version,
            limit,
        } => {
            let mut params = Vec::new();
            if let Some(p) = product {
                params.push(("product", p));
            }
            if let Some(v) = version {
                params.push(("version", v));
            }
            let page = limit.map_or(LS_PAGE, |l| l.clamp(1, LS_PAGE));
            let list = ctx.client.get_all(
                &append_query("/api/v1/devices", &params),
                Paging {
                    page: Some(page),
                    cursor_field: Some("name"),
                    max: limit,
                },
            )?;
            let shown = list.items.len();
            if ctx.json() {
                print_json(&Value::Array(list.items), true);
            } else {
                print_list(
                    &list.items,
                    &[
                        "NAME",
                        "PRODUCT",
                        "VERSION",
                        "LAST SEEN",
                        "TASK STATE",
                        "PROGRESS",
                        "ERROR",
                    ],
                    |d| {
                        vec![
                            cell(&d["name"]),
                            cell(&d["product"]),
                            cell(&d["version"]),
                            cell(&d["last_seen"]),
                            cell(&d["state"]),
                            cell(&d["task"]["progress"]),
                            cell(&d["task"]["error"]),
                        ]
                    },
                );
            }
            if list.more {
                eprintln!("(first {shown} devices shown; more with a larger --limit)");
            }
            Ok(())
        }
        DeviceCmd::Show { name } => {
            let d = ctx
                .client
                .get(&format!("/api/v1/devices/{}", encode(&name)))?;
            if ctx.json() {
                print_json(&d, true);
                return Ok(());
            }
            print_device(&d);
            Ok(())
        }
        DeviceCmd::History { name, limit, after } => history(ctx, &name, limit, after),
    }
}

fn history(ctx: &Ctx, name: &str, limit: Option<usize>, after: Option<u64>) -> anyhow::Result<()> {
    let mut params = Vec::new();
    if let Some(a) = after {
        params.push(("after", a.to_string()));
    }
    let list = ctx.client.get_all(
        &append_query(
            &format!("/api/v1/devices/{}/history", encode(name)),
            &params,
        ),
        Paging {
            // Without --limit today's server answers every entry at once;
            // a paginated one sends a next link, which is followed.
            page: limit.map(|l| l.clamp(1, HISTORY_PAGE)),
            cursor_field: Some("seq"),
            max: limit,
        },
    )?;
    let more = (list.more, list.more_after);
    if ctx.json() {
        print_json(&Value::Array(list.items), true);
    } else {
        print_list(
            &list.items,
            &[
                "SEQ", "AT", "EVENT", "TASK", "STATE", "PROGRESS", "ERROR", "REPEAT", "SINCE",
                "DETAIL",
            ],
            |h| {
                let change = match (h["from"].as_str(), h["to"].as_str()) {
                    (Some(f), Some(t)) => format!("{} -> {}", escape(f), escape(t)),
                    (None, Some(t)) => escape(t),
                    _ => String::new(),
                };
                // `repeat` counts collapsed identical events (e.g. idle
                // polls) between `since` and `at`.
                let repeat = match h["repeat"].as_u64() {
                    Some(n) => format!("x{n}"),
                    None => cell(&h["repeat"]),
                };
                vec![
                    cell(&h["seq"]),
                    cell(&h["at"]),
                    cell(&h["event"]),
                    cell(&h["task"]),
                    change,
                    cell(&h["progress"]),
                    cell(&h["error"]),
                    repeat,
                    cell(&h["since"]),
                    cell(&h["detail"]),
                ]
            },
        );
    }
    if more.0 {
        match &more.1 {
            Some(seq) => eprintln!(
                "(more entries follow: lwota device history {} --after {seq})",
                escape(name)
            ),
            None => eprintln!("(more entries follow)"),
        }
    }
    Ok(())
}

fn print_device(d: &Value) {
    let mut fields: Vec<(&str, String)> = [
        ("name", "NAME"),
        ("product", "PRODUCT"),
        ("version", "VERSION"),
        ("created_at", "REGISTERED"),
        ("last_seen", "LAST SEEN"),
        ("address", "ADDRESS"),
        ("battery", "BATTERY"),
        ("state", "TASK STATE"),
    ]
    .iter()
    .map(|(key, label)| (*label, cell(&d[*key])))
    .collect();
    let task = &d["task"];
    if task.is_object() {
        fields.extend([
            ("TASK", cell(&task["task"])),
            ("CAMPAIGN", cell(&task["campaign"])),
            ("FIRMWARE", cell(&task["firmware"])),
            ("TARGET", cell(&task["target_version"])),
            ("PROGRESS", cell(&task["progress"])),
            ("ERROR", cell(&task["error"])),
            ("TASK UPDATED", cell(&task["updated_at"])),
        ]);
    }
    if let Some(lwm2m) = d["lwm2m"].as_object() {
        for (key, value) in lwm2m {
            fields.push(("LWM2M", format!("{}: {}", escape(key), cell(value))));
        }
    }
    print_fields(&fields);
}

/// Names printed by [`print_names`] before it only counts the rest.
const NAMES_SHOWN: usize = 100;

/// Prints `reason (3): a, b, c` when the list is not empty, so the
/// operator sees which devices, not only how many.
pub fn print_names(reason: &str, list: &Value) {
    let all = list.as_array().map(Vec::as_slice).unwrap_or_default();
    if all.is_empty() {
        return;
    }
    let names: Vec<String> = all.iter().take(NAMES_SHOWN).map(cell).collect();
    let rest = all.len() - names.len();
    let more = if rest > 0 {
        format!(" (+{rest} more; --output json lists them all)")
    } else {
        String::new()
    };
    println!("{reason} ({}): {}{more}", all.len(), names.join(", "));
}

pub fn versions(args: VersionsArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let mut params = Vec::new();
    if let Some(p) = args.product {
        params.push(("product", p));
    }
    let counts = ctx.client.get(&append_query("/api/v1/versions", &params))?;
    if ctx.json() {
        print_json(&counts, true);
        return Ok(());
    }
    let mut rows: Vec<(String, u64)> = counts
        .as_object()
        .into_iter()
        .flatten()
        .map(|(v, n)| (v.clone(), n.as_u64().unwrap_or(0)))
        .collect();
    // Most common first, like a distribution chart.
    rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let total: u64 = rows.iter().map(|r| r.1).sum();
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|(v, n)| {
            let shown = if v.is_empty() {
                "(unknown)"
            } else {
                v.as_str()
            };
            let share = if total == 0 {
                0.0
            } else {
                *n as f64 * 100.0 / total as f64
            };
            vec![escape(shown), n.to_string(), format!("{share:.1}%")]
        })
        .collect();
    print_table(&["VERSION", "DEVICES", "SHARE"], &table);
    Ok(())
}

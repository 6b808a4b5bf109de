//! `lwota device add|import|ls|show|history`.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use serde_json::json;

use super::client::{cell, print_list, Client};
use super::ServerArg;
use crate::ota::devices::{validate, NewDevice};

#[derive(Debug, clap::Subcommand)]
pub enum DeviceCmd {
    /// Register one device.
    Add {
        name: String,
        #[arg(long)]
        product: String,
        #[arg(long)]
        version: Option<String>,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Register devices from a CSV file with columns name,product[,version].
    Import {
        file: PathBuf,
        #[command(flatten)]
        server: ServerArg,
    },
    /// List devices.
    Ls {
        #[arg(long)]
        product: Option<String>,
        #[arg(long)]
        version: Option<String>,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Show one device.
    Show {
        name: String,
        #[command(flatten)]
        server: ServerArg,
    },
    /// A device's history, oldest first.
    History {
        name: String,
        #[command(flatten)]
        server: ServerArg,
    },
}

pub fn run(cmd: DeviceCmd) -> anyhow::Result<()> {
    match cmd {
        DeviceCmd::Add {
            name,
            product,
            version,
            server,
        } => {
            let body = json!({"name": name, "product": product, "version": version});
            Client::new(&server.server).post_json("/api/v1/devices", &body)?;
            println!("device {name} registered");
            Ok(())
        }
        DeviceCmd::Import { file, server } => {
            let devices = read_devices_csv(&file)?;
            let count = devices.len();
            let body = serde_json::to_value(
                devices
                    .iter()
                    .map(|d| json!({"name": d.name, "product": d.product, "version": d.version}))
                    .collect::<Vec<_>>(),
            )?;
            let out = Client::new(&server.server).post_json("/api/v1/devices", &body)?;
            let existing = out["existing"].as_array().map(Vec::len).unwrap_or(0);
            println!(
                "{} of {count} devices registered, {existing} already existed",
                cell(&out["created"])
            );
            Ok(())
        }
        DeviceCmd::Ls {
            product,
            version,
            server,
        } => {
            let mut query = Vec::new();
            if let Some(p) = product {
                query.push(format!("product={p}"));
            }
            if let Some(v) = version {
                query.push(format!("version={v}"));
            }
            let path = format!("/api/v1/devices?{}", query.join("&"));
            let list = Client::new(&server.server).get(&path)?;
            print_list(
                &list,
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
            Ok(())
        }
        DeviceCmd::Show { name, server } => {
            let d = Client::new(&server.server).get(&format!("/api/v1/devices/{name}"))?;
            println!("{}", serde_json::to_string_pretty(&d)?);
            Ok(())
        }
        DeviceCmd::History { name, server } => {
            let list =
                Client::new(&server.server).get_all(&format!("/api/v1/devices/{name}/history"))?;
            print_list(
                &list,
                &[
                    "AT", "EVENT", "TASK", "STATE", "PROGRESS", "ERROR", "DETAIL",
                ],
                |h| {
                    let change = match (h["from"].as_str(), h["to"].as_str()) {
                        (Some(f), Some(t)) => format!("{f} -> {t}"),
                        (None, Some(t)) => t.to_string(),
                        _ => String::new(),
                    };
                    vec![
                        cell(&h["at"]),
                        cell(&h["event"]),
                        cell(&h["task"]),
                        change,
                        cell(&h["progress"]),
                        cell(&h["error"]),
                        cell(&h["detail"]),
                    ]
                },
            );
            Ok(())
        }
    }
}

/// A CSV reader that takes an optional header row and ragged lines (so
/// each line's problem can be reported by number).
fn csv_reader(path: &Path) -> anyhow::Result<csv::Reader<std::fs::File>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .with_context(|| format!("cannot read {}", path.display()))
}

/// Reads `name,product[,version]` rows (a header row is optional). Every
/// bad line is reported with its line number; any bad line means nothing
/// is imported.
pub fn read_devices_csv(path: &Path) -> anyhow::Result<Vec<NewDevice>> {
    let mut reader = csv_reader(path)?;
    let mut devices = Vec::new();
    let mut errors = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = record
            .as_ref()
            .ok()
            .and_then(|r| r.position())
            .map(|p| p.line())
            .unwrap_or(i as u64 + 1);
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                errors.push(format!("line {line}: {e}"));
                continue;
            }
        };
        if record.iter().all(str::is_empty) {
            continue;
        }
        if i == 0 && record.get(0) == Some("name") {
            continue;
        }
        if record.len() < 2 || record.len() > 3 {
            errors.push(format!(
                "line {line}: expected name,product[,version], got {} fields",
                record.len()
            ));
            continue;
        }
        let device = NewDevice {
            name: record[0].to_string(),
            product: record[1].to_string(),
            version: record.get(2).filter(|v| !v.is_empty()).map(str::to_string),
        };
        match validate(&device) {
            Ok(()) => devices.push(device),
            Err(m) => errors.push(format!("line {line}: {m}")),
        }
    }
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("{}: {e}", path.display());
        }
        return Err(anyhow!(
            "{} bad line(s) in {} (first: {}); nothing imported",
            errors.len(),
            path.display(),
            errors[0]
        ));
    }
    if devices.is_empty() {
        return Err(anyhow!("{} lists no devices", path.display()));
    }
    Ok(devices)
}

/// Reads device names from the first column of a CSV file (header `name`
/// optional), for campaign targets.
pub fn read_device_names(path: &Path) -> anyhow::Result<Vec<String>> {
    let mut reader = csv_reader(path)?;
    let mut names = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("{} line {}", path.display(), i + 1))?;
        let name = record.get(0).unwrap_or_default();
        if name.is_empty() || (i == 0 && name == "name") {
            continue;
        }
        if !crate::ota::valid_device_name(name) {
            return Err(anyhow!(
                "{} line {}: {name:?} is not a valid device name",
                path.display(),
                i + 1
            ));
        }
        names.push(name.to_string());
    }
    Ok(names)
}

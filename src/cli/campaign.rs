//! `lwota campaign create|ls|show|devices|cancel|retry|resume`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use serde_json::{json, Value};

use super::campaign_options::{self, OptionArgs};
use super::client::{append_query, encode, Paging};
use super::csv_input::read_device_names;
use super::device::print_names;
use super::firmware::print_counts;
use super::output::{cell, escape, interactive, print_fields, print_json, print_list};
use super::Ctx;
use crate::ota::task::TaskState;

/// Statuses after which a campaign changes no more.
const FINAL_STATUSES: [&str; 2] = ["finished", "cancelled"];

#[derive(Debug, clap::Subcommand)]
pub enum CampaignCmd {
    /// Roll a firmware out to --all, --from-version, --device or --devices-csv.
    Create {
        /// Firmware id to roll out.
        #[arg(long, value_name = "ID")]
        firmware: String,
        /// Every device of the firmware's product.
        #[arg(long, conflicts_with_all = ["from_version", "devices_csv", "device"])]
        all: bool,
        /// Devices currently on this version (repeatable).
        #[arg(long = "from-version", value_name = "VERSION", conflicts_with_all = ["devices_csv", "device"])]
        from_version: Vec<String>,
        /// One device by name (repeatable; combines with --devices-csv).
        #[arg(long = "device", value_name = "NAME")]
        device: Vec<String>,
        /// Devices named in the first column of a CSV file (a header row such
        /// as `name` or `DeviceName` is skipped).
        #[arg(long = "devices-csv", value_name = "FILE")]
        devices_csv: Option<PathBuf>,
        #[command(flatten)]
        options: OptionArgs,
    },
    /// List campaigns.
    Ls,
    /// Show a campaign's counts per state; --watch refreshes until it ends.
    Show {
        /// Campaign id.
        #[arg(value_name = "ID")]
        id: String,
        /// Refresh until the campaign is finished or cancelled (a progress
        /// bar on a terminal, one line per refresh otherwise).
        #[arg(long)]
        watch: bool,
        /// Seconds between refreshes with --watch (0.1 to 3600).
        #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
        interval: f64,
    },
    /// The devices of a campaign and their task state.
    Devices {
        /// Campaign id.
        #[arg(value_name = "ID")]
        id: String,
        /// Only tasks in this state.
        #[arg(
            long,
            value_name = "queued|initiated|downloading|downloaded|verified|updating|updated|failed"
        )]
        state: Option<String>,
    },
    /// Cancel: unfinished tasks fail with error "cancelled" (only that
    /// device's with --device).
    Cancel {
        /// Campaign id.
        #[arg(value_name = "ID")]
        id: String,
        /// Cancel one device's task only.
        #[arg(long, value_name = "NAME")]
        device: Option<String>,
    },
    /// Queue the campaign's failed tasks again (only that device's with
    /// --device).
    Retry {
        /// Campaign id.
        #[arg(value_name = "ID")]
        id: String,
        /// Retry one device's failed task only.
        #[arg(long, value_name = "NAME")]
        device: Option<String>,
    },
    /// Continue a campaign a wave's failures paused.
    Resume {
        /// Campaign id.
        #[arg(value_name = "ID")]
        id: String,
    },
}

pub fn run(cmd: CampaignCmd, ctx: &Ctx) -> anyhow::Result<()> {
    match cmd {
        CampaignCmd::Create {
            firmware,
            all,
            from_version,
            device,
            devices_csv,
            options,
        } => create(
            ctx,
            firmware,
            all,
            from_version,
            device,
            devices_csv,
            &options,
        ),
        CampaignCmd::Retry { id, device } => campaign_options::retry(ctx, &id, device.as_deref()),
        CampaignCmd::Resume { id } => campaign_options::resume(ctx, &id),
        CampaignCmd::Cancel {
            id,
            device: Some(device),
        } => campaign_options::cancel_device(ctx, &id, &device),
        CampaignCmd::Ls => {
            let list = ctx
                .client
                .get_all("/api/v1/campaigns", Paging::SERVER)?
                .items;
            if ctx.json() {
                print_json(&Value::Array(list), true);
                return Ok(());
            }
            print_list(
                &list,
                &[
                    "ID", "FIRMWARE", "VERSION", "STATUS", "DEVICES", "UPDATED", "FAILED",
                ],
                |c| {
                    vec![
                        cell(&c["id"]),
                        cell(&c["firmware"]),
                        cell(&c["target_version"]),
                        cell(&c["status"]),
                        cell(&c["total"]),
                        cell(&c["counts"]["updated"]),
                        cell(&c["counts"]["failed"]),
                    ]
                },
            );
            Ok(())
        }
        CampaignCmd::Show {
            id,
            watch,
            interval,
        } => show(ctx, &id, watch, interval),
        CampaignCmd::Devices { id, state } => {
            let mut params = Vec::new();
            if let Some(s) = state {
                params.push(("state", s));
            }
            let list = ctx.client.get_all(
                &append_query(
                    &format!("/api/v1/campaigns/{}/devices", encode(&id)),
                    &params,
                ),
                Paging {
                    page: None,
                    cursor_field: Some("device"),
                    max: None,
                },
            )?;
            if ctx.json() {
                print_json(&Value::Array(list.items), true);
                return Ok(());
            }
            print_list(
                &list.items,
                &["DEVICE", "STATE", "PROGRESS", "ERROR", "UPDATED"],
                |t| {
                    ["device", "state", "progress", "error", "updated_at"]
                        .iter()
                        .map(|k| cell(&t[*k]))
                        .collect()
                },
            );
            Ok(())
        }
        CampaignCmd::Cancel { id, device: None } => {
            let c = ctx.client.post_json(
                &format!("/api/v1/campaigns/{}/cancel", encode(&id)),
                &json!({}),
            )?;
            if ctx.json() {
                print_json(&c, true);
                return Ok(());
            }
            println!(
                "campaign {} cancelled: {} tasks failed with \"cancelled\"",
                escape(&id),
                cell(&c["cancelled"])
            );
            Ok(())
        }
    }
}

fn create(
    ctx: &Ctx,
    firmware: String,
    all: bool,
    from_version: Vec<String>,
    mut devices: Vec<String>,
    devices_csv: Option<PathBuf>,
    options: &OptionArgs,
) -> anyhow::Result<()> {
    if let Some(path) = &devices_csv {
        devices.extend(read_device_names(path)?);
    }
    let target = if all {
        json!({"all": true})
    } else if !from_version.is_empty() {
        json!({"source_versions": from_version})
    } else if !devices.is_empty() {
        json!({ "devices": devices })
    } else if let Some(path) = devices_csv {
        return Err(anyhow!(
            "{} lists no devices",
            escape(&path.display().to_string())
        ));
    } else {
        return Err(anyhow!(
            "name a target: --all, --from-version V, --device NAME or --devices-csv FILE"
        ));
    };
    let mut body = serde_json::Map::new();
    body.insert("firmware".into(), json!(firmware));
    body.insert("target".into(), target);
    options.apply(&mut body)?;
    let c = ctx
        .client
        .post_json("/api/v1/campaigns", &Value::Object(body))?;
    if ctx.json() {
        print_json(&c, true);
        return Ok(());
    }
    println!(
        "campaign {} created: {} tasks, status {}",
        cell(&c["id"]),
        cell(&c["total"]),
        cell(&c["status"])
    );
    for (reason, list) in c["skipped"].as_object().into_iter().flatten() {
        let label = format!("skipped {}", escape(&reason.replace('_', " ")));
        print_names(&label, list);
    }
    Ok(())
}

fn show(ctx: &Ctx, id: &str, watch: bool, interval: f64) -> anyhow::Result<()> {
    let path = format!("/api/v1/campaigns/{}", encode(id));
    let pause =
        Duration::try_from_secs_f64(interval.clamp(0.1, 3600.0)).unwrap_or(Duration::from_secs(1));
    let is_done = |c: &Value| {
        c["status"]
            .as_str()
            .is_none_or(|s| FINAL_STATUSES.contains(&s))
    };
    loop {
        let c = ctx.client.get(&path)?;
        let done = !watch || is_done(&c);
        if ctx.json() {
            // One document, or one line per refresh with --watch.
            print_json(&c, !watch);
        } else if done {
            print_campaign(&c);
            super::fleet::print_stats(ctx, "campaigns", id);
        } else if interactive(ctx.output) {
            let last = super::watch::run(ctx, id, c, pause, is_done, final_count, summary)?;
            print_campaign(&last);
            super::fleet::print_stats(ctx, "campaigns", id);
            return Ok(());
        } else {
            println!(
                "campaign {} {}/{} final, {}",
                cell(&c["id"]),
                final_count(&c),
                cell(&c["total"]),
                summary(&c)
            );
        }
        if done {
            return Ok(());
        }
        std::thread::sleep(pause);
    }
}

/// Tasks that reached `updated` or `failed`.
fn final_count(c: &Value) -> u64 {
    ["updated", "failed"]
        .iter()
        .filter_map(|s| c["counts"][*s].as_u64())
        .sum()
}

/// `status running: updated 3, failed 1, downloading 2, queued 4`, states
/// with no task left out.
fn summary(c: &Value) -> String {
    let states: Vec<String> = TaskState::ALL
        .iter()
        .filter_map(|s| {
            let n = c["counts"][s.as_str()].as_u64()?;
            (n > 0).then(|| format!("{} {n}", s.as_str()))
        })
        .collect();
    format!("status {}: {}", cell(&c["status"]), states.join(", "))
}

fn print_campaign(c: &Value) {
    println!(
        "campaign {}  firmware {}  -> {}  status {}  devices {}",
        cell(&c["id"]),
        cell(&c["firmware"]),
        cell(&c["target_version"]),
        cell(&c["status"]),
        cell(&c["total"])
    );
    let mut fields = vec![
        ("PRODUCT", cell(&c["product"])),
        ("TARGET", target_text(&c["target"])),
        ("CREATED", cell(&c["created_at"])),
        ("FINISHED", cell(&c["finished_at"])),
    ];
    for (key, label) in [("kind", "KIND"), ("start_at", "START AT")] {
        if !c[key].is_null() {
            fields.push((label, cell(&c[key])));
        }
    }
    print_fields(&fields);
    campaign_options::print_rollout(c);
    println!();
    print_counts(&c["counts"]);
}

/// The campaign's target in words.
fn target_text(target: &Value) -> String {
    if target["all"].as_bool() == Some(true) {
        return "all devices of the product".into();
    }
    let list = |key: &str| {
        target[key].as_array().map(|items| {
            let shown: Vec<String> = items.iter().take(5).map(cell).collect();
            let more = items.len().saturating_sub(5);
            if more > 0 {
                format!("{} (+{more} more)", shown.join(", "))
            } else {
                shown.join(", ")
            }
        })
    };
    if let Some(v) = list("source_versions") {
        return format!("devices on {v}");
    }
    if let Some(d) = list("devices") {
        return format!("devices {d}");
    }
    cell(target)
}

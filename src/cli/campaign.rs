//! `lwota campaign create|ls|show|devices|cancel`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use serde_json::{json, Value};

use super::client::{cell, print_list, print_table, Client};
use super::ServerArg;
use crate::ota::task::TaskState;

#[derive(Debug, clap::Subcommand)]
pub enum CampaignCmd {
    /// Roll a firmware out.
    Create {
        #[arg(long)]
        firmware: String,
        /// Every device of the firmware's product.
        #[arg(long, conflicts_with_all = ["from_version", "devices_csv"])]
        all: bool,
        /// Devices currently on this version (repeatable).
        #[arg(long = "from-version", conflicts_with = "devices_csv")]
        from_version: Vec<String>,
        /// Devices named in the first column of a CSV file.
        #[arg(long = "devices-csv")]
        devices_csv: Option<PathBuf>,
        #[command(flatten)]
        server: ServerArg,
    },
    /// List campaigns.
    Ls {
        #[command(flatten)]
        server: ServerArg,
    },
    /// Show a campaign's counts; --watch redraws until it finishes.
    Show {
        id: String,
        #[arg(long)]
        watch: bool,
        /// Seconds between redraws with --watch.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        #[command(flatten)]
        server: ServerArg,
    },
    /// The devices of a campaign and their task state.
    Devices {
        id: String,
        #[arg(long)]
        state: Option<String>,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Cancel: unfinished tasks fail with error "cancelled".
    Cancel {
        id: String,
        #[command(flatten)]
        server: ServerArg,
    },
}

pub fn run(cmd: CampaignCmd) -> anyhow::Result<()> {
    match cmd {
        CampaignCmd::Create {
            firmware,
            all,
            from_version,
            devices_csv,
            server,
        } => {
            let target = if all {
                json!({"all": true})
            } else if !from_version.is_empty() {
                json!({"source_versions": from_version})
            } else if let Some(path) = devices_csv {
                json!({"devices": super::device::read_device_names(&path)?})
            } else {
                return Err(anyhow!(
                    "name a target: --all, --from-version V or --devices-csv FILE"
                ));
            };
            let body = json!({"firmware": firmware, "target": target});
            let c = Client::new(&server.server).post_json("/api/v1/campaigns", &body)?;
            println!(
                "campaign {} created: {} tasks, status {}",
                cell(&c["id"]),
                cell(&c["total"]),
                cell(&c["status"])
            );
            for (reason, list) in c["skipped"].as_object().into_iter().flatten() {
                let n = list.as_array().map(Vec::len).unwrap_or(0);
                if n > 0 {
                    println!("skipped {n} {reason}");
                }
            }
            Ok(())
        }
        CampaignCmd::Ls { server } => {
            let list = Client::new(&server.server).get("/api/v1/campaigns")?;
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
            server,
        } => {
            let client = Client::new(&server.server);
            loop {
                let c = client.get(&format!("/api/v1/campaigns/{id}"))?;
                if watch {
                    // Clear the screen and home the cursor between redraws.
                    print!("\x1b[2J\x1b[H");
                }
                print_campaign(&c);
                if !watch || c["status"].as_str() != Some("running") {
                    return Ok(());
                }
                let pause = Duration::try_from_secs_f64(interval.clamp(0.1, 3600.0));
                std::thread::sleep(pause.unwrap_or(Duration::from_secs(1)));
            }
        }
        CampaignCmd::Devices { id, state, server } => {
            let path = match state {
                Some(s) => format!("/api/v1/campaigns/{id}/devices?state={s}"),
                None => format!("/api/v1/campaigns/{id}/devices"),
            };
            let list = Client::new(&server.server).get_all(&path)?;
            print_list(
                &list,
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
        CampaignCmd::Cancel { id, server } => {
            let c = Client::new(&server.server)
                .post_json(&format!("/api/v1/campaigns/{id}/cancel"), &json!({}))?;
            println!(
                "campaign {id} cancelled: {} tasks failed with \"cancelled\"",
                cell(&c["cancelled"])
            );
            Ok(())
        }
    }
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
    let rows: Vec<Vec<String>> = TaskState::ALL
        .iter()
        .map(|s| vec![s.as_str().to_string(), cell(&c["counts"][s.as_str()])])
        .collect();
    print_table(&["STATE", "DEVICES"], &rows);
}

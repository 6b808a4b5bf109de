//! `lwota audit`, `lwota assign ...`, `lwota firmware edit`, and the
//! statistics `campaign show` / `firmware show` print (issue 10 items 9,
//! 12, 13).

use serde_json::{json, Value};

use super::client::{append_query, encode, Paging};
use super::output::{cell, print_fields, print_json, print_list, print_table};
use super::Ctx;

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Show at most this many entries (oldest first).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Only entries after this id.
    #[arg(long, value_name = "ID")]
    after: Option<u64>,
}

/// `lwota audit`: every operator action, oldest first.
pub fn audit(args: AuditArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let mut params = Vec::new();
    if let Some(a) = args.after {
        params.push(("after", a.to_string()));
    }
    let list = ctx.client.get_all(
        &append_query("/api/v1/audit", &params),
        Paging {
            page: None,
            cursor_field: Some("id"),
            max: args.limit,
        },
    )?;
    if ctx.json() {
        print_json(&Value::Array(list.items), true);
        return Ok(());
    }
    print_list(
        &list.items,
        &["ID", "AT", "ACTION", "TARGET", "ACTOR", "DETAILS"],
        |e| {
            vec![
                cell(&e["id"]),
                cell(&e["at"]),
                cell(&e["action"]),
                cell(&e["target"]),
                if e["actor"].is_null() {
                    "-".into()
                } else {
                    cell(&e["actor"])
                },
                cell(&Value::String(e["details"].to_string())),
            ]
        },
    );
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub enum AssignCmd {
    /// Assign an image to every device of a product (its kind decides:
    /// firmware or software). Devices not on it get a task, new ones too.
    Product {
        /// Product whose devices get the image.
        #[arg(value_name = "PRODUCT")]
        product: String,
        /// Firmware id.
        #[arg(long, value_name = "ID")]
        firmware: u64,
    },
    /// Assign an image to one device (beats its product's assignment).
    Device {
        /// Device name.
        #[arg(value_name = "NAME")]
        name: String,
        /// Firmware id.
        #[arg(long, value_name = "ID")]
        firmware: u64,
    },
    /// Show a product's or a device's assignments.
    Show {
        /// A product's assignments.
        #[arg(
            long,
            value_name = "PRODUCT",
            conflicts_with = "device",
            required_unless_present = "device"
        )]
        product: Option<String>,
        /// A device's own assignments and the ones in effect.
        #[arg(long, value_name = "NAME")]
        device: Option<String>,
    },
    /// Remove an assignment (its unfinished tasks are cancelled).
    Clear {
        /// A product's assignment.
        #[arg(
            long,
            value_name = "PRODUCT",
            conflicts_with = "device",
            required_unless_present = "device"
        )]
        product: Option<String>,
        /// A device's own assignment.
        #[arg(long, value_name = "NAME")]
        device: Option<String>,
        /// Only this kind (default: both).
        #[arg(long, value_name = "firmware|software")]
        kind: Option<String>,
    },
}

fn scope_path(product: Option<&str>, device: Option<&str>) -> String {
    match (product, device) {
        (Some(p), _) => format!("/api/v1/products/{}/firmware", encode(p)),
        (None, Some(d)) => format!("/api/v1/devices/{}/firmware", encode(d)),
        // clap requires one of them.
        (None, None) => "/api/v1/products//firmware".into(),
    }
}

fn print_assignments(a: &Value) {
    let mut rows = Vec::new();
    for kind in ["firmware", "software"] {
        let slot = &a[kind];
        if slot.is_null() {
            rows.push(vec![
                kind.to_string(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
        } else {
            rows.push(vec![
                kind.to_string(),
                cell(&slot["firmware"]),
                cell(&slot["version"]),
                cell(&slot["campaign"]),
                cell(&slot["set_at"]),
            ]);
        }
    }
    print_table(&["KIND", "FIRMWARE", "VERSION", "CAMPAIGN", "SET"], &rows);
    if let Some(effective) = a.get("effective") {
        println!();
        let rows: Vec<Vec<String>> = ["firmware", "software"]
            .iter()
            .map(|k| {
                let e = &effective[*k];
                if e.is_null() {
                    vec![k.to_string(), "-".into(), "-".into()]
                } else {
                    vec![k.to_string(), cell(&e["version"]), cell(&e["from"])]
                }
            })
            .collect();
        print_table(&["IN EFFECT", "VERSION", "FROM"], &rows);
    }
}

pub fn assign(cmd: AssignCmd, ctx: &Ctx) -> anyhow::Result<()> {
    let set = |path: String, firmware: u64| -> anyhow::Result<()> {
        let out = ctx
            .client
            .send_json("PUT", &path, &json!({"firmware": firmware}))?;
        if ctx.json() {
            print_json(&out, true);
        } else if out["unchanged"] == true {
            println!("already assigned (campaign {})", cell(&out["campaign"]));
        } else {
            println!(
                "{} {} assigned: campaign {}, {} tasks queued now",
                cell(&out["kind"]),
                firmware,
                cell(&out["campaign"]),
                cell(&out["queued"])
            );
        }
        Ok(())
    };
    match cmd {
        AssignCmd::Product { product, firmware } => set(scope_path(Some(&product), None), firmware),
        AssignCmd::Device { name, firmware } => set(scope_path(None, Some(&name)), firmware),
        AssignCmd::Show { product, device } => {
            let a = ctx
                .client
                .get(&scope_path(product.as_deref(), device.as_deref()))?;
            if ctx.json() {
                print_json(&a, true);
            } else {
                print_assignments(&a);
            }
            Ok(())
        }
        AssignCmd::Clear {
            product,
            device,
            kind,
        } => {
            let mut path = scope_path(product.as_deref(), device.as_deref());
            if let Some(k) = &kind {
                path = append_query(&path, &[("kind", k.clone())]);
            }
            ctx.client.delete(&path)?;
            if ctx.json() {
                print_json(&json!({"cleared": true}), false);
            } else {
                println!("assignment cleared");
            }
            Ok(())
        }
    }
}

/// `lwota firmware edit ID [--name N] [--description TEXT]`.
pub fn edit_firmware(
    ctx: &Ctx,
    id: &str,
    name: Option<String>,
    description: Option<String>,
) -> anyhow::Result<Value> {
    let mut body = serde_json::Map::new();
    if let Some(n) = name {
        body.insert("name".into(), Value::String(n));
    }
    if let Some(d) = description {
        body.insert("description".into(), Value::String(d));
    }
    ctx.client.send_json(
        "PATCH",
        &format!("/api/v1/firmware/{}", encode(id)),
        &Value::Object(body),
    )
}

/// Prints the statistics of `/api/v1/{what}/{id}/stats` under a `show`
/// (nothing when the server has none: an older server).
pub fn print_stats(ctx: &Ctx, what: &str, id: &str) {
    let Ok(st) = ctx
        .client
        .get(&format!("/api/v1/{what}/{}/stats", encode(id)))
    else {
        return;
    };
    println!();
    let mut fields = vec![
        ("PENDING", cell(&st["pending"]["total"])),
        ("IN PROGRESS", cell(&st["in_progress"]["total"])),
        (
            "MEAN PROGRESS",
            format!("{}%", cell(&st["in_progress"]["mean_progress"])),
        ),
    ];
    if st["complete"] == false {
        fields.push((
            "SCANNED",
            format!("{} tasks (partial)", cell(&st["scanned"])),
        ));
    }
    print_fields(&fields);
    let table = |title: &str, map: &Value| {
        if let Some(m) = map.as_object().filter(|m| !m.is_empty()) {
            println!();
            let rows: Vec<Vec<String>> = m
                .iter()
                .map(|(k, v)| vec![super::output::escape(k), cell(v)])
                .collect();
            print_table(&[title, "DEVICES"], &rows);
        }
    };
    table("PENDING REASON", &st["pending"]["reasons"]);
    table("FAILURE", &st["failures"]);
    if let Some(list) = st["in_progress"]["devices"]
        .as_array()
        .filter(|l| !l.is_empty())
    {
        println!();
        print_list(list, &["UPDATING", "STATE", "PROGRESS"], |d| {
            vec![
                cell(&d["device"]),
                cell(&d["state"]),
                format!("{}%", cell(&d["progress"])),
            ]
        });
    }
}

//! `lwota firmware add|ls|show|rm`.

use std::io::Read;
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use super::client::{append_query, Paging};
use super::csv_input::open_file;
use super::output::{cell, interactive, print_fields, print_json, print_list, print_table};
use super::Ctx;
use crate::ota::task::TaskState;

#[derive(Debug, clap::Subcommand)]
pub enum FirmwareCmd {
    /// Upload an image (a progress bar is shown on a terminal).
    Add {
        /// The image file to upload.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Product the image is for (letters, digits, . _ - :).
        #[arg(long, value_name = "PRODUCT")]
        product: String,
        /// Version the devices will report after the update, unique per product.
        #[arg(long, value_name = "VERSION")]
        version: String,
        /// Display name, 1-32 of letters, digits, _ - ( ) (default: the product).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Kind of image: firmware (default) or software.
        #[arg(long, value_name = "firmware|software")]
        kind: Option<String>,
        /// Digest devices check: sha256 (default) or md5 (sha256 is always sent too).
        #[arg(long, value_name = "sha256|md5")]
        signature: Option<String>,
        /// Free text, at most 100 characters.
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
    },
    /// List images.
    Ls {
        /// Only images of this product.
        #[arg(long, value_name = "PRODUCT")]
        product: Option<String>,
    },
    /// Show one image with device counts per task state.
    Show {
        /// Firmware id (as printed by `firmware add` or `firmware ls`).
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Change an image's name and/or description.
    Edit {
        /// Firmware id.
        #[arg(value_name = "ID")]
        id: String,
        /// New display name, 1-32 of letters, digits, _ - ( ).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// New description, at most 100 characters.
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
    },
    /// Delete an image (refused while an unfinished campaign uses it).
    Rm {
        /// Firmware id.
        #[arg(value_name = "ID")]
        id: String,
    },
}

pub fn run(cmd: FirmwareCmd, ctx: &Ctx) -> anyhow::Result<()> {
    match cmd {
        FirmwareCmd::Add {
            file,
            product,
            version,
            name,
            kind,
            signature,
            description,
        } => {
            let handle = open_file(&file, "firmware image file")?;
            let len = handle.metadata().map(|m| m.len()).unwrap_or(0);
            let filename = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut query: Vec<(&str, &str)> = vec![
                ("product", &product),
                ("version", &version),
                ("filename", &filename),
            ];
            for (key, value) in [
                ("name", &name),
                ("kind", &kind),
                ("signature", &signature),
                ("description", &description),
            ] {
                if let Some(v) = value {
                    query.push((key, v));
                }
            }
            let bar = interactive(ctx.output).then(|| upload_bar(len));
            let body = Progress {
                inner: handle,
                bar: bar.clone(),
            };
            let result = ctx.client.post_body("/api/v1/firmware", &query, len, body);
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            let fw = result?;
            if ctx.json() {
                print_json(&fw, true);
                return Ok(());
            }
            println!(
                "firmware {} uploaded: {} {} ({} bytes, sha256 {})",
                cell(&fw["id"]),
                cell(&fw["product"]),
                cell(&fw["version"]),
                cell(&fw["size"]),
                cell(&fw["sha256"])
            );
            Ok(())
        }
        FirmwareCmd::Ls { product } => {
            let mut params = Vec::new();
            if let Some(p) = product {
                params.push(("product", p));
            }
            let list = ctx
                .client
                .get_all(&append_query("/api/v1/firmware", &params), Paging::SERVER)?
                .items;
            if ctx.json() {
                print_json(&Value::Array(list), true);
                return Ok(());
            }
            print_list(
                &list,
                &[
                    "ID",
                    "PRODUCT",
                    "VERSION",
                    "NAME",
                    "SIZE",
                    "SIGNATURE",
                    "CREATED",
                ],
                |fw| {
                    [
                        "id",
                        "product",
                        "version",
                        "name",
                        "size",
                        "signature",
                        "created_at",
                    ]
                    .iter()
                    .map(|k| cell(&fw[*k]))
                    .collect()
                },
            );
            Ok(())
        }
        FirmwareCmd::Show { id } => {
            let fw = ctx
                .client
                .get(&format!("/api/v1/firmware/{}", super::client::encode(&id)))?;
            if ctx.json() {
                print_json(&fw, true);
                return Ok(());
            }
            print_firmware(&fw);
            super::fleet::print_stats(ctx, "firmware", &id);
            Ok(())
        }
        FirmwareCmd::Edit {
            id,
            name,
            description,
        } => {
            let fw = super::fleet::edit_firmware(ctx, &id, name, description)?;
            if ctx.json() {
                print_json(&fw, true);
            } else {
                print_firmware(&fw);
            }
            Ok(())
        }
        FirmwareCmd::Rm { id } => {
            ctx.client
                .delete(&format!("/api/v1/firmware/{}", super::client::encode(&id)))?;
            if ctx.json() {
                print_json(&serde_json::json!({"deleted": id}), false);
                return Ok(());
            }
            println!("firmware {} deleted", super::output::escape(&id));
            Ok(())
        }
    }
}

fn print_firmware(fw: &Value) {
    let mut fields: Vec<(&str, String)> = [
        ("id", "ID"),
        ("product", "PRODUCT"),
        ("version", "VERSION"),
        ("name", "NAME"),
        ("kind", "KIND"),
        ("filename", "FILENAME"),
        ("size", "SIZE"),
        ("signature", "SIGNATURE"),
        ("sha256", "SHA256"),
        ("md5", "MD5"),
        ("uri", "URI"),
        ("description", "DESCRIPTION"),
        ("created_at", "CREATED"),
    ]
    .iter()
    .map(|(key, label)| (*label, cell(&fw[*key])))
    .collect();
    if !fw["verified"].is_null() {
        fields.push(("VERIFIED", cell(&fw["verified"])));
    }
    print_fields(&fields);
    println!();
    print_counts(&fw["counts"]);
}

/// The `STATE  DEVICES` table of a `counts` object, in task-state order.
pub fn print_counts(counts: &Value) {
    let rows: Vec<Vec<String>> = TaskState::ALL
        .iter()
        .map(|s| vec![s.as_str().to_string(), cell(&counts[s.as_str()])])
        .collect();
    print_table(&["STATE", "DEVICES"], &rows);
}

fn upload_bar(len: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stdout());
    if let Ok(style) = ProgressStyle::with_template(
        "uploading [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// A reader that moves a progress bar by the bytes read from it.
struct Progress<R> {
    inner: R,
    bar: Option<ProgressBar>,
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(bar) = &self.bar {
            bar.inc(n as u64);
        }
        Ok(n)
    }
}

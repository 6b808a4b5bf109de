//! `lwota firmware add|ls|show|rm`.

use std::path::PathBuf;

use anyhow::Context;

use super::client::{cell, print_list, Client};
use super::ServerArg;

#[derive(Debug, clap::Subcommand)]
pub enum FirmwareCmd {
    /// Upload an image.
    Add {
        file: PathBuf,
        #[arg(long)]
        product: String,
        #[arg(long)]
        version: String,
        #[arg(long)]
        name: Option<String>,
        /// firmware or software.
        #[arg(long)]
        kind: Option<String>,
        /// sha256 (default) or md5.
        #[arg(long)]
        signature: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        server: ServerArg,
    },
    /// List images.
    Ls {
        #[arg(long)]
        product: Option<String>,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Show one image with device counts per task state.
    Show {
        id: String,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Delete an image (refused while an unfinished campaign uses it).
    Rm {
        id: String,
        #[command(flatten)]
        server: ServerArg,
    },
}

pub fn run(cmd: FirmwareCmd) -> anyhow::Result<()> {
    match cmd {
        FirmwareCmd::Add {
            file,
            product,
            version,
            name,
            kind,
            signature,
            description,
            server,
        } => {
            let handle = std::fs::File::open(&file)
                .with_context(|| format!("cannot open {}", file.display()))?;
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
            let fw = Client::new(&server.server).post_file("/api/v1/firmware", &query, handle)?;
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
        FirmwareCmd::Ls { product, server } => {
            let path = match product {
                Some(p) => format!("/api/v1/firmware?product={p}"),
                None => "/api/v1/firmware".into(),
            };
            let list = Client::new(&server.server).get(&path)?;
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
        FirmwareCmd::Show { id, server } => {
            let fw = Client::new(&server.server).get(&format!("/api/v1/firmware/{id}"))?;
            println!("{}", serde_json::to_string_pretty(&fw)?);
            Ok(())
        }
        FirmwareCmd::Rm { id, server } => {
            Client::new(&server.server).delete(&format!("/api/v1/firmware/{id}"))?;
            println!("firmware {id} deleted");
            Ok(())
        }
    }
}

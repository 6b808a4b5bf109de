//! `lwota key create|show|delete --product P` (issue 11 item 5): a
//! product's manifest signing key, through
//! `/api/v1/products/{product}/signing-key`. Only the public key ever
//! reaches the CLI.

use clap::Subcommand;
use serde_json::Value;

use super::client::{append_query, encode};
use super::output::{escape, print_fields, print_json};
use super::Ctx;

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Make an Ed25519 signing key for a product: from then on every task
    /// answer for it carries a COSE_Sign1 manifest (docs/PROTOCOL.md,
    /// "Signed manifests"). Prints the public key.
    #[command(after_help = "Example:\n  lwota key create --product sensor-v2\n  \
                            lwota key show --product sensor-v2 --pem > sensor-v2.pub.pem")]
    Create {
        /// The product the key signs manifests for.
        #[arg(long, value_name = "PRODUCT")]
        product: String,
        /// Replace the product's existing key (devices need the new public key).
        #[arg(long)]
        rotate: bool,
    },
    /// Print a product's public key (hex, key id, creation time), or with
    /// --pem only the PEM `PUBLIC KEY` block, for devices and verifiers.
    Show {
        /// The product whose public key to print.
        #[arg(long, value_name = "PRODUCT")]
        product: String,
        /// Print only the SubjectPublicKeyInfo PEM block.
        #[arg(long)]
        pem: bool,
    },
    /// Delete a product's signing key: its task answers carry no manifest
    /// from the next poll on.
    Delete {
        /// The product whose key to delete.
        #[arg(long, value_name = "PRODUCT")]
        product: String,
    },
}

fn path(product: &str) -> String {
    format!("/api/v1/products/{}/signing-key", encode(product))
}

fn print_key(ctx: &Ctx, key: &Value) {
    if ctx.json() {
        print_json(key, false);
        return;
    }
    let text = |k: &str| escape(key[k].as_str().unwrap_or(""));
    let mut fields = vec![
        ("product", text("product")),
        ("algorithm", text("algorithm")),
        ("public_key", text("public_key")),
        ("kid", text("kid")),
        ("created_at", text("created_at")),
    ];
    if key["replaced_kid"].is_string() {
        fields.push(("replaced_kid", text("replaced_kid")));
    }
    print_fields(&fields);
}

pub fn run(cmd: KeyCmd, ctx: &Ctx) -> anyhow::Result<()> {
    match cmd {
        KeyCmd::Create { product, rotate } => {
            let mut url = path(&product);
            if rotate {
                url = append_query(&url, &[("rotate", "true".into())]);
            }
            let key = ctx
                .client
                .post_json(&url, &Value::Object(Default::default()))?;
            print_key(ctx, &key);
        }
        KeyCmd::Show { product, pem } => {
            let key = ctx.client.get(&path(&product))?;
            if pem && !ctx.json() {
                let block = key["public_key_pem"]
                    .as_str()
                    .ok_or_else(|| anyhow::anyhow!("the server sent no public_key_pem"))?;
                print!("{}", escape_pem(block));
            } else {
                print_key(ctx, &key);
            }
        }
        KeyCmd::Delete { product } => {
            ctx.client.delete(&path(&product))?;
            if ctx.json() {
                print_json(
                    &serde_json::json!({"product": product, "deleted": true}),
                    false,
                );
            } else {
                println!("signing key of {} deleted", escape(&product));
            }
        }
    }
    Ok(())
}

/// A PEM block keeps its newlines; anything else that is not base64 or
/// the armour is escaped (it comes from the server).
fn escape_pem(block: &str) -> String {
    block.lines().map(|l| format!("{}\n", escape(l))).collect()
}

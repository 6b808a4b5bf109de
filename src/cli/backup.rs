//! `lwota backup --out FILE` (issue 12 item 7): downloads a consistent
//! backup of the running server (`GET /api/v1/backup`, a tar of the
//! database snapshot and the firmware blobs). Written to `FILE.partial`
//! and renamed when complete, so FILE is never a cut-off archive.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use serde_json::json;

use super::output::escape;
use super::Ctx;

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// Where to write the backup (a tar archive; `-` is not accepted).
    /// Restore: `mkdir NEWDIR && tar -xf FILE -C NEWDIR`, then
    /// `lwota serve --data-dir NEWDIR`.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

pub fn run(args: BackupArgs, ctx: &Ctx) -> anyhow::Result<()> {
    if args.out.is_dir() {
        anyhow::bail!(
            "{} is a directory; give a file name (e.g. {}/lwota-backup.tar)",
            escape(&args.out.display().to_string()),
            escape(&args.out.display().to_string())
        );
    }
    let mut partial = args.out.clone().into_os_string();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("cannot create {}", escape(&partial.display().to_string())))?;
    let mut out = std::io::BufWriter::new(file);
    let result = ctx
        .client
        .download("/api/v1/backup", &mut out)
        .and_then(|n| {
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            Ok(n)
        });
    let bytes = match result {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, &args.out).with_context(|| {
        format!(
            "cannot rename to {}",
            escape(&args.out.display().to_string())
        )
    })?;
    if ctx.json() {
        println!(
            "{}",
            json!({"file": args.out.display().to_string(), "bytes": bytes})
        );
    } else {
        println!(
            "backup written to {} ({bytes} bytes)",
            escape(&args.out.display().to_string())
        );
    }
    let _ = std::io::stdout().flush();
    Ok(())
}

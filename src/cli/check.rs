//! `lwota check [--data-dir DIR] [--repair]`: offline integrity check of
//! the database (issue 8, item 7c). Reports every record that does not
//! decode; `--repair` moves them to `DATA/quarantine.jsonl` and rebuilds
//! the counters and indexes derived from the records.

use std::path::PathBuf;

use anyhow::anyhow;

use crate::config::Config;
use crate::store::integrity;

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Config file (default ./server.toml), for its data directory.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory holding lwota.redb (overrides the config).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Move bad records out (raw bytes kept in quarantine.jsonl) and fix
    /// derived counters and indexes. The server must be stopped.
    #[arg(long)]
    repair: bool,
}

pub fn run(args: CheckArgs) -> anyhow::Result<()> {
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => {
            let config = match &args.config {
                Some(path) => Config::load(path, true)?,
                None => Config::load(std::path::Path::new("server.toml"), false)?,
            };
            config.server.data_dir
        }
    };
    let path = crate::store::Store::file_in(&data_dir);
    let found = integrity::check_file(&path, args.repair).map_err(|e| anyhow!(e))?;
    let report = &found.report;
    for bad in &report.bad {
        println!("corrupt {}: {}", bad.key, bad.error);
    }
    for what in &report.inconsistent {
        println!("inconsistent {what}");
    }
    println!(
        "{}: {} records checked, {} corrupt, {} inconsistent",
        path.display(),
        report.checked,
        report.bad_count,
        report.inconsistent_count
    );
    if let Some(r) = &found.repaired {
        println!(
            "repaired: {} records moved to {}; {} campaign counters rebuilt, {} stale deadlines, {} stale firmware keys, {} active tasks cleared, {} lwm2m registration fixes, {} version index keys fixed",
            r.quarantined,
            data_dir.join(integrity::QUARANTINE_FILE).display(),
            r.counts_rebuilt,
            r.deadlines_removed,
            r.firmware_keys_removed,
            r.active_tasks_cleared,
            r.lwm2m_fixed,
            r.version_keys_fixed
        );
        return Ok(());
    }
    if !report.is_clean() {
        return Err(anyhow!(
            "{} corrupt and {} inconsistent records in {}; run `lwota check --repair` with the server stopped",
            report.bad_count,
            report.inconsistent_count,
            path.display()
        ));
    }
    Ok(())
}

//! `lwota campaign create` flags for the v2 campaign options (issue 10),
//! and `campaign retry|resume`. The server validates ranges; the flags
//! only shape the JSON (their help lists the valid values).

use anyhow::anyhow;
use serde_json::{json, Map, Value};

use super::client::encode;
use super::output::{cell, escape, print_json};
use super::Ctx;

#[derive(Debug, Default, clap::Args)]
pub struct OptionArgs {
    /// A verification campaign (1 to 10 --device names): when all reach
    /// `updated`, the firmware becomes verified.
    #[arg(long)]
    pub verify: bool,
    /// Create despite an unverified firmware when the server has
    /// `[campaigns] require_verified = true` (recorded).
    #[arg(long)]
    pub force: bool,
    /// Also give the task to devices that register, or poll with a matching
    /// version, later (until cancel or --end-at).
    #[arg(long)]
    pub dynamic: bool,
    /// With --dynamic: stop taking new devices at this RFC 3339 UTC time
    /// (e.g. 2026-12-01T08:00:00Z).
    #[arg(long = "end-at", value_name = "TIME")]
    pub end_at: Option<String>,
    /// Start later (static campaigns only): an RFC 3339 UTC time 5 minutes
    /// to 7 days ahead; status `scheduled` until then.
    #[arg(long = "start-at", value_name = "TIME")]
    pub start_at: Option<String>,
    /// Hand a failed task out again: INTERVAL_S:MAX, INTERVAL_S one of 0,
    /// 600, 1800, 3600, 86400 and MAX one of 1, 2, 5 (e.g. 600:2).
    #[arg(long, value_name = "INTERVAL_S:MAX")]
    pub retry: Option<String>,
    /// Per-task timeout in seconds (default: the server's tasks.timeout).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Rate limit: at most PACK_SIZE hand-outs per INTERVAL_S seconds
    /// (PACK_SIZE at least 1, INTERVAL_S 1 to 86400; e.g. 100/60).
    #[arg(long, value_name = "PACK_SIZE/INTERVAL_S")]
    pub rate: Option<String>,
    /// A staged wave, repeatable, in order: PERCENT[:ABORT] with cumulative
    /// PERCENT 1 to 100 increasing, and the campaign pausing when more than
    /// ABORT% (0 to 100, default 100: never) of the wave fails (e.g. --wave 10:5
    /// --wave 50:5 --wave 100:10).
    #[arg(long = "wave", value_name = "PERCENT[:ABORT]")]
    pub waves: Vec<String>,
    /// Devices polling with a lower battery (0 to 100) wait (`low_battery`).
    #[arg(long = "min-battery", value_name = "PERCENT")]
    pub min_battery: Option<u8>,
}

fn pair(text: &str, sep: char, what: &str) -> anyhow::Result<(u64, u64)> {
    let bad = || {
        anyhow!(
            "--{what}: expected two numbers separated by '{sep}', got {}",
            escape(text)
        )
    };
    let (a, b) = text.split_once(sep).ok_or_else(bad)?;
    Ok((
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    ))
}

impl OptionArgs {
    /// Adds the options given to a create body.
    pub fn apply(&self, body: &mut Map<String, Value>) -> anyhow::Result<()> {
        if self.verify {
            body.insert("kind".into(), json!("verify"));
        }
        if self.force {
            body.insert("force".into(), json!(true));
        }
        if self.dynamic {
            body.insert("dynamic".into(), json!(true));
        }
        if let Some(t) = &self.end_at {
            body.insert("end_at".into(), json!(t));
        }
        if let Some(t) = &self.start_at {
            body.insert("start_at".into(), json!(t));
        }
        if let Some(r) = &self.retry {
            let (interval_s, max) = pair(r, ':', "retry")?;
            body.insert(
                "retry".into(),
                json!({"interval_s": interval_s, "max": max}),
            );
        }
        if let Some(t) = self.timeout {
            body.insert("timeout_s".into(), json!(t));
        }
        if let Some(r) = &self.rate {
            let (pack_size, pack_interval_s) = pair(r, '/', "rate")?;
            body.insert(
                "rate".into(),
                json!({"pack_size": pack_size, "pack_interval_s": pack_interval_s}),
            );
        }
        if !self.waves.is_empty() {
            let mut waves = Vec::new();
            for w in &self.waves {
                let (percent, abort) = match w.split_once(':') {
                    Some(_) => pair(w, ':', "wave")?,
                    None => (
                        w.trim().parse().map_err(|_| {
                            anyhow!("--wave: expected PERCENT[:ABORT], got {}", escape(w))
                        })?,
                        100,
                    ),
                };
                waves.push(json!({"percent": percent, "abort_failure_percent": abort}));
            }
            body.insert("waves".into(), Value::Array(waves));
        }
        if let Some(b) = self.min_battery {
            body.insert("min_battery".into(), json!(b));
        }
        Ok(())
    }
}

/// `campaign retry ID [--device NAME]`.
pub fn retry(ctx: &Ctx, id: &str, device: Option<&str>) -> anyhow::Result<()> {
    let path = match device {
        Some(d) => format!(
            "/api/v1/campaigns/{}/devices/{}/retry",
            encode(id),
            encode(d)
        ),
        None => format!("/api/v1/campaigns/{}/retry", encode(id)),
    };
    let v = ctx.client.post_json(&path, &json!({}))?;
    if ctx.json() {
        print_json(&v, true);
    } else if let Some(d) = device {
        println!(
            "task of {} in campaign {} queued again",
            escape(d),
            escape(id)
        );
    } else {
        println!(
            "campaign {}: {} failed tasks queued again",
            escape(id),
            cell(&v["requeued"])
        );
    }
    Ok(())
}

/// `campaign resume ID`.
pub fn resume(ctx: &Ctx, id: &str) -> anyhow::Result<()> {
    let v = ctx.client.post_json(
        &format!("/api/v1/campaigns/{}/resume", encode(id)),
        &json!({}),
    )?;
    if ctx.json() {
        print_json(&v, true);
    } else {
        println!("campaign {} {}", escape(id), cell(&v["status"]));
    }
    Ok(())
}

/// `campaign cancel ID --device NAME`.
pub fn cancel_device(ctx: &Ctx, id: &str, device: &str) -> anyhow::Result<()> {
    let v = ctx.client.post_json(
        &format!(
            "/api/v1/campaigns/{}/devices/{}/cancel",
            encode(id),
            encode(device)
        ),
        &json!({}),
    )?;
    if ctx.json() {
        print_json(&v, true);
    } else {
        println!(
            "task of {} in campaign {} cancelled",
            escape(device),
            escape(id)
        );
    }
    Ok(())
}

/// Lines `campaign show` adds for waves and pending reasons.
pub fn print_rollout(c: &Value) {
    if let Some(pending) = c["pending"].as_object() {
        let parts: Vec<String> = pending
            .iter()
            .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
            .map(|(r, n)| format!("{} {}", escape(r), cell(n)))
            .collect();
        if !parts.is_empty() {
            println!("pending: {}", parts.join(", "));
        }
    }
    for w in c["waves"].as_array().into_iter().flatten() {
        println!(
            "wave {} ({}%, abort above {}%): {} devices, {} final, {} failed{}",
            cell(&w["wave"]),
            cell(&w["percent"]),
            cell(&w["abort_failure_percent"]),
            cell(&w["devices"]),
            cell(&w["final"]),
            cell(&w["failed"]),
            if w["open"] == true { "" } else { ", closed" }
        );
    }
}

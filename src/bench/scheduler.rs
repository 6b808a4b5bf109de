//! `scheduler` scenario (issue 10): what the campaign scheduler costs with
//! 100 concurrent campaigns, each rate-limited and staged in waves, over
//! 1,000,000 devices.
//!
//! In-process, on a real redb file and a virtual clock: every virtual
//! second each campaign's next devices poll (more than its pack size, so
//! some are turned away `rate_limited`) and the ones handed a task report
//! `updated`, so rate windows roll over and waves open; then the
//! scheduler handles what is due, exactly as the server shell drives it
//! (`scheduler::handle_due` in its own transaction until nothing more is
//! due). Process CPU time (`getrusage`) is summed over the scheduler's
//! calls only and divided by the virtual seconds: CPU per second of
//! scheduling. The scheduler keeps nothing in memory between calls (its
//! state is the `TIMERS` table), so "memory held" is the timers it keeps
//! in the store and the process RSS growth over the run.

use std::time::Instant;

use anyhow::Context as _;
use serde_json::{json, Value};

use crate::model::{
    CampaignPolicy, DeviceRecord, FirmwareRecord, RatePolicy, TaskState, WavePolicy,
};
use crate::ota::campaign::{self, NewCampaign, Target};
use crate::ota::poll::{self, PollAnswer, PollRequest};
use crate::ota::report::{self, Report};
use crate::ota::{scheduler, OtaSettings};
use crate::store::{RedbStore, StoreOptions, SyncStore};
use crate::time::Timestamp;

pub struct Sizes {
    pub devices: usize,
    pub campaigns: usize,
    pub seconds: u64,
    /// Devices per campaign per pack interval (1 s).
    pub pack_size: u64,
    /// Polls per campaign per second (over `pack_size`: some wait).
    pub polls: usize,
}

impl Sizes {
    pub fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                devices: 10_000,
                campaigns: 10,
                seconds: 5,
                pack_size: 20,
                polls: 25,
            }
        } else {
            Sizes {
                devices: 1_000_000,
                campaigns: 100,
                seconds: 60,
                pack_size: 50,
                polls: 60,
            }
        }
    }
}

/// Process CPU time (user + system) so far, in seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we pass and nothing else.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn rss_bytes() -> u64 {
    super::target::rss_of(std::process::id())
}

fn name(i: usize) -> String {
    super::load::device_name(i)
}

pub fn run(dir: &std::path::Path, sizes: &Sizes) -> anyhow::Result<Value> {
    std::fs::create_dir_all(dir)?;
    let store = RedbStore::open(&dir.join("lwota.redb"), StoreOptions::default())
        .context("cannot open the bench database")?;
    let settings = OtaSettings {
        auto_register: false,
        timeout_ms: 3_600_000,
    };
    let mut now = Timestamp::from_millis(1_800_000_000_000);
    let t = Instant::now();
    for chunk in (0..sizes.devices).collect::<Vec<_>>().chunks(50_000) {
        store.write_sync(|tx| {
            let device = DeviceRecord::new("bench", "1.0", now);
            for &i in chunk {
                tx.put_device(&name(i), &device)?;
            }
            Ok(())
        })?;
    }
    let fw = store.write_sync(|tx| {
        let id = tx.next_firmware_id()?;
        tx.put_firmware(&FirmwareRecord {
            id,
            product: "bench".into(),
            name: "bench".into(),
            version: "2.0".into(),
            kind: "firmware".into(),
            filename: "bench.bin".into(),
            size: 1024,
            sha256: vec![0; 32],
            md5: vec![0; 16],
            signature: "sha256".into(),
            description: String::new(),
            created_at: now,
            verified: true,
        })?;
        Ok(id)
    })?;
    let per_campaign = sizes.devices / sizes.campaigns.max(1);
    let policy = CampaignPolicy {
        kind: "batch".into(),
        rate: Some(RatePolicy {
            pack_size: sizes.pack_size,
            pack_interval_s: 1,
        }),
        waves: [10u8, 50, 100]
            .iter()
            .map(|&percent| WavePolicy {
                percent,
                abort_failure_percent: 50,
            })
            .collect(),
        ..CampaignPolicy::default()
    };
    for c in 0..sizes.campaigns {
        let names: Vec<String> = (c * per_campaign..(c + 1) * per_campaign)
            .map(name)
            .collect();
        let new = NewCampaign {
            firmware: fw,
            target: Target::Devices(names),
            policy: policy.clone(),
            require_verified: false,
        };
        store
            .write_sync(|tx| campaign::create_with(tx, now, &new))?
            .map_err(|e| anyhow::anyhow!("campaign {c}: {e}"))?;
    }
    let setup_s = t.elapsed().as_secs_f64();

    let request = PollRequest {
        product: "bench".into(),
        version: "1.0".into(),
        battery: None,
        block: None,
        software_version: None,
    };
    let rss_before = rss_bytes();
    let mut next = vec![0usize; sizes.campaigns];
    let (mut sched_cpu, mut sched_calls, mut timers_handled) = (0.0f64, 0u64, 0u64);
    let (mut handed, mut updated, mut max_timers) = (0u64, 0u64, 0usize);
    let wall = Instant::now();
    for _ in 0..sizes.seconds {
        now = now.add_millis(1_000);
        // Device traffic of this second (not counted as scheduling).
        let (h, u) = store.write_sync(|tx| {
            let (mut h, mut u) = (0u64, 0u64);
            for (c, cursor) in next.iter_mut().enumerate() {
                for _ in 0..sizes.polls {
                    if *cursor >= per_campaign {
                        break;
                    }
                    let device = name(c * per_campaign + *cursor);
                    let answer = poll::poll(tx, now, settings, &device, None, &request)?;
                    let Ok(PollAnswer::Task(offer)) = answer else {
                        // Turned away (rate window, wave): tried again
                        // next second.
                        break;
                    };
                    h += 1;
                    *cursor += 1;
                    let done = Report {
                        task: offer.task,
                        state: TaskState::Updated,
                        progress: Some(100),
                        error: None,
                        version: Some(offer.version),
                    };
                    if let Ok(report::Applied::Changed) =
                        report::report(tx, now, settings, &device, &done)?
                    {
                        u += 1;
                    }
                }
            }
            Ok((h, u))
        })?;
        handed += h;
        updated += u;
        // The scheduler, as the shell drives it.
        let start = cpu_seconds();
        loop {
            let handled = store.write_sync(|tx| {
                scheduler::handle_due(tx, now, settings, scheduler::BATCH_LIMIT)
            })?;
            sched_calls += 1;
            timers_handled += handled.timers as u64;
            if !handled.more {
                break;
            }
        }
        sched_cpu += cpu_seconds() - start;
        let timers = store.read_sync(|tx| tx.timers(1_000_000))?.len();
        max_timers = max_timers.max(timers);
    }
    let wall_s = wall.elapsed().as_secs_f64();
    let rss_growth = rss_bytes().saturating_sub(rss_before);
    let per_second_ms = sched_cpu * 1000.0 / sizes.seconds.max(1) as f64;
    println!(
        "{} campaigns over {} devices, pack {}/s, waves 10/50/100%: {} virtual s in {:.1} s wall (setup {:.1} s)",
        sizes.campaigns, sizes.devices, sizes.pack_size, sizes.seconds, wall_s, setup_s
    );
    println!(
        "scheduler CPU: {per_second_ms:.2} ms per second of scheduling ({sched_calls} calls, {timers_handled} timers); \
         {handed} tasks handed, {updated} updated; timers kept: at most {max_timers}; RSS growth {:.1} MB",
        rss_growth as f64 / 1e6
    );
    Ok(json!({
        "devices": sizes.devices, "campaigns": sizes.campaigns, "virtual_seconds": sizes.seconds,
        "pack_size": sizes.pack_size, "polls_per_campaign_second": sizes.polls,
        "scheduler_cpu_ms_per_second": per_second_ms, "scheduler_calls": sched_calls,
        "timers_handled": timers_handled, "tasks_handed": handed, "tasks_updated": updated,
        "max_timers_kept": max_timers, "rss_growth_bytes": rss_growth,
        "setup_seconds": setup_s, "wall_seconds": wall_s,
    }))
}

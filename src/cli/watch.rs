//! `campaign show --watch` at a terminal: one bar for the tasks that
//! reached a final state and one bar per downloading device (the first
//! few), redrawn in place until the campaign is finished or cancelled.

use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use super::client::{encode, Paging};
use super::output::cell;
use super::Ctx;

/// Downloading devices shown with a bar of their own; the rest are
/// counted in the summary line.
const DEVICE_BARS: usize = 8;

struct Bars {
    multi: MultiProgress,
    main: ProgressBar,
    devices: Vec<(String, ProgressBar)>,
}

impl Bars {
    fn new() -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let main = multi.add(ProgressBar::new(0));
        if let Ok(style) =
            ProgressStyle::with_template("[{bar:30}] {pos}/{len} final  {msg}  ({elapsed})")
        {
            main.set_style(style.progress_chars("=> "));
        }
        main.enable_steady_tick(Duration::from_millis(250));
        Bars {
            multi,
            main,
            devices: Vec::new(),
        }
    }

    /// Shows exactly the devices of `tasks` (in order), each at its progress.
    fn sync_devices(&mut self, tasks: &[Value]) {
        let wanted: Vec<(String, u64)> = tasks
            .iter()
            .take(DEVICE_BARS)
            .map(|t| (cell(&t["device"]), t["progress"].as_u64().unwrap_or(0)))
            .collect();
        self.devices.retain(|(name, bar)| {
            let keep = wanted.iter().any(|(w, _)| w == name);
            if !keep {
                bar.finish_and_clear();
            }
            keep
        });
        for (name, progress) in wanted {
            let bar = match self.devices.iter().find(|(n, _)| *n == name) {
                Some((_, bar)) => bar.clone(),
                None => {
                    let bar = self.multi.add(ProgressBar::new(100));
                    if let Ok(style) =
                        ProgressStyle::with_template("  {prefix:<24} [{bar:20}] {pos:>3}%")
                    {
                        bar.set_style(style.progress_chars("=> "));
                    }
                    bar.set_prefix(name.clone());
                    self.devices.push((name, bar.clone()));
                    bar
                }
            };
            bar.set_position(progress.min(100));
        }
    }

    fn clear(self) {
        for (_, bar) in &self.devices {
            bar.finish_and_clear();
        }
        self.main.finish_and_clear();
        let _ = self.multi.clear();
    }
}

/// Refreshes until the campaign is over; returns its last state, to be
/// printed as a table once the bars are gone.
pub fn run(
    ctx: &Ctx,
    id: &str,
    first: Value,
    pause: Duration,
    is_done: impl Fn(&Value) -> bool,
    final_count: impl Fn(&Value) -> u64,
    summary: impl Fn(&Value) -> String,
) -> anyhow::Result<Value> {
    let path = format!("/api/v1/campaigns/{}", encode(id));
    let devices_path = format!("{path}/devices?state=downloading");
    let mut bars = Bars::new();
    let mut c = first;
    loop {
        bars.main.set_length(c["total"].as_u64().unwrap_or(0));
        bars.main.set_position(final_count(&c));
        bars.main.set_message(summary(&c));
        if c["counts"]["downloading"].as_u64().unwrap_or(0) > 0 {
            // One page at most: only the first few devices get a bar.
            let tasks = ctx.client.get_all(
                &devices_path,
                Paging {
                    page: None,
                    cursor_field: None,
                    max: Some(DEVICE_BARS),
                },
            );
            if let Ok(tasks) = tasks {
                bars.sync_devices(&tasks.items);
            }
        } else {
            bars.sync_devices(&[]);
        }
        std::thread::sleep(pause);
        c = match ctx.client.get(&path) {
            Ok(c) => c,
            Err(e) => {
                bars.clear();
                return Err(e);
            }
        };
        if is_done(&c) {
            bars.clear();
            return Ok(c);
        }
    }
}

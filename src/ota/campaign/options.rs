//! The v2 campaign options (CONTRACT "v2: campaign options"): what an
//! operator may ask for, and the validation that turns a request into a
//! [`CampaignPolicy`]. Pure: `now` comes in, nothing is read or written.

use crate::config::MAX_TASK_TIMEOUT;
use crate::model::{CampaignPolicy, RatePolicy, RetryPolicy, WavePolicy};
use crate::time::Timestamp;

/// Retry intervals an operator may choose (0 s, 10 min, 30 min, 1 h, 24 h).
pub const RETRY_INTERVALS: [u64; 5] = [0, 600, 1800, 3600, 86_400];
/// Retry counts an operator may choose.
pub const RETRY_MAX: [u8; 3] = [1, 2, 5];
/// `start_at` window: at least 5 minutes, at most 7 days ahead.
pub const START_MIN_MS: u64 = 5 * 60 * 1000;
pub const START_MAX_MS: u64 = 7 * 24 * 3600 * 1000;
/// Most waves one campaign takes.
pub const MAX_WAVES: usize = 10;
/// Largest rate window (one day).
pub const MAX_PACK_INTERVAL_S: u64 = 86_400;
/// Devices a verification campaign names.
pub const VERIFY_DEVICES: std::ops::RangeInclusive<usize> = 1..=10;

/// The options of a create request, as parsed (not yet validated).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    pub kind: Option<String>,
    pub force: bool,
    pub dynamic: bool,
    pub start_at: Option<Timestamp>,
    pub end_at: Option<Timestamp>,
    pub retry: Option<RetryPolicy>,
    pub timeout_s: Option<u64>,
    pub rate: Option<RatePolicy>,
    pub waves: Vec<WavePolicy>,
    pub min_battery: Option<u8>,
}

/// An invalid option: a 400 that names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct OptionError {
    pub field: &'static str,
    pub message: String,
}

fn bad(field: &'static str, message: impl Into<String>) -> OptionError {
    OptionError {
        field,
        message: message.into(),
    }
}

/// Server-wide defaults the options fall back to.
#[derive(Debug, Clone, Copy, Default)]
pub struct Defaults {
    /// `[campaigns] pack_size` / `pack_interval_s`; `None`: no limit.
    pub rate: Option<RatePolicy>,
}

/// Checks every option against the contract's ranges. `listed` is the
/// number of names of a `{"devices": [..]}` target (`None` for the other
/// targets).
pub fn validate(
    now: Timestamp,
    o: &Options,
    listed: Option<usize>,
    defaults: Defaults,
) -> Result<CampaignPolicy, OptionError> {
    let kind = o.kind.clone().unwrap_or_else(|| "batch".into());
    match kind.as_str() {
        "batch" => {}
        "verify" => {
            if !listed.is_some_and(|n| VERIFY_DEVICES.contains(&n)) {
                return Err(bad(
                    "kind",
                    "a verify campaign needs target {\"devices\": [..]} with 1 to 10 names",
                ));
            }
            if o.dynamic {
                return Err(bad("dynamic", "a verify campaign cannot be dynamic"));
            }
        }
        other => return Err(bad("kind", format!("{other:?}: one of batch, verify"))),
    }
    if let Some(start) = o.start_at {
        if o.dynamic {
            return Err(bad("start_at", "only static campaigns take start_at"));
        }
        let ahead = start.as_millis().saturating_sub(now.as_millis());
        if start <= now || !(START_MIN_MS..=START_MAX_MS).contains(&ahead) {
            return Err(bad(
                "start_at",
                "must be from 5 minutes to 7 days ahead of now",
            ));
        }
    }
    if let Some(end) = o.end_at {
        if !o.dynamic {
            return Err(bad("end_at", "only dynamic campaigns take end_at"));
        }
        if end <= now {
            return Err(bad("end_at", "must be in the future"));
        }
    }
    if let Some(retry) = o.retry {
        if !RETRY_INTERVALS.contains(&retry.interval_s) {
            return Err(bad(
                "retry.interval_s",
                format!("{}: one of 0, 600, 1800, 3600, 86400", retry.interval_s),
            ));
        }
        if !RETRY_MAX.contains(&retry.max) {
            return Err(bad("retry.max", format!("{}: one of 1, 2, 5", retry.max)));
        }
    }
    if let Some(t) = o.timeout_s {
        if !(1..=MAX_TASK_TIMEOUT).contains(&t) {
            return Err(bad(
                "timeout_s",
                format!("{t}: from 1 to {MAX_TASK_TIMEOUT} seconds"),
            ));
        }
    }
    if let Some(rate) = o.rate {
        if rate.pack_size == 0 {
            return Err(bad("rate.pack_size", "must be at least 1"));
        }
        if !(1..=MAX_PACK_INTERVAL_S).contains(&rate.pack_interval_s) {
            return Err(bad(
                "rate.pack_interval_s",
                format!("{}: from 1 to {MAX_PACK_INTERVAL_S}", rate.pack_interval_s),
            ));
        }
    }
    if o.waves.len() > MAX_WAVES {
        return Err(bad("waves", format!("at most {MAX_WAVES} waves")));
    }
    let mut previous = 0u8;
    for wave in &o.waves {
        if wave.percent == 0 || wave.percent > 100 {
            return Err(bad("waves.percent", "each percent is from 1 to 100"));
        }
        if wave.percent <= previous {
            return Err(bad(
                "waves.percent",
                "percentages are cumulative and must increase",
            ));
        }
        if wave.abort_failure_percent > 100 {
            return Err(bad("waves.abort_failure_percent", "must be from 0 to 100"));
        }
        previous = wave.percent;
    }
    if let Some(b) = o.min_battery {
        if b > 100 {
            return Err(bad("min_battery", "must be from 0 to 100"));
        }
    }
    Ok(CampaignPolicy {
        kind,
        forced: o.force,
        dynamic: o.dynamic,
        end_at: o.end_at,
        start_at: o.start_at,
        retry: o.retry,
        timeout_ms: o.timeout_s.map(|s| s.saturating_mul(1000)),
        rate: o.rate.or(defaults.rate),
        waves: o.waves.clone(),
        min_battery: o.min_battery,
        source_versions: None,
    })
}

/// Devices per wave for `total` devices in creation order: wave k ends at
/// `ceil(total × percent_k / 100)`; devices past the last percentage form
/// one more (implicit) wave. Without waves: one wave of everything.
pub fn wave_sizes(waves: &[WavePolicy], total: u64) -> Vec<u64> {
    let mut sizes = Vec::with_capacity(waves.len() + 1);
    let mut taken = 0u64;
    for wave in waves {
        let end = (total * u64::from(wave.percent)).div_ceil(100).min(total);
        sizes.push(end.saturating_sub(taken));
        taken = taken.max(end);
    }
    if waves.last().is_none_or(|w| w.percent < 100) {
        sizes.push(total - taken);
    }
    sizes
}

/// The failure threshold of wave `w` (the implicit last wave takes the
/// last one's; `None`: never pauses).
pub fn abort_percent(waves: &[WavePolicy], w: usize) -> Option<u8> {
    if waves.is_empty() {
        return None;
    }
    Some(
        waves
            .get(w)
            .unwrap_or(&waves[waves.len() - 1])
            .abort_failure_percent,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);

    fn check(o: Options) -> Result<CampaignPolicy, OptionError> {
        validate(NOW, &o, None, Defaults::default())
    }

    fn field(o: Options) -> &'static str {
        check(o).unwrap_err().field
    }

    #[test]
    fn start_window_bounds() {
        let at = |ms: u64| Options {
            start_at: Some(NOW.add_millis(ms)),
            ..Options::default()
        };
        assert!(check(at(START_MIN_MS)).is_ok());
        assert!(check(at(START_MAX_MS)).is_ok());
        assert_eq!(field(at(START_MIN_MS - 1)), "start_at");
        assert_eq!(field(at(START_MAX_MS + 1)), "start_at");
        assert_eq!(field(at(0)), "start_at");
        let mut dynamic = at(START_MIN_MS);
        dynamic.dynamic = true;
        assert_eq!(field(dynamic), "start_at");
    }

    #[test]
    fn retry_values() {
        for interval_s in RETRY_INTERVALS {
            for max in RETRY_MAX {
                let o = Options {
                    retry: Some(RetryPolicy { interval_s, max }),
                    ..Options::default()
                };
                assert!(check(o).is_ok());
            }
        }
        let retry = |interval_s, max| Options {
            retry: Some(RetryPolicy { interval_s, max }),
            ..Options::default()
        };
        assert_eq!(field(retry(60, 1)), "retry.interval_s");
        assert_eq!(field(retry(600, 3)), "retry.max");
        assert_eq!(field(retry(600, 0)), "retry.max");
    }

    #[test]
    fn waves_rate_and_kind() {
        let waves = |p: &[u8]| Options {
            waves: p
                .iter()
                .map(|&percent| WavePolicy {
                    percent,
                    abort_failure_percent: 10,
                })
                .collect(),
            ..Options::default()
        };
        assert!(check(waves(&[10, 50, 100])).is_ok());
        assert_eq!(field(waves(&[10, 10])), "waves.percent");
        assert_eq!(field(waves(&[50, 20])), "waves.percent");
        assert_eq!(field(waves(&[10, 101])), "waves.percent");
        let rate = Options {
            rate: Some(RatePolicy {
                pack_size: 0,
                pack_interval_s: 60,
            }),
            ..Options::default()
        };
        assert_eq!(field(rate), "rate.pack_size");
        let verify = Options {
            kind: Some("verify".into()),
            ..Options::default()
        };
        assert_eq!(field(verify.clone()), "kind");
        assert!(validate(NOW, &verify, Some(3), Defaults::default()).is_ok());
        assert!(validate(NOW, &verify, Some(11), Defaults::default()).is_err());
        let end = Options {
            end_at: Some(NOW.add_millis(1000)),
            ..Options::default()
        };
        assert_eq!(field(end), "end_at");
    }

    #[test]
    fn wave_sizes_are_cumulative() {
        let w = |percent| WavePolicy {
            percent,
            abort_failure_percent: 0,
        };
        assert_eq!(wave_sizes(&[w(10), w(30), w(100)], 1000), [100, 200, 700]);
        assert_eq!(wave_sizes(&[w(10), w(50)], 10), [1, 4, 5]);
        assert_eq!(wave_sizes(&[], 7), [7]);
        assert_eq!(wave_sizes(&[w(50), w(100)], 1), [1, 0]);
    }
}

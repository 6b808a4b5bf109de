//! The body of `POST /api/v1/campaigns` with the v2 options: strict
//! (unknown fields and wrong types are a 400 naming the field, through
//! `serde_path_to_error`), then checked by `ota::campaign::options`.

use serde::Deserialize;
use serde_json::Value;

use super::error::{ApiError, ApiResult};
use crate::model::{RatePolicy, RetryPolicy, WavePolicy};
use crate::ota::campaign::options::{self, Options};
use crate::time::Timestamp;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    pub firmware: Option<Value>,
    pub target: Option<Value>,
    kind: Option<String>,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    dynamic: bool,
    start_at: Option<String>,
    end_at: Option<String>,
    retry: Option<RetryBody>,
    timeout_s: Option<u64>,
    rate: Option<RateBody>,
    waves: Option<Vec<WaveBody>>,
    min_battery: Option<u8>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryBody {
    interval_s: u64,
    max: u8,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateBody {
    pack_size: u64,
    pack_interval_s: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WaveBody {
    percent: u8,
    /// Omitted: 100, the wave never pauses the campaign.
    #[serde(default = "never_pause")]
    abort_failure_percent: u8,
}

fn never_pause() -> u8 {
    100
}

/// Parses the body; a bad field is named in the 400.
pub fn parse(body: &[u8]) -> ApiResult<CreateBody> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request(format!("body is not JSON: {inner}"))
        } else if path == "." || path.is_empty() {
            ApiError::bad_request(inner.to_string())
        } else {
            ApiError::bad_request(format!("{path}: {inner}"))
        }
    })
}

fn time(field: &'static str, value: &Option<String>) -> ApiResult<Option<Timestamp>> {
    let Some(text) = value else {
        return Ok(None);
    };
    let t = humantime::parse_rfc3339(text).map_err(|e| {
        ApiError::bad_request(format!(
            "{field}: {text:?} is not an RFC 3339 UTC time like 2026-01-02T03:04:05Z ({e})"
        ))
    })?;
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| ApiError::bad_request(format!("{field}: before 1970")))?
        .as_millis();
    Ok(Some(Timestamp::from_millis(
        u64::try_from(ms).unwrap_or(u64::MAX),
    )))
}

impl CreateBody {
    /// The options as the domain takes them (ranges are checked there).
    pub fn options(&self) -> ApiResult<Options> {
        Ok(Options {
            kind: self.kind.clone(),
            force: self.force,
            dynamic: self.dynamic,
            start_at: time("start_at", &self.start_at)?,
            end_at: time("end_at", &self.end_at)?,
            retry: self.retry.as_ref().map(|r| RetryPolicy {
                interval_s: r.interval_s,
                max: r.max,
            }),
            timeout_s: self.timeout_s,
            rate: self.rate.as_ref().map(|r| RatePolicy {
                pack_size: r.pack_size,
                pack_interval_s: r.pack_interval_s,
            }),
            waves: self
                .waves
                .iter()
                .flatten()
                .map(|w| WavePolicy {
                    percent: w.percent,
                    abort_failure_percent: w.abort_failure_percent,
                })
                .collect(),
            min_battery: self.min_battery,
        })
    }
}

pub fn option_error(e: options::OptionError) -> ApiError {
    ApiError::bad_request(e.to_string())
}

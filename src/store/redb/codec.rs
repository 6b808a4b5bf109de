//! How records and timers become redb bytes.
//!
//! Records are CBOR (serde), so fields with `#[serde(default)]` can be
//! added freely. Timers are keys, so they get a compact hand-written
//! encoding that is stable and exact (a tag byte, then big-endian ids and
//! the raw device name): a key must encode identically every time for
//! `remove_timer` to find it, which a general-purpose codec does not
//! promise across versions.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::model::{TaskKey, Timer};
use crate::store::StoreError;

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    // Writing CBOR into a Vec cannot fail for these plain records.
    if let Err(e) = ciborium::into_writer(value, &mut out) {
        tracing::error!("cbor encode failed: {e}");
    }
    out
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    ciborium::from_reader(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

const TASK_TIMEOUT: u8 = 1;
const TASK_RETRY: u8 = 2;
const CAMPAIGN_START: u8 = 3;
const RATE_WINDOW: u8 = 4;
const WAVE_CHECK: u8 = 5;
const REGISTRATION_EXPIRY: u8 = 6;
const QUEUED_REQUEST: u8 = 7;
/// Appended after the first seven: tags are never renumbered.
const CAMPAIGN_END: u8 = 8;

pub fn encode_timer(timer: &Timer) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    let task = |out: &mut Vec<u8>, tag: u8, key: &TaskKey| {
        out.push(tag);
        out.extend_from_slice(&key.campaign.to_be_bytes());
        out.extend_from_slice(key.device.as_bytes());
    };
    let id = |out: &mut Vec<u8>, tag: u8, id: u64| {
        out.push(tag);
        out.extend_from_slice(&id.to_be_bytes());
    };
    let device = |out: &mut Vec<u8>, tag: u8, name: &str| {
        out.push(tag);
        out.extend_from_slice(name.as_bytes());
    };
    match timer {
        Timer::TaskTimeout(k) => task(&mut out, TASK_TIMEOUT, k),
        Timer::TaskRetry(k) => task(&mut out, TASK_RETRY, k),
        Timer::CampaignStart(c) => id(&mut out, CAMPAIGN_START, *c),
        Timer::RateWindow(c) => id(&mut out, RATE_WINDOW, *c),
        Timer::WaveCheck(c) => id(&mut out, WAVE_CHECK, *c),
        Timer::RegistrationExpiry(d) => device(&mut out, REGISTRATION_EXPIRY, d),
        Timer::QueuedRequest(d) => device(&mut out, QUEUED_REQUEST, d),
        Timer::CampaignEnd(c) => id(&mut out, CAMPAIGN_END, *c),
    }
    out
}

pub fn decode_timer(bytes: &[u8]) -> Result<Timer, StoreError> {
    let bad = || StoreError::Corrupt(format!("timer key {}", hex::encode(bytes)));
    let (&tag, rest) = bytes.split_first().ok_or_else(bad)?;
    let id = |b: &[u8]| -> Result<u64, StoreError> {
        let arr: [u8; 8] = b.get(..8).and_then(|s| s.try_into().ok()).ok_or_else(bad)?;
        Ok(u64::from_be_bytes(arr))
    };
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| bad());
    let task = |b: &[u8]| -> Result<TaskKey, StoreError> {
        Ok(TaskKey {
            campaign: id(b)?,
            device: text(b.get(8..).ok_or_else(bad)?)?,
        })
    };
    Ok(match tag {
        TASK_TIMEOUT => Timer::TaskTimeout(task(rest)?),
        TASK_RETRY => Timer::TaskRetry(task(rest)?),
        CAMPAIGN_START | RATE_WINDOW | WAVE_CHECK | CAMPAIGN_END if rest.len() == 8 => {
            let c = id(rest)?;
            match tag {
                CAMPAIGN_START => Timer::CampaignStart(c),
                RATE_WINDOW => Timer::RateWindow(c),
                CAMPAIGN_END => Timer::CampaignEnd(c),
                _ => Timer::WaveCheck(c),
            }
        }
        REGISTRATION_EXPIRY => Timer::RegistrationExpiry(text(rest)?),
        QUEUED_REQUEST => Timer::QueuedRequest(text(rest)?),
        _ => return Err(bad()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_timer_variant_round_trips() {
        let key = TaskKey::new(7, "dev:1");
        for timer in [
            Timer::TaskTimeout(key.clone()),
            Timer::TaskRetry(key),
            Timer::CampaignStart(1),
            Timer::RateWindow(u64::MAX),
            Timer::WaveCheck(0),
            Timer::RegistrationExpiry("d".into()),
            Timer::QueuedRequest(String::new()),
            Timer::CampaignEnd(9),
        ] {
            assert_eq!(decode_timer(&encode_timer(&timer)).unwrap(), timer);
        }
        assert!(decode_timer(&[]).is_err());
        assert!(decode_timer(&[3, 1]).is_err());
        assert!(decode_timer(&[99]).is_err());
        // The stored bytes of the first variants never change.
        assert_eq!(encode_timer(&Timer::CampaignStart(1))[0], 3);
        assert_eq!(
            encode_timer(&Timer::CampaignEnd(1)),
            [8, 0, 0, 0, 0, 0, 0, 0, 1]
        );
    }
}

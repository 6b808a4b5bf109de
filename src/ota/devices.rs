//! Operator-side device registration.

use crate::model::{DeviceRecord, HistoryEntry};
use crate::store::{StoreError, Tx};
use crate::time::Timestamp;

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct NewDevice {
    pub name: String,
    pub product: String,
    #[serde(default)]
    pub version: Option<String>,
}

/// Checks one device's fields; the message names the field.
pub fn validate(device: &NewDevice) -> Result<(), String> {
    if !crate::ota::valid_device_name(&device.name) {
        return Err(format!(
            "device name {:?} must be 1-64 characters of letters, digits, '.', '_', '-', ':'",
            device.name
        ));
    }
    if !crate::ota::firmware::valid_product(&device.product) {
        return Err(format!(
            "product {:?} must be 1-64 characters of letters, digits, '.', '_', '-', ':'",
            device.product
        ));
    }
    if let Some(version) = &device.version {
        if !crate::ota::firmware::valid_version(version) {
            return Err(format!(
                "version {version:?} must be 1-64 characters of letters, digits, '.', '_', '-'"
            ));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Registered {
    pub created: Vec<String>,
    /// Names already registered; left as they are.
    pub existing: Vec<String>,
}

/// Registers validated devices; existing names are left untouched.
pub fn register(
    tx: &mut (impl Tx + ?Sized),
    now: Timestamp,
    devices: &[NewDevice],
) -> Result<Registered, StoreError> {
    let mut out = Registered::default();
    for new in devices {
        if tx.device(&new.name)?.is_some() {
            out.existing.push(new.name.clone());
            continue;
        }
        let version = new.version.clone().unwrap_or_default();
        let record = DeviceRecord::new(&new.product, &version, now);
        tx.append_history(
            &new.name,
            &HistoryEntry::note(now, "registered", format!("by operator on {version:?}")),
        )?;
        // A dynamic campaign (issue 10) takes a device registered after it.
        super::campaign::dynamic::admit(tx, now, &new.name, &record)?;
        tx.put_device(&new.name, &record)?;
        out.created.push(new.name.clone());
    }
    Ok(out)
}

//! Firmware catalogue operations: validation of operator input, and the
//! metadata records (the bytes live in `store::blobs`).

use redb::{ReadableTable, WriteTransaction};

use crate::store::access::Reader;
use crate::store::blobs::StoredBlob;
use crate::store::records::{decode, encode, CampaignRecord, FirmwareRecord};
use crate::store::{access, next_id, schema, StoreError};

/// Validated upload parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct NewFirmware {
    pub product: String,
    pub name: String,
    pub version: String,
    pub kind: String,
    pub signature: String,
    pub description: String,
    pub filename: String,
}

/// Raw upload parameters as the operator sent them.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct UploadParams {
    pub product: Option<String>,
    pub version: Option<String>,
    pub name: Option<String>,
    pub kind: Option<String>,
    pub signature: Option<String>,
    pub description: Option<String>,
    pub filename: Option<String>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FirmwareError {
    #[error("{0}")]
    Invalid(String),
    #[error("product {product} already has version {version} (firmware {id})")]
    DuplicateVersion {
        product: String,
        version: String,
        id: u64,
    },
    #[error(
        "product {product} already has {limit} firmware images (limit firmware.max_per_product)"
    )]
    ProductFull { product: String, limit: u32 },
    #[error("unknown firmware {0}")]
    Unknown(u64),
    #[error("firmware {id} is used by unfinished campaign {campaign}")]
    InUse { id: u64, campaign: u64 },
}

/// Products, like device names, are 1-64 of letters, digits, `. _ - :`.
pub fn valid_product(product: &str) -> bool {
    crate::ota::valid_device_name(product)
}

/// 1-32 of letters, digits, `_ - ( )`, starting with a letter or digit.
pub fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    (1..=32).contains(&name.len())
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'(' | b')'))
}

/// 1-64 of letters, digits, `. _ -`.
pub fn valid_version(version: &str) -> bool {
    (1..=64).contains(&version.len())
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub fn validate(params: &UploadParams) -> Result<NewFirmware, FirmwareError> {
    let invalid = |m: &str| Err(FirmwareError::Invalid(m.to_string()));
    let product = params.product.clone().unwrap_or_default();
    if product.is_empty() {
        return invalid("product is required");
    }
    if !valid_product(&product) {
        return invalid("product must be 1-64 characters of letters, digits, '.', '_', '-', ':'");
    }
    let version = params.version.clone().unwrap_or_default();
    if version.is_empty() {
        return invalid("version is required");
    }
    if !valid_version(&version) {
        return invalid("version must be 1-64 characters of letters, digits, '.', '_', '-'");
    }
    let name = match params.name.clone() {
        Some(name) => name,
        None if valid_name(&product) => product.clone(),
        None => "firmware".to_string(),
    };
    if !valid_name(&name) {
        return invalid(
            "name must be 1-32 characters of letters, digits, '_', '-', '(', ')' and start with a letter or digit",
        );
    }
    let kind = params.kind.clone().unwrap_or_else(|| "firmware".into());
    if kind != "firmware" && kind != "software" {
        return invalid("kind must be firmware or software");
    }
    let signature = params
        .signature
        .clone()
        .unwrap_or_else(|| "sha256".into())
        .to_ascii_lowercase();
    if signature != "sha256" && signature != "md5" {
        return invalid("signature must be sha256 or md5");
    }
    let description = params.description.clone().unwrap_or_default();
    if description.chars().count() > 100 {
        return invalid("description must be at most 100 characters");
    }
    let filename = params
        .filename
        .clone()
        .unwrap_or_else(|| format!("{name}-{version}.bin"));
    if filename.len() > 255 || filename.contains(['/', '\\', '\0']) {
        return invalid("filename must be at most 255 characters without '/', '\\'");
    }
    Ok(NewFirmware {
        product,
        name,
        version,
        kind,
        signature,
        description,
        filename,
    })
}

/// Checks that the upload may proceed before any byte is read.
pub fn check_slot(
    txn: &impl access::Reader,
    meta: &NewFirmware,
    limit: u32,
) -> Result<Result<(), FirmwareError>, StoreError> {
    check_slot_in(txn, meta, limit)
}

/// Records an uploaded image. Fails, changing nothing, when the product
/// version exists or the product is at its limit.
pub fn insert(
    txn: &WriteTransaction,
    now: u64,
    meta: &NewFirmware,
    blob: &StoredBlob,
    limit: u32,
) -> Result<Result<FirmwareRecord, FirmwareError>, StoreError> {
    if let Err(e) = check_slot_in(txn, meta, limit)? {
        return Ok(Err(e));
    }
    let id = next_id(txn, schema::NEXT_FIRMWARE_ID)?;
    let record = FirmwareRecord {
        id,
        product: meta.product.clone(),
        name: meta.name.clone(),
        version: meta.version.clone(),
        kind: meta.kind.clone(),
        filename: meta.filename.clone(),
        size: blob.size,
        sha256: blob.sha256.to_vec(),
        md5: blob.md5.to_vec(),
        signature: meta.signature.clone(),
        description: meta.description.clone(),
        created_at: now,
    };
    txn.open_table(schema::FIRMWARE)?
        .insert(id, encode(&record).as_slice())?;
    txn.open_table(schema::FIRMWARE_KEYS)?
        .insert((meta.product.as_str(), meta.version.as_str()), id)?;
    Ok(Ok(record))
}

fn check_slot_in(
    txn: &impl access::Reader,
    meta: &NewFirmware,
    limit: u32,
) -> Result<Result<(), FirmwareError>, StoreError> {
    let existing = list_for_product(txn, &meta.product)?;
    if let Some(fw) = existing.iter().find(|fw| fw.version == meta.version) {
        return Ok(Err(FirmwareError::DuplicateVersion {
            product: meta.product.clone(),
            version: meta.version.clone(),
            id: fw.id,
        }));
    }
    if existing.len() >= limit as usize {
        return Ok(Err(FirmwareError::ProductFull {
            product: meta.product.clone(),
            limit,
        }));
    }
    Ok(Ok(()))
}

/// Removes a firmware record. Returns the record and whether its blob is
/// now unreferenced (another version may share identical bytes).
pub fn delete(
    txn: &WriteTransaction,
    id: u64,
) -> Result<Result<(FirmwareRecord, bool), FirmwareError>, StoreError> {
    let Some(record) = access::firmware(txn, id)? else {
        return Ok(Err(FirmwareError::Unknown(id)));
    };
    if let Some(campaign) = unfinished_campaign_using(txn, id)? {
        return Ok(Err(FirmwareError::InUse { id, campaign }));
    }
    txn.open_table(schema::FIRMWARE)?.remove(id)?;
    txn.open_table(schema::FIRMWARE_KEYS)?
        .remove((record.product.as_str(), record.version.as_str()))?;
    let shared = list_all(txn)?.iter().any(|fw| fw.sha256 == record.sha256);
    Ok(Ok((record, !shared)))
}

fn unfinished_campaign_using(txn: &WriteTransaction, id: u64) -> Result<Option<u64>, StoreError> {
    let campaigns: Vec<CampaignRecord> = {
        let table = txn.open_table(schema::CAMPAIGNS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (_, value) = entry?;
            let campaign: CampaignRecord = decode(value.value())?;
            if campaign.firmware == id {
                out.push(campaign);
            }
        }
        out
    };
    for campaign in campaigns {
        let counts = txn.campaign_counts(campaign.id)?;
        let status = crate::ota::campaign::effective_status(&campaign, &counts);
        if status == crate::store::records::CampaignStatus::Running {
            return Ok(Some(campaign.id));
        }
    }
    Ok(None)
}

pub fn list_all(txn: &impl access::Reader) -> Result<Vec<FirmwareRecord>, StoreError> {
    txn.firmware_records()
}

pub fn list_for_product(
    txn: &impl access::Reader,
    product: &str,
) -> Result<Vec<FirmwareRecord>, StoreError> {
    Ok(txn
        .firmware_records()?
        .into_iter()
        .filter(|fw| fw.product == product)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(name: &str, version: &str) -> UploadParams {
        UploadParams {
            product: Some("p".into()),
            version: Some(version.into()),
            name: Some(name.into()),
            ..Default::default()
        }
    }

    #[test]
    fn names_and_versions() {
        assert!(validate(&params("fw_1-(a)", "1.0.0-rc_1")).is_ok());
        assert!(validate(&params("_fw", "1")).is_err());
        assert!(validate(&params(&"a".repeat(33), "1")).is_err());
        assert!(validate(&params("a", &"1".repeat(65))).is_err());
        assert!(validate(&params("a", "1 0")).is_err());
        assert!(validate(&params("a.b", "1")).is_err());
    }
}

//! `PATCH /api/v1/firmware/{id}` (issue 10 item 12): an image's `name`
//! and `description` can be corrected after upload, with the upload's own
//! rules. Nothing else of a record changes: the bytes, version and digests
//! are what devices were promised.

use super::firmware::{valid_name, FirmwareError};
use crate::model::{FirmwareId, FirmwareRecord};
use crate::store::{StoreError, Tx};

/// The fields an operator may change; unknown fields are refused.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirmwareEdit {
    pub name: Option<String>,
    pub description: Option<String>,
}

/// Checks an edit like an upload's parameters; the message names the field.
pub fn validate(edit: &FirmwareEdit) -> Result<(), FirmwareError> {
    if edit.name.is_none() && edit.description.is_none() {
        return Err(FirmwareError::Invalid(
            "nothing to change: give \"name\" and/or \"description\"".into(),
        ));
    }
    if let Some(name) = &edit.name {
        if !valid_name(name) {
            return Err(FirmwareError::Invalid(
                "name must be 1-32 characters of letters, digits, '_', '-', '(', ')' and start with a letter or digit".into(),
            ));
        }
    }
    if edit
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 100)
    {
        return Err(FirmwareError::Invalid(
            "description must be at most 100 characters".into(),
        ));
    }
    Ok(())
}

/// Applies a validated edit. Returns the record before and after.
pub fn apply(
    tx: &mut (impl Tx + ?Sized),
    id: FirmwareId,
    edit: &FirmwareEdit,
) -> Result<Result<(FirmwareRecord, FirmwareRecord), FirmwareError>, StoreError> {
    if let Err(e) = validate(edit) {
        return Ok(Err(e));
    }
    let Some(before) = tx.firmware(id)? else {
        return Ok(Err(FirmwareError::Unknown(id)));
    };
    let mut after = before.clone();
    if let Some(name) = &edit.name {
        after.name = name.clone();
    }
    if let Some(description) = &edit.description {
        after.description = description.clone();
    }
    tx.put_firmware(&after)?;
    Ok(Ok((before, after)))
}

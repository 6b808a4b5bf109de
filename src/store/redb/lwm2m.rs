//! LwM2M registrations in redb: `REGISTRATIONS` (name → record) and
//! `REGISTRATION_LOCATIONS` (location → name), kept in step here.

use std::ops::Bound;

use ::redb::{ReadableTable, WriteTransaction};

use super::codec::{decode, encode};
use super::integrity::decode_or_skip;
use super::schema;
use crate::model::RegistrationRecord;
use crate::store::Result;

pub fn registration(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &str,
) -> Result<Option<RegistrationRecord>> {
    let value = table.get(name)?;
    value.map(|v| decode(v.value())).transpose()
}

pub fn registrations(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    after: Bound<&str>,
    limit: usize,
) -> Result<Vec<(String, RegistrationRecord)>> {
    let mut out = Vec::new();
    for entry in table.range::<&str>((after, Bound::Unbounded))? {
        if out.len() >= limit {
            break;
        }
        let (k, v) = entry?;
        if let Some(record) = decode_or_skip("lwm2m registration", k.value(), v.value()) {
            out.push((k.value().to_string(), record));
        }
    }
    Ok(out)
}

pub fn put(
    txn: &WriteTransaction,
    name: &str,
    previous: Option<&RegistrationRecord>,
    record: &RegistrationRecord,
) -> Result<()> {
    let mut locations = txn.open_table(schema::REGISTRATION_LOCATIONS)?;
    if let Some(previous) = previous {
        if previous.location != record.location {
            locations.remove(previous.location.as_str())?;
        }
    }
    locations.insert(record.location.as_str(), name)?;
    txn.open_table(schema::REGISTRATIONS)?
        .insert(name, encode(record).as_slice())?;
    Ok(())
}

pub fn delete(txn: &WriteTransaction, name: &str, record: &RegistrationRecord) -> Result<()> {
    txn.open_table(schema::REGISTRATION_LOCATIONS)?
        .remove(record.location.as_str())?;
    txn.open_table(schema::REGISTRATIONS)?.remove(name)?;
    Ok(())
}

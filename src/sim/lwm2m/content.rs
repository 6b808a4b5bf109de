//! The simulated client's side of the LwM2M content formats (OMA LwM2M 1.1
//! TS Core §7.4): encoding the values it serves and decoding the values a
//! server writes. Kept here, apart from the server's codecs in
//! `src/lwm2m/content/`, on purpose: the simulator is a second, independent
//! reading of the specification, so a misreading on one side shows up as
//! an interop failure instead of cancelling out. Only what a device with
//! Objects 1, 3 and 5 needs is written; SenML rides on serde_json and
//! ciborium.

use ciborium::Value as Cbor;

pub const TEXT: u16 = 0;
pub const LINK: u16 = 40;
pub const OPAQUE: u16 = 42;
pub const SENML_JSON: u16 = 110;
pub const SENML_CBOR: u16 = 112;
pub const TLV: u16 = 11542;

/// One resource value of the simulated objects.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Str(String),
    Opaque(Vec<u8>),
    /// A multiple-instance resource: (instance id, value).
    Multi(Vec<(u16, i64)>),
}

/// A resource of an object instance: (resource id, value).
pub type Resource = (u16, Value);

/// Encodes a resource (`single`) or a whole object instance as `format`.
/// `base` is the path of what was read (`/5/0/3` or `/5/0`).
pub fn encode(
    format: u16,
    base: &str,
    single: bool,
    resources: &[Resource],
) -> Result<Vec<u8>, &'static str> {
    match format {
        TEXT => match resources {
            [(_, Value::Int(i))] if single => Ok(i.to_string().into_bytes()),
            [(_, Value::Str(s))] if single => Ok(s.clone().into_bytes()),
            _ => Err("plain text carries one single-instance resource"),
        },
        OPAQUE => match resources {
            [(_, Value::Opaque(b))] if single => Ok(b.clone()),
            _ => Err("opaque carries one opaque resource"),
        },
        TLV => Ok(tlv(resources)),
        SENML_JSON => {
            let records = senml_records(base, single, resources)
                .into_iter()
                .map(|(n, v)| {
                    let mut record = serde_json::Map::new();
                    record.insert("n".into(), n.into());
                    match v {
                        SenmlValue::Num(i) => record.insert("v".into(), i.into()),
                        SenmlValue::Str(s) => record.insert("vs".into(), s.into()),
                        // Only the write-only package (/5/0/0) is opaque.
                        SenmlValue::Bytes(_) => return Err("opaque values are not read"),
                    };
                    Ok(serde_json::Value::Object(record))
                })
                .collect::<Result<Vec<_>, &'static str>>()?;
            serde_json::to_vec(&records).map_err(|_| "unencodable")
        }
        SENML_CBOR => {
            // RFC 8428 §6: n = 0, v = 2, vs = 3, vd = 8.
            let records: Vec<Cbor> = senml_records(base, single, resources)
                .into_iter()
                .map(|(n, v)| {
                    let (label, value) = match v {
                        SenmlValue::Num(i) => (2, Cbor::Integer(i.into())),
                        SenmlValue::Str(s) => (3, Cbor::Text(s)),
                        SenmlValue::Bytes(b) => (8, Cbor::Bytes(b)),
                    };
                    Cbor::Map(vec![
                        (Cbor::Integer(0.into()), Cbor::Text(n)),
                        (Cbor::Integer(label.into()), value),
                    ])
                })
                .collect();
            let mut out = Vec::new();
            ciborium::into_writer(&Cbor::Array(records), &mut out).map_err(|_| "unencodable")?;
            Ok(out)
        }
        _ => Err("unsupported content format"),
    }
}

enum SenmlValue {
    Num(i64),
    Str(String),
    Bytes(Vec<u8>),
}

/// Full names (no base name: the simplest form every reader takes).
fn senml_records(base: &str, single: bool, resources: &[Resource]) -> Vec<(String, SenmlValue)> {
    let mut out = Vec::new();
    for (id, value) in resources {
        let name = if single {
            base.to_string()
        } else {
            format!("{base}/{id}")
        };
        match value {
            Value::Int(i) => out.push((name, SenmlValue::Num(*i))),
            Value::Str(s) => out.push((name, SenmlValue::Str(s.clone()))),
            Value::Opaque(b) => out.push((name, SenmlValue::Bytes(b.clone()))),
            Value::Multi(items) => {
                for (i, v) in items {
                    out.push((format!("{name}/{i}"), SenmlValue::Num(*v)));
                }
            }
        }
    }
    out
}

/// TLV entry header (TS Core §7.4.3): type byte, identifier, length.
fn tlv_entry(out: &mut Vec<u8>, kind: u8, id: u16, value: &[u8]) {
    let mut first = kind << 6;
    if id > 0xff {
        first |= 0x20;
    }
    let len = value.len();
    if len < 8 {
        first |= len as u8;
    } else if len <= 0xff {
        first |= 0x08;
    } else if len <= 0xffff {
        first |= 0x10;
    } else {
        first |= 0x18;
    }
    out.push(first);
    if id > 0xff {
        out.extend_from_slice(&id.to_be_bytes());
    } else {
        out.push(id as u8);
    }
    if len >= 8 {
        let bytes = (len as u32).to_be_bytes();
        let skip = if len <= 0xff {
            3
        } else if len <= 0xffff {
            2
        } else {
            1
        };
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value);
}

/// Integers take the fewest of 1, 2, 4 or 8 bytes (two's complement).
fn tlv_int(i: i64) -> Vec<u8> {
    if let Ok(v) = i8::try_from(i) {
        v.to_be_bytes().to_vec()
    } else if let Ok(v) = i16::try_from(i) {
        v.to_be_bytes().to_vec()
    } else if let Ok(v) = i32::try_from(i) {
        v.to_be_bytes().to_vec()
    } else {
        i.to_be_bytes().to_vec()
    }
}

/// Resources as TLV entries (resource with value = 0b11, multiple
/// resource = 0b10 holding resource instances = 0b01).
fn tlv(resources: &[Resource]) -> Vec<u8> {
    let mut out = Vec::new();
    for (id, value) in resources {
        match value {
            Value::Int(i) => tlv_entry(&mut out, 0b11, *id, &tlv_int(*i)),
            Value::Str(s) => tlv_entry(&mut out, 0b11, *id, s.as_bytes()),
            Value::Opaque(b) => tlv_entry(&mut out, 0b11, *id, b),
            Value::Multi(items) => {
                let mut inner = Vec::new();
                for (i, v) in items {
                    tlv_entry(&mut inner, 0b01, *i, &tlv_int(*v));
                }
                tlv_entry(&mut out, 0b10, *id, &inner);
            }
        }
    }
    out
}

/// The bytes a server wrote to one resource, whatever the format: the
/// value of the entry for `resource` in TLV/SenML, the payload as is in
/// text/opaque.
pub fn decode_single(format: u16, resource: u16, payload: &[u8]) -> Result<Vec<u8>, String> {
    match format {
        TEXT | OPAQUE => Ok(payload.to_vec()),
        TLV => {
            let mut rest = payload;
            while !rest.is_empty() {
                let (kind, id, value, tail) = tlv_parse(rest)?;
                if kind == 0b11 && id == resource {
                    return Ok(value.to_vec());
                }
                if kind == 0b00 {
                    // An object instance wrapping the resource.
                    return decode_single(TLV, resource, value);
                }
                rest = tail;
            }
            Err(format!("no TLV entry for resource {resource}"))
        }
        SENML_JSON => {
            let records: Vec<serde_json::Map<String, serde_json::Value>> =
                serde_json::from_slice(payload).map_err(|e| format!("bad SenML-JSON: {e}"))?;
            let record = records.first().ok_or("empty SenML pack")?;
            if let Some(s) = record.get("vs").and_then(|v| v.as_str()) {
                return Ok(s.as_bytes().to_vec());
            }
            if record.contains_key("vd") {
                return Err("SenML-JSON opaque writes are not supported by the simulator; use TLV or opaque".into());
            }
            if let Some(n) = record.get("v") {
                return Ok(n.to_string().into_bytes());
            }
            Err("SenML record without a value".into())
        }
        SENML_CBOR => {
            let value: Cbor =
                ciborium::from_reader(payload).map_err(|e| format!("bad SenML-CBOR: {e}"))?;
            let first = value
                .as_array()
                .and_then(|a| a.first())
                .and_then(|r| r.as_map())
                .ok_or("SenML-CBOR is not an array of maps")?;
            for (k, v) in first {
                let label = k.as_integer().and_then(|i| i64::try_from(i).ok());
                match (label, v) {
                    (Some(3), Cbor::Text(s)) => return Ok(s.as_bytes().to_vec()),
                    (Some(8), Cbor::Bytes(b)) => return Ok(b.clone()),
                    (Some(2), Cbor::Integer(i)) => {
                        return Ok(i128::from(*i).to_string().into_bytes())
                    }
                    _ => {}
                }
            }
            Err("SenML record without a value".into())
        }
        other => Err(format!("content format {other} not supported")),
    }
}

type TlvParts<'a> = (u8, u16, &'a [u8], &'a [u8]);

fn tlv_parse(bytes: &[u8]) -> Result<TlvParts<'_>, String> {
    let short = || "truncated TLV".to_string();
    let first = *bytes.first().ok_or_else(short)?;
    let kind = first >> 6;
    let mut at = 1;
    let id = if first & 0x20 != 0 {
        let b = bytes.get(1..3).ok_or_else(short)?;
        at += 2;
        u16::from_be_bytes([b[0], b[1]])
    } else {
        at += 1;
        u16::from(*bytes.get(1).ok_or_else(short)?)
    };
    let len_bytes = usize::from((first >> 3) & 0x03);
    let len = if len_bytes == 0 {
        usize::from(first & 0x07)
    } else {
        let b = bytes.get(at..at + len_bytes).ok_or_else(short)?;
        at += len_bytes;
        b.iter().fold(0usize, |acc, x| (acc << 8) | usize::from(*x))
    };
    let value = bytes.get(at..at + len).ok_or_else(short)?;
    Ok((kind, id, value, &bytes[at + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlv_of_a_string_and_an_int_round_trips() {
        let bytes = encode(TLV, "/3/0/3", true, &[(3, Value::Str("1.0.0".into()))]).unwrap();
        assert_eq!(bytes, [0xc5, 3, b'1', b'.', b'0', b'.', b'0']);
        assert_eq!(decode_single(TLV, 3, &bytes).unwrap(), b"1.0.0");
        let long = "coap://127.0.0.1:5683/ota/fw/1";
        let bytes = encode(TLV, "/5/0/1", true, &[(1, Value::Str(long.into()))]).unwrap();
        assert_eq!(&bytes[..3], [0xc8, 1, long.len() as u8]);
        assert_eq!(decode_single(TLV, 1, &bytes).unwrap(), long.as_bytes());
        let bytes = encode(TLV, "/5/0", false, &[(8, Value::Multi(vec![(0, 0)]))]).unwrap();
        assert_eq!(bytes, [0x83, 8, 0x41, 0, 0]);
        assert!(decode_single(TLV, 1, &[0xc8, 1]).is_err());
    }

    #[test]
    fn senml_reads_and_writes() {
        let json = encode(SENML_JSON, "/5/0", false, &[(3, Value::Int(2))]).unwrap();
        assert_eq!(json, br#"[{"n":"/5/0/3","v":2}]"#);
        let uri = br#"[{"n":"/5/0/1","vs":"coap://h/x"}]"#;
        assert_eq!(decode_single(SENML_JSON, 1, uri).unwrap(), b"coap://h/x");
        let cbor = encode(SENML_CBOR, "/3/0/3", true, &[(3, Value::Str("2.0".into()))]).unwrap();
        assert_eq!(decode_single(SENML_CBOR, 3, &cbor).unwrap(), b"2.0");
        assert!(encode(TEXT, "/5/0", false, &[(3, Value::Int(1))]).is_err());
    }
}

/// The simulator's encoding read back by the server's codecs: two
/// independent readings of TS Core §7.4 agree.
#[cfg(test)]
mod cross_check {
    use super::*;
    use crate::lwm2m::content::{decode, Path};

    #[test]
    fn the_servers_codecs_read_what_the_simulator_writes() {
        let instance = [
            (1, Value::Str("coap://127.0.0.1:5683/ota/fw/1".into())),
            (3, Value::Int(2)),
            (5, Value::Int(0)),
            (8, Value::Multi(vec![(0, 0)])),
            (9, Value::Int(2)),
        ];
        let base: Path = "/5/0".parse().unwrap();
        for format in [TLV, SENML_JSON, SENML_CBOR] {
            let bytes = encode(format, "/5/0", false, &instance).unwrap();
            let values = decode(format, &base, &bytes).unwrap_or_else(|e| panic!("{format}: {e}"));
            let get = |p: &str| {
                values
                    .iter()
                    .find(|v| v.path.to_string() == p)
                    .unwrap_or_else(|| panic!("{format}: no {p} in {values:?}"))
            };
            assert_eq!(get("/5/0/3").value.as_int(), Some(2), "{format}");
            assert_eq!(get("/5/0/9").value.as_int(), Some(2), "{format}");
            assert_eq!(get("/5/0/8/0").value.as_int(), Some(0), "{format}");
            assert_eq!(
                get("/5/0/1").value.as_str(),
                Some("coap://127.0.0.1:5683/ota/fw/1"),
                "{format}"
            );
        }
        let version: Path = "/3/0/3".parse().unwrap();
        for format in [TEXT, TLV, SENML_JSON, SENML_CBOR] {
            let bytes = encode(format, "/3/0/3", true, &[(3, Value::Str("2.0".into()))]).unwrap();
            let values =
                decode(format, &version, &bytes).unwrap_or_else(|e| panic!("{format}: {e}"));
            assert_eq!(values[0].value.as_str(), Some("2.0"), "{format}");
        }
    }
}

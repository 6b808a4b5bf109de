//! SenML (RFC 8428) as LwM2M 1.1 uses it (TS Core §7.4.5-7.4.6): JSON
//! (110, serde_json) and CBOR (112, ciborium). A record's name is the
//! running base name (`bn`) plus its own (`n`), e.g. `/3/0/` + `3`; the
//! value is `v` (number), `vs` (string), `vb` (boolean), `vd` (data: base64url
//! in JSON, a byte string in CBOR) or `vlo` (object link `O:I`, LwM2M's).
//!
//! No SenML crate on crates.io is maintained and speaks both encodings
//! with LwM2M's `vlo`; the record model is small enough to map by hand
//! onto serde_json / ciborium values.

use base64::Engine as _;
use ciborium::value::Value as Cbor;
use serde_json::Value as Json;

use super::{kind_of, ContentError, Kind, Path, ResourceValue, Value};

/// One record's value before the resource type is applied.
#[derive(Debug)]
enum Raw {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    Data(Vec<u8>),
    Link(String),
}

struct Record {
    bn: Option<String>,
    n: Option<String>,
    value: Option<Raw>,
}

fn err(why: impl Into<String>) -> ContentError {
    ContentError::SenMl(why.into())
}

fn b64_decode(text: &str) -> Result<Vec<u8>, ContentError> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    // RFC 8428 says base64url without padding; some clients pad or use
    // the standard alphabet.
    let trimmed = text.trim_end_matches('=');
    URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| STANDARD.decode(text))
        .map_err(|_| err("vd is not base64"))
}

/// Applies base names and resource types to decoded records.
fn resolve(
    base: &Path,
    records: Vec<Record>,
    kind: &dyn Fn(&Path) -> Option<Kind>,
) -> Result<Vec<ResourceValue>, ContentError> {
    let mut bn = String::new();
    let mut out = Vec::new();
    for record in records {
        if let Some(b) = record.bn {
            bn = b;
        }
        let Some(raw) = record.value else {
            // A name without a value (a read-composite request): nothing
            // to decode.
            continue;
        };
        let name = format!("{bn}{}", record.n.as_deref().unwrap_or(""));
        let path: Path = if name.is_empty() {
            *base
        } else {
            name.parse()?
        };
        if path.resource.is_none() {
            return Err(ContentError::BadPath(name));
        }
        let type_path = Path {
            resource_instance: None,
            ..path
        };
        let bad = |why: &str| ContentError::BadValue {
            path: path.to_string(),
            why: why.to_string(),
        };
        let value = match (raw, kind(&type_path)) {
            (Raw::Int(v), Some(Kind::Time)) => Value::Time(v),
            (Raw::Int(v), Some(Kind::Float)) => Value::Float(v as f64),
            (Raw::Int(v), _) => Value::Int(v),
            (Raw::Float(f), Some(Kind::Int | Kind::Time)) => {
                if f.fract() != 0.0 || f.abs() > 9.0e15 {
                    return Err(bad("integer resource with a fractional value"));
                }
                if kind(&type_path) == Some(Kind::Time) {
                    Value::Time(f as i64)
                } else {
                    Value::Int(f as i64)
                }
            }
            (Raw::Float(f), _) => Value::Float(f),
            (Raw::Str(s), Some(Kind::Opaque)) => Value::Opaque(s.into_bytes()),
            (Raw::Str(s), _) => Value::String(s),
            (Raw::Bool(b), _) => Value::Bool(b),
            (Raw::Data(d), _) => Value::Opaque(d),
            (Raw::Link(l), _) => {
                let (o, i) = l.split_once(':').ok_or_else(|| bad("vlo must be O:I"))?;
                Value::ObjLnk(
                    o.parse().map_err(|_| bad("vlo must be O:I"))?,
                    i.parse().map_err(|_| bad("vlo must be O:I"))?,
                )
            }
        };
        out.push(ResourceValue::new(path, value));
    }
    Ok(out)
}

pub fn decode_json(base: &Path, bytes: &[u8]) -> Result<Vec<ResourceValue>, ContentError> {
    decode_json_with(base, bytes, &kind_of)
}

pub fn decode_json_with(
    base: &Path,
    bytes: &[u8],
    kind: &dyn Fn(&Path) -> Option<Kind>,
) -> Result<Vec<ResourceValue>, ContentError> {
    let json: Vec<serde_json::Map<String, Json>> =
        serde_json::from_slice(bytes).map_err(|e| err(format!("not a SenML-JSON array: {e}")))?;
    let mut records = Vec::with_capacity(json.len());
    for map in json {
        let text = |key: &str| -> Result<Option<String>, ContentError> {
            match map.get(key) {
                None => Ok(None),
                Some(Json::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(err(format!("{key} must be a string"))),
            }
        };
        let value = if let Some(v) = map.get("v") {
            let n = v.as_number().ok_or_else(|| err("v must be a number"))?;
            Some(match n.as_i64() {
                Some(i) => Raw::Int(i),
                None => Raw::Float(n.as_f64().ok_or_else(|| err("v out of range"))?),
            })
        } else if let Some(s) = text("vs")? {
            Some(Raw::Str(s))
        } else if let Some(b) = map.get("vb") {
            Some(Raw::Bool(
                b.as_bool().ok_or_else(|| err("vb must be a boolean"))?,
            ))
        } else if let Some(d) = text("vd")? {
            Some(Raw::Data(b64_decode(&d)?))
        } else {
            text("vlo")?.map(Raw::Link)
        };
        records.push(Record {
            bn: text("bn")?,
            n: text("n")?,
            value,
        });
    }
    resolve(base, records, kind)
}

pub fn encode_json(values: &[ResourceValue]) -> Result<Vec<u8>, ContentError> {
    let records: Vec<Json> = values
        .iter()
        .map(|rv| {
            let mut map = serde_json::Map::new();
            map.insert("n".into(), Json::String(rv.path.to_string()));
            let (key, value) = match &rv.value {
                Value::Int(v) | Value::Time(v) => ("v", Json::from(*v)),
                Value::Float(f) => ("v", Json::from(*f)),
                Value::Bool(b) => ("vb", Json::Bool(*b)),
                Value::String(s) => ("vs", Json::String(s.clone())),
                Value::Opaque(d) => (
                    "vd",
                    Json::String(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d)),
                ),
                Value::ObjLnk(o, i) => ("vlo", Json::String(format!("{o}:{i}"))),
            };
            map.insert(key.into(), value);
            Json::Object(map)
        })
        .collect();
    serde_json::to_vec(&records).map_err(|e| err(e.to_string()))
}

// SenML-CBOR labels (RFC 8428 §6); LwM2M's object link is the text label "vlo".
const BN: i64 = -2;
const N: i64 = 0;
const V: i64 = 2;
const VS: i64 = 3;
const VB: i64 = 4;
const VD: i64 = 8;

pub fn decode_cbor(base: &Path, bytes: &[u8]) -> Result<Vec<ResourceValue>, ContentError> {
    decode_cbor_with(base, bytes, &kind_of)
}

pub fn decode_cbor_with(
    base: &Path,
    bytes: &[u8],
    kind: &dyn Fn(&Path) -> Option<Kind>,
) -> Result<Vec<ResourceValue>, ContentError> {
    let cbor: Cbor = ciborium::de::from_reader(bytes).map_err(|e| err(format!("not CBOR: {e}")))?;
    let Cbor::Array(items) = cbor else {
        return Err(err("SenML-CBOR must be an array"));
    };
    let mut records = Vec::with_capacity(items.len());
    for item in items {
        let Cbor::Map(entries) = item else {
            return Err(err("a SenML record must be a map"));
        };
        let mut record = Record {
            bn: None,
            n: None,
            value: None,
        };
        for (key, value) in entries {
            let label = match &key {
                Cbor::Integer(i) => i64::try_from(*i).ok(),
                Cbor::Text(t) if t == "vlo" => {
                    let Cbor::Text(l) = value else {
                        return Err(err("vlo must be text"));
                    };
                    record.value = Some(Raw::Link(l));
                    continue;
                }
                _ => None,
            };
            let text = |v: Cbor| match v {
                Cbor::Text(s) => Ok(s),
                _ => Err(err("name must be text")),
            };
            match label {
                Some(BN) => record.bn = Some(text(value)?),
                Some(N) => record.n = Some(text(value)?),
                Some(V) => {
                    record.value = Some(match value {
                        Cbor::Integer(i) => {
                            Raw::Int(i64::try_from(i).map_err(|_| err("v out of range"))?)
                        }
                        Cbor::Float(f) => Raw::Float(f),
                        _ => return Err(err("v must be a number")),
                    })
                }
                Some(VS) => record.value = Some(Raw::Str(text(value)?)),
                Some(VB) => match value {
                    Cbor::Bool(b) => record.value = Some(Raw::Bool(b)),
                    _ => return Err(err("vb must be a boolean")),
                },
                Some(VD) => match value {
                    Cbor::Bytes(b) => record.value = Some(Raw::Data(b)),
                    _ => return Err(err("vd must be a byte string")),
                },
                // Time, units and unknown labels carry nothing we use.
                _ => {}
            }
        }
        records.push(record);
    }
    resolve(base, records, kind)
}

pub fn encode_cbor(values: &[ResourceValue]) -> Result<Vec<u8>, ContentError> {
    let records: Vec<Cbor> = values
        .iter()
        .map(|rv| {
            let (key, value) = match &rv.value {
                Value::Int(v) | Value::Time(v) => (Cbor::from(V), Cbor::from(*v)),
                Value::Float(f) => (Cbor::from(V), Cbor::Float(*f)),
                Value::Bool(b) => (Cbor::from(VB), Cbor::Bool(*b)),
                Value::String(s) => (Cbor::from(VS), Cbor::Text(s.clone())),
                Value::Opaque(d) => (Cbor::from(VD), Cbor::Bytes(d.clone())),
                Value::ObjLnk(o, i) => (Cbor::Text("vlo".into()), Cbor::Text(format!("{o}:{i}"))),
            };
            Cbor::Map(vec![
                (Cbor::from(N), Cbor::Text(rv.path.to_string())),
                (key, value),
            ])
        })
        .collect();
    let mut out = Vec::new();
    ciborium::ser::into_writer(&Cbor::Array(records), &mut out).map_err(|e| err(e.to_string()))?;
    Ok(out)
}

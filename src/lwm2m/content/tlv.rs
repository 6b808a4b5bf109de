//! OMA TLV (Content-Format 11542; LwM2M 1.0 TS §6.4.3, 1.1 TS Core §7.4.3).
//!
//! Hand-written: no maintained Rust crate implements OMA's TLV (the
//! crates named "tlv" are BER-TLV for smart cards, a different layout),
//! and the format is a 1-byte type field, an 8/16-bit id, a 0-24-bit length.
//!
//! Type byte: bits 7-6 what the entry is (00 object instance, 01 resource
//! instance, 10 multiple resource, 11 resource with value), bit 5 the id
//! width (0 = 8 bits, 1 = 16), bits 4-3 the length's width (00 = the
//! length is bits 2-0, 01/10/11 = 8/16/24 bits follow the id).

use std::collections::BTreeMap;

use super::{kind_of, ContentError, Kind, Path, ResourceValue, Value};

const OBJECT_INSTANCE: u8 = 0b00;
const RESOURCE_INSTANCE: u8 = 0b01;
const MULTIPLE_RESOURCE: u8 = 0b10;
const RESOURCE: u8 = 0b11;

/// Object instance > multiple resource > resource instance: three levels
/// at most, so a crafted payload cannot recurse deeper.
const MAX_DEPTH: usize = 3;

/// Decodes with the types of [`kind_of`], opaque for unknown resources.
pub fn decode(base: &Path, bytes: &[u8]) -> Result<Vec<ResourceValue>, ContentError> {
    decode_with(base, bytes, &|path| kind_of(path).unwrap_or(Kind::Opaque))
}

/// Decodes with the types `kind` gives each resource path.
pub fn decode_with(
    base: &Path,
    bytes: &[u8],
    kind: &dyn Fn(&Path) -> Kind,
) -> Result<Vec<ResourceValue>, ContentError> {
    let mut out = Vec::new();
    let start = Path {
        resource: base.resource,
        instance: base.instance,
        resource_instance: None,
        object: base.object,
    };
    walk(bytes, start, 0, kind, &mut out)?;
    Ok(out)
}

struct Entry<'a> {
    what: u8,
    id: u16,
    value: &'a [u8],
}

/// Splits one entry off the front of `bytes`.
fn entry(bytes: &[u8]) -> Result<(Entry<'_>, &[u8]), ContentError> {
    let (&ty, rest) = bytes
        .split_first()
        .ok_or(ContentError::Tlv("empty entry"))?;
    let id_len = if ty & 0x20 != 0 { 2 } else { 1 };
    let len_len = usize::from((ty >> 3) & 0b11);
    if rest.len() < id_len + len_len {
        return Err(ContentError::Tlv("header cut short"));
    }
    let id = if id_len == 2 {
        u16::from_be_bytes([rest[0], rest[1]])
    } else {
        u16::from(rest[0])
    };
    let rest = &rest[id_len..];
    let length = if len_len == 0 {
        usize::from(ty & 0b111)
    } else {
        rest[..len_len]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    let rest = &rest[len_len..];
    if rest.len() < length {
        return Err(ContentError::Tlv("value cut short"));
    }
    let (value, rest) = rest.split_at(length);
    Ok((
        Entry {
            what: ty >> 6,
            id,
            value,
        },
        rest,
    ))
}

fn walk(
    mut bytes: &[u8],
    at: Path,
    depth: usize,
    kind: &dyn Fn(&Path) -> Kind,
    out: &mut Vec<ResourceValue>,
) -> Result<(), ContentError> {
    if depth > MAX_DEPTH {
        return Err(ContentError::Tlv("nested too deep"));
    }
    while !bytes.is_empty() {
        let (e, rest) = entry(bytes)?;
        bytes = rest;
        match e.what {
            OBJECT_INSTANCE if at.resource.is_none() || depth == 0 => {
                let inner = Path::instance(at.object, e.id);
                walk(e.value, inner, depth + 1, kind, out)?;
            }
            MULTIPLE_RESOURCE => {
                let instance = at
                    .instance
                    .ok_or(ContentError::Tlv("resource outside an instance"))?;
                let inner = Path::resource(at.object, instance, e.id);
                walk(e.value, inner, depth + 1, kind, out)?;
            }
            RESOURCE => {
                let instance = at
                    .instance
                    .ok_or(ContentError::Tlv("resource outside an instance"))?;
                let path = Path::resource(at.object, instance, e.id);
                out.push(ResourceValue::new(
                    path,
                    value(&path, kind(&path), e.value)?,
                ));
            }
            RESOURCE_INSTANCE => {
                let (Some(instance), Some(resource)) = (at.instance, at.resource) else {
                    return Err(ContentError::Tlv("resource instance outside a resource"));
                };
                let path = Path::resource_instance(at.object, instance, resource, e.id);
                let type_path = Path::resource(at.object, instance, resource);
                out.push(ResourceValue::new(
                    path,
                    value(&path, kind(&type_path), e.value)?,
                ));
            }
            _ => return Err(ContentError::Tlv("object instance inside a resource")),
        }
    }
    Ok(())
}

fn bad(path: &Path, why: &str) -> ContentError {
    ContentError::BadValue {
        path: path.to_string(),
        why: why.to_string(),
    }
}

fn int(path: &Path, bytes: &[u8]) -> Result<i64, ContentError> {
    Ok(match bytes.len() {
        1 => i64::from(bytes[0] as i8),
        2 => i64::from(i16::from_be_bytes([bytes[0], bytes[1]])),
        4 => i64::from(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])),
        8 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(bytes);
            i64::from_be_bytes(b)
        }
        _ => return Err(bad(path, "integer must be 1, 2, 4 or 8 bytes")),
    })
}

fn value(path: &Path, kind: Kind, bytes: &[u8]) -> Result<Value, ContentError> {
    Ok(match kind {
        Kind::Int => Value::Int(int(path, bytes)?),
        Kind::Time => Value::Time(int(path, bytes)?),
        Kind::Float => match bytes.len() {
            4 => Value::Float(f64::from(f32::from_be_bytes([
                bytes[0], bytes[1], bytes[2], bytes[3],
            ]))),
            8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(bytes);
                Value::Float(f64::from_be_bytes(b))
            }
            _ => return Err(bad(path, "float must be 4 or 8 bytes")),
        },
        Kind::Bool => match bytes {
            [0] => Value::Bool(false),
            [1] => Value::Bool(true),
            _ => return Err(bad(path, "boolean must be one byte 0 or 1")),
        },
        Kind::String => Value::String(
            String::from_utf8(bytes.to_vec()).map_err(|_| bad(path, "string is not UTF-8"))?,
        ),
        Kind::Opaque => Value::Opaque(bytes.to_vec()),
        Kind::ObjLnk => match bytes {
            [a, b, c, d] => {
                Value::ObjLnk(u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d]))
            }
            _ => return Err(bad(path, "object link must be 4 bytes")),
        },
    })
}

/// The shortest of 1, 2, 4, 8 bytes that holds `v` (TS §6.4.3: integers
/// are 1, 2, 4 or 8 bytes, two's complement, big-endian).
fn int_bytes(v: i64) -> Vec<u8> {
    if let Ok(v) = i8::try_from(v) {
        v.to_be_bytes().to_vec()
    } else if let Ok(v) = i16::try_from(v) {
        v.to_be_bytes().to_vec()
    } else if let Ok(v) = i32::try_from(v) {
        v.to_be_bytes().to_vec()
    } else {
        v.to_be_bytes().to_vec()
    }
}

fn value_bytes(value: &Value) -> Vec<u8> {
    match value {
        Value::Int(v) | Value::Time(v) => int_bytes(*v),
        Value::Float(f) => f.to_be_bytes().to_vec(),
        Value::Bool(b) => vec![u8::from(*b)],
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Opaque(b) => b.clone(),
        Value::ObjLnk(o, i) => {
            let mut b = o.to_be_bytes().to_vec();
            b.extend_from_slice(&i.to_be_bytes());
            b
        }
    }
}

fn put(out: &mut Vec<u8>, what: u8, id: u16, value: &[u8]) -> Result<(), ContentError> {
    let len = value.len();
    if len >= 1 << 24 {
        return Err(ContentError::Tlv("value longer than 24 bits of length"));
    }
    let mut ty = what << 6;
    if id > 0xff {
        ty |= 0x20;
    }
    let len_bytes: &[u8] = &(len as u32).to_be_bytes();
    let len_field = if len < 8 {
        ty |= len as u8;
        &len_bytes[4..]
    } else if len < 1 << 8 {
        ty |= 0b01 << 3;
        &len_bytes[3..]
    } else if len < 1 << 16 {
        ty |= 0b10 << 3;
        &len_bytes[2..]
    } else {
        ty |= 0b11 << 3;
        &len_bytes[1..]
    };
    out.push(ty);
    if id > 0xff {
        out.extend_from_slice(&id.to_be_bytes());
    } else {
        out.push(id as u8);
    }
    out.extend_from_slice(len_field);
    out.extend_from_slice(value);
    Ok(())
}

/// Resources of one instance, in id order: a single value or instances.
type Resources<'a> = BTreeMap<u16, Vec<(Option<u16>, &'a Value)>>;

fn encode_resources(resources: &Resources<'_>) -> Result<Vec<u8>, ContentError> {
    let mut out = Vec::new();
    for (id, values) in resources {
        match values.as_slice() {
            [(None, value)] => put(&mut out, RESOURCE, *id, &value_bytes(value))?,
            many => {
                let mut inner = Vec::new();
                for (ri, value) in many {
                    let ri = ri.ok_or(ContentError::Tlv("single and multiple values mixed"))?;
                    put(&mut inner, RESOURCE_INSTANCE, ri, &value_bytes(value))?;
                }
                put(&mut out, MULTIPLE_RESOURCE, *id, &inner)?;
            }
        }
    }
    Ok(out)
}

/// Encodes `values` as a reply to (or write of) `base`: object instances
/// at the top for `/O`, resources for `/O/I` and `/O/I/R`, a resource
/// instance for `/O/I/R/RI`.
pub fn encode(base: &Path, values: &[ResourceValue]) -> Result<Vec<u8>, ContentError> {
    let mut instances: BTreeMap<u16, Resources<'_>> = BTreeMap::new();
    for v in values {
        let (Some(instance), Some(resource)) = (v.path.instance, v.path.resource) else {
            return Err(ContentError::BadPath(v.path.to_string()));
        };
        if v.path.object != base.object || !v.path.starts_with(base) {
            return Err(ContentError::BadPath(v.path.to_string()));
        }
        instances
            .entry(instance)
            .or_default()
            .entry(resource)
            .or_default()
            .push((v.path.resource_instance, &v.value));
    }
    if base.resource_instance.is_some() {
        return match values {
            [one] => {
                let mut out = Vec::new();
                let ri = one.path.resource_instance.unwrap_or_default();
                put(&mut out, RESOURCE_INSTANCE, ri, &value_bytes(&one.value))?;
                Ok(out)
            }
            _ => Err(ContentError::NotSingle("a resource instance")),
        };
    }
    if base.instance.is_some() {
        return match instances.values().next() {
            Some(resources) => encode_resources(resources),
            None => Ok(Vec::new()),
        };
    }
    let mut out = Vec::new();
    for (id, resources) in &instances {
        put(
            &mut out,
            OBJECT_INSTANCE,
            *id,
            &encode_resources(resources)?,
        )?;
    }
    Ok(out)
}

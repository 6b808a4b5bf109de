//! LwM2M content formats (OMA LwM2M 1.1 TS Core §7.4): the value model
//! every codec reads and writes, and one entry point per direction
//! ([`decode`], [`encode`]) that picks the codec by Content-Format.
//!
//! | format | code | file |
//! |---|---|---|
//! | plain text | 0 | `text.rs` |
//! | CoRE link format | 40 | `link.rs` (registration payloads) |
//! | opaque | 42 | `text.rs` |
//! | SenML-JSON | 110 | `senml.rs` (serde_json) |
//! | SenML-CBOR | 112 | `senml.rs` (ciborium) |
//! | TLV | 11542 | `tlv.rs` |
//!
//! TLV and plain text carry no type on the wire: decoding them needs the
//! resource's type, which [`kind_of`] knows for the objects lwota drives
//! (3 Device, 5 Firmware Update, 9 Software Management) and which falls
//! back to opaque (TLV) or string (text) for any other resource.

pub mod link;
pub mod senml;
mod text;
pub mod tlv;

use std::fmt;
use std::str::FromStr;

pub use link::{parse_links, Link, RegisteredObjects};

/// Content-Format numbers (IANA CoAP registry).
pub mod format {
    pub const TEXT: u16 = 0;
    pub const LINK: u16 = 40;
    pub const OPAQUE: u16 = 42;
    pub const SENML_JSON: u16 = 110;
    pub const SENML_CBOR: u16 = 112;
    pub const TLV: u16 = 11542;
    /// The pre-registration TLV number LwM2M 1.0 clients may still use.
    pub const TLV_OLD: u16 = 1542;
}

/// The data types of LwM2M resources (TS Core Appendix C).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Float,
    Bool,
    String,
    Opaque,
    ObjLnk,
    Time,
}

/// One resource (instance) value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
    Bool(bool),
    String(String),
    Opaque(Vec<u8>),
    /// Object link: (object id, instance id).
    ObjLnk(u16, u16),
    /// Seconds since the Unix epoch.
    Time(i64),
}

impl Value {
    pub fn kind(&self) -> Kind {
        match self {
            Value::Int(_) => Kind::Int,
            Value::Float(_) => Kind::Float,
            Value::Bool(_) => Kind::Bool,
            Value::String(_) => Kind::String,
            Value::Opaque(_) => Kind::Opaque,
            Value::ObjLnk(..) => Kind::ObjLnk,
            Value::Time(_) => Kind::Time,
        }
    }

    /// The value as an integer, when it is one (or a time, or a float with
    /// no fraction: SenML has one number type).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(v) | Value::Time(v) => Some(*v),
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// The value as text, when it is a string (or opaque UTF-8).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            Value::Opaque(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }
}

/// `/O[/I[/R[/RI]]]`: what a request addresses or a value belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Path {
    pub object: u16,
    pub instance: Option<u16>,
    pub resource: Option<u16>,
    pub resource_instance: Option<u16>,
}

impl Path {
    pub const fn object(object: u16) -> Path {
        Path {
            object,
            instance: None,
            resource: None,
            resource_instance: None,
        }
    }

    pub const fn instance(object: u16, instance: u16) -> Path {
        Path {
            object,
            instance: Some(instance),
            resource: None,
            resource_instance: None,
        }
    }

    pub const fn resource(object: u16, instance: u16, resource: u16) -> Path {
        Path {
            object,
            instance: Some(instance),
            resource: Some(resource),
            resource_instance: None,
        }
    }

    pub const fn resource_instance(object: u16, instance: u16, resource: u16, ri: u16) -> Path {
        Path {
            object,
            instance: Some(instance),
            resource: Some(resource),
            resource_instance: Some(ri),
        }
    }

    /// How many ids the path has (1 to 4).
    pub fn depth(&self) -> usize {
        1 + usize::from(self.instance.is_some())
            + usize::from(self.resource.is_some())
            + usize::from(self.resource_instance.is_some())
    }

    /// The path's segments, for Uri-Path options.
    pub fn segments(&self) -> Vec<String> {
        [
            Some(self.object),
            self.instance,
            self.resource,
            self.resource_instance,
        ]
        .into_iter()
        .flatten()
        .map(|id| id.to_string())
        .collect()
    }

    /// Whether `self` is `other` or below it.
    pub fn starts_with(&self, other: &Path) -> bool {
        self.object == other.object
            && (other.instance.is_none() || self.instance == other.instance)
            && (other.resource.is_none() || self.resource == other.resource)
            && (other.resource_instance.is_none()
                || self.resource_instance == other.resource_instance)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for segment in self.segments() {
            write!(f, "/{segment}")?;
        }
        Ok(())
    }
}

impl FromStr for Path {
    type Err = ContentError;

    /// `/3`, `/3/0`, `/3/0/3`, `/3/0/7/1` (a trailing `/` is allowed:
    /// SenML base names end with one).
    fn from_str(s: &str) -> Result<Path, ContentError> {
        let bad = || ContentError::BadPath(s.chars().take(64).collect());
        let rest = s.strip_prefix('/').ok_or_else(bad)?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let ids = rest
            .split('/')
            .map(|p| p.parse::<u16>().map_err(|_| bad()))
            .collect::<Result<Vec<u16>, _>>()?;
        match ids.as_slice() {
            [o] => Ok(Path::object(*o)),
            [o, i] => Ok(Path::instance(*o, *i)),
            [o, i, r] => Ok(Path::resource(*o, *i, *r)),
            [o, i, r, ri] => Ok(Path::resource_instance(*o, *i, *r, *ri)),
            _ => Err(bad()),
        }
    }
}

/// A value at its full path (resource or resource instance).
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceValue {
    pub path: Path,
    pub value: Value,
}

impl ResourceValue {
    pub fn new(path: Path, value: Value) -> ResourceValue {
        ResourceValue { path, value }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    #[error("unsupported content format {0}")]
    Unsupported(u16),
    #[error("bad path {0:?}")]
    BadPath(String),
    #[error("truncated or malformed TLV: {0}")]
    Tlv(&'static str),
    #[error("bad value for {path}: {why}")]
    BadValue { path: String, why: String },
    #[error("malformed SenML: {0}")]
    SenMl(String),
    #[error("malformed link format: {0}")]
    Link(String),
    #[error("{0} needs exactly one resource value")]
    NotSingle(&'static str),
    #[error("payload too large ({0} values, at most {MAX_VALUES})")]
    TooMany(usize),
}

/// Most values one payload may decode to: a peer controls the payload,
/// and no object lwota reads has more than a few dozen resources.
pub const MAX_VALUES: usize = 1024;

/// The type of a resource of the objects lwota drives; `None` for the
/// rest (the caller's fallback decides).
pub fn kind_of(path: &Path) -> Option<Kind> {
    use Kind::*;
    let resource = path.resource?;
    let kind = match (path.object, resource) {
        // Object 3, Device.
        (3, 0..=3) | (3, 14 | 15 | 17..=19) => String,
        (3, 6..=11 | 20 | 21) => Int,
        (3, 13) => Time,
        (3, 16) => String,
        // Object 5, Firmware Update.
        (5, 0) => Opaque,
        (5, 1 | 6 | 7) => String,
        (5, 3 | 5 | 8 | 9) => Int,
        (5, 4) => Bool,
        // Object 9, Software Management.
        (9, 0 | 1 | 3 | 14 | 15) => String,
        (9, 2) => Opaque,
        (9, 7 | 9) => Int,
        (9, 12) => Bool,
        (9, 17) => ObjLnk,
        _ => return None,
    };
    Some(kind)
}

/// Decodes a payload in Content-Format `format` addressed to `base` (the
/// request's path). Types of untyped formats come from [`kind_of`].
pub fn decode(format: u16, base: &Path, bytes: &[u8]) -> Result<Vec<ResourceValue>, ContentError> {
    let values = match format {
        format::TEXT => vec![text::decode_text(base, bytes)?],
        format::OPAQUE => vec![text::decode_opaque(base, bytes)?],
        format::TLV | format::TLV_OLD => tlv::decode(base, bytes)?,
        format::SENML_JSON => senml::decode_json(base, bytes)?,
        format::SENML_CBOR => senml::decode_cbor(base, bytes)?,
        other => return Err(ContentError::Unsupported(other)),
    };
    if values.len() > MAX_VALUES {
        return Err(ContentError::TooMany(values.len()));
    }
    Ok(values)
}

/// Encodes `values` (all below `base`) in Content-Format `format`.
/// Plain text and opaque take exactly one value.
pub fn encode(format: u16, base: &Path, values: &[ResourceValue]) -> Result<Vec<u8>, ContentError> {
    match format {
        format::TEXT => match values {
            [one] => Ok(text::encode_text(&one.value)),
            _ => Err(ContentError::NotSingle("text/plain")),
        },
        format::OPAQUE => match values {
            [ResourceValue {
                value: Value::Opaque(bytes),
                ..
            }] => Ok(bytes.clone()),
            _ => Err(ContentError::NotSingle("opaque")),
        },
        format::TLV | format::TLV_OLD => tlv::encode(base, values),
        format::SENML_JSON => senml::encode_json(values),
        format::SENML_CBOR => senml::encode_cbor(values),
        other => Err(ContentError::Unsupported(other)),
    }
}

/// The one value at `path` in `values`, if any.
pub fn find<'a>(values: &'a [ResourceValue], path: &Path) -> Option<&'a Value> {
    values.iter().find(|v| v.path == *path).map(|v| &v.value)
}

/// Every Content-Format [`decode`] reads, for Accept negotiation.
pub const DECODABLE: [u16; 6] = [
    format::TEXT,
    format::OPAQUE,
    format::TLV,
    format::TLV_OLD,
    format::SENML_JSON,
    format::SENML_CBOR,
];

#[cfg(test)]
mod tests;

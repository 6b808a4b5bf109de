//! Plain text (0) and opaque (42): one resource value each (TS Core
//! §7.4.1, §7.4.2). Text numbers are decimal, booleans `0`/`1`, object
//! links `O:I`, opaque values base64 (1.1).

use base64::Engine as _;

use super::{kind_of, ContentError, Kind, Path, ResourceValue, Value};

fn single(base: &Path, what: &'static str) -> Result<(), ContentError> {
    if base.resource.is_none() {
        return Err(ContentError::NotSingle(what));
    }
    Ok(())
}

pub fn decode_text(base: &Path, bytes: &[u8]) -> Result<ResourceValue, ContentError> {
    single(base, "text/plain")?;
    let bad = |why: &str| ContentError::BadValue {
        path: base.to_string(),
        why: why.to_string(),
    };
    let text = std::str::from_utf8(bytes).map_err(|_| bad("text is not UTF-8"))?;
    let value = match kind_of(base).unwrap_or(Kind::String) {
        Kind::Int => Value::Int(text.trim().parse().map_err(|_| bad("not an integer"))?),
        Kind::Time => Value::Time(text.trim().parse().map_err(|_| bad("not a time"))?),
        Kind::Float => Value::Float(text.trim().parse().map_err(|_| bad("not a float"))?),
        Kind::Bool => match text.trim() {
            "0" | "false" => Value::Bool(false),
            "1" | "true" => Value::Bool(true),
            _ => return Err(bad("boolean must be 0 or 1")),
        },
        Kind::String => Value::String(text.to_string()),
        Kind::Opaque => Value::Opaque(
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|_| bad("opaque text must be base64"))?,
        ),
        Kind::ObjLnk => {
            let (o, i) = text
                .trim()
                .split_once(':')
                .ok_or_else(|| bad("object link must be O:I"))?;
            Value::ObjLnk(
                o.parse().map_err(|_| bad("object link must be O:I"))?,
                i.parse().map_err(|_| bad("object link must be O:I"))?,
            )
        }
    };
    Ok(ResourceValue::new(*base, value))
}

pub fn decode_opaque(base: &Path, bytes: &[u8]) -> Result<ResourceValue, ContentError> {
    single(base, "opaque")?;
    Ok(ResourceValue::new(*base, Value::Opaque(bytes.to_vec())))
}

pub fn encode_text(value: &Value) -> Vec<u8> {
    match value {
        Value::Int(v) | Value::Time(v) => v.to_string().into_bytes(),
        Value::Float(f) => f.to_string().into_bytes(),
        Value::Bool(b) => {
            if *b {
                b"1".to_vec()
            } else {
                b"0".to_vec()
            }
        }
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Opaque(b) => base64::engine::general_purpose::STANDARD
            .encode(b)
            .into_bytes(),
        Value::ObjLnk(o, i) => format!("{o}:{i}").into_bytes(),
    }
}

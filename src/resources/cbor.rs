//! Reading the small CBOR maps devices send, with messages that say which
//! field is wrong.

use ciborium::Value;

pub struct CborMap(Vec<(Value, Value)>);

impl CborMap {
    pub fn parse(payload: &[u8]) -> Result<CborMap, String> {
        if payload.is_empty() {
            return Err("empty payload: a CBOR map is expected".into());
        }
        let mut reader = payload;
        let value: Value =
            ciborium::from_reader(&mut reader).map_err(|e| format!("bad CBOR: {e}"))?;
        if !reader.is_empty() {
            return Err("trailing bytes after the CBOR map".into());
        }
        match value {
            Value::Map(entries) => Ok(CborMap(entries)),
            _ => Err("payload must be a CBOR map".into()),
        }
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|(k, _)| k.as_text() == Some(key))
            .map(|(_, v)| v)
    }

    pub fn text(&self, key: &str) -> Result<Option<String>, String> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Text(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("\"{key}\" must be a text string")),
        }
    }

    pub fn required_text(&self, key: &str) -> Result<String, String> {
        self.text(key)?
            .ok_or_else(|| format!("\"{key}\" (text string) is required"))
    }

    pub fn uint(&self, key: &str, max: u64) -> Result<Option<u64>, String> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Integer(i)) => {
                let n = u64::try_from(i128::from(*i))
                    .map_err(|_| format!("\"{key}\" must not be negative"))?;
                if n > max {
                    return Err(format!("\"{key}\" must be at most {max}"));
                }
                Ok(Some(n))
            }
            Some(_) => Err(format!("\"{key}\" must be an unsigned integer")),
        }
    }
}

/// Encodes a map with text keys.
pub fn encode_map(entries: Vec<(&str, Value)>) -> Vec<u8> {
    let map = Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::Text(k.to_string()), v))
            .collect(),
    );
    let mut out = Vec::with_capacity(128);
    if let Err(e) = ciborium::into_writer(&map, &mut out) {
        tracing::error!("cbor encode failed: {e}");
    }
    out
}

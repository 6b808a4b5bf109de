//! Which content format to ask for (the Accept option of a read or
//! observe), by the client's LwM2M version, and the fallback when the
//! client answers 4.06 Not Acceptable.
//!
//! LwM2M 1.0 made TLV the one format every client must speak; plain text
//! is optional there. Single values are still asked for in text first:
//! text-only 1.0 clients exist (lwm2m-node-lib, Wakaama built without TLV)
//! and some of them drop a TLV read without any answer, which would stall
//! the update for a whole CON retransmission window, while TLV-only 1.0
//! clients answer a text Accept with 4.06 and are asked again in TLV. From 1.1 on, plain text is the single-resource format clients
//! speak (Wakaama has no TLV compiled in by default and answers 5.00 to
//! a read without Accept), and SenML-JSON the multi-value one. A client
//! that refuses the first choice with 4.06 is asked again in the next
//! format; the format it accepted is kept for the rest of the session.

use super::content::format;

/// Whether a read is of one value (`/O/I/R` of a single resource) or of
/// several (a multi-instance resource, an instance).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Single,
    Multi,
}

/// The formats still worth asking a client for, best first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preference {
    single: Vec<u16>,
    multi: Vec<u16>,
}

impl Preference {
    /// The order for a client that registered with `lwm2m=version`.
    pub fn for_version(version: &str) -> Preference {
        if version == "1.0" {
            Preference {
                single: vec![format::TEXT, format::TLV],
                multi: vec![format::TLV, format::SENML_JSON],
            }
        } else {
            Preference {
                single: vec![format::TEXT, format::SENML_JSON, format::TLV],
                multi: vec![format::SENML_JSON, format::TLV, format::SENML_CBOR],
            }
        }
    }

    fn list(&mut self, shape: Shape) -> &mut Vec<u16> {
        match shape {
            Shape::Single => &mut self.single,
            Shape::Multi => &mut self.multi,
        }
    }

    /// The Accept for the next read of this shape.
    pub fn accept(&self, shape: Shape) -> u16 {
        let list = match shape {
            Shape::Single => &self.single,
            Shape::Multi => &self.multi,
        };
        list.first().copied().unwrap_or(format::TEXT)
    }

    /// The client refused `refused` with 4.06: the next format to try, or
    /// `None` when there is none left (the 4.06 then stands).
    pub fn refused(&mut self, shape: Shape, refused: u16) -> Option<u16> {
        let list = self.list(shape);
        if list.len() <= 1 || !list.contains(&refused) {
            return None;
        }
        list.retain(|f| *f != refused);
        list.first().copied()
    }
}

/// Whether a response code is 4.06 Not Acceptable.
pub fn not_acceptable(code: &str) -> bool {
    code == "4.06"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lwm2m_10_asks_for_text_first_then_tlv() {
        let mut p = Preference::for_version("1.0");
        assert_eq!(p.accept(Shape::Single), format::TEXT);
        assert_eq!(p.accept(Shape::Multi), format::TLV);
        assert_eq!(p.refused(Shape::Single, format::TEXT), Some(format::TLV));
        assert_eq!(p.accept(Shape::Single), format::TLV, "kept for later reads");
        assert_eq!(p.refused(Shape::Single, format::TLV), None, "none left");
        assert_eq!(
            p.refused(Shape::Multi, format::TLV),
            Some(format::SENML_JSON)
        );
    }

    #[test]
    fn lwm2m_11_asks_for_text_then_senml_then_tlv() {
        let mut p = Preference::for_version("1.1");
        assert_eq!(p.accept(Shape::Single), format::TEXT);
        assert_eq!(p.accept(Shape::Multi), format::SENML_JSON);
        assert_eq!(
            p.refused(Shape::Single, format::TEXT),
            Some(format::SENML_JSON)
        );
        assert_eq!(
            p.refused(Shape::Single, format::SENML_JSON),
            Some(format::TLV)
        );
        // A stale refusal of a format already dropped changes nothing.
        assert_eq!(p.refused(Shape::Single, format::TEXT), None);
        assert_eq!(p.accept(Shape::Single), format::TLV);
    }
}

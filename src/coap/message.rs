//! Checks on the raw bytes of a datagram and small message builders.
//!
//! RFC 7252 §3 format errors are checked here by hand, on the bytes,
//! before coap-lite decodes: coap-lite returns the same error whether the
//! header is unreadable or only an option is broken, and drops the header
//! with it, but a CON with a readable header and a broken body must be
//! answered with a RST carrying its Message ID (§4.2), so the 4-byte header
//! has to be read here. It also accepts a payload marker followed by no
//! payload, which §3 makes a format error.

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, ResponseType};

/// What the bytes of a datagram are, before decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Well-formed as far as §3 goes; coap-lite may decode it.
    Ok,
    /// A readable header with a broken rest (§3): a CON is answered with
    /// RST, anything else is silently ignored (§4.2, §4.3).
    Error { confirmable: bool, message_id: u16 },
    /// Not even a CoAP version 1 header: silently ignored.
    Garbage,
}

pub fn check(datagram: &[u8]) -> Format {
    if datagram.len() < 4 || datagram[0] >> 6 != 1 {
        return Format::Garbage;
    }
    let confirmable = (datagram[0] >> 4) & 0x3 == 0;
    let message_id = u16::from_be_bytes([datagram[2], datagram[3]]);
    let error = Format::Error {
        confirmable,
        message_id,
    };
    let token_length = usize::from(datagram[0] & 0x0f);
    // §3: lengths 9-15 are reserved and MUST be processed as a format error.
    if token_length > 8 || 4 + token_length > datagram.len() {
        return error;
    }
    // §4.1: an Empty message is the 4-byte header and nothing else.
    if datagram[1] == 0 && datagram.len() > 4 {
        return error;
    }
    let mut idx = 4 + token_length;
    let mut number: u32 = 0;
    while idx < datagram.len() {
        let byte = datagram[idx];
        idx += 1;
        if byte == 0xff {
            // §3: a marker followed by a zero-length payload is an error.
            return if idx == datagram.len() {
                error
            } else {
                Format::Ok
            };
        }
        let Some((delta, next)) = extended(byte >> 4, datagram, idx) else {
            return error;
        };
        let Some((length, next)) = extended(byte & 0x0f, datagram, next) else {
            return error;
        };
        number += delta;
        let length = length as usize;
        if number > u32::from(u16::MAX) || next + length > datagram.len() {
            return error;
        }
        idx = next + length;
    }
    Format::Ok
}

/// Decodes an option delta or length nibble and its extension bytes
/// (§3.1); `None` for nibble 15 or a truncated extension.
fn extended(nibble: u8, bytes: &[u8], idx: usize) -> Option<(u32, usize)> {
    match nibble {
        0..=12 => Some((u32::from(nibble), idx)),
        13 => bytes.get(idx).map(|b| (u32::from(*b) + 13, idx + 1)),
        14 => {
            let hi = *bytes.get(idx)?;
            let lo = *bytes.get(idx + 1)?;
            Some((u32::from(u16::from_be_bytes([hi, lo])) + 269, idx + 2))
        }
        _ => None,
    }
}

/// Critical options (odd numbers) a request may carry here: If-Match,
/// Uri-Host, If-None-Match, Uri-Port, Uri-Path, Uri-Query, Block2, Block1.
/// Accept (17) is left out as before: this server has one representation
/// per resource and says so with 4.02.
pub const UNDERSTOOD_CRITICAL: [u16; 8] = [1, 3, 5, 7, 11, 15, 23, 27];

/// Critical options that may appear more than once (§5.4.5, §5.10):
/// If-Match, Uri-Path, Uri-Query.
const REPEATABLE_CRITICAL: [u16; 3] = [1, 11, 15];

/// The first critical option of `packet` this endpoint does not know.
pub fn unsupported_critical_option(packet: &Packet) -> Option<u16> {
    unsupported_critical_option_but(packet, &[])
}

/// Like [`unsupported_critical_option`], also understanding `extra` (an
/// endpoint with several representations per resource, such as an LwM2M
/// client, understands Accept).
pub fn unsupported_critical_option_but(packet: &Packet, extra: &[u16]) -> Option<u16> {
    packet
        .options()
        .map(|(number, _)| *number)
        .find(|n| n % 2 == 1 && !UNDERSTOOD_CRITICAL.contains(n) && !extra.contains(n))
}

/// A critical option that is not repeatable but appears more than once:
/// treated like an unrecognised critical option (§5.4.5).
pub fn repeated_critical_option(packet: &Packet) -> Option<u16> {
    packet
        .options()
        .find(|(n, values)| **n % 2 == 1 && values.len() > 1 && !REPEATABLE_CRITICAL.contains(n))
        .map(|(n, _)| *n)
}

/// An empty message (ACK, RST or ping) with `message_id`.
pub fn empty(kind: MessageType, message_id: u16) -> Vec<u8> {
    let b0 = 0x40
        | match kind {
            MessageType::Confirmable => 0x00,
            MessageType::NonConfirmable => 0x10,
            MessageType::Acknowledgement => 0x20,
            MessageType::Reset => 0x30,
        };
    let [hi, lo] = message_id.to_be_bytes();
    vec![b0, 0, hi, lo]
}

/// Diagnostics echo parts of the request; this bound keeps every error
/// response (and its copy in the dedup cache) small.
const MAX_DIAGNOSTIC: usize = 128;

/// An error response with a diagnostic payload (RFC 7252 §5.5.2), cut to
/// `MAX_DIAGNOSTIC` bytes on a character boundary.
pub fn error_response(code: ResponseType, diagnostic: &str) -> Packet {
    let mut end = diagnostic.len().min(MAX_DIAGNOSTIC);
    while !diagnostic.is_char_boundary(end) {
        end -= 1;
    }
    let mut packet = Packet::new();
    packet.header.code = MessageClass::Response(code);
    packet.payload = diagnostic.as_bytes()[..end].to_vec();
    packet
}

/// Convenience for handlers: the Uri-Path segments as strings (lossy).
pub fn uri_path(packet: &Packet) -> Vec<String> {
    packet
        .get_option(CoapOption::UriPath)
        .map(|segments| {
            segments
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// An unsigned option value in its minimal encoding (§3.2).
pub fn uint(value: u32) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    bytes[skip..].to_vec()
}

/// Reads an unsigned option value of up to 4 bytes.
pub fn read_uint(bytes: &[u8]) -> Option<u32> {
    if bytes.len() > 4 {
        return None;
    }
    Some(bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
}

/// Whether a response code is a success (2.xx).
pub fn is_success(class: MessageClass) -> bool {
    matches!(class, MessageClass::Response(_) | MessageClass::Reserved(_))
        && u8::from(class) >> 5 == 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn con(rest: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0x40, 0x01, 0x12, 0x34];
        bytes.extend_from_slice(rest);
        bytes
    }

    #[test]
    fn format_errors_of_section_3() {
        let err = Format::Error {
            confirmable: true,
            message_id: 0x1234,
        };
        assert_eq!(check(&con(&[])), Format::Ok);
        assert_eq!(check(&con(&[0xb1, b'x', 0xff, 1])), Format::Ok);
        // Token length 9.
        let mut t = con(&[0; 9]);
        t[0] = 0x49;
        assert_eq!(check(&t), err);
        // Delta nibble 15 that is not the payload marker, length nibble 15.
        assert_eq!(check(&con(&[0xf1, 0])), err);
        assert_eq!(check(&con(&[0x1f, 0])), err);
        // Truncated option value and extension.
        assert_eq!(check(&con(&[0xb3, b'a'])), err);
        assert_eq!(check(&con(&[0xd1])), err);
        // Marker and no payload.
        assert_eq!(check(&con(&[0xff])), err);
        // Empty message with bytes after the header.
        assert_eq!(
            check(&[0x40, 0x00, 0, 1, 0]),
            Format::Error {
                confirmable: true,
                message_id: 1
            }
        );
        assert_eq!(check(&[0xff, 0]), Format::Garbage);
        assert_eq!(check(&[0x80, 1, 0, 0]), Format::Garbage, "version 2");
    }

    #[test]
    fn uint_roundtrip_and_success() {
        for v in [0u32, 1, 255, 256, 0xff_ffff] {
            assert_eq!(read_uint(&uint(v)), Some(v));
        }
        assert!(is_success(MessageClass::Response(ResponseType::Content)));
        assert!(!is_success(MessageClass::Response(ResponseType::NotFound)));
        assert!(!is_success(MessageClass::Empty));
    }
}

//! CoRE link format (RFC 6690, Content-Format 40) as LwM2M registration
//! payloads use it: `</>;rt="oma.lwm2m";ct=110,</1/0>,</3/0>,</5>;ver=1.0`.
//!
//! Hand-written: the only Rust parser of RFC 6690 links is a module of
//! `async-coap` 0.1 (unmaintained since 2019, pulls in a whole async CoAP
//! stack); HTTP `Link:` header crates (RFC 8288) require absolute base
//! URLs and reject the bare `</3/0>` targets LwM2M uses. The grammar we
//! need is small: comma-separated `<target>` with `;`-separated
//! attributes whose values may be quoted (and then contain `,` or `;`).

use super::{ContentError, Path};

/// Most links one registration may list: a peer controls the payload,
/// and real clients list a few dozen object instances.
pub const MAX_LINKS: usize = 1024;

/// One link: its target and its attributes in order (`Some(value)` with
/// quotes removed, `None` for a bare flag such as `obs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub target: String,
    pub attrs: Vec<(String, Option<String>)>,
}

impl Link {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
    }
}

fn err(why: &str) -> ContentError {
    ContentError::Link(why.to_string())
}

/// Splits `text` on `sep` outside double quotes and angle brackets.
fn split_outside(text: &str, sep: char) -> Result<Vec<&str>, ContentError> {
    let mut parts = Vec::new();
    let (mut quoted, mut angled, mut start) = (false, false, 0);
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' if !angled => quoted = !quoted,
            '<' if !quoted => angled = true,
            '>' if !quoted => angled = false,
            c if c == sep && !quoted && !angled => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    if quoted || angled {
        return Err(err("unterminated quote or <"));
    }
    parts.push(&text[start..]);
    Ok(parts)
}

/// Undoes RFC 7230 quoted-pair escapes (`\x` is `x`).
fn unescape(quoted: &str) -> String {
    let mut out = String::with_capacity(quoted.len());
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// Parses a link-format payload. An empty payload is no links.
pub fn parse_links(payload: &[u8]) -> Result<Vec<Link>, ContentError> {
    let text = std::str::from_utf8(payload).map_err(|_| err("not UTF-8"))?;
    let text = text.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let mut links = Vec::new();
    for part in split_outside(text, ',')? {
        if links.len() == MAX_LINKS {
            return Err(err("too many links"));
        }
        let mut pieces = split_outside(part.trim(), ';')?.into_iter();
        let target = pieces.next().unwrap_or_default().trim();
        let target = target
            .strip_prefix('<')
            .and_then(|t| t.strip_suffix('>'))
            .ok_or_else(|| err("a link must start with <target>"))?;
        if target.is_empty() || target.chars().any(|c| c.is_whitespace() || c == '<') {
            return Err(err("bad link target"));
        }
        let mut attrs = Vec::new();
        for attr in pieces {
            let attr = attr.trim();
            let (name, value) = match attr.split_once('=') {
                Some((name, value)) => {
                    let value = value.trim();
                    let value = match value.strip_prefix('"') {
                        Some(v) => v
                            .strip_suffix('"')
                            .ok_or_else(|| err("unterminated quoted value"))
                            .map(unescape)?,
                        None => value.to_string(),
                    };
                    (name.trim(), Some(value))
                }
                None => (attr, None),
            };
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.*".contains(c))
            {
                return Err(err("bad attribute name"));
            }
            attrs.push((name.to_string(), value));
        }
        links.push(Link {
            target: target.to_string(),
            attrs,
        });
    }
    Ok(links)
}

/// Renders links back (for tests and the operator view).
pub fn format_links(links: &[Link]) -> String {
    let mut out = String::new();
    for (n, link) in links.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push('<');
        out.push_str(&link.target);
        out.push('>');
        for (name, value) in &link.attrs {
            out.push(';');
            out.push_str(name);
            if let Some(value) = value {
                let plain = value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c));
                if plain && !value.is_empty() {
                    out.push('=');
                    out.push_str(value);
                } else {
                    out.push_str("=\"");
                    out.push_str(&value.replace('\\', "\\\\").replace('"', "\\\""));
                    out.push('"');
                }
            }
        }
    }
    out
}

/// What a registration payload says about the client (TS Core §6.2.1):
/// the alternate root path, the object instances and object versions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegisteredObjects {
    /// The root of the client's objects: `/` unless a link with
    /// `rt="oma.lwm2m"` names another.
    pub root: String,
    /// Every object or object instance link, in payload order.
    pub paths: Vec<Path>,
    /// `ver=` of objects that state it, as (object, version).
    pub versions: Vec<(u16, String)>,
    /// `ct=` of the root link: the formats the client prefers.
    pub content_formats: Vec<u16>,
}

impl RegisteredObjects {
    /// Reads a registration payload. Links that are not LwM2M objects
    /// (other resources a client may list) are ignored, as the spec asks.
    pub fn parse(payload: &[u8]) -> Result<RegisteredObjects, ContentError> {
        let links = parse_links(payload)?;
        let mut out = RegisteredObjects {
            root: "/".into(),
            ..Default::default()
        };
        for link in &links {
            if link.attr("rt") == Some("oma.lwm2m") {
                out.root = link.target.clone();
                if let Some(ct) = link.attr("ct") {
                    out.content_formats = ct
                        .split_whitespace()
                        .filter_map(|c| c.parse().ok())
                        .collect();
                }
            }
        }
        let prefix = out.root.trim_end_matches('/').to_string();
        for link in &links {
            if link.attr("rt") == Some("oma.lwm2m") {
                continue;
            }
            let Some(rest) = link.target.strip_prefix(prefix.as_str()) else {
                continue;
            };
            let Ok(path) = rest.parse::<Path>() else {
                continue;
            };
            if path.resource.is_some() {
                continue;
            }
            if let Some(ver) = link.attr("ver") {
                out.versions.push((path.object, ver.to_string()));
            }
            out.paths.push(path);
        }
        Ok(out)
    }

    /// Whether the client has object `object` (any instance).
    pub fn has_object(&self, object: u16) -> bool {
        self.paths.iter().any(|p| p.object == object)
    }

    /// The distinct object ids, ascending.
    pub fn objects(&self) -> Vec<u16> {
        let mut ids: Vec<u16> = self.paths.iter().map(|p| p.object).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The path strings (`/3/0`, `/5`), as the operator view lists them.
    pub fn path_strings(&self) -> Vec<String> {
        self.paths.iter().map(Path::to_string).collect()
    }
}

//! What client commands print: aligned tables for people, the API's JSON
//! for scripts (`--output json`), and escaping of every piece of
//! server-supplied text so a device cannot drive the operator's terminal
//! (an error string holding `ESC]0;...` or `ESC[2J` is shown, not obeyed).

use std::fmt::Write as _;
use std::io::IsTerminal;

use serde_json::Value;

/// How a client command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Output {
    /// Tables and one-line summaries for people.
    #[default]
    Human,
    /// The API's JSON, one document per command (one line per refresh with
    /// `campaign show --watch`).
    Json,
}

/// Text safe to print on a terminal: control characters (C0, DEL, C1 —
/// which covers ESC and the 8-bit CSI) become `\u{..}` escapes. Escaping
/// twice changes nothing, so layers need not know whether text was
/// escaped already.
pub fn escape(text: &str) -> String {
    if !text.chars().any(is_unsafe) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// Control characters, and the bidirectional overrides that can make a
/// line read differently from its bytes.
fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A JSON field as display text ("-" for null), escaped.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => escape(s),
        other => escape(&other.to_string()),
    }
}

/// Prints a JSON document for scripts. serde_json already escapes C0
/// characters inside strings; DEL, C1 and bidi overrides it leaves raw, so
/// they are escaped here too (they can only occur inside strings, where `\uXXXX`
/// is valid JSON).
pub fn print_json(value: &Value, pretty: bool) {
    let text = if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    }
    .unwrap_or_else(|_| "null".into());
    println!("{}", json_safe(&text));
}

fn json_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c != '\n' && is_unsafe(c) {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// Prints a JSON array as a table, one row per element.
pub fn print_list(list: &[Value], headers: &[&str], row: impl Fn(&Value) -> Vec<String>) {
    let rows: Vec<Vec<String>> = list.iter().map(row).collect();
    print_table(headers, &rows);
}

/// Prints rows as aligned columns. Cells must already be escaped (see
/// [`cell`]).
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let head: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    println!("{}", line(&head));
    for row in rows {
        println!("{}", line(row));
    }
}

/// Prints `key  value` lines for one object (the `show` commands).
pub fn print_fields(fields: &[(&str, String)]) {
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in fields {
        println!("{key:<width$}  {value}");
    }
}

/// Whether progress bars may be drawn: only for people at a terminal, so
/// scripts and tests that capture stdout see plain lines.
pub fn interactive(output: Output) -> bool {
    output == Output::Human && std::io::stdout().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape("plain"), "plain");
        assert_eq!(escape("\x1b]0;pwned\x07"), "\\u{1b}]0;pwned\\u{7}");
        assert_eq!(escape("a\x1b[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(escape("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(escape("tab\there\nnl"), "tab\\u{9}here\\u{a}nl");
        assert_eq!(escape("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(escape(&escape("\x1b[2J")), escape("\x1b[2J"));
        assert!(!cell(&Value::String("\x1b[2J".into())).contains('\x1b'));
    }

    #[test]
    fn json_output_has_no_raw_control_characters() {
        let value = serde_json::json!({"error": "\x1b[2J\u{7f}\u{9b}x\u{202e}"});
        let text = json_safe(&serde_json::to_string(&value).unwrap());
        assert!(!text.chars().any(is_unsafe), "{text}");
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, value);
    }
}

//! A small blocking client of the admin API for the CLI commands.

use anyhow::{anyhow, Context};
use serde_json::Value;

pub struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(base: &str) -> Client {
        Client {
            base: base.trim_end_matches('/').to_string(),
            agent: ureq::AgentBuilder::new().build(),
        }
    }

    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.finish(self.agent.get(&self.url(path)).call())
    }

    /// GETs a paged listing whole: follows `Link: <...>; rel="next"`
    /// until the server gives no next page, concatenating the arrays.
    /// Bounded by `MAX_PAGES` so a misbehaving server cannot loop forever.
    pub fn get_all(&self, path: &str) -> anyhow::Result<Value> {
        const MAX_PAGES: usize = 100_000;
        let mut items = Vec::new();
        let mut next = Some(path.to_string());
        for _ in 0..MAX_PAGES {
            let Some(path) = next.take() else {
                break;
            };
            let response = self.agent.get(&self.url(&path)).call();
            if let Ok(response) = &response {
                next = response.header("link").and_then(next_link);
            }
            match self.finish(response)? {
                Value::Array(page) => items.extend(page),
                other => return Ok(other),
            }
        }
        Ok(Value::Array(items))
    }

    pub fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.finish(self.agent.post(&self.url(path)).send_json(body.clone()))
    }

    pub fn post_file(
        &self,
        path: &str,
        query: &[(&str, &str)],
        file: std::fs::File,
    ) -> anyhow::Result<Value> {
        let mut request = self.agent.post(&self.url(path));
        for (k, v) in query {
            request = request.query(k, v);
        }
        if let Ok(meta) = file.metadata() {
            request = request.set("Content-Length", &meta.len().to_string());
        }
        self.finish(request.send(file))
    }

    pub fn delete(&self, path: &str) -> anyhow::Result<()> {
        self.finish(self.agent.delete(&self.url(path)).call())
            .map(|_| ())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn finish(&self, result: Result<ureq::Response, ureq::Error>) -> anyhow::Result<Value> {
        match result {
            Ok(response) => {
                let text = response.into_string().context("reading response")?;
                if text.is_empty() {
                    return Ok(Value::Null);
                }
                serde_json::from_str(&text).context("server sent invalid JSON")
            }
            Err(ureq::Error::Status(status, response)) => {
                let text = response.into_string().unwrap_or_default();
                let message = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                    .unwrap_or(text);
                Err(anyhow!("server said {status}: {message}"))
            }
            Err(e) => Err(anyhow!("cannot reach {}: {e}", self.base)),
        }
    }
}

/// The target of a `Link: <TARGET>; rel="next"` header.
fn next_link(link: &str) -> Option<String> {
    let (target, params) = link.split_once(';')?;
    params.contains("rel=\"next\"").then(|| {
        target
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_string()
    })
}

/// Prints a JSON array as a table, one row per element.
pub fn print_list(list: &Value, headers: &[&str], row: impl Fn(&Value) -> Vec<String>) {
    let rows: Vec<Vec<String>> = list
        .as_array()
        .map(|items| items.iter().map(row).collect())
        .unwrap_or_default();
    print_table(headers, &rows);
}

/// Prints rows as aligned columns.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!("{}", line(headers.iter().map(|h| h.to_string()).collect()));
    for row in rows {
        println!("{}", line(row.clone()));
    }
}

/// A JSON field as display text ("-" for null).
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

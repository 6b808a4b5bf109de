//! Log set-up for long-running commands (`serve`): human text by default,
//! or one JSON object per line (`--log-format json`) for log shippers.
//! Logs go to stderr; stdout keeps the plain `... listening on` lines.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Format of log lines on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colours only on a terminal).
    #[default]
    Text,
    /// One JSON object per line (tracing-subscriber's json formatter).
    Json,
}

/// Installs the global subscriber; `RUST_LOG` picks the levels (default
/// `info`). A second call (tests) is ignored.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

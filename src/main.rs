use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = lwota::cli::Cli::parse();
    match lwota::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One clear line on stderr, as the contract asks.
            eprintln!("lwota: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line. A cause that its parent's message
/// already quotes (thiserror's `"...: {source}"` with a `source` field) is
/// not repeated. Control characters are escaped: messages may carry text
/// from the server or from devices.
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if parts.last().is_some_and(|prev| prev.ends_with(&text)) {
            continue;
        }
        parts.push(text);
    }
    lwota::cli::escape_line(&parts.join(": "))
}

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

fn one_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
        .replace('\n', " ")
}

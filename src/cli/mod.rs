//! The `lwota` command line: `serve`, `sim`, `bench`, and client commands
//! that talk to the admin HTTP API.

mod campaign;
mod check;
mod client;
mod device;
mod firmware;
mod serve;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "lwota",
    version,
    about = "Lightweight firmware-over-the-air update server for CoAP devices"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (CoAP on UDP, admin HTTP).
    Serve(serve::ServeArgs),
    /// Firmware catalogue.
    #[command(subcommand)]
    Firmware(firmware::FirmwareCmd),
    /// Devices.
    #[command(subcommand)]
    Device(device::DeviceCmd),
    /// Campaigns.
    #[command(subcommand)]
    Campaign(campaign::CampaignCmd),
    /// Check the database offline for corrupt records (--repair moves them out).
    Check(check::CheckArgs),
    /// Simulate a fleet of devices against a server.
    Sim(crate::sim::SimArgs),
    /// Benchmark lwota against peer CoAP servers and the UDP ceiling.
    Bench(crate::bench::BenchArgs),
}

/// Where the admin API is, for client commands.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArg {
    /// Admin API base URL.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080")]
    pub server: String,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Firmware(cmd) => firmware::run(cmd),
        Command::Device(cmd) => device::run(cmd),
        Command::Campaign(cmd) => campaign::run(cmd),
        Command::Check(args) => check::run(args),
        Command::Sim(args) => crate::sim::run_cli(args),
        Command::Bench(args) => crate::bench::run_cli(args),
    }
}

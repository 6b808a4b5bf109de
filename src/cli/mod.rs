//! The `lwota` command line: `serve`, `sim`, `bench`, and client commands
//! that talk to the admin HTTP API.

mod backup; // issue 12 item 7
mod campaign;
mod campaign_options; // issue 10
mod check;
mod client;
mod csv_input;
mod device;
mod firmware;
mod fleet; // issue 10: audit, assign, firmware edit, stats
mod key; // issue 11 item 5: manifest signing keys
mod logging;
mod output;
mod serve;
mod watch;

use std::path::Path;

use clap::{CommandFactory, Parser, Subcommand};

pub use logging::LogFormat;
pub use output::Output;

#[derive(Debug, Parser)]
#[command(
    name = "lwota",
    version,
    about = "Lightweight firmware-over-the-air update server for CoAP devices",
    after_help = "Client commands talk to the admin API at --server (env LWOTA_SERVER). \
                  Run `lwota completions bash|zsh|fish` for shell completions."
)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// The admin API of a server started with no arguments.
const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// Options every command takes, before or after the subcommand.
#[derive(Debug, Clone, clap::Args)]
struct GlobalArgs {
    /// Admin API base URL, with its scheme (http://HOST:PORT, or
    /// https://HOST:PORT when the server has `http_tls_cert`).
    #[arg(
        long,
        global = true,
        env = "LWOTA_SERVER",
        default_value = DEFAULT_SERVER,
        value_name = "URL",
        display_order = 900
    )]
    server: String,
    /// Admin API token, sent as `Authorization: Bearer`. Default: env
    /// LWOTA_TOKEN, else the contents of ./data/admin.token if it exists.
    #[arg(
        long,
        global = true,
        env = "LWOTA_TOKEN",
        hide_env_values = true,
        display_order = 901
    )]
    token: Option<String>,
    /// PEM certificate (or CA) to trust for an https:// --server, e.g. the
    /// admin listener's self-signed `http_tls_cert`.
    #[arg(
        long,
        global = true,
        env = "LWOTA_CA_CERT",
        value_name = "PEM",
        display_order = 902
    )]
    ca_cert: Option<std::path::PathBuf>,
    /// What client commands print: human (tables) or json (the API's JSON,
    /// one document per command; one line per refresh with --watch).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = Output::Human,
        value_name = "human|json",
        display_order = 902
    )]
    output: Output,
    /// Log line format on stderr: text (for people) or json (one object per
    /// line, for log shippers).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = LogFormat::Text,
        value_name = "text|json",
        display_order = 903
    )]
    log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (CoAP on UDP, admin HTTP).
    Serve(serve::ServeArgs),
    /// Firmware catalogue: add, ls, show, rm.
    #[command(subcommand)]
    Firmware(firmware::FirmwareCmd),
    /// Devices: add, import, ls, show, history.
    #[command(subcommand)]
    Device(device::DeviceCmd),
    /// Campaigns: create, ls, show, devices, cancel, retry, resume.
    #[command(subcommand)]
    Campaign(campaign::CampaignCmd),
    /// The audit log: every operator action, oldest first.
    Audit(fleet::AuditArgs),
    /// Assign an image to a product or a device: product, device, show, clear.
    #[command(subcommand)]
    Assign(fleet::AssignCmd),
    /// Version distribution of the devices of a product.
    Versions(device::VersionsArgs),
    /// Manifest signing keys of products: create (or rotate), show, delete.
    #[command(subcommand)]
    Key(key::KeyCmd),
    /// Print a shell completion script on stdout.
    #[command(
        after_help = "Examples:\n  lwota completions bash > /etc/bash_completion.d/lwota\n  \
                            lwota completions zsh > \"${fpath[1]}/_lwota\"\n  \
                            lwota completions fish > ~/.config/fish/completions/lwota.fish"
    )]
    Completions {
        /// Shell to generate for: bash, zsh, fish (also elvish, powershell).
        #[arg(value_enum, value_name = "bash|zsh|fish")]
        shell: clap_complete::Shell,
    },
    /// Download a consistent backup of the running server (tar of the database and blobs).
    Backup(backup::BackupArgs),
    /// Check the database offline for corrupt records (--repair moves them out).
    Check(check::CheckArgs),
    /// Simulate a fleet of devices against a server.
    Sim(crate::sim::SimArgs),
    /// Benchmark lwota against peer CoAP servers and the UDP ceiling.
    Bench(crate::bench::BenchArgs),
}

/// What a client command needs: the API client and the output mode.
pub(crate) struct Ctx {
    client: client::Client,
    output: Output,
}

impl Ctx {
    fn new(global: &GlobalArgs) -> anyhow::Result<Ctx> {
        Ok(Ctx {
            // An empty LWOTA_SERVER (exported but unset) means the default.
            client: match global.server.trim() {
                "" => client::Client::with_ca_cert(
                    DEFAULT_SERVER,
                    token(global),
                    global.ca_cert.as_deref(),
                )?,
                server => {
                    client::Client::with_ca_cert(server, token(global), global.ca_cert.as_deref())?
                }
            },
            output: global.output,
        })
    }

    fn json(&self) -> bool {
        self.output == Output::Json
    }
}

/// `--token`, else `LWOTA_TOKEN` (both through clap), else the token file
/// the server writes on first start, when the CLI runs beside it.
fn token(global: &GlobalArgs) -> Option<String> {
    global.token.clone().or_else(|| {
        std::fs::read_to_string(Path::new("data").join("admin.token"))
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
    })
}

/// Client commands end quietly when their reader goes away (`lwota device
/// ls | head`) instead of panicking in `println!`: Rust ignores SIGPIPE by
/// default, so restore the default action. Not for `serve`, whose sockets
/// rely on EPIPE errors rather than a signal.
fn die_on_sigpipe() {
    // SAFETY: resetting a signal to its default action at start-up, before
    // any thread is spawned; no handler code runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let global = cli.global;
    if matches!(
        cli.command,
        Command::Firmware(_)
            | Command::Device(_)
            | Command::Campaign(_)
            | Command::Versions(_)
            | Command::Audit(_)
            | Command::Assign(_)
            | Command::Key(_)
            | Command::Completions { .. }
    ) {
        die_on_sigpipe();
    }
    match cli.command {
        Command::Serve(args) => {
            logging::init(global.log_format);
            serve::run(args)
        }
        Command::Firmware(cmd) => firmware::run(cmd, &Ctx::new(&global)?),
        Command::Device(cmd) => device::run(cmd, &Ctx::new(&global)?),
        Command::Campaign(cmd) => campaign::run(cmd, &Ctx::new(&global)?),
        Command::Versions(args) => device::versions(args, &Ctx::new(&global)?),
        Command::Audit(args) => fleet::audit(args, &Ctx::new(&global)?),
        Command::Assign(cmd) => fleet::assign(cmd, &Ctx::new(&global)?),
        Command::Key(cmd) => key::run(cmd, &Ctx::new(&global)?),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "lwota", &mut std::io::stdout());
            Ok(())
        }
        Command::Sim(args) => crate::sim::run_cli(args, global.output == Output::Json),
        Command::Backup(args) => backup::run(args, &Ctx::new(&global)?),
        Command::Check(args) => check::run(args),
        Command::Bench(args) => crate::bench::run_cli(args),
    }
}

/// A message on one line with every control character escaped (a newline
/// becomes a space), for the CLI's error line.
pub fn escape_line(text: &str) -> String {
    output::escape(&text.replace(['\n', '\r'], " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every argument of every command says what it is for.
    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {} (command)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "lwota", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }

    #[test]
    fn client_options_work_before_and_after_the_subcommand() {
        let cli = Cli::try_parse_from(["lwota", "--output", "json", "firmware", "ls"]).unwrap();
        assert_eq!(cli.global.output, Output::Json);
        let cli = Cli::try_parse_from([
            "lwota",
            "device",
            "ls",
            "--server",
            "http://h:1",
            "--output",
            "json",
        ])
        .unwrap();
        assert_eq!(cli.global.server, "http://h:1");
        assert_eq!(cli.global.output, Output::Json);
        let cli = Cli::try_parse_from(["lwota", "serve", "--log-format", "json"]).unwrap();
        assert_eq!(cli.global.log_format, LogFormat::Json);
        assert!(Cli::try_parse_from(["lwota", "--output", "yaml", "firmware", "ls"]).is_err());
    }
}

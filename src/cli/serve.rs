//! `lwota serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use crate::config::Config;
use crate::server::SystemClock;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Config file (default ./server.toml; embedded defaults if it is absent).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (redb file and firmware blobs; default ./data).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// CoAP UDP address, e.g. 0.0.0.0:5683; port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    coap_bind: Option<SocketAddr>,
    /// CoAPS (DTLS-PSK) UDP address, e.g. 0.0.0.0:5684; port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    coaps_bind: Option<SocketAddr>,
    /// Admin HTTP address, e.g. 127.0.0.1:8080; port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    http_bind: Option<SocketAddr>,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    // Logging is set up by the caller (`super::logging`): the global
    // --log-format is accepted after `serve` too.
    let mut config = match &args.config {
        Some(path) => Config::load(path, true)?,
        None => Config::load(std::path::Path::new("server.toml"), false)?,
    };
    if let Some(dir) = args.data_dir {
        config.server.data_dir = dir;
    }
    if let Some(addr) = args.coap_bind {
        config.server.coap_bind = addr;
    }
    if let Some(addr) = args.coaps_bind {
        config.server.coaps_bind = addr;
    }
    if let Some(addr) = args.http_bind {
        config.server.http_bind = addr;
    }
    config.validate()?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start runtime")?;
    runtime.block_on(async move {
        let running = crate::server::start(config, Arc::new(SystemClock::new())).await?;
        // Test harnesses read these two lines; keep their wording.
        // Printed plainly on stdout too, so scripts need not parse log lines.
        if running.coap_enabled {
            tracing::info!("coap listening on {}", running.coap_addr);
            println!("coap listening on {}", running.coap_addr);
        }
        if let Some(addr) = running.coaps_addr {
            tracing::info!("coaps listening on {addr}");
            println!("coaps listening on {addr}");
        }
        tracing::info!("http listening on {}", running.http_addr);
        println!("http listening on {}", running.http_addr);
        use std::io::Write;
        let _ = std::io::stdout().flush();
        wait_for_signal().await?;
        tracing::info!("shutting down");
        running.stop().await;
        Ok::<(), anyhow::Error>(())
    })
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

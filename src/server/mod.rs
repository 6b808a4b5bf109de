//! Wiring: open the store, load the catalogue, bind the sockets, run the
//! CoAP shell, the admin HTTP server and the scheduler until shutdown.

mod clock;
pub mod coap_shell;
mod directory;
mod http_io; // issue 8 item 8: JSON body on hyper's own 400s
mod http_serve; // issue 11 item 6: header timeout, connection limit
mod http_tls; // issue 11: optional TLS on the admin listener
mod lwm2m_shell; // issue 9: LwM2M sessions around lwm2m::update
mod observation; // latest-wins notification queue of an Observation
mod scheduler;
mod shard;
pub mod startup;
mod task_push; // issue 10 item 10: pushes tasks to observing devices

pub use clock::{MonotonicClock, SystemClock};

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::watch;

use crate::config::Config;
use crate::ota::catalogue::Catalogue;
use crate::state::{App, AppState};
use crate::store::blobs::BlobStore;
use crate::store::StoreOptions;
use crate::time::Clock;

/// A started server: its addresses and how to stop it.
pub struct Running {
    /// The plain CoAP address (the CoAPS one when plain CoAP is disabled).
    pub coap_addr: SocketAddr,
    /// Sends CoAP requests to devices (LwM2M uses it).
    pub coap: coap_shell::CoapHandle,
    /// Whether plain CoAP listens (`server.coap_enabled`).
    pub coap_enabled: bool,
    /// The CoAPS (DTLS-PSK) address, when enabled.
    pub coaps_addr: Option<SocketAddr>,
    /// Sends CoAP requests over established DTLS sessions.
    pub coaps: Option<coap_shell::CoapHandle>,
    pub http_addr: SocketAddr,
    pub app: App,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Opens everything and binds both sockets; fails (writing nothing more
/// than the data directory) on a bad data dir or a port in use.
pub async fn start(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Running> {
    start_on(config, clock, None).await
}

/// Like [`start`], opening the database through `opener` (tests use a
/// fault-injecting backend, `store::fault`); `None` is the plain file.
pub async fn start_on(
    config: Config,
    clock: Arc<dyn Clock>,
    opener: Option<crate::store::recovery::Opener>,
) -> anyhow::Result<Running> {
    let data_dir = config.server.data_dir.clone();
    // Bind first: a port in use must not leave anything behind.
    let shards = coap_shell::shard_count(&config.coap);
    let coap_sockets = if config.server.coap_enabled {
        coap_shell::bind(config.server.coap_bind, shards)
            .with_context(|| format!("cannot bind CoAP UDP {}", config.server.coap_bind))?
    } else {
        Vec::new()
    };
    let coaps_sockets = if config.server.coaps_enabled {
        coap_shell::bind(config.server.coaps_bind, shards)
            .with_context(|| format!("cannot bind CoAPS UDP {}", config.server.coaps_bind))?
    } else {
        Vec::new()
    };
    // A bad certificate or key path stops start-up with a clear message.
    let http_tls = http_tls::from_config(&config.server)?;
    let http_listener = std::net::TcpListener::bind(config.server.http_bind)
        .with_context(|| format!("cannot bind HTTP {}", config.server.http_bind))?;
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
    let blobs = BlobStore::open(&data_dir)
        .with_context(|| format!("cannot use blob dir under {}", data_dir.display()))?;
    let options = StoreOptions {
        history_cap: config.devices.history_limit,
    };
    // Issue 8 items 7b-7d: open, check, tidy blobs safely (startup.rs).
    let opened = startup::open_data(&data_dir, &blobs, options, opener)?;
    // Time never runs backwards across a restart.
    if let Some(floor) = opened.clock_floor {
        clock.raise_floor(floor);
    }
    let (store, records) = (opened.store, opened.records);
    let catalogue = Catalogue::load(&blobs, records);

    let to_tokio = |sockets: Vec<std::net::UdpSocket>| {
        sockets
            .into_iter()
            .map(|s| {
                s.set_nonblocking(true)?;
                tokio::net::UdpSocket::from_std(s)
            })
            .collect::<std::io::Result<Vec<_>>>()
    };
    let coap_sockets = to_tokio(coap_sockets)?;
    let coaps_sockets = to_tokio(coaps_sockets)?;
    let psks = load_psks(&store)?;
    http_listener.set_nonblocking(true)?;
    let http_listener = tokio::net::TcpListener::from_std(http_listener)?;
    let http_addr = http_listener.local_addr()?;

    let (lwm2m, lwm2m_events) = crate::lwm2m::hub::Hub::new();
    let config_abuse = config.abuse.clone();
    let app: App = Arc::new(AppState {
        config,
        store,
        blobs,
        catalogue,
        clock,
        blob_lock: tokio::sync::Mutex::new(()),
        touches: Default::default(),
        lwm2m,
        psks,
        task_observers: Default::default(),
        registrations: crate::resources::registration::Limits::new(&config_abuse),
    });
    // Issue 11: the first start makes the admin token (auth.rs).
    crate::admin::auth::bootstrap(&app, &data_dir)
        .await
        .context("cannot write the admin token")?;
    let (shutdown, signal) = watch::channel(false);
    // Issue 12 item 2: the metrics recorder, before the shards register
    // their meters.
    let upkeep = crate::telemetry::spawn_upkeep();
    // Shards (see coap_shell.rs); the seed only has to differ between runs.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id());
    let coap_config = app.config.coap.clone();
    let mut tasks = Vec::new();
    let coap = if coap_sockets.is_empty() {
        None
    } else {
        let (handle, shard_tasks) = coap_shell::spawn(
            coap_sockets,
            app.clone(),
            signal.clone(),
            &coap_config,
            seed,
            None,
        )?;
        tasks.extend(shard_tasks);
        Some(handle)
    };
    let coaps = if coaps_sockets.is_empty() {
        None
    } else {
        let setup = coap_shell::DtlsSetup {
            keys: app.psks.clone(),
            config: app.config.dtls.clone(),
        };
        let (handle, shard_tasks) = coap_shell::spawn(
            coaps_sockets,
            app.clone(),
            signal.clone(),
            &coap_config,
            seed.rotate_left(17),
            Some(setup),
        )?;
        tasks.extend(shard_tasks);
        Some(handle)
    };
    let coap_enabled = coap.is_some();
    let coaps_addr = coaps.as_ref().map(|c| c.local_addr());
    let coap = match coap.or_else(|| coaps.clone()) {
        Some(handle) => handle,
        None => anyhow::bail!("neither CoAP nor CoAPS is enabled"),
    };
    let coap_addr = coap.local_addr();
    tasks.push(tokio::spawn(scheduler::run(app.clone(), signal.clone())));
    tasks.push(tokio::spawn(task_push::run(app.clone(), signal.clone())));
    tasks.push(lwm2m_shell::spawn(
        app.clone(),
        lwm2m_shell::Endpoints {
            coap: coap.clone(),
            coaps: coaps.clone(),
        },
        lwm2m_events,
        signal.clone(),
    ));
    if let Some(upkeep) = upkeep {
        let mut stop = signal.clone();
        tasks.push(tokio::spawn(async move {
            let _ = stop.wait_for(|stop| *stop).await;
            upkeep.abort();
        }));
    }
    let router = crate::admin::router(app.clone());
    let router = router.merge(crate::console::router(app.clone())); // issue 12: web console at /
    let limits = http_serve::HttpLimits {
        header_timeout: std::time::Duration::from_secs(app.config.admin.header_timeout_s),
        max_connections: app.config.admin.max_connections,
    };
    tasks.push(tokio::spawn(http_serve::run(
        http_listener,
        router,
        limits,
        http_tls,
        signal,
    )));
    Ok(Running {
        coap_addr,
        coap,
        coap_enabled,
        coaps_addr,
        coaps,
        http_addr,
        app,
        shutdown,
        tasks,
    })
}

/// Every device credential, for the handshakes' PSK lookups.
fn load_psks(store: &crate::store::Store) -> anyhow::Result<crate::dtls::keys::PskDirectory> {
    let keys = crate::dtls::keys::PskDirectory::default();
    let read = store.read().context("cannot read device credentials")?;
    let mut after: Option<String> = None;
    loop {
        let page = read
            .psks(after.as_deref(), 1000)
            .context("cannot read device credentials")?;
        let Some((last, _)) = page.last() else {
            break;
        };
        after = Some(last.clone());
        for (device, record) in &page {
            keys.set(device, record);
        }
    }
    Ok(keys)
}

impl Running {
    /// Stops accepting, lets in-flight work finish, commits every write
    /// queued so far and stops the writer, so the database file is free
    /// once the runtime is gone.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        let now = self.app.now();
        if let Err(e) = self
            .app
            .store
            .write(move |tx| tx.raise_clock_floor(now).map(Ok::<_, ()>))
            .await
        {
            tracing::warn!("clock floor not saved: {e}");
        }
        let store = self.app.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.shutdown()).await;
    }
}

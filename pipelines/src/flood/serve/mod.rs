//! `terrastream flood serve flood.toml`: flood mapping as an HTTP service (axum).
//!
//! Events come from `POST /events` or from watched AOIs that see a new Sentinel-1 scene; each is
//! recorded on disk, queued, mapped with [`run_event`](crate::flood::event::run_event) into
//! `<out>/maps/<id>/` (served under `/outputs/<id>/`), and announced to the webhooks. Records
//! survive restarts: events left queued or running are mapped again on start.
//!
//! - [`config`]: `flood.toml` (listen address, tokens, limits, asset hosts, webhooks, watches).
//! - [`auth`]: bearer tokens.
//! - [`validate`]: request bodies and AOIs (400/422 naming the field).
//! - [`store`]: event records, atomically written JSON files, ids from AOI and time.
//! - [`worker`]: the bounded, first-in-first-out mapping queue.
//! - [`hosts`]: which asset hrefs may be read.
//! - [`routes`]: the HTTP API.
//! - [`webhook`]: signed notifications with retries.
//! - [`watch`]: polling watched AOIs for new scenes.
//! - [`metrics`]: Prometheus text.

pub mod auth;
pub mod config;
pub mod hosts;
pub mod metrics;
pub mod routes;
pub mod store;
pub mod validate;
pub mod watch;
pub mod webhook;
pub mod worker;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::mpsc;

use self::config::ServeConfig;
use self::metrics::Metrics;
use self::store::{EventStore, Submitted};
use self::webhook::Notifier;
use crate::flood::event::{EventConfig, EventRequest};

/// Where maps go under the output directory (served as `/outputs/`).
pub const MAPS_DIR: &str = "maps";

/// Where the bound address is written under the output directory (useful with port 0).
pub const LISTEN_FILE: &str = "_state/listen";

/// Arguments of `terrastream flood serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// The service config (TOML).
    pub config: PathBuf,
}

/// The running service's shared state.
#[derive(Debug)]
pub struct Service {
    /// The config.
    pub cfg: ServeConfig,
    /// Mapping settings (the config's `[mapping]` with its limits applied).
    pub mapping: EventConfig,
    /// Event records.
    pub store: EventStore,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Webhooks, when configured.
    pub notifier: Option<Notifier>,
    /// Hosts asset hrefs may point at.
    pub allowed_hosts: Vec<String>,
    /// `<out>/maps`.
    pub maps_dir: PathBuf,
    queue: mpsc::UnboundedSender<String>,
}

impl Service {
    /// Records an event and queues it unless it is known; returns its id and what happened.
    pub fn submit(&self, req: &EventRequest, source: &str) -> anyhow::Result<(String, Submitted)> {
        let (id, what) = self.store.submit(req, source)?;
        if what != Submitted::Existing {
            tracing::info!(event = id, source, name = ?req.name, event_time = %req.event_time, "event queued");
            // The receiver lives as long as the process serves.
            let _ = self.queue.send(id.clone());
        }
        Ok((id, what))
    }
}

/// Runs the service until SIGTERM or ctrl-c.
pub async fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let cfg = ServeConfig::from_path(&args.config)?;
    let tokens = auth::Tokens::new(cfg.load_tokens()?);
    let metrics = Arc::new(Metrics::default());
    let notifier = match cfg.webhook_secret()? {
        Some(secret) => Some(Notifier::new(&cfg.webhooks, secret, Arc::clone(&metrics))?),
        None => None,
    };
    let maps_dir = cfg.out.join(MAPS_DIR);
    std::fs::create_dir_all(&maps_dir).with_context(|| format!("creating {}", maps_dir.display()))?;
    let store = EventStore::open(&cfg.out)?;
    let now = chrono::Utc::now();
    for (i, w) in cfg.watch.iter().enumerate() {
        let body = serde_json::to_vec(&serde_json::json!({"aoi": w.aoi, "event_time": now}))?;
        validate::parse_request(&body, &cfg.mapping, now)
            .map_err(|e| anyhow::anyhow!("watch[{i}].aoi ({}): {}", e.field, e.message))?;
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let svc = Arc::new(Service {
        mapping: cfg.mapping.clone(),
        allowed_hosts: cfg.allowed_hosts(),
        cfg,
        store,
        metrics,
        notifier,
        maps_dir,
        queue: tx,
    });
    let again = svc.store.requeue_unfinished()?;
    if !again.is_empty() {
        tracing::info!(
            events = again.len(),
            "re-queueing events left unfinished by the last run"
        );
    }
    for id in again {
        let _ = svc.queue.send(id);
    }
    tokio::spawn(worker::run_queue(Arc::clone(&svc), rx, svc.cfg.concurrency));
    for w in svc.cfg.watch.clone() {
        tokio::spawn(watch::watch(Arc::clone(&svc), w));
    }

    let listener = tokio::net::TcpListener::bind(svc.cfg.listen)
        .await
        .with_context(|| format!("listen: cannot bind {}", svc.cfg.listen))?;
    let addr = listener.local_addr()?;
    let listen_file = svc.cfg.out.join(LISTEN_FILE);
    if let Some(dir) = listen_file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = listen_file.with_extension("tmp");
    std::fs::write(&tmp, format!("{addr}\n")).and_then(|()| std::fs::rename(&tmp, &listen_file))?;
    tracing::info!(%addr, out = %svc.cfg.out.display(), "flood serve listening");
    let app = routes::router(Arc::clone(&svc), tokens);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    // Events still mapping stop with the process; their records say running, and the next start
    // maps them again.
    tracing::info!("flood serve stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for ctrl-c: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("ctrl-c: shutting down"),
        () = term => tracing::info!("SIGTERM: shutting down"),
    }
}

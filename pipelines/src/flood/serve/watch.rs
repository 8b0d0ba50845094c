//! Watched AOIs: each is polled for new Sentinel-1 scenes with ingest's [`Poller`], whose
//! watermark lives in `<out>/_watch/<name>/`; every new scene becomes an event (the AOI, the
//! scene's acquisition time). The watermark is committed only after the scene's events are on
//! disk, so a crash in between finds the scenes again, and the event ids (from AOI and time) make
//! that second finding a no-op.

use std::sync::Arc;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use terrastream_ingest::poll::{PollOptions, Poller};
use terrastream_ingest::stac_api::{SearchParams, StacClient};
use terrastream_ingest::store::RemoteOptions;

use super::Service;
use super::config::Watch;
use crate::flood::event::EventRequest;

/// Where a watcher's watermark lives under the output directory.
pub const WATCH_DIR: &str = "_watch";

/// Polls `w` forever (until the task is dropped); errors are logged and the poll retried after
/// the interval.
pub async fn watch(svc: Arc<Service>, w: Watch) {
    let interval = Duration::from_secs_f64(w.interval_s);
    let mut poller = loop {
        match open(&svc, &w).await {
            Ok(p) => break p,
            Err(e) => {
                tracing::error!(watch = w.name, "cannot start polling: {e:#}");
                tokio::time::sleep(interval).await;
            }
        }
    };
    loop {
        if let Err(e) = poll_once(&svc, &w, &mut poller).await {
            tracing::error!(watch = w.name, "poll failed: {e:#}");
        }
        tokio::time::sleep(interval).await;
    }
}

async fn open(svc: &Service, w: &Watch) -> anyhow::Result<Poller> {
    let lookback = Duration::from_secs_f64(w.lookback_days * 86_400.0);
    let since = w
        .since
        .unwrap_or_else(|| Utc::now() - chrono::Duration::from_std(lookback).unwrap_or_default());
    let params = SearchParams {
        collections: vec![svc.mapping.s1_collection.clone()],
        intersects: Some(w.aoi.clone()),
        datetime: Some(format!("{}/..", since.to_rfc3339_opts(SecondsFormat::Secs, true))),
        ..SearchParams::default()
    };
    let client = StacClient::new(&svc.mapping.stac, RemoteOptions::default())?;
    let options = PollOptions {
        interval: Duration::from_secs_f64(w.interval_s),
        lookback,
        reprocess_updated: false,
    };
    let state = svc.cfg.out.join(WATCH_DIR).join(&w.name);
    std::fs::create_dir_all(&state)?;
    Ok(Poller::open(client, params, options, &state.to_string_lossy()).await?)
}

async fn poll_once(svc: &Service, w: &Watch, poller: &mut Poller) -> anyhow::Result<()> {
    let items = poller.poll().await?;
    for item in &items {
        let p = &item.properties;
        let Some(event_time) = p.datetime.or(p.start_datetime) else {
            continue;
        };
        let req = EventRequest {
            name: Some(format!("{}: {}", w.name, item.id)),
            aoi: w.aoi.clone(),
            event_time,
        };
        let (id, what) = svc.submit(&req, &format!("watch:{}", w.name))?;
        tracing::info!(watch = w.name, scene = item.id, event = id, ?what, "new scene");
    }
    poller.commit().await?;
    Ok(())
}

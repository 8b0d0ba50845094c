//! The mapping queue: event ids in, first in first out, at most `concurrency` mapped at once.
//! Each run moves its record queued → running → done/failed (on disk at every step), maps into a
//! fresh `<out>/maps/<id>/`, and notifies the webhooks.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use tokio::sync::{Semaphore, mpsc};

use super::Service;
use super::store::Status;
use crate::flood::event::run_event;

/// Takes ids from `rx` in order and maps each as soon as a slot is free; returns when the
/// sending side is gone.
pub async fn run_queue(svc: Arc<Service>, mut rx: mpsc::UnboundedReceiver<String>, concurrency: usize) {
    let slots = Arc::new(Semaphore::new(concurrency));
    while let Some(id) = rx.recv().await {
        // Waiting here, not in the spawned task, keeps the order of arrival.
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let svc = Arc::clone(&svc);
        tokio::spawn(async move {
            map_one(&svc, &id).await;
            drop(permit);
        });
    }
}

async fn map_one(svc: &Arc<Service>, id: &str) {
    let started = Instant::now();
    let rec = match svc.store.update(id, |r| {
        r.status = Status::Running;
        r.started = Some(Utc::now());
        r.attempts += 1;
    }) {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(event = id, "cannot record the start: {e:#}");
            return;
        }
    };
    tracing::info!(event = id, attempt = rec.attempts, name = ?rec.request.name, "mapping");
    let out_dir = svc.maps_dir.join(id);
    // The task runs apart so that a panic in the mapping fails this event, not the queue.
    let task = {
        let svc = Arc::clone(svc);
        let (req, out_dir) = (rec.request.clone(), out_dir.clone());
        tokio::spawn(async move {
            // A run cut off by a crash may have left files: start from nothing.
            match std::fs::remove_dir_all(&out_dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => anyhow::bail!("clearing {}: {e}", out_dir.display()),
            }
            let checked = super::hosts::preflight(&svc.mapping, &svc.allowed_hosts, &req).await?;
            tracing::debug!(items = checked, "asset hosts checked");
            run_event(&svc.mapping, &req, &out_dir).await
        })
    };
    let result = match task.await {
        Ok(r) => r,
        Err(e) => Err(anyhow::anyhow!("the mapping task stopped: {e}")),
    };
    let seconds = started.elapsed().as_secs_f64();
    let updated = match result {
        Ok(outcome) => {
            svc.metrics.mapping("done", seconds);
            let files = outcome.files.iter().filter_map(|f| relative(f, &out_dir)).collect();
            tracing::info!(event = id, seconds, flooded_km2 = outcome.flooded_km2, "mapped");
            svc.store.update(id, |r| {
                r.status = Status::Done;
                r.finished = Some(Utc::now());
                r.error = None;
                r.files = files;
                r.flooded_km2 = Some(outcome.flooded_km2);
                r.summary = Some(outcome.summary);
            })
        }
        Err(e) => {
            svc.metrics.mapping("failed", seconds);
            tracing::error!(event = id, seconds, "mapping failed: {e:#}");
            svc.store.update(id, |r| {
                r.status = Status::Failed;
                r.finished = Some(Utc::now());
                r.error = Some(crate::error_line::one_line(&e));
            })
        }
    };
    match updated {
        Ok(Some(rec)) => {
            if let Some(n) = &svc.notifier {
                n.notify(&super::routes::event_json(&rec));
            }
        }
        Ok(None) => {}
        Err(e) => tracing::error!(event = id, "cannot record the outcome: {e:#}"),
    }
}

/// `file` relative to `dir` with `/` separators (outputs may be listed absolute or relative).
fn relative(file: &Path, dir: &Path) -> Option<String> {
    let rel = if file.is_absolute() {
        file.strip_prefix(dir).ok()?
    } else {
        file
    };
    let rel = rel.strip_prefix(dir).unwrap_or(rel);
    Some(
        rel.components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_files_become_relative_links() {
        let dir = Path::new("/o/maps/ab");
        assert_eq!(
            relative(Path::new("/o/maps/ab/flood.tif"), dir).as_deref(),
            Some("flood.tif")
        );
        assert_eq!(
            relative(Path::new("/o/maps/ab/x/y.json"), dir).as_deref(),
            Some("x/y.json")
        );
        assert_eq!(relative(Path::new("x/y.json"), dir).as_deref(), Some("x/y.json"));
        assert_eq!(relative(Path::new("/elsewhere/z.tif"), dir), None);
    }
}

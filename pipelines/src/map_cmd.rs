//! `terrastream map plan`: the work units of a config, before or during a run; and `map --watch`:
//! the same run again every interval, for scenes that keep arriving.

use std::io::Write;

use anyhow::Result;
use chrono::{DateTime, Utc};

use crate::map::manifest::Manifest;
use crate::map::output::OutputLocation;
use crate::map::plan::{UnitLine, plan};
use crate::map::shard::Shard;
use crate::map::{MapConfig, modality};

/// Prints the plan of `cfg`: every unit (or only `shard`'s, when the run is sharded) with its
/// scenes, chip estimate, shard and manifest state, then totals. `json`: one JSON object.
pub async fn print_plan(cfg: &MapConfig, shard: Shard, json: bool, mut out: impl Write) -> Result<()> {
    let modality = modality(cfg)?;
    let plan = plan(cfg, &modality).await?;
    // The manifest is read only if the output exists: planning must not create it.
    let location = OutputLocation::parse(&cfg.output.dir)?;
    let records = match &location {
        OutputLocation::Local(dir) if !dir.exists() => Default::default(),
        _ => Manifest::new(location.open()?).units().await?,
    };
    let count = shard.count;
    let lines: Vec<UnitLine<'_>> = plan
        .units
        .iter()
        .filter(|u| count == 1 || shard.owns(&u.id))
        .map(|u| UnitLine {
            unit: &u.id,
            tile: &u.tile,
            period: &u.period,
            scenes: u.scenes.iter().map(|s| s.item.id()).collect(),
            candidates: u.candidates,
            chips: u.chips(),
            shard: format!(
                "{}/{count}",
                (0..count).find(|&i| Shard { index: i, count }.owns(&u.id)).unwrap_or(0)
            ),
            state: records
                .get(&u.id)
                .map_or("pending".to_string(), |r| r.state.to_string()),
        })
        .collect();
    let chips: Option<u64> = lines.iter().map(|l| l.chips).sum();
    let scenes: usize = lines.iter().map(|l| l.scenes.len()).sum();
    if json {
        let doc = serde_json::json!({
            "units": lines,
            "totals": {"units": lines.len(), "scenes": scenes, "scenes_found": plan.scenes_found, "chips": chips},
            "rejected": plan.rejected,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<32} {:>6} {:>10} {:>10} {:>6}  {:<8}",
        "unit", "scenes", "candidates", "chips", "shard", "state"
    )?;
    for l in &lines {
        let chips = l.chips.map_or("?".to_string(), |c| c.to_string());
        writeln!(
            out,
            "{:<32} {:>6} {:>10} {:>10} {:>6}  {:<8}",
            l.unit,
            l.scenes.len(),
            l.candidates,
            chips,
            l.shard,
            l.state
        )?;
    }
    let chips = chips.map_or("unknown (items without proj:shape)".to_string(), |c| c.to_string());
    writeln!(
        out,
        "total: {} units, {scenes} scenes ({} found), about {chips} chips",
        lines.len(),
        plan.scenes_found
    )?;
    for r in &plan.rejected {
        writeln!(out, "rejected: {r}")?;
    }
    Ok(())
}

/// `terrastream map run.toml --watch SECONDS`: plans and runs `cfg` again every `interval`
/// until SIGINT or SIGTERM, so that new scenes (a `stac` source searched again), scenes
/// published late and updated items are mapped as they appear. The manifest makes each cycle
/// incremental: finished units whose scenes did not change are skipped. After the first cycle,
/// which searches the whole `datetime` range, a cycle searches only from the latest acquisition
/// seen less `source.watch_lookback_days` (from the start of that run period), so a long range
/// costs a few search pages per cycle, not all of them. A signal during a cycle
/// takes effect when it ends (a map run is crash-safe, so SIGKILL is fine too). A cycle that
/// fails (the STAC API down) is logged and the next one tries again. Each cycle's summary goes
/// to `on_cycle`.
pub async fn watch(
    cfg: &MapConfig,
    options: crate::map::RunOptions,
    interval: std::time::Duration,
    mut on_cycle: impl FnMut(u64, &crate::map::MapSummary),
) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Registered before the first cycle, so that a signal during it is not the default exit.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    // The latest acquisition seen so far: later cycles search from it less the lookback.
    let mut watermark: Option<DateTime<Utc>> = None;
    let lookback = crate::time_span::days(cfg.source.watch_lookback_days);
    for cycle in 1u64.. {
        let options = crate::map::RunOptions {
            search_from: watermark.map(|t| t - lookback),
            ..options
        };
        match crate::map::run(cfg, options).await {
            Ok(summary) => {
                // Only a cycle that succeeded moves the watermark, and never back.
                watermark = watermark.max(summary.latest_acquisition);
                on_cycle(cycle, &summary);
            }
            Err(e) => tracing::warn!(cycle, "map cycle failed, trying again in {interval:?}: {e:#}"),
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("map --watch: stopped by a signal");
    Ok(())
}

//! Running a mapping config: plan, take this shard's units, skip the finished ones, and map the
//! rest with a bounded number of units in flight.
//!
//! Each unit is its own stream (source → quality filter → normalize → embed or TiM →
//! GeoParquet, and a COG sink per mask head beside it); the
//! model is loaded once and shared, so while one unit waits on reads another keeps it busy.
//! Queues between stages are bounded (chip-row prefetch, the model's in-flight tasks), so
//! memory depends on `run.concurrency`, not on the number of scenes or units.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;
use terrastream_ingest::bands::{self, ModalityBands};
use terrastream_ingest::scene::error_chain;
use terrastream_ingest::{ChipLedger, LedgerSnapshot, ScenePair};
use terrastream_operators::tim::DecoderWeights;
use terrastream_operators::{BandStats, ChipStream, Embed, Normalize, Operator, QualityFilter, Tim, TimOperatorConfig};
use terrastream_sinks::{GeoParquetConfig, SinkReport};
use tracing::{info, warn};

use super::MapConfig;
use super::manifest::{ChipCounts, Manifest, UnitRecord, UnitState, stale_files};
use super::output::{OutputLocation, OutputStore};
use super::plan::{WorkUnit, plan_since};
use super::shard::{Shard, ShardSource};
use crate::telemetry::{Metrics, RunProgress, peak_rss_bytes};

/// How to run a config.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// This process's shard.
    pub shard: Shard,
    /// Where the shard came from (for the log).
    pub shard_source: Option<ShardSource>,
    /// No progress bars (machine-readable output).
    pub quiet: bool,
    /// Search a `stac` source only from the run period holding this time (a watch cycle's
    /// watermark less its lookback; see [`plan_since`]). `None`: the whole `datetime` range.
    pub search_from: Option<DateTime<Utc>>,
}

/// What happened to one unit in this invocation.
#[derive(Debug, Clone, Serialize)]
pub struct UnitOutcome {
    /// Unit id.
    pub unit: String,
    /// `done`, `failed`, or `skipped` (finished before).
    pub state: String,
    /// Chips written.
    pub chips_written: u64,
    /// Failures, each naming its input.
    pub failures: Vec<String>,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct MapSummary {
    /// This process's shard (`I/N`).
    pub shard: String,
    /// Work units in the whole plan.
    pub units_planned: usize,
    /// Units of this shard.
    pub units_mine: usize,
    /// Units of this shard already done before (unchanged): not mapped again.
    pub units_skipped: usize,
    /// Units mapped now.
    pub units_done: usize,
    /// Units that failed now.
    pub units_failed: usize,
    /// Scenes found, before per-unit selection.
    pub scenes_found: usize,
    /// Where the STAC search started, when a watch cycle narrowed it (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub searched_from: Option<DateTime<Utc>>,
    /// The latest acquisition time among the items found (RFC 3339).
    pub latest_acquisition: Option<DateTime<Utc>>,
    /// Scenes mapped now.
    pub scenes: usize,
    /// Chip counts of this invocation.
    #[serde(skip)]
    pub chips: LedgerSnapshot,
    /// Chips written now.
    pub chips_written: u64,
    /// Chips read now.
    pub chips_read: u64,
    /// Chips skipped now, by reason.
    pub chips_skipped: BTreeMap<String, u64>,
    /// Everything that failed (items, scenes, units), each naming its input.
    pub failures: Vec<String>,
    /// Per-unit outcomes of this shard.
    pub units: Vec<UnitOutcome>,
    /// Files written now, relative to the output.
    pub files: Vec<String>,
    /// The output location.
    pub output: String,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Chips written per second of wall time.
    pub chips_per_second: f64,
    /// Fraction of the wall time (after loading) the model spent in forward passes.
    pub device_busy: f64,
    /// Peak resident memory of the process in MiB (Linux).
    pub peak_rss_mib: Option<f64>,
    /// The model that made the embeddings.
    pub model: String,
}

impl MapSummary {
    /// True when nothing failed.
    pub fn ok(&self) -> bool {
        self.failures.is_empty() && self.units_failed == 0
    }
}

impl std::fmt::Display for MapSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.chips;
        writeln!(f, "model:  {}", self.model)?;
        writeln!(
            f,
            "units:  {} planned, {} in shard {}: {} done now, {} done before, {} failed",
            self.units_planned, self.units_mine, self.shard, self.units_done, self.units_skipped, self.units_failed
        )?;
        write!(f, "scenes: {} found, {} mapped now", self.scenes_found, self.scenes)?;
        if let Some(from) = self.searched_from {
            write!(f, " (searched from {})", from.to_rfc3339())?;
        }
        writeln!(f)?;
        write!(
            f,
            "chips:  {} read, {} written, {} skipped",
            c.read,
            c.written,
            c.skipped_total()
        )?;
        if !c.skipped.is_empty() {
            let why: Vec<String> = c.skipped.iter().map(|(k, v)| format!("{v} {k}")).collect();
            write!(f, " ({})", why.join(", "))?;
        }
        writeln!(f)?;
        for file in &self.files {
            writeln!(f, "output: {}/{file}", self.output)?;
        }
        for u in self.units.iter().filter(|u| u.state == "failed") {
            writeln!(f, "failed: unit {}: {}", u.unit, u.failures.join("; "))?;
        }
        write!(
            f,
            "time:   {:.1} s, {:.1} chips/s, model busy {:.0} %",
            self.seconds,
            self.chips_per_second,
            self.device_busy * 100.0
        )?;
        if let Some(rss) = self.peak_rss_mib {
            write!(f, ", peak memory {rss:.0} MiB")?;
        }
        Ok(())
    }
}

/// The pieces every unit shares.
struct Stages {
    cfg: MapConfig,
    modality: ModalityBands,
    /// One per pixel column: Sentinel-2, then Sentinel-1 when the run reads it.
    normalize: Vec<Normalize>,
    model: ModelStage,
    out: OutputStore,
    manifest: Manifest,
    settings: String,
    shard: Shard,
    run_ledger: Arc<ChipLedger>,
}

/// The model stage every unit's chips go through, on one shared model thread.
#[derive(Clone)]
enum ModelStage {
    /// The encoder's embedding.
    Embed(Embed),
    /// TiM: generated `tim_<MOD>` token ids and the TiM-conditioned embedding.
    Tim(Tim),
}

impl ModelStage {
    /// Loads the model `cfg` names (blocking: call it off the async runtime).
    fn load(cfg: &MapConfig, modality: &'static str) -> Result<Self> {
        let model = cfg.embed_config(modality)?;
        if cfg.model.tim.is_empty() {
            return Ok(Self::Embed(Embed::new(&model)?));
        }
        let targets: Vec<&str> = cfg.model.tim.iter().map(String::as_str).collect();
        // The masks are decoded from the generated land cover on the model thread.
        let lulc_map = (!cfg.output.masks.is_empty()).then(|| match &cfg.model.lulc_tokenizer {
            Some(path) => DecoderWeights::Checkpoint(path.clone()),
            None => DecoderWeights::Random(cfg.model.seed),
        });
        let tim = TimOperatorConfig {
            seed: cfg.model.seed,
            embedding: true,
            lulc_map,
            ..TimOperatorConfig::argmax(model, &targets)
        };
        Ok(Self::Tim(Tim::new(&tim).context("model.tim")?))
    }

    fn apply(&self, input: ChipStream) -> Result<ChipStream> {
        Ok(match self {
            Self::Embed(e) => e.apply(input)?,
            Self::Tim(t) => t.apply(input)?,
        })
    }

    /// The `tim_<MOD>` columns the stage adds.
    fn tim_columns(&self) -> Vec<String> {
        match self {
            Self::Embed(_) => Vec::new(),
            Self::Tim(t) => t.columns(),
        }
    }

    /// Time the model has spent in forward passes so far.
    fn busy(&self) -> std::time::Duration {
        match self {
            Self::Embed(e) => e.busy(),
            Self::Tim(t) => t.busy(),
        }
    }
}

/// The settings a unit's output depends on (not batch size, device or concurrency).
fn settings(cfg: &MapConfig) -> String {
    let mut settings = serde_json::json!({
        "modality": cfg.source.modality,
        "cloud_mask": cfg.source.cloud_mask,
        "chip_size": cfg.grid.chip_size,
        "stride": cfg.grid.stride.unwrap_or(cfg.grid.chip_size),
        "edge": format!("{:?}", cfg.grid.edge),
        "min_valid_fraction": cfg.filter.min_valid_fraction,
        "max_cloud_fraction": cfg.filter.max_cloud_fraction,
        "variant": cfg.model.variant,
        "checkpoint": cfg.model.checkpoint,
        "seed": cfg.model.seed,
        "tim": cfg.model.tim,
        "masks": cfg.output.masks,
        "mask_compression": format!("{:?}", cfg.output.mask_compression),
        // The LULC decoder only shapes the masks: without masks it changes no output.
        "lulc_tokenizer": if cfg.output.masks.is_empty() { None } else { cfg.model.lulc_tokenizer.as_ref() },
        "selection": cfg.run.selection,
        "embedding_encoding": format!("{:?}", cfg.output.embedding_encoding),
        "geometry_encoding": format!("{:?}", cfg.output.geometry_encoding),
        "partitioning": format!("{:?}", cfg.output.partitioning),
        "period": cfg.run.period,
        "s1": cfg.source.s1.as_ref().map(|s1| serde_json::json!({
            "modality": s1.modality,
            "radiometry": s1.radiometry(),
            "max_days": s1.max_days,
            "required": s1.required,
        })),
    });
    // Only a precision other than float32 enters the fingerprint, so that units mapped before
    // the setting existed stay done.
    if let Ok(p) = cfg.precision()
        && p != terrastream_model::Precision::F32
    {
        settings["precision"] = serde_json::Value::String(format!("{p:?}"));
    }
    settings.to_string()
}

/// The modality the config reads.
pub fn modality(cfg: &MapConfig) -> Result<ModalityBands> {
    bands::modality(&cfg.source.modality).with_context(|| {
        format!(
            "source.modality: unknown modality {:?} (known: S2L2A)",
            cfg.source.modality
        )
    })
}

/// Runs `cfg` for one shard. Failed items, scenes and units are in the summary; the caller
/// decides the exit code from [`MapSummary::ok`].
pub async fn run(cfg: &MapConfig, options: RunOptions) -> Result<MapSummary> {
    let started = Instant::now();
    let network = cfg.source.network.remote_options()?;
    if !terrastream_ingest::store::Stores::configure_global(network) {
        bail!("source.network: this process already reads with other network settings");
    }
    let modality = modality(cfg)?;
    let location = OutputLocation::parse(&cfg.output.dir).context("output.dir")?;
    let out = location.open()?;
    let manifest = Manifest::new(out.clone());
    let shard = options.shard;
    if let Some(source) = options.shard_source {
        info!(%shard, ?source, "shard");
    }

    let plan = plan_since(cfg, &modality, options.search_from).await?;
    let records = manifest.units().await?;
    let settings = settings(cfg);
    let mine: Vec<&WorkUnit> = plan.units.iter().filter(|u| shard.owns(&u.id)).collect();
    let (mut todo, mut skipped) = (Vec::new(), 0);
    for unit in &mine {
        match records.get(&unit.id) {
            Some(r) if r.state == UnitState::Done && r.fingerprint == unit.fingerprint(&settings) => skipped += 1,
            previous => todo.push(((*unit).clone(), previous.cloned())),
        }
    }
    info!(
        units = plan.units.len(),
        mine = mine.len(),
        done_before = skipped,
        to_map = todo.len(),
        scenes = plan.scenes_found,
        "plan"
    );
    for r in &plan.rejected {
        warn!("item rejected: {r}");
    }

    let model = match &cfg.model.checkpoint {
        Some(p) => format!("TerraMind {} from {}", cfg.model.variant, p.display()),
        None => format!(
            "TerraMind {} with RANDOM weights (seed {}): for testing only",
            cfg.model.variant, cfg.model.seed
        ),
    };
    let run_ledger = Arc::new(ChipLedger::default());
    let mut outcomes = Vec::new();
    let mut files = Vec::new();
    let mut device_busy = 0.0;
    let scenes: usize = todo.iter().map(|(u, _)| u.scenes.len()).sum();
    if !todo.is_empty() {
        // Build every shared stage before reading anything: a bad checkpoint fails here.
        let mut normalize = Vec::new();
        for column in cfg.pixel_columns(modality.name) {
            let stats = BandStats::terramind_v1(column)
                .with_context(|| format!("no TerraMind statistics for {column}"))?;
            normalize.push(Normalize::new(column, stats)?);
        }
        let (load_cfg, name) = (cfg.clone(), modality.name);
        let model = tokio::task::spawn_blocking(move || ModelStage::load(&load_cfg, name)).await??;
        let stages = Arc::new(Stages {
            cfg: cfg.clone(),
            modality,
            normalize,
            model,
            out: out.clone(),
            manifest: manifest.clone(),
            settings,
            shard,
            run_ledger: Arc::clone(&run_ledger),
        });
        let model_ready = Instant::now();
        let total_units = todo.len() as u64;
        let progress = RunProgress::start(Arc::clone(&run_ledger), todo.len() as u64, options.quiet);
        let model = stages.model.clone();
        let metrics = Metrics::start(
            Arc::clone(&run_ledger),
            Box::new(move || model.busy()),
            progress.units_done(),
            total_units,
        );
        let concurrency = cfg.run.concurrency;
        let mut units = futures::stream::iter(todo.into_iter().map(|(unit, previous)| {
            let stages = Arc::clone(&stages);
            async move { map_unit(&stages, unit, previous).await }
        }))
        .buffer_unordered(concurrency);
        while let Some(outcome) = units.next().await {
            progress.unit_finished(&outcome.0);
            files.extend(outcome.1);
            outcomes.push(outcome.0);
        }
        metrics.stop();
        progress.finish();
        let wall = model_ready.elapsed().as_secs_f64();
        if wall > 0.0 {
            device_busy = (stages.model.busy().as_secs_f64() / wall).min(1.0);
        }
    }
    outcomes.sort_by(|a, b| a.unit.cmp(&b.unit));
    files.sort();

    let chips = run_ledger.snapshot();
    let mut failures = plan.rejected.clone();
    for o in &outcomes {
        failures.extend(o.failures.iter().map(|f| format!("unit {}: {f}", o.unit)));
    }
    let seconds = started.elapsed().as_secs_f64();
    let summary = MapSummary {
        shard: shard.to_string(),
        units_planned: plan.units.len(),
        units_mine: mine.len(),
        units_skipped: skipped,
        units_done: outcomes.iter().filter(|o| o.state == "done").count(),
        units_failed: outcomes.iter().filter(|o| o.state == "failed").count(),
        scenes_found: plan.scenes_found,
        searched_from: plan.searched_from,
        latest_acquisition: plan.latest,
        scenes,
        chips_written: chips.written,
        chips_read: chips.read,
        chips_skipped: chips.skipped.clone(),
        chips,
        failures,
        units: outcomes,
        files,
        output: location.to_string(),
        seconds,
        chips_per_second: if seconds > 0.0 {
            run_ledger.snapshot().written as f64 / seconds
        } else {
            0.0
        },
        device_busy,
        peak_rss_mib: peak_rss_bytes().map(|b| b as f64 / (1024.0 * 1024.0)),
        model,
    };
    let name = format!(
        "{}-shard{}of{}-{}",
        Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
        shard.index,
        shard.count,
        std::process::id()
    );
    manifest.put_run(&name, &serde_json::to_value(&summary)?).await?;
    Ok(summary)
}

/// Maps one unit and records it in the manifest. Errors become the unit's failures: one unit
/// never stops the others.
async fn map_unit(stages: &Stages, unit: WorkUnit, previous: Option<UnitRecord>) -> (UnitOutcome, Vec<String>) {
    let fingerprint = unit.fingerprint(&stages.settings);
    let previous_files = previous.as_ref().map(|p| p.files.clone()).unwrap_or_default();
    let mut record = UnitRecord {
        unit: unit.id.clone(),
        state: UnitState::Running,
        fingerprint,
        scenes: unit.scenes.iter().map(|s| s.item.id().to_string()).collect(),
        shard: stages.shard.to_string(),
        attempt: previous.as_ref().map_or(1, |p| p.attempt + 1),
        started: Utc::now(),
        finished: None,
        chips: ChipCounts::default(),
        files: previous_files.clone(),
        failures: vec![],
    };
    let ledger = Arc::new(ChipLedger::child(Arc::clone(&stages.run_ledger)));
    let result = async {
        stages.manifest.put(&record).await?;
        info!(unit = %unit.id, scenes = unit.scenes.len(), attempt = record.attempt, "unit started");
        let files = map_scenes(stages, &unit, Arc::clone(&ledger)).await?;
        let files = stages.out.publish(&files).await?;
        stages.out.remove(&stale_files(&previous_files, &files)).await?;
        anyhow::Ok(files)
    }
    .await;
    let snapshot = ledger.snapshot();
    record.failures = snapshot.failed.clone();
    let files = match result {
        Ok(files) => files,
        Err(e) => {
            record.failures.push(crate::error_line::one_line(&e));
            vec![]
        }
    };
    record.state = if record.failures.is_empty() {
        UnitState::Done
    } else {
        UnitState::Failed
    };
    record.files = if record.state == UnitState::Done {
        files.clone()
    } else {
        // A failed attempt lists every file that may exist, the earlier attempt's too: the
        // next attempt deletes what it does not write again.
        let mut all = files.clone();
        all.extend(previous_files);
        all.sort();
        all.dedup();
        all
    };
    record.chips = ChipCounts {
        planned: snapshot.planned,
        read: snapshot.read,
        written: snapshot.written,
        skipped: snapshot.skipped,
    };
    record.finished = Some(Utc::now());
    if let Err(e) = stages.manifest.put(&record).await {
        record.failures.push(crate::error_line::one_line(&e));
        record.state = UnitState::Failed;
    }
    match record.state {
        UnitState::Done => info!(unit = %unit.id, chips = record.chips.written, "unit done"),
        _ => warn!(unit = %unit.id, failures = ?record.failures, "unit failed"),
    }
    let outcome = UnitOutcome {
        unit: unit.id,
        state: record.state.to_string(),
        chips_written: record.chips.written,
        failures: record.failures,
    };
    (outcome, files)
}

/// The unit's scenes through the stages into GeoParquet; returns the committed files.
async fn map_scenes(stages: &Stages, unit: &WorkUnit, ledger: Arc<ChipLedger>) -> Result<Vec<std::path::PathBuf>> {
    let cfg = &stages.cfg;
    let source = cfg.scene_source(stages.modality, Arc::clone(&ledger))?;
    let filter = QualityFilter::new(
        cfg.filter.min_valid_fraction,
        cfg.filter.max_cloud_fraction,
        Arc::clone(&ledger),
    )?;
    let mut sink_cfg = GeoParquetConfig::new(stages.out.local.clone());
    sink_cfg.row_group_rows = cfg.output.row_group_rows;
    sink_cfg.zstd_level = cfg.output.zstd_level;
    sink_cfg.embedding_encoding = cfg.output.embedding_encoding;
    sink_cfg.geometry_encoding = cfg.output.geometry_encoding;
    sink_cfg.partitioning = cfg.output.partitioning;
    // One file per unit (per partition): a unit mapped again replaces exactly its files.
    sink_cfg.work_unit = Some(unit.id.clone());
    // TiM's token-id grids are small: they go into the GeoParquet rows.
    sink_cfg.keep_tensors = stages.model.tim_columns();
    let sink = sink_cfg.build(Arc::clone(&ledger))?;
    let pairs: Vec<ScenePair> = unit
        .scenes
        .iter()
        .map(|s| ScenePair {
            s2: s.item.clone(),
            s1: s.s1.clone(),
        })
        .collect();
    let mut stream = filter.apply(source.stream_pairs(pairs, 2))?;
    for normalize in &stages.normalize {
        stream = normalize.apply(stream)?;
    }
    let stream = stages.model.apply(stream)?;
    // Every mask sink sees every chip beside the GeoParquet sink; all run at once, each at
    // most two batches behind, so memory stays bounded.
    let heads = &cfg.output.masks;
    let (stream, followers) = terrastream_ingest::tee(stream, heads.len(), 2);
    let mut mask_sinks = Vec::with_capacity(heads.len());
    for (head, follower) in heads.iter().zip(followers) {
        let sink = head
            .cog_config(&stages.out.local, cfg.output.mask_compression)
            .build(Arc::clone(&ledger))
            .with_context(|| format!("output.masks: {}", head.name()))?;
        let input = head.prepare(follower).map_err(|e| anyhow::anyhow!("output.masks: {}: {}", head.name(), error_chain(&e)))?;
        mask_sinks.push(async move {
            sink.run(input)
                .await
                .map_err(|e| anyhow::anyhow!("mask {}: {}", head.name(), error_chain(&e)))
        });
    }
    let embeddings = async { sink.run(stream).await.map_err(|e| anyhow::anyhow!(error_chain(&e))) };
    let (report, masks) = futures::future::try_join(embeddings, futures::future::try_join_all(mask_sinks)).await?;
    let mut files = Vec::new();
    for report in std::iter::once(report).chain(masks) {
        let SinkReport { files: written, stac_items, collection, .. } = report;
        // The STAC items of the files are outputs too; the collections are rebuilt per unit.
        files.extend(written);
        files.extend(stac_items);
        files.extend(collection);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_precision_other_than_float32_enters_the_fingerprint() {
        let f32: MapConfig = toml::from_str("[source]\nitems=['a.json']\n[output]\ndir='out'\n").expect("config");
        let mut bf16 = f32.clone();
        bf16.model.precision = "bfloat16".into();
        let (a, b) = (settings(&f32), settings(&bf16));
        assert!(!a.contains("precision"), "{a}");
        assert!(b.contains(r#""precision":"Bf16""#), "{b}");
        assert_eq!(bf16.embed_config("S2L2A").expect("embed config").precision, terrastream_model::Precision::Bf16);
    }

    #[test]
    fn the_lulc_tokenizer_enters_the_fingerprint_only_with_masks() {
        let plain: MapConfig = toml::from_str("[source]\nitems=['a.json']\n[model]\ntim=['LULC']\n[output]\ndir='out'\n").expect("config");
        let mut tokenizer = plain.clone();
        tokenizer.model.lulc_tokenizer = Some("TerraMind_Tokenizer_LULC.pt".into());
        assert_eq!(settings(&plain), settings(&tokenizer), "no masks: the decoder changes nothing");
        let (mut plain_masks, mut tokenizer_masks) = (plain, tokenizer);
        plain_masks.output.masks = vec![super::super::masks::MaskHead::Lulc];
        tokenizer_masks.output.masks = vec![super::super::masks::MaskHead::Lulc];
        assert_ne!(settings(&plain_masks), settings(&tokenizer_masks));
        assert!(settings(&tokenizer_masks).contains("TerraMind_Tokenizer_LULC.pt"));
    }
}

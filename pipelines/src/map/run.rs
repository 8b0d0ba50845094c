//! Running a mapping config.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use terrastream_ingest::bands;
use terrastream_ingest::item::SceneItem;
use terrastream_ingest::scene::error_chain;
use terrastream_ingest::{ChipLedger, LedgerSnapshot, SceneOptions, SceneSource};
use terrastream_operators::{BandStats, DeviceChoice, Embed, EmbedConfig, Normalize, Operator, QualityFilter};
use terrastream_sinks::GeoParquetConfig;

use super::MapConfig;
use crate::telemetry::Progress;

/// What a run did.
#[derive(Debug, Clone)]
pub struct MapSummary {
    /// Scenes given.
    pub scenes: usize,
    /// Chip counts.
    pub chips: LedgerSnapshot,
    /// Files written.
    pub files: Vec<PathBuf>,
    /// Wall time.
    pub elapsed: Duration,
    /// The model that made the embeddings.
    pub model: String,
}

impl std::fmt::Display for MapSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.chips;
        writeln!(f, "model:  {}", self.model)?;
        writeln!(f, "scenes: {} given, {} failed", self.scenes, c.failed.len())?;
        write!(f, "chips:  {} read, {} written, {} skipped", c.read, c.written, c.skipped_total())?;
        if !c.skipped.is_empty() {
            let why: Vec<String> = c.skipped.iter().map(|(k, v)| format!("{v} {k}")).collect();
            write!(f, " ({})", why.join(", "))?;
        }
        writeln!(f)?;
        for file in &self.files {
            writeln!(f, "output: {}", file.display())?;
        }
        write!(f, "time:   {:.1} s", self.elapsed.as_secs_f64())
    }
}

/// Runs `cfg`. Scenes that fail are in the summary's `chips.failed`; the caller decides the
/// exit code.
pub async fn run(cfg: &MapConfig) -> Result<MapSummary> {
    let started = Instant::now();
    let ledger = Arc::new(ChipLedger::default());
    let modality = bands::modality(&cfg.source.modality)
        .with_context(|| format!("source.modality: unknown modality {:?} (known: S2L2A)", cfg.source.modality))?;
    if cfg.grid.chip_size % 16 != 0 {
        bail!("grid.chip_size: TerraMind needs a multiple of 16, got {}", cfg.grid.chip_size);
    }
    let options = SceneOptions {
        modality,
        chip_size: cfg.grid.chip_size,
        stride: cfg.grid.stride.unwrap_or(cfg.grid.chip_size),
        edge: cfg.grid.edge,
        rewrites: cfg.source.rewrite.clone(),
        cloud_mask: cfg.source.cloud_mask,
    };
    let source = SceneSource::new(options, Arc::clone(&ledger))?;

    // Items that cannot be read are failures of their own; the rest still run.
    let mut items = Vec::new();
    for path in &cfg.source.items {
        match SceneItem::from_path(path) {
            Ok(item) => items.push(item),
            Err(e) => ledger.add_failed(error_chain(&e)),
        }
    }

    // Build every stage before reading anything: a bad checkpoint fails here.
    let stats = BandStats::terramind_v1(modality.name)
        .with_context(|| format!("no TerraMind statistics for {}", modality.name))?;
    let normalize = Normalize::new(modality.name, stats)?;
    let filter = QualityFilter::new(cfg.filter.min_valid_fraction, cfg.filter.max_cloud_fraction, Arc::clone(&ledger))?;
    let embed_cfg = EmbedConfig {
        variant: cfg.model.variant.clone(),
        checkpoint: cfg.model.checkpoint.clone(),
        seed: cfg.model.seed,
        batch_size: cfg.model.batch_size,
        device: DeviceChoice::parse(&cfg.model.device)?,
        columns: vec![modality.name.to_string()],
    };
    let embed = tokio::task::spawn_blocking(move || Embed::new(&embed_cfg)).await??;
    let mut sink_cfg = GeoParquetConfig::new(cfg.output.dir.clone());
    sink_cfg.row_group_rows = cfg.output.row_group_rows;
    let sink = sink_cfg.build(Arc::clone(&ledger))?;

    let progress = Progress::start(Arc::clone(&ledger));
    let scenes = cfg.source.items.len();
    let stream = source.stream(items, 2);
    let stream = filter.apply(stream)?;
    let stream = normalize.apply(stream)?;
    let stream = embed.apply(stream)?;
    let report = sink.run(stream).await;
    progress.finish();
    let report = report?;
    let model = match &cfg.model.checkpoint {
        Some(p) => format!("TerraMind {} from {}", cfg.model.variant, p.display()),
        None => format!("TerraMind {} with RANDOM weights (seed {}): for testing only", cfg.model.variant, cfg.model.seed),
    };
    Ok(MapSummary { scenes, chips: ledger.snapshot(), files: report.files, elapsed: started.elapsed(), model })
}

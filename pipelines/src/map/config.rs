//! The run config (TOML). Relative paths are relative to the config file's directory.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use terrastream_ingest::grid::EdgePolicy;
use terrastream_ingest::item::HrefRewrite;
use terrastream_ingest::store::normalize;

/// A mapping run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapConfig {
    /// Where scenes come from.
    pub source: SourceConfig,
    /// How scenes are cut into chips.
    #[serde(default)]
    pub grid: GridConfig,
    /// Which chips are kept.
    #[serde(default)]
    pub filter: FilterConfig,
    /// The model.
    #[serde(default)]
    pub model: ModelConfig,
    /// Where outputs go.
    pub output: OutputConfig,
}

/// Scenes to read.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// STAC item files (JSON).
    pub items: Vec<PathBuf>,
    /// Modality to read: `S2L2A`.
    #[serde(default = "default_modality")]
    pub modality: String,
    /// Read the scene classification layer for `cloud_fraction`.
    #[serde(default = "yes")]
    pub cloud_mask: bool,
    /// Href prefix rewrites, e.g. a bucket to a local mirror. A relative `replace` is relative
    /// to the config file.
    #[serde(default)]
    pub rewrite: Vec<HrefRewrite>,
}

/// The chip grid.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridConfig {
    /// Chip side in pixels of the scene's finest band (TerraMind: a multiple of 16).
    #[serde(default = "default_chip")]
    pub chip_size: usize,
    /// Distance between chips in pixels; `chip_size` = no overlap.
    pub stride: Option<usize>,
    /// Scene edges: `snap` (last chip ends at the edge), `drop` or `pad`.
    #[serde(default)]
    pub edge: EdgePolicy,
}

/// Chip quality thresholds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Least fraction of pixels with data in every band (0..=1).
    #[serde(default = "default_min_valid")]
    pub min_valid_fraction: f32,
    /// Largest fraction of cloud pixels (0..=1).
    #[serde(default = "one")]
    pub max_cloud_fraction: f32,
}

/// The model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// TerraMind variant: `tiny`, `small`, `base`, `large`.
    #[serde(default = "default_variant")]
    pub variant: String,
    /// Checkpoint (`TerraMind_v1_<variant>.pt` or `.safetensors`). Without one the model runs
    /// with random weights, for testing only.
    pub checkpoint: Option<PathBuf>,
    /// Seed of the random weights.
    #[serde(default)]
    pub seed: u64,
    /// Chips per forward pass.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    #[serde(default = "default_device")]
    pub device: String,
}

/// Outputs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Output directory.
    pub dir: PathBuf,
    /// Rows per Parquet row group.
    #[serde(default = "default_row_group")]
    pub row_group_rows: usize,
}

fn default_modality() -> String {
    "S2L2A".into()
}
const fn yes() -> bool {
    true
}
const fn default_chip() -> usize {
    224
}
const fn default_min_valid() -> f32 {
    0.5
}
const fn one() -> f32 {
    1.0
}
fn default_variant() -> String {
    "tiny".into()
}
const fn default_batch() -> usize {
    8
}
fn default_device() -> String {
    "auto".into()
}
const fn default_row_group() -> usize {
    8192
}

impl Default for GridConfig {
    fn default() -> Self {
        Self { chip_size: default_chip(), stride: None, edge: EdgePolicy::default() }
    }
}

impl Default for FilterConfig {
    fn default() -> Self {
        Self { min_valid_fraction: default_min_valid(), max_cloud_fraction: one() }
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self { variant: default_variant(), checkpoint: None, seed: 0, batch_size: default_batch(), device: default_device() }
    }
}

impl MapConfig {
    /// Reads and validates a config file; relative paths become relative to its directory.
    pub fn from_path(path: &Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        let text = std::fs::read_to_string(path).with_context(|| format!("config {}", path.display()))?;
        let mut cfg: Self = toml::from_str(&text).with_context(|| format!("config {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let base = std::path::absolute(base).with_context(|| format!("config {}", path.display()))?;
        cfg.resolve(&base);
        Ok(cfg)
    }

    fn resolve(&mut self, base: &Path) {
        let abs = |p: &PathBuf| normalize(&if p.is_absolute() { p.clone() } else { base.join(p) });
        self.source.items = self.source.items.iter().map(abs).collect();
        for r in &mut self.source.rewrite {
            if !r.replace.contains("://") && !Path::new(&r.replace).is_absolute() {
                let dir = normalize(&base.join(&r.replace));
                // Keep the trailing separator: the rewrite is a string prefix.
                let sep = if r.replace.ends_with('/') { "/" } else { "" };
                r.replace = format!("{}{sep}", dir.display());
            }
        }
        self.model.checkpoint = self.model.checkpoint.as_ref().map(abs);
        self.output.dir = abs(&self.output.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named() {
        let err = toml::from_str::<MapConfig>("[source]\nitems=[]\nbands=3\n[output]\ndir='x'\n").expect_err("unknown key");
        assert!(err.to_string().contains("bands"), "{err}");
    }

    #[test]
    fn relative_paths_follow_the_config() {
        let mut cfg: MapConfig = toml::from_str(
            "[source]\nitems=['a.json']\n[[source.rewrite]]\nprefix='https://x/'\nreplace='data/'\n[output]\ndir='out'\n",
        )
        .expect("config");
        cfg.resolve(Path::new("/etc/ts"));
        assert_eq!(cfg.source.items[0], PathBuf::from("/etc/ts/a.json"));
        assert_eq!(cfg.source.rewrite[0].replace, "/etc/ts/data/");
        assert_eq!(cfg.output.dir, PathBuf::from("/etc/ts/out"));
        assert_eq!(cfg.grid.chip_size, 224);
    }
}

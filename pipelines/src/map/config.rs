//! The run config (TOML). Relative paths are relative to the config file's directory.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use serde::Deserialize;
use terrastream_ingest::grid::EdgePolicy;
use terrastream_ingest::item::HrefRewrite;
use terrastream_ingest::sar::Radiometry;
use terrastream_ingest::store::normalize;
use terrastream_sinks::cog::CogCompression;
use terrastream_sinks::geoparquet::{EmbeddingEncoding, GeometryEncoding, Partitioning};

use super::masks::MaskHead;

use crate::time_span::{MAX_DAYS, MAX_SECONDS};

fn default_watch_lookback() -> f64 {
    3.0
}

/// A mapping run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapConfig {
    /// Where scenes come from.
    pub source: SourceConfig,
    /// How the run is cut into work units and how many run at once.
    #[serde(default)]
    pub run: RunConfig,
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

/// Scenes to read: STAC item files, or a STAC API search. The AOI, date and tile filters apply
/// to both.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// STAC item files (JSON). Either this or `stac`.
    #[serde(default)]
    pub items: Vec<PathBuf>,
    /// A STAC API root to search, e.g. `https://earth-search.aws.element84.com/v1`.
    pub stac: Option<String>,
    /// Collections to search (with `stac`), e.g. `["sentinel-2-l2a"]`.
    #[serde(default)]
    pub collections: Vec<String>,
    /// Area of interest as `[west, south, east, north]` in degrees (EPSG:4326).
    pub bbox: Option<[f64; 4]>,
    /// Area of interest as a GeoJSON file (geometry, Feature or FeatureCollection; EPSG:4326).
    pub aoi: Option<PathBuf>,
    /// Keep only scenes of these grid tiles (`grid:code`, e.g. `MGRS-29RKH`).
    #[serde(default)]
    pub tiles: Vec<String>,
    /// Acquisition time range: an RFC 3339 interval `start/end` (`..` = open), or one date.
    pub datetime: Option<String>,
    /// Largest `eo:cloud_cover` of a scene, in percent.
    pub max_cloud_cover: Option<f64>,
    /// Page size of STAC API searches.
    pub page_size: Option<u64>,
    /// With `map --watch` and a `stac` source: how far before the latest acquisition seen a
    /// cycle searches again, in days, for items published late or updated. A cycle searches from
    /// the start of the run period that holds that time, so every unit it plans has all its
    /// scenes; the first cycle searches the whole `datetime` range. Default 3.
    #[serde(default = "default_watch_lookback")]
    pub watch_lookback_days: f64,
    /// Most HTTP/S3 requests one scene may issue (headers and tiles); more fails the scene.
    pub request_budget: Option<u64>,
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
    /// Sentinel-1 read with every scene (`[source.s1]`): the model then takes both modalities.
    pub s1: Option<S1SourceConfig>,
    /// Retries, timeouts and concurrency of HTTP and S3 requests (`[source.network]`).
    #[serde(default)]
    pub network: NetworkConfig,
}

/// Network settings of every remote request of a run (STAC searches, asset reads). Absent keys
/// keep the defaults: 5 retries, 100 ms first backoff doubling up to 15 s, 30 s per request,
/// 16 requests in flight per host.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// Retries of a request that timed out, lost its connection or got 429/5xx (Retry-After is
    /// honoured).
    pub max_retries: Option<usize>,
    /// First backoff between retries, in milliseconds; it doubles, with jitter.
    pub init_backoff_ms: Option<u64>,
    /// Longest backoff, in seconds.
    pub max_backoff_s: Option<f64>,
    /// Time limit of one request, in seconds.
    pub timeout_s: Option<f64>,
    /// Requests in flight at once to one host.
    pub max_concurrency_per_host: Option<usize>,
}

impl NetworkConfig {
    /// The options of the object stores and STAC clients.
    pub fn remote_options(&self) -> anyhow::Result<terrastream_ingest::store::RemoteOptions> {
        let d = terrastream_ingest::store::RemoteOptions::default();
        let secs = |key: &str, v: Option<f64>, default: std::time::Duration| match v {
            None => Ok(default),
            // At most a day: larger values overflow the durations made from them (found by fuzzing).
            Some(s) if s > 0.0 && s <= MAX_SECONDS => Ok(std::time::Duration::from_secs_f64(s)),
            Some(s) => anyhow::bail!("source.network.{key} = {s}: must be a positive number of seconds, at most {MAX_SECONDS}"),
        };
        Ok(terrastream_ingest::store::RemoteOptions {
            max_retries: self.max_retries.unwrap_or(d.max_retries),
            init_backoff: self.init_backoff_ms.map_or(d.init_backoff, std::time::Duration::from_millis),
            max_backoff: secs("max_backoff_s", self.max_backoff_s, d.max_backoff)?,
            timeout: secs("timeout_s", self.timeout_s, d.timeout)?,
            max_concurrency_per_host: match self.max_concurrency_per_host {
                Some(0) => anyhow::bail!("source.network.max_concurrency_per_host must be at least 1"),
                n => n.unwrap_or(d.max_concurrency_per_host),
            },
        })
    }
}

/// Where the Sentinel-1 acquisitions come from and how they are matched to the Sentinel-2
/// scenes: the nearest in time within `max_days` whose bbox intersects the scene's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S1SourceConfig {
    /// STAC item files (JSON) of Sentinel-1 acquisitions. Either this or `stac`.
    #[serde(default)]
    pub items: Vec<PathBuf>,
    /// A STAC API root to search, over the selected scenes' bbox and dates +- `max_days`.
    pub stac: Option<String>,
    /// Collections to search (with `stac`), e.g. `["sentinel-1-grd"]`.
    #[serde(default)]
    pub collections: Vec<String>,
    /// Page size of STAC API searches.
    pub page_size: Option<u64>,
    /// TerraMind modality and pixel-column name: `S1GRD` or `S1RTC`.
    pub modality: S1Modality,
    /// What the assets hold: `dn_amplitude`, `linear_power` or `db`. Default: `dn_amplitude`
    /// for `S1GRD` (Earth Search GRD), `linear_power` for `S1RTC` (Planetary Computer RTC).
    pub radiometry: Option<Radiometry>,
    /// Largest time between the Sentinel-2 and the Sentinel-1 acquisition, in days.
    #[serde(default = "default_max_days")]
    pub max_days: f64,
    /// A scene without a match fails its unit (`true`), or is skipped with the reason
    /// "no Sentinel-1 match" (`false`, the default).
    #[serde(default)]
    pub required: bool,
    /// Href prefix rewrites of the Sentinel-1 assets (as `source.rewrite`).
    #[serde(default)]
    pub rewrite: Vec<HrefRewrite>,
}

/// The Sentinel-1 modalities TerraMind takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum S1Modality {
    /// Ground-range detected backscatter, dB.
    #[serde(rename = "S1GRD")]
    Grd,
    /// Radiometrically terrain-corrected backscatter, dB.
    #[serde(rename = "S1RTC")]
    Rtc,
}

impl S1Modality {
    /// The ingest band table.
    pub fn bands(self) -> terrastream_ingest::bands::ModalityBands {
        match self {
            Self::Grd => terrastream_ingest::sar::S1GRD,
            Self::Rtc => terrastream_ingest::sar::S1RTC,
        }
    }
}

impl S1SourceConfig {
    /// `radiometry`, or the modality's usual one.
    pub fn radiometry(&self) -> Radiometry {
        self.radiometry.unwrap_or(match self.modality {
            S1Modality::Grd => Radiometry::DnAmplitude,
            S1Modality::Rtc => Radiometry::LinearPower,
        })
    }
}

/// Work units, scene selection and concurrency.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// The time step of work units: `day`, `week` (ISO), `month`, `year` or `all`. A work unit
    /// is one grid tile in one period.
    #[serde(default)]
    pub period: Period,
    /// Which scenes of a unit are mapped: `all`, or `least_cloudy` (one per unit).
    #[serde(default)]
    pub selection: Selection,
    /// Work units in flight at once: while one waits on reads another keeps the model busy.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Shard count for Kubernetes Indexed Jobs (`JOB_COMPLETION_INDEX` gives only the index);
    /// `TERRASTREAM_SHARD_COUNT` overrides it.
    pub shards: Option<usize>,
    /// Whether a finished unit is mapped again when one of its items was re-published (its
    /// `updated` time changed). Default true; false keeps finished units as they are unless
    /// their scene list changes (a scene published late is still mapped).
    #[serde(default = "default_reprocess_updated")]
    pub reprocess_updated: bool,
}

/// The time step of work units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// One UTC calendar day.
    Day,
    /// One ISO week.
    Week,
    /// One calendar month.
    #[default]
    Month,
    /// One calendar year.
    Year,
    /// The whole date range: one unit per tile.
    All,
}

/// Which scenes of a work unit are mapped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// Every scene.
    #[default]
    All,
    /// The scene with the lowest `eo:cloud_cover` (ties: the later, then the smaller id).
    LeastCloudy,
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
    /// `f32` (default, the reference precision), `bf16` or `f16`. bf16 suits GPUs and CPUs with
    /// AMX or AVX512-BF16 (about 3x the float32 speed there); embeddings then differ from the
    /// float32 ones in the third significant digit.
    #[serde(default = "default_precision")]
    pub precision: String,
    /// Thinking-in-Modalities: modalities the model generates first (`LULC`, `NDVI`, `S2L2A`,
    /// `S1GRD`, `S1RTC`, `DEM`; greedy, deterministic). Each becomes a `tim_<MOD>` column of
    /// token ids, and the embedding is then the TiM-conditioned one. Empty: the plain encoder.
    #[serde(default)]
    pub tim: Vec<String>,
    /// The LULC tokenizer (`TerraMind_Tokenizer_LULC.pt`) whose decoder turns generated land
    /// cover into the `[output] masks`. Needed with a `checkpoint`; without one the decoder has
    /// random weights too, for testing only.
    pub lulc_tokenizer: Option<PathBuf>,
}

/// Outputs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Output location: a directory, a `file://` URL or an object store URL (`s3://bucket/prefix`).
    /// Embeddings, the run manifest and the failure log all go here.
    pub dir: String,
    /// Rows per Parquet row group.
    #[serde(default = "default_row_group")]
    pub row_group_rows: usize,
    /// Zstd level of the Parquet files (1..=22).
    #[serde(default = "default_zstd")]
    pub zstd_level: i32,
    /// Embedding storage: `float32`, `float16`, or `int8` (with a per-row scale column).
    #[serde(default)]
    pub embedding_encoding: EmbeddingEncoding,
    /// Footprint storage: `wkb` or `geoarrow` (GeoArrow polygons).
    #[serde(default)]
    pub geometry_encoding: GeometryEncoding,
    /// File layout: `none` (`embeddings/<unit>.parquet`) or `grid_date` (hive-style
    /// `embeddings/grid_id=<tile>/date=<YYYY-MM-DD>/<unit>.parquet`).
    #[serde(default)]
    pub partitioning: Partitioning,
    /// Per-pixel masks, each mosaicked per scene into `masks/<head>/<scene>.tif` (a COG with
    /// overviews and a STAC item): `lulc` (TerraMind's generated land cover) and `water` (its
    /// water class). Both need `"LULC"` in `model.tim`. Empty: embeddings only.
    #[serde(default)]
    pub masks: Vec<MaskHead>,
    /// Tile compression of the mask COGs: `deflate` or `zstd`.
    #[serde(default)]
    pub mask_compression: CogCompression,
}

fn default_modality() -> String {
    "S2L2A".into()
}
const fn default_max_days() -> f64 {
    6.0
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
fn default_precision() -> String {
    "f32".into()
}
const fn default_row_group() -> usize {
    8192
}
const fn default_zstd() -> i32 {
    3
}
const fn default_concurrency() -> usize {
    2
}

const fn default_reprocess_updated() -> bool {
    true
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            period: Period::default(),
            selection: Selection::default(),
            concurrency: default_concurrency(),
            shards: None,
            reprocess_updated: default_reprocess_updated(),
        }
    }
}

impl Default for GridConfig {
    fn default() -> Self {
        Self {
            chip_size: default_chip(),
            stride: None,
            edge: EdgePolicy::default(),
        }
    }
}

impl Default for FilterConfig {
    fn default() -> Self {
        Self {
            min_valid_fraction: default_min_valid(),
            max_cloud_fraction: one(),
        }
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            variant: default_variant(),
            checkpoint: None,
            seed: 0,
            batch_size: default_batch(),
            device: default_device(),
            precision: default_precision(),
            tim: Vec::new(),
            lulc_tokenizer: None,
        }
    }
}

impl MapConfig {
    /// Reads and validates a config file; relative paths become relative to its directory.
    pub fn from_path(path: &Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        let text = std::fs::read_to_string(path).with_context(|| format!("config {}", path.display()))?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let base = std::path::absolute(base).with_context(|| format!("config {}", path.display()))?;
        Self::parse(&text, &base).with_context(|| format!("config {}", path.display()))
    }

    /// Parses and validates a config's text; relative paths become relative to `base`.
    pub fn parse(text: &str, base: &Path) -> anyhow::Result<Self> {
        let mut cfg: Self = toml::from_str(text)?;
        cfg.resolve(base);
        cfg.validate()?;
        Ok(cfg)
    }

    /// How scenes are read and chipped for `modality`: grid, edge policy, rewrites, cloud mask,
    /// per-scene request budget.
    pub fn scene_options(&self, modality: terrastream_ingest::bands::ModalityBands) -> terrastream_ingest::SceneOptions {
        terrastream_ingest::SceneOptions {
            modality,
            chip_size: self.grid.chip_size,
            stride: self.grid.stride.unwrap_or(self.grid.chip_size),
            edge: self.grid.edge,
            rewrites: self.source.rewrite.clone(),
            cloud_mask: self.source.cloud_mask,
            request_budget: self.source.request_budget,
        }
    }

    /// The scene source for `modality`, reading each scene's matched Sentinel-1 item as well
    /// when `[source.s1]` is set.
    pub fn scene_source(
        &self,
        modality: terrastream_ingest::bands::ModalityBands,
        ledger: std::sync::Arc<terrastream_ingest::ChipLedger>,
    ) -> anyhow::Result<terrastream_ingest::SceneSource> {
        let mut source = terrastream_ingest::SceneSource::new(self.scene_options(modality), ledger)?;
        if let Some(s1) = &self.source.s1 {
            source = source.with_s1(terrastream_ingest::S1Options {
                required: s1.required,
                rewrites: s1.rewrite.clone(),
                ..terrastream_ingest::S1Options::new(s1.modality.bands(), s1.radiometry())
            });
        }
        Ok(source)
    }

    /// The pixel columns the model takes: `modality`, then the Sentinel-1 column when
    /// `[source.s1]` is set.
    pub fn pixel_columns(&self, modality: &'static str) -> Vec<&'static str> {
        let mut columns = vec![modality];
        columns.extend(self.source.s1.as_ref().map(|s1| s1.modality.bands().name));
        columns
    }

    /// The model this config runs on the pixel columns of `modality` (and Sentinel-1).
    pub fn embed_config(&self, modality: &'static str) -> anyhow::Result<terrastream_operators::EmbedConfig> {
        Ok(terrastream_operators::EmbedConfig {
            variant: self.model.variant.clone(),
            checkpoint: self.model.checkpoint.clone(),
            seed: self.model.seed,
            batch_size: self.model.batch_size,
            device: terrastream_operators::DeviceChoice::parse(&self.model.device)?,
            columns: self.pixel_columns(modality).iter().map(ToString::to_string).collect(),
            precision: self.precision()?,
        })
    }

    /// `model.precision`, parsed.
    pub fn precision(&self) -> anyhow::Result<terrastream_model::Precision> {
        let p = &self.model.precision;
        terrastream_model::Precision::from_name(p)
            .ok_or_else(|| anyhow::anyhow!("model.precision {p:?}: expected f32, bf16 or f16"))
    }

    /// Checks values serde cannot; errors name the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        use anyhow::bail;
        let s = &self.source;
        match (s.items.is_empty(), &s.stac) {
            (true, None) => bail!("source: give `items` (STAC item files) or `stac` (a STAC API URL)"),
            (false, Some(_)) => bail!("source: `items` and `stac` exclude each other"),
            _ => {}
        }
        if s.bbox.is_some() && s.aoi.is_some() {
            bail!("source: `bbox` and `aoi` exclude each other");
        }
        s.network.remote_options()?;
        self.precision()?;
        if let Some([w, south, e, n]) = s.bbox {
            let ok = (-180.0..=180.0).contains(&w)
                && (-180.0..=180.0).contains(&e)
                && (-90.0..=90.0).contains(&south)
                && (-90.0..=90.0).contains(&n)
                && south <= n;
            if !ok {
                bail!(
                    "source.bbox: expected [west, south, east, north] in degrees, got {:?}",
                    [w, south, e, n]
                );
            }
        }
        if let Some(dt) = &s.datetime {
            crate::map::plan::DateRange::parse(dt).context("source.datetime")?;
        }
        if s.max_cloud_cover.is_some_and(|c| !(0.0..=100.0).contains(&c)) {
            bail!(
                "source.max_cloud_cover: a percentage 0..=100, got {:?}",
                s.max_cloud_cover
            );
        }
        if !(s.watch_lookback_days >= 0.0 && s.watch_lookback_days <= MAX_DAYS) {
            bail!(
                "source.watch_lookback_days: a number of days 0..={MAX_DAYS}, got {}",
                s.watch_lookback_days
            );
        }
        for (i, name) in self.model.tim.iter().enumerate() {
            terrastream_model::Modality::tim_target(name)
                .map_err(|e| anyhow::anyhow!("model.tim[{i}] = {name:?}: {e}"))?;
        }
        let masks = &self.output.masks;
        if let Some((i, head)) = masks.iter().enumerate().find(|(i, h)| masks[..*i].contains(h)) {
            bail!("output.masks[{i}]: {:?} is listed twice", head.name());
        }
        if !masks.is_empty() {
            let lulc = Some(terrastream_model::Modality::LULC);
            if !self.model.tim.iter().any(|t| terrastream_model::Modality::tim_target(t).ok() == lulc) {
                bail!(
                    "output.masks: {:?} come from the land cover TerraMind generates: add \"LULC\" to model.tim",
                    masks.iter().map(|h| h.name()).collect::<Vec<_>>()
                );
            }
            if self.model.checkpoint.is_some() && self.model.lulc_tokenizer.is_none() {
                bail!(
                    "model.lulc_tokenizer: output.masks decode the generated land cover with the LULC tokenizer: \
                     give TerraMind_Tokenizer_LULC.pt next to model.checkpoint"
                );
            }
        }
        if let Some(s1) = &s.s1 {
            match (s1.items.is_empty(), &s1.stac) {
                (true, None) => bail!("source.s1: give `items` (STAC item files) or `stac` (a STAC API URL)"),
                (false, Some(_)) => bail!("source.s1: `items` and `stac` exclude each other"),
                _ => {}
            }
            if !(s1.max_days.is_finite() && s1.max_days >= 0.0) {
                bail!("source.s1.max_days: a number of days >= 0, got {}", s1.max_days);
            }
        }
        if self.run.concurrency == 0 {
            bail!("run.concurrency: must be at least 1");
        }
        if self.run.shards == Some(0) {
            bail!("run.shards: must be at least 1");
        }
        if self.grid.chip_size == 0 || !self.grid.chip_size.is_multiple_of(16) {
            bail!(
                "grid.chip_size: TerraMind needs a positive multiple of 16, got {}",
                self.grid.chip_size
            );
        }
        let chip = self.grid.chip_size;
        terrastream_ingest::grid::ChipGrid::new(chip, chip, chip, self.grid.stride.unwrap_or(chip), self.grid.edge)?;
        for (key, v) in [
            ("filter.min_valid_fraction", self.filter.min_valid_fraction),
            ("filter.max_cloud_fraction", self.filter.max_cloud_fraction),
        ] {
            if !(0.0..=1.0).contains(&v) {
                bail!("{key}: a fraction 0..=1, got {v}");
            }
        }
        if self.model.batch_size == 0 {
            bail!("model.batch_size: must be at least 1");
        }
        crate::map::output::OutputLocation::parse(&self.output.dir).context("output.dir")?;
        Ok(())
    }

    fn resolve(&mut self, base: &Path) {
        let abs = |p: &PathBuf| normalize(&if p.is_absolute() { p.clone() } else { base.join(p) });
        self.source.items = self.source.items.iter().map(abs).collect();
        let resolve_rewrites = |rewrites: &mut Vec<HrefRewrite>| {
            for r in rewrites {
                if !r.replace.contains("://") && !Path::new(&r.replace).is_absolute() {
                    let dir = normalize(&base.join(&r.replace));
                    // Keep the trailing separator: the rewrite is a string prefix.
                    let sep = if r.replace.ends_with('/') { "/" } else { "" };
                    r.replace = format!("{}{sep}", dir.display());
                }
            }
        };
        resolve_rewrites(&mut self.source.rewrite);
        if let Some(s1) = &mut self.source.s1 {
            s1.items = s1.items.iter().map(abs).collect();
            resolve_rewrites(&mut s1.rewrite);
        }
        self.source.aoi = self.source.aoi.as_ref().map(abs);
        self.model.checkpoint = self.model.checkpoint.as_ref().map(abs);
        self.model.lulc_tokenizer = self.model.lulc_tokenizer.as_ref().map(abs);
        if !self.output.dir.contains("://") {
            self.output.dir = abs(&PathBuf::from(&self.output.dir)).display().to_string();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named() {
        let err =
            toml::from_str::<MapConfig>("[source]\nitems=[]\nbands=3\n[output]\ndir='x'\n").expect_err("unknown key");
        assert!(err.to_string().contains("bands"), "{err}");
        let err = toml::from_str::<MapConfig>("[source]\nitems=[]\n[run]\nperiod='fortnight'\n[output]\ndir='x'\n")
            .expect_err("bad period");
        assert!(
            err.to_string().contains("period") && err.to_string().contains("fortnight"),
            "{err}"
        );
        for (text, key, value) in [
            ("[source]\nitems=[]\n[output]\ndir='x'\nmasks=['clouds']\n", "masks", "clouds"),
            ("[source]\nitems=[]\n[output]\ndir='x'\nmask_compression='jpeg'\n", "mask_compression", "jpeg"),
        ] {
            let err = toml::from_str::<MapConfig>(text).expect_err(text).to_string();
            assert!(err.contains(key) && err.contains(value), "{err}");
        }
    }

    #[test]
    fn invalid_values_name_their_key() {
        let base = "[source]\nitems=['a.json']\n[output]\ndir='out'\n";
        let cases = [
            ("[source]\n[output]\ndir='out'\n", "source: give"),
            (
                "[source]\nitems=['a.json']\nstac='http://x'\n[output]\ndir='out'\n",
                "exclude",
            ),
            (
                "[source]\nitems=['a.json']\nbbox=[10,50,11,40]\n[output]\ndir='out'\n",
                "source.bbox",
            ),
            (
                "[source]\nitems=['a.json']\ndatetime='2020-13-01'\n[output]\ndir='out'\n",
                "source.datetime",
            ),
            (
                "[source]\nitems=['a.json']\nmax_cloud_cover=150\n[output]\ndir='out'\n",
                "source.max_cloud_cover",
            ),
            (
                "[source]\nitems=['a.json']\n[model]\ntim=['LULC','RGB']\n[output]\ndir='out'\n",
                "model.tim[1]",
            ),
            (
                "[source]\nitems=['a.json']\n[output]\ndir='out'\nmasks=['lulc']\n",
                "model.tim",
            ),
            (
                "[source]\nitems=['a.json']\n[model]\ntim=['LULC']\n[output]\ndir='out'\nmasks=['water','lulc','water']\n",
                "output.masks[2]",
            ),
            (
                "[source]\nitems=['a.json']\n[model]\ntim=['LULC']\ncheckpoint='TerraMind_v1_tiny.pt'\n[output]\ndir='out'\nmasks=['lulc']\n",
                "model.lulc_tokenizer",
            ),
            (
                "[source]\nitems=['a.json']\nwatch_lookback_days=-1\n[output]\ndir='out'\n",
                "source.watch_lookback_days",
            ),
            (
                "[source]\nitems=['a.json']\nwatch_lookback_days=1e9\n[output]\ndir='out'\n",
                "source.watch_lookback_days",
            ),
            (
                "[source]\nitems=['a.json']\n[run]\nconcurrency=0\n[output]\ndir='out'\n",
                "run.concurrency",
            ),
            (
                "[source]\nitems=['a.json']\n[model]\nprecision='f64'\n[output]\ndir='out'\n",
                "model.precision",
            ),
            (
                "[source]\nitems=['a.json']\n[source.network]\ntimeout_s=-1\n[output]\ndir='out'\n",
                "source.network.timeout_s",
            ),
            (
                // Found by fuzzing: a Duration from this many seconds panicked.
                "[source]\nitems=['a.json']\n[source.network]\ntimeout_s=17777777777777777777\n[output]\ndir='out'\n",
                "source.network.timeout_s",
            ),
            (
                "[source]\nitems=['a.json']\n[source.network]\nmax_concurrency_per_host=0\n[output]\ndir='out'\n",
                "source.network.max_concurrency_per_host",
            ),
            (
                "[source]\nitems=['a.json']\n[grid]\nchip_size=100\n[output]\ndir='out'\n",
                "grid.chip_size",
            ),
            (
                "[source]\nitems=['a.json']\n[filter]\nmin_valid_fraction=2\n[output]\ndir='out'\n",
                "filter.min_valid_fraction",
            ),
            (
                "[source]\nitems=['a.json']\n[output]\ndir='http://host/out'\n",
                "output.dir",
            ),
            (
                "[source]\nitems=['a.json']\n[source.s1]\nmodality='S1GRD'\n[output]\ndir='out'\n",
                "source.s1: give",
            ),
            (
                "[source]\nitems=['a.json']\n[source.s1]\nitems=['b.json']\nmodality='S1RTC'\nmax_days=-1\n[output]\ndir='out'\n",
                "source.s1.max_days",
            ),
        ];
        let ok: MapConfig = toml::from_str(base).expect("base config");
        ok.validate().expect("base config is valid");
        for (text, key) in cases {
            let cfg: MapConfig = toml::from_str(text).expect(text);
            let err = format!("{:#}", cfg.validate().expect_err(text));
            assert!(err.contains(key), "{text}: {err}");
        }
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
        assert_eq!(cfg.output.dir, "/etc/ts/out");
        assert_eq!(cfg.grid.chip_size, 224);
    }

    #[test]
    fn masks_with_the_land_cover_they_come_from() {
        let text = "[source]\nitems=['a.json']\n[model]\ncheckpoint='w/TerraMind_v1_base.pt'\ntim=['lulc']\n\
                    lulc_tokenizer='w/TerraMind_Tokenizer_LULC.pt'\n[output]\ndir='out'\nmasks=['water','lulc']\n";
        let cfg = MapConfig::parse(text, Path::new("/etc/ts")).expect("config");
        assert_eq!(cfg.output.masks, vec![MaskHead::Water, MaskHead::Lulc]);
        assert_eq!(cfg.output.mask_compression, CogCompression::Deflate);
        assert_eq!(cfg.model.lulc_tokenizer, Some(PathBuf::from("/etc/ts/w/TerraMind_Tokenizer_LULC.pt")));
    }

    #[test]
    fn sentinel_1_table() {
        let text = "[source]\nitems=['a.json']\n[source.s1]\nitems=['s1/b.json']\nmodality='S1RTC'\n\
                    [[source.s1.rewrite]]\nprefix='https://x/'\nreplace='mirror/'\n[output]\ndir='out'\n";
        let mut cfg: MapConfig = toml::from_str(text).expect("config");
        cfg.resolve(Path::new("/etc/ts"));
        cfg.validate().expect("valid");
        let s1 = cfg.source.s1.expect("s1");
        assert_eq!(s1.items[0], PathBuf::from("/etc/ts/s1/b.json"));
        assert_eq!(s1.rewrite[0].replace, "/etc/ts/mirror/");
        assert_eq!((s1.modality, s1.max_days, s1.required), (S1Modality::Rtc, 6.0, false));
        assert_eq!(s1.radiometry(), Radiometry::LinearPower);
        let err = toml::from_str::<MapConfig>(&text.replace("S1RTC", "S1SLC")).expect_err("unknown modality");
        assert!(err.to_string().contains("S1SLC"), "{err}");
        let grd: MapConfig =
            toml::from_str(&text.replace("S1RTC", "S1GRD")).expect("config");
        assert_eq!(grd.source.s1.expect("s1").radiometry(), Radiometry::DnAmplitude);
    }
}

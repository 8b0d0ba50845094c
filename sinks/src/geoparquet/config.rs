//! User-facing options of the GeoParquet embeddings sink.

use std::path::PathBuf;
use std::sync::Arc;

use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::Deserialize;
use terrastream_ingest::ChipLedger;

use super::sink::GeoParquetSink;
use crate::stac::StacOptions;
use crate::{Error, Result};

/// Where and how to write embeddings.
///
/// ```
/// # use terrastream_sinks::geoparquet::{GeoParquetConfig, EmbeddingEncoding, Partitioning};
/// let cfg: GeoParquetConfig =
///     serde_json::from_str(r#"{"dir": "out", "embedding_encoding": "int8", "partitioning": "grid_date"}"#).unwrap();
/// assert_eq!((cfg.embedding_encoding, cfg.partitioning, cfg.row_group_rows), (EmbeddingEncoding::Int8, Partitioning::GridDate, 8192));
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoParquetConfig {
    /// Output directory: files go to `<dir>/embeddings/<work_unit>.parquet`, or with
    /// [`Partitioning::GridDate`] to `<dir>/embeddings/grid_id=<tile>/date=<YYYY-MM-DD>/<work_unit>.parquet`;
    /// each file has a STAC item next to it (`.json`) and `<dir>/embeddings/collection.json`
    /// lists them all.
    pub dir: PathBuf,
    /// Rows per row group (8192: about 6 MB of 768-d Float32 embeddings, one scan unit).
    #[serde(default = "default_row_group_rows")]
    pub row_group_rows: usize,
    /// Zstd level (1..=22).
    #[serde(default = "default_zstd_level")]
    pub zstd_level: i32,
    /// How the `embedding` (and `patch_embeddings`) values are stored.
    #[serde(default)]
    pub embedding_encoding: EmbeddingEncoding,
    /// How the footprint `geometry` column is stored.
    #[serde(default)]
    pub geometry_encoding: GeometryEncoding,
    /// Directory layout of the files.
    #[serde(default)]
    pub partitioning: Partitioning,
    /// Name of the work unit the whole run forms (e.g. `<tile>_<period>`): the file stem of
    /// every file written. Unset: each scene is its own work unit, named by its scene id.
    /// Re-running a work unit replaces its files.
    #[serde(default)]
    pub work_unit: Option<String>,
    /// The STAC collection that lists the files.
    #[serde(default = "StacOptions::embeddings")]
    pub stac: StacOptions,
    /// Tensor columns written anyway (as fixed-size lists), e.g. TiM's `tim_LULC` token ids:
    /// small per chip, unlike pixel tensors, which are never written.
    #[serde(default)]
    pub keep_tensors: Vec<String>,
}

/// How embedding vectors are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddingEncoding {
    /// `FixedSizeList<Float32, D>`, as computed: 4 bytes a value.
    #[default]
    Float32,
    /// `FixedSizeList<Float16, D>` (Parquet FLOAT16): 2 bytes a value, relative error
    /// at most 2^-11.
    Float16,
    /// `FixedSizeList<Int8, D>` plus a Float32 scale per vector (`embedding_scale`):
    /// 1 byte a value, symmetric: `x ≈ q * scale` with `scale = max|x| / 127`, absolute
    /// error at most `scale / 2`.
    Int8,
}

impl EmbeddingEncoding {
    /// The name written to the file metadata (`float32`, `float16`, `int8`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Float32 => "float32",
            Self::Float16 => "float16",
            Self::Int8 => "int8",
        }
    }
}

/// How the chip footprints are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GeometryEncoding {
    /// ISO WKB (`Binary`), GeoParquet `encoding: "WKB"`: read by every GeoParquet reader.
    #[default]
    Wkb,
    /// GeoArrow native polygons, `List<List<Struct<x: Float64, y: Float64>>>` (separated
    /// coordinates), GeoParquet 1.1 `encoding: "polygon"`: coordinates get Parquet column
    /// statistics.
    Geoarrow,
}

/// Directory layout of the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Partitioning {
    /// `embeddings/<work_unit>.parquet`.
    #[default]
    None,
    /// Hive-style `embeddings/grid_id=<tile>/date=<YYYY-MM-DD>/<work_unit>.parquet` (the
    /// acquisition date in UTC; a null grid id is `__HIVE_DEFAULT_PARTITION__`), so that
    /// readers prune files by tile and date.
    GridDate,
}

const fn default_row_group_rows() -> usize {
    8192
}
const fn default_zstd_level() -> i32 {
    3
}

impl GeoParquetConfig {
    /// Defaults for `dir`: 8192-row groups, zstd level 3, Float32 embeddings, WKB footprints,
    /// one unpartitioned file per scene, the default embeddings collection.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            row_group_rows: default_row_group_rows(),
            zstd_level: default_zstd_level(),
            embedding_encoding: EmbeddingEncoding::default(),
            geometry_encoding: GeometryEncoding::default(),
            partitioning: Partitioning::default(),
            work_unit: None,
            stac: StacOptions::embeddings(),
            keep_tensors: Vec::new(),
        }
    }

    /// Validates the options and builds the sink; chips are counted in `ledger`.
    pub fn build(&self, ledger: Arc<ChipLedger>) -> Result<GeoParquetSink> {
        let level = ZstdLevel::try_new(self.zstd_level)
            .map_err(|e| Error::Option { key: "geoparquet.zstd_level", reason: e.to_string() })?;
        if self.row_group_rows == 0 {
            return Err(Error::Option { key: "geoparquet.row_group_rows", reason: "must be at least 1".into() });
        }
        if let Some(unit) = &self.work_unit
            && (unit.is_empty() || unit.starts_with('.') || crate::commit::safe_file_stem(unit) != *unit)
        {
            return Err(Error::Option {
                key: "geoparquet.work_unit",
                reason: format!("{unit:?}: use letters, digits, - _ . (not first)"),
            });
        }
        self.stac.validate()?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_max_row_group_row_count(Some(self.row_group_rows))
            .build();
        Ok(GeoParquetSink::new(self.clone(), props, ledger))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_keys() {
        let cfg: GeoParquetConfig = serde_json::from_str(r#"{"dir": "o"}"#).expect("parse");
        assert_eq!(cfg.embedding_encoding, EmbeddingEncoding::Float32);
        assert_eq!(cfg.geometry_encoding, GeometryEncoding::Wkb);
        assert_eq!(cfg.partitioning, Partitioning::None);
        assert_eq!((cfg.row_group_rows, cfg.zstd_level, cfg.work_unit.as_deref()), (8192, 3, None));
        let err = serde_json::from_str::<GeoParquetConfig>(r#"{"dir": "o", "encoding": "int8"}"#).expect_err("unknown");
        assert!(err.to_string().contains("encoding"), "{err}");
        let err =
            serde_json::from_str::<GeoParquetConfig>(r#"{"dir": "o", "embedding_encoding": "int4"}"#).expect_err("bad");
        assert!(err.to_string().contains("int4"), "{err}");
        let g: GeoParquetConfig =
            serde_json::from_str(r#"{"dir": "o", "geometry_encoding": "geoarrow"}"#).expect("geoarrow");
        assert_eq!(g.geometry_encoding, GeometryEncoding::Geoarrow);
    }

    #[test]
    fn build_rejects_bad_options_by_key() {
        let ledger = Arc::new(ChipLedger::default());
        let mut cfg = GeoParquetConfig::new("o".into());
        cfg.work_unit = Some("29RKH/2020".into());
        let err = cfg.build(Arc::clone(&ledger)).expect_err("slash");
        assert!(err.to_string().contains("geoparquet.work_unit"), "{err}");
        cfg.work_unit = Some("29RKH_2020-Q1".into());
        cfg.zstd_level = 99;
        assert!(cfg.build(Arc::clone(&ledger)).expect_err("level").to_string().contains("geoparquet.zstd_level"));
        cfg.zstd_level = 3;
        cfg.row_group_rows = 0;
        assert!(cfg.build(Arc::clone(&ledger)).expect_err("rows").to_string().contains("geoparquet.row_group_rows"));
        cfg.row_group_rows = 1;
        assert!(cfg.build(ledger).is_ok());
    }
}

//! User-facing options of the COG mask sink.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use terrastream_ingest::ChipLedger;

use super::sink::CogSink;
use crate::stac::StacOptions;
use crate::{Error, Result};

/// Where and how to write mask COGs.
///
/// ```
/// # use terrastream_sinks::cog::CogConfig;
/// let cfg: CogConfig = serde_json::from_str(r#"{"dir": "out", "compression": "zstd"}"#).unwrap();
/// assert_eq!(cfg.tile_size, 512);
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CogConfig {
    /// Output directory: files go to `<dir>/<subdir>/<scene_id>.tif`, each with a STAC item
    /// `<scene_id>.json`, and `<dir>/<subdir>/collection.json` lists them.
    pub dir: PathBuf,
    /// The masks' directory under `dir`, relative and slash-separated (one per kind of mask,
    /// e.g. `masks/lulc`). Default `masks`.
    #[serde(default = "default_subdir")]
    pub subdir: String,
    /// The mask column: an `arrow.fixed_shape_tensor` of shape `[H, W]` (or `[1, H, W]`)
    /// holding UInt8 class ids (majority vote, nearest overviews, colour table) or Float32
    /// probabilities (mean, average overviews).
    #[serde(default = "default_column")]
    pub column: String,
    /// Tile compression; both use a predictor (horizontal for classes, floating point for
    /// probabilities).
    #[serde(default)]
    pub compression: CogCompression,
    /// Tile side in pixels, a multiple of 16.
    #[serde(default = "default_tile_size")]
    pub tile_size: u32,
    /// Class value that marks "no prediction", in chips and in the output.
    #[serde(default = "default_class_nodata")]
    pub class_nodata: u8,
    /// Output value, finite, of probability pixels that no chip predicted (NaN in chips).
    #[serde(default = "default_probability_nodata")]
    pub probability_nodata: f32,
    /// Colours of class masks; classes not listed are black.
    #[serde(default)]
    pub colours: ColourTable,
    /// The STAC collection that lists the outputs.
    #[serde(default = "StacOptions::masks")]
    pub stac: StacOptions,
}

fn default_column() -> String {
    "mask".into()
}
fn default_subdir() -> String {
    "masks".into()
}
const fn default_tile_size() -> u32 {
    512
}
const fn default_class_nodata() -> u8 {
    255
}
const fn default_probability_nodata() -> f32 {
    -1.0
}

/// Tile compression of the COG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CogCompression {
    /// DEFLATE (zlib), readable everywhere.
    #[default]
    Deflate,
    /// Zstandard: smaller and faster to decode; needs GDAL >= 2.3.
    Zstd,
}

/// One entry of a colour table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassColour {
    /// The class value.
    pub value: u8,
    /// Its colour, 8-bit red, green, blue.
    pub rgb: [u8; 3],
    /// Its name, for the legend.
    #[serde(default)]
    pub name: String,
}

/// The colour table of class masks.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct ColourTable(pub Vec<ClassColour>);

impl Default for ColourTable {
    /// The Sentinel-2 scene classification legend (classes 0..=11), a sensible default for
    /// land-cover-like masks.
    fn default() -> Self {
        Self::sentinel2_scl()
    }
}

impl ColourTable {
    /// The Sentinel-2 L2A scene classification (SCL) legend, ESA's colours.
    pub fn sentinel2_scl() -> Self {
        let c = |value, rgb, name: &str| ClassColour { value, rgb, name: name.into() };
        Self(vec![
            c(0, [0, 0, 0], "no data"),
            c(1, [255, 0, 0], "saturated or defective"),
            c(2, [47, 47, 47], "dark area pixels"),
            c(3, [100, 50, 0], "cloud shadows"),
            c(4, [0, 160, 0], "vegetation"),
            c(5, [255, 230, 90], "not vegetated"),
            c(6, [0, 0, 255], "water"),
            c(7, [128, 128, 128], "unclassified"),
            c(8, [192, 192, 192], "cloud medium probability"),
            c(9, [255, 255, 255], "cloud high probability"),
            c(10, [100, 200, 255], "thin cirrus"),
            c(11, [255, 150, 255], "snow"),
        ])
    }

    /// The 256 entries of a TIFF colour map as 8-bit RGB, black where no class is listed.
    pub fn rgb256(&self) -> Vec<[u8; 3]> {
        let mut out = vec![[0u8; 3]; 256];
        for c in &self.0 {
            out[usize::from(c.value)] = c.rgb;
        }
        out
    }
}

impl CogConfig {
    /// Defaults for `dir`: subdirectory `masks`, column `mask`, DEFLATE, 512-pixel tiles, class nodata 255,
    /// probability nodata -1, the SCL colour table.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            subdir: default_subdir(),
            column: default_column(),
            compression: CogCompression::default(),
            tile_size: default_tile_size(),
            class_nodata: default_class_nodata(),
            probability_nodata: default_probability_nodata(),
            colours: ColourTable::default(),
            stac: StacOptions::masks(),
        }
    }

    /// Validates the options and builds the sink; chips are counted in `ledger`.
    pub fn build(&self, ledger: Arc<ChipLedger>) -> Result<CogSink> {
        if self.tile_size == 0 || self.tile_size % 16 != 0 || self.tile_size > 4096 {
            return Err(Error::Option { key: "cog.tile_size", reason: format!("must be a multiple of 16 in 16..=4096, got {}", self.tile_size) });
        }
        if !self.probability_nodata.is_finite() {
            return Err(Error::Option {
                key: "cog.probability_nodata",
                reason: "must be finite (overview averaging skips it by value)".into(),
            });
        }
        let parts: Vec<&str> = self.subdir.split('/').collect();
        if parts.iter().any(|p| p.is_empty() || *p == "." || *p == ".." || p.contains('\\')) {
            return Err(Error::Option {
                key: "cog.subdir",
                reason: format!("{:?}: must be a relative path of named directories (no empty part, `.` or `..`)", self.subdir),
            });
        }
        if self.column.is_empty() {
            return Err(Error::Option { key: "cog.column", reason: "empty".into() });
        }
        if let Some(dup) = self.colours.0.iter().enumerate().find(|(i, c)| self.colours.0[..*i].iter().any(|d| d.value == c.value)) {
            return Err(Error::Option { key: "cog.colours", reason: format!("class {} listed twice", dup.1.value) });
        }
        self.stac.validate()?;
        Ok(CogSink::new(self.clone(), ledger))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdir_stays_under_dir() {
        let ledger = Arc::new(ChipLedger::default());
        let mut cfg = CogConfig::new(PathBuf::from("out"));
        cfg.subdir = "masks/lulc".into();
        let sink = cfg.build(Arc::clone(&ledger)).expect("nested subdir");
        assert_eq!(sink.path_for("S2A/x"), PathBuf::from("out/masks/lulc/S2A_x.tif"));
        for bad in ["", "/abs", "masks/../..", "a//b", "./m"] {
            cfg.subdir = bad.into();
            let err = cfg.build(Arc::clone(&ledger)).expect_err(bad).to_string();
            assert!(err.contains("cog.subdir"), "{bad}: {err}");
        }
    }
}

//! Band tables: which STAC asset holds which band, per provider, in the model's band order.

/// How a band is resampled onto the scene grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resampling {
    /// Nearest neighbour: for classes (SCL) and where values must not be mixed.
    Nearest,
    /// Bilinear: for continuous values (reflectance, backscatter).
    Bilinear,
    /// Area-weighted mean of the covered source pixels (GDAL's `average`): for continuous values
    /// on a coarser grid, where it uses every source pixel instead of sampling a few.
    Average,
}

/// One band of a modality and the asset keys that may carry it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Band {
    /// Band name as the sensor names it (`B8A`).
    pub name: &'static str,
    /// Native ground sampling distance in metres.
    pub gsd_m: f64,
    /// Asset keys that carry this band, tried in order: Earth Search v1 (`nir08`), Planetary
    /// Computer (`B8A`).
    pub asset_keys: &'static [&'static str],
}

/// Sentinel-2 L2A in TerraMind's band order (12 bands, B10 excluded): `B01 B02 B03 B04 B05 B06
/// B07 B08 B8A B09 B11 B12`.
pub const S2L2A_BANDS: [Band; 12] = [
    Band { name: "B01", gsd_m: 60.0, asset_keys: &["coastal", "B01"] },
    Band { name: "B02", gsd_m: 10.0, asset_keys: &["blue", "B02"] },
    Band { name: "B03", gsd_m: 10.0, asset_keys: &["green", "B03"] },
    Band { name: "B04", gsd_m: 10.0, asset_keys: &["red", "B04"] },
    Band { name: "B05", gsd_m: 20.0, asset_keys: &["rededge1", "B05"] },
    Band { name: "B06", gsd_m: 20.0, asset_keys: &["rededge2", "B06"] },
    Band { name: "B07", gsd_m: 20.0, asset_keys: &["rededge3", "B07"] },
    Band { name: "B08", gsd_m: 10.0, asset_keys: &["nir", "B08"] },
    Band { name: "B8A", gsd_m: 20.0, asset_keys: &["nir08", "B8A"] },
    Band { name: "B09", gsd_m: 60.0, asset_keys: &["nir09", "B09"] },
    Band { name: "B11", gsd_m: 20.0, asset_keys: &["swir16", "B11"] },
    Band { name: "B12", gsd_m: 20.0, asset_keys: &["swir22", "B12"] },
];

/// The Sentinel-2 scene classification layer (20 m classes).
pub const S2_SCL: Band = Band { name: "SCL", gsd_m: 20.0, asset_keys: &["scl", "SCL"] };

/// SCL classes counted as cloud: 3 cloud shadow, 8 cloud medium probability, 9 cloud high
/// probability, 10 thin cirrus.
pub const SCL_CLOUD_CLASSES: [u8; 4] = [3, 8, 9, 10];

/// A modality known to the ingestor: its pixel-column name and bands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModalityBands {
    /// Column name, equal to TerraMind's modality name.
    pub name: &'static str,
    /// Bands in model order.
    pub bands: &'static [Band],
    /// How bands are resampled onto the scene grid.
    pub resampling: Resampling,
}

/// Sentinel-2 L2A, 12 bands in TerraMind order.
pub const S2L2A: ModalityBands =
    ModalityBands { name: "S2L2A", bands: &S2L2A_BANDS, resampling: Resampling::Bilinear };

/// Looks a modality up by name (`S2L2A`).
pub fn modality(name: &str) -> Option<ModalityBands> {
    [S2L2A].into_iter().find(|m| m.name.eq_ignore_ascii_case(name))
}

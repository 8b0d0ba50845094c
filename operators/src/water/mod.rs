//! Water mapping: per-pixel water masks from Sentinel-1 backscatter, Sentinel-2 water indices,
//! TerraMind land cover, and an ensemble of whichever of them are available.
//!
//! Every method returns a [`WaterMap`]: a mask (`1` water, `0` dry, `255` no data; see
//! [`WATER`], [`DRY`], [`NO_DATA`]) and a water probability in `0..=1` (NaN where no data).
//! The kernels work on plain row-major `f32` slices (NaN = no data), so they run on a chip, a
//! tile or a whole scene alike and need no model runtime.
//!
//! | module | method | reference |
//! |---|---|---|
//! | [`threshold`] | automatic two-class split of one feature: Otsu's threshold, class statistics, Ashman's D bimodality test, a calibrated probability | Otsu 1979; Ashman et al. 1994 |
//! | [`speckle`] | NaN-aware median filter for SAR speckle | Lee et al. 1994 (review) |
//! | [`terrain`] | slope from a DEM (Horn's method) for the radar-shadow / steep-terrain guard | Horn 1981 |
//! | [`s1_threshold`] | Sentinel-1 VV/VH dB thresholding per scene or per bimodal tile | Otsu 1979; Martinis et al. 2009; Chini et al. 2017 |
//! | [`s2_index`] | NDWI / MNDWI thresholding with SCL cloud, shadow and snow masking | McFeeters 1996; Xu 2006; Donchyts et al. 2016 |
//! | [`terramind`] | the water class of TerraMind's TiM-generated land cover, or of a fine-tuned segmentation head | Jakubik et al. 2025 |
//! | [`ensemble`] | majority vote of the available methods, ties by mean probability | Copernicus GFM (Salamon et al. 2021) |
//! | [`change`] | flood = water after the event that was not water before; permanent water and no data kept apart | Copernicus GFM |
//!
//! References:
//! - N. Otsu, "A threshold selection method from gray-level histograms", IEEE Trans. Systems,
//!   Man, and Cybernetics 9(1), 1979.
//! - K. Ashman, C. Bird, S. Zepf, "Detecting bimodality in astronomical datasets", The
//!   Astronomical Journal 108, 1994.
//! - S. K. McFeeters, "The use of the Normalized Difference Water Index (NDWI) in the
//!   delineation of open water features", Int. J. Remote Sensing 17(7), 1996.
//! - H. Xu, "Modification of normalised difference water index (NDWI) to enhance open water
//!   features in remotely sensed imagery", Int. J. Remote Sensing 27(14), 2006.
//! - G. Donchyts et al., "A 30 m resolution surface water mask including estimation of
//!   positional and thematic differences using Landsat 8, SRTM and OpenStreetMap", Remote
//!   Sensing 8(5), 2016 (Otsu on MNDWI).
//! - S. Martinis, A. Twele, S. Voigt, "Towards operational near real-time flood detection using
//!   a split-based automatic thresholding procedure on high resolution TerraSAR-X data", NHESS
//!   9, 2009.
//! - M. Chini et al., "A hierarchical split-based approach for parametric thresholding of SAR
//!   images: flood inundation as a test case", IEEE TGRS 55(12), 2017.
//! - B. K. P. Horn, "Hill shading and the reflectance map", Proc. IEEE 69(1), 1981.
//! - P. Salamon et al., "The new, systematic global flood monitoring product of the Copernicus
//!   Emergency Management Service", IGARSS 2021 (GFM: three S1 algorithms, majority vote).
//! - J. Jakubik et al., "TerraMind: Large-scale generative multimodality for Earth
//!   observation", 2025.

pub mod change;
pub mod ensemble;
mod error;
pub mod s1_threshold;
pub mod s2_index;
pub mod speckle;
pub mod terrain;
pub mod terramind;
#[cfg(test)]
mod test_support;
pub mod threshold;

pub use change::{FloodClass, change_detection};
pub use ensemble::ensemble;
pub use error::{WaterError, WaterResult};
pub use s1_threshold::{S1Input, S1Options, s1_threshold};
pub use s2_index::{S2Input, S2Options, WaterIndex, s2_index};
pub use threshold::{Side, Split, Threshold, ThresholdOptions, ThresholdSource};

/// Mask value of a dry (not water) pixel.
pub const DRY: u8 = 0;
/// Mask value of a water pixel.
pub const WATER: u8 = 1;
/// Mask value of a pixel with no usable observation (input no data, cloud, steep terrain).
pub const NO_DATA: u8 = 255;

/// The water map of one method: mask and probability on the input's pixel grid.
#[derive(Debug, Clone, PartialEq)]
pub struct WaterMap {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Row-major mask: [`WATER`], [`DRY`] or [`NO_DATA`].
    pub mask: Vec<u8>,
    /// Row-major water probability in `0..=1`; NaN exactly where the mask is [`NO_DATA`].
    /// `probability > 0.5` where the mask is [`WATER`] for single methods; for the ensemble it
    /// is the mean of the voters' probabilities (see [`ensemble`]).
    pub probability: Vec<f32>,
    /// The thresholds the method chose, one per feature (empty for methods without one).
    pub splits: Vec<Split>,
}

impl WaterMap {
    /// Pixels of each mask value: `(water, dry, no data)`.
    pub fn counts(&self) -> (usize, usize, usize) {
        let water = self.mask.iter().filter(|&&v| v == WATER).count();
        let nodata = self.mask.iter().filter(|&&v| v == NO_DATA).count();
        (water, self.mask.len() - water - nodata, nodata)
    }
}

/// Checks that a band of a method's input holds `width * height` values.
fn check_len(method: &'static str, band: &'static str, len: usize, width: usize, height: usize) -> WaterResult<()> {
    if len != width * height {
        return Err(WaterError::Shape {
            method,
            band,
            expected: width * height,
            got: len,
        });
    }
    Ok(())
}

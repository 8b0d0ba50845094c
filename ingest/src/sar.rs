//! Sentinel-1 radiometry and band tables: DN or linear power to dB, and which STAC asset holds
//! which polarisation.
//!
//! TerraMind's `S1GRD` and `S1RTC` modalities take backscatter in dB, bands `[VV, VH]`.
//! - GRD DN (Earth Search `sentinel-1-grd`, UInt16) are amplitudes: dB = 10 log10(DN²), DN 0 is
//!   no data. Without the product's calibration LUT (sigma0 = DN² / A²) this is **uncalibrated,
//!   relative dB**: it differs from calibrated sigma0 by a gain that varies slowly across the
//!   swath (about 20 log10(A), tens of dB), so do not mix it with calibrated data.
//! - RTC (Planetary Computer `sentinel-1-rtc`, Float32) is linear gamma0 power: dB = 10 log10(x),
//!   x <= 0 is no data.
//! - Data already in dB (Sen1Floods11) pass through.

use serde::{Deserialize, Serialize};

use crate::bands::{Band, ModalityBands, Resampling};
use crate::cog::Cog;
use crate::error::CogError;
use crate::resample::Raster;
use crate::warp::{DstGrid, WarpOptions, warp_cog_onto};

/// What a Sentinel-1 raster's values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Radiometry {
    /// Digital numbers, amplitude (GRD). Converted to uncalibrated dB, 10 log10(DN²).
    DnAmplitude,
    /// Linear power (RTC gamma0, calibrated sigma0). Converted to 10 log10(x).
    LinearPower,
    /// Already dB.
    Db,
}

impl Radiometry {
    /// A source value that is no data regardless of the file's tags: GRD DN 0 (the borders of
    /// the swath, which the files do not declare as no-data).
    pub fn source_nodata(self) -> Option<f32> {
        match self {
            Self::DnAmplitude => Some(0.0),
            Self::LinearPower | Self::Db => None,
        }
    }

    /// One value in dB; NaN for no data (NaN in, DN 0, power <= 0).
    pub fn to_db(self, v: f32) -> f32 {
        match self {
            // 10 log10(DN²) = 20 log10(DN).
            Self::DnAmplitude if v > 0.0 => 20.0 * v.log10(),
            Self::LinearPower if v > 0.0 => 10.0 * v.log10(),
            Self::Db => v,
            _ => f32::NAN,
        }
    }

    /// Converts `values` to dB in place.
    pub fn convert(self, values: &mut [f32]) {
        values.iter_mut().for_each(|v| *v = self.to_db(*v));
    }
}

/// Sentinel-1 in TerraMind's band order `[VV, VH]`. Asset keys: Earth Search `sentinel-1-grd`
/// and Planetary Computer `sentinel-1-rtc` (`vv`, `vh`), AWS `sentinel1-rtc-aws` (`gamma0_vv`).
pub const S1_BANDS: [Band; 2] = [
    Band { name: "VV", gsd_m: 10.0, asset_keys: &["vv", "gamma0_vv"] },
    Band { name: "VH", gsd_m: 10.0, asset_keys: &["vh", "gamma0_vh"] },
];

/// Sentinel-1 GRD (TerraMind `S1GRD`), dB.
pub const S1GRD: ModalityBands = ModalityBands { name: "S1GRD", bands: &S1_BANDS, resampling: Resampling::Bilinear };

/// Sentinel-1 RTC (TerraMind `S1RTC`), dB.
pub const S1RTC: ModalityBands = ModalityBands { name: "S1RTC", bands: &S1_BANDS, resampling: Resampling::Bilinear };

/// Looks a Sentinel-1 modality up by name (`S1GRD`, `S1RTC`).
pub fn modality(name: &str) -> Option<ModalityBands> {
    [S1GRD, S1RTC].into_iter().find(|m| m.name.eq_ignore_ascii_case(name))
}

/// Warps band `band` of a Sentinel-1 COG whose values are `radiometry` onto `grid` (e.g. a
/// Sentinel-2 scene's 10 m grid, [`DstGrid::of_cog`], or a strip of it) and converts it to dB.
///
/// Interpolation runs on the source values (amplitude or linear power), before the logarithm.
pub async fn warp_db_onto(
    cog: &Cog,
    band: usize,
    radiometry: Radiometry,
    grid: &DstGrid,
    resampling: Resampling,
) -> Result<Raster, CogError> {
    let options = WarpOptions { resampling, src_nodata: radiometry.source_nodata(), ..WarpOptions::default() };
    let mut raster = warp_cog_onto(cog, band, grid, &options).await?;
    radiometry.convert(&mut raster.data);
    Ok(raster)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_and_nodata() {
        // 10 log10(DN²) for DN 100 is 40 dB; 0.01 linear power is -20 dB.
        assert!((Radiometry::DnAmplitude.to_db(100.0) - 40.0).abs() < 1e-5);
        assert!(Radiometry::DnAmplitude.to_db(0.0).is_nan());
        assert!((Radiometry::LinearPower.to_db(0.01) - -20.0).abs() < 1e-5);
        assert!(Radiometry::LinearPower.to_db(0.0).is_nan() && Radiometry::LinearPower.to_db(-1.0).is_nan());
        assert_eq!(Radiometry::Db.to_db(-12.5), -12.5);
        assert!(Radiometry::Db.to_db(f32::NAN).is_nan());
        assert_eq!(Radiometry::DnAmplitude.source_nodata(), Some(0.0));
        assert_eq!(Radiometry::LinearPower.source_nodata(), None);
    }

    #[test]
    fn dn_db_is_twice_power_db_of_the_same_number() {
        for dn in [1.0f32, 7.0, 224.0, 2759.0] {
            let a = Radiometry::DnAmplitude.to_db(dn);
            let p = Radiometry::LinearPower.to_db(dn * dn);
            assert!((a - p).abs() < 1e-3, "{dn}: {a} vs {p}");
        }
    }

    #[test]
    fn serde_names_for_configs() {
        let names: Vec<String> = [Radiometry::DnAmplitude, Radiometry::LinearPower, Radiometry::Db]
            .iter()
            .map(|r| serde_json::to_string(r).expect("serialize"))
            .collect();
        assert_eq!(names, ["\"dn_amplitude\"", "\"linear_power\"", "\"db\""]);
        let r: Radiometry = serde_json::from_str("\"linear_power\"").expect("parse");
        assert_eq!(r, Radiometry::LinearPower);
        assert!(serde_json::from_str::<Radiometry>("\"dB\"").is_err());
    }

    #[test]
    fn band_order_is_vv_vh() {
        assert_eq!(S1GRD.bands.iter().map(|b| b.name).collect::<Vec<_>>(), ["VV", "VH"]);
        assert_eq!(S1RTC.bands[1].asset_keys[0], "vh");
        assert_eq!(modality("s1rtc").map(|m| m.name), Some("S1RTC"));
        assert_eq!(modality("S1GRD").map(|m| m.name), Some("S1GRD"));
        assert!(modality("S2L2A").is_none());
    }
}

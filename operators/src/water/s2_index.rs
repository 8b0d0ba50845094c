//! Sentinel-2 water mapping with normalised-difference water indices.
//!
//! - NDWI (McFeeters 1996) = `(green - NIR) / (green + NIR)` = `(B03 - B08) / (B03 + B08)`:
//!   water reflects green and absorbs near infrared.
//! - MNDWI (Xu 2006) = `(green - SWIR1) / (green + SWIR1)` = `(B03 - B11) / (B03 + B11)`:
//!   shortwave infrared is absorbed even more strongly, and built-up land, bright in SWIR,
//!   no longer looks like water.
//!
//! Both papers threshold at 0; an automatic Otsu threshold on the index histogram adapts to
//! the scene's atmosphere and water turbidity (Donchyts et al. 2016 use Otsu on MNDWI), and
//! falls back to 0 where the histogram is not bimodal. The default is MNDWI with Otsu.
//!
//! Pixels that cannot show the surface are no data: input no data, and with a scene
//! classification (SCL, L2A) the classes no data (0), saturated or defective (1), cloud
//! shadows (3), cloud medium and high probability (8, 9), thin cirrus (10) and snow or ice
//! (11, which MNDWI confuses with water). The indices are ratios, so any reflectance scale
//! works; processing baseline 04.00 and later (from January 2022) stores `DN = 10000 * ρ +
//! 1000`, which [`S2Options::offset`] = −1000 undoes before the ratio.

use super::error::{WaterError, WaterResult};
use super::threshold::{Side, ThresholdOptions, split};
use super::{DRY, NO_DATA, WATER, WaterMap, check_len};

const METHOD: &str = "s2";

/// Which water index to threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WaterIndex {
    /// McFeeters' NDWI, green and NIR (B03, B08).
    Ndwi,
    /// Xu's modified NDWI, green and SWIR1 (B03, B11).
    #[default]
    Mndwi,
}

impl WaterIndex {
    /// `NDWI` or `MNDWI`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Ndwi => "NDWI",
            Self::Mndwi => "MNDWI",
        }
    }
}

/// The SCL classes masked by default (see the module docs).
pub const DEFAULT_MASKED_SCL: [u8; 7] = [0, 1, 3, 8, 9, 10, 11];

/// Co-registered Sentinel-2 bands on one pixel grid.
#[derive(Debug, Clone, Copy)]
pub struct S2Input<'a> {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// B03 (green), reflectance or DN, row-major, NaN = no data.
    pub green: &'a [f32],
    /// B08 (NIR), for NDWI.
    pub nir: Option<&'a [f32]>,
    /// B11 (SWIR 1.6 µm) resampled to the grid, for MNDWI.
    pub swir16: Option<&'a [f32]>,
    /// Scene classification (SCL class ids), NaN = no data.
    pub scl: Option<&'a [f32]>,
}

/// Options of the Sentinel-2 method.
#[derive(Debug, Clone, PartialEq)]
pub struct S2Options {
    /// The index.
    pub index: WaterIndex,
    /// Threshold choice: Otsu with fallback 0 by default.
    pub threshold: ThresholdOptions,
    /// Added to every band value before the ratio (−1000 for processing baseline >= 04.00).
    pub offset: f32,
    /// SCL classes that are no data.
    pub masked_scl: Vec<u8>,
}

impl Default for S2Options {
    /// MNDWI, Otsu (fallback 0), no offset, [`DEFAULT_MASKED_SCL`].
    fn default() -> Self {
        Self {
            index: WaterIndex::Mndwi,
            threshold: ThresholdOptions::otsu(Some(0.0)),
            offset: 0.0,
            masked_scl: DEFAULT_MASKED_SCL.to_vec(),
        }
    }
}

/// `(a - b) / (a + b)`; NaN when either is no data or the sum is not positive.
pub fn normalized_difference(a: f32, b: f32) -> f32 {
    let sum = a + b;
    if !(sum > 0.0) || !a.is_finite() || !b.is_finite() {
        f32::NAN
    } else {
        (a - b) / sum
    }
}

/// The chosen index per pixel, NaN where no data or masked by SCL.
pub fn water_index(input: &S2Input<'_>, opts: &S2Options) -> WaterResult<Vec<f32>> {
    let (w, h) = (input.width, input.height);
    check_len(METHOD, "green", input.green.len(), w, h)?;
    let (band, other) = match opts.index {
        WaterIndex::Ndwi => ("NIR", input.nir),
        WaterIndex::Mndwi => ("SWIR1", input.swir16),
    };
    let Some(other) = other else {
        return Err(WaterError::NoInput {
            method: METHOD,
            reason: format!("{} needs the {band} band", opts.index.name()),
        });
    };
    check_len(METHOD, band, other.len(), w, h)?;
    if let Some(scl) = input.scl {
        check_len(METHOD, "SCL", scl.len(), w, h)?;
    }
    let mut masked = [false; 256];
    for &c in &opts.masked_scl {
        masked[usize::from(c)] = true;
    }
    let off = opts.offset;
    Ok((0..w * h)
        .map(|i| {
            if let Some(scl) = input.scl {
                let c = scl[i];
                // An SCL value that is no data or not a class id cannot vouch for the pixel.
                if !(0.0..=255.0).contains(&c) || c.fract() != 0.0 || masked[c as usize] {
                    return f32::NAN;
                }
            }
            normalized_difference(input.green[i] + off, other[i] + off)
        })
        .collect())
}

/// Water map from a Sentinel-2 water index (see the module docs).
pub fn s2_index(input: &S2Input<'_>, opts: &S2Options) -> WaterResult<WaterMap> {
    let index = water_index(input, opts)?;
    let s = split(
        METHOD,
        opts.index.name(),
        index.iter().copied(),
        Side::Above,
        &opts.threshold,
    )?;
    let probability: Vec<f32> = index.iter().map(|&v| s.probability(v)).collect();
    let mask = probability
        .iter()
        .map(|&p| {
            if p.is_nan() {
                NO_DATA
            } else if p > 0.5 {
                WATER
            } else {
                DRY
            }
        })
        .collect();
    Ok(WaterMap {
        width: input.width,
        height: input.height,
        mask,
        probability,
        splits: vec![s],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::water::threshold::{Threshold, ThresholdSource};

    #[test]
    fn indices_follow_their_definitions() {
        assert!((normalized_difference(0.3, 0.1) - 0.5).abs() < 1e-6);
        assert!((normalized_difference(0.1, 0.3) + 0.5).abs() < 1e-6);
        assert!(normalized_difference(0.0, 0.0).is_nan());
        assert!(normalized_difference(f32::NAN, 0.1).is_nan());
        // Baseline 04.00 offset: DN 1300 / 1100 are reflectances 0.03 / 0.01.
        let input = S2Input {
            width: 1,
            height: 1,
            green: &[1300.0],
            nir: Some(&[1100.0]),
            swir16: None,
            scl: None,
        };
        let opts = S2Options {
            index: WaterIndex::Ndwi,
            offset: -1000.0,
            ..S2Options::default()
        };
        let v = water_index(&input, &opts).expect("index");
        assert!((v[0] - 0.5).abs() < 1e-6, "{v:?}");
    }

    /// A 20 x 10 scene: left 8 columns water (green 0.06, NIR 0.02, SWIR 0.01), the rest
    /// vegetation (green 0.08, NIR 0.30, SWIR 0.18), with a little variation.
    fn scene() -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (w, h) = (20, 10);
        let jitter = |i: usize| ((i * 7919) % 13) as f32 * 0.001;
        let water = |i: usize| i % w < 8;
        let g = (0..w * h)
            .map(|i| if water(i) { 0.06 } else { 0.08 } + jitter(i))
            .collect();
        let n = (0..w * h)
            .map(|i| if water(i) { 0.02 } else { 0.30 } + jitter(i + 1))
            .collect();
        let s = (0..w * h)
            .map(|i| if water(i) { 0.01 } else { 0.18 } + jitter(i + 2))
            .collect();
        (g, n, s)
    }

    #[test]
    fn both_indices_find_the_water() {
        let (g, n, s) = scene();
        let input = S2Input {
            width: 20,
            height: 10,
            green: &g,
            nir: Some(&n),
            swir16: Some(&s),
            scl: None,
        };
        for index in [WaterIndex::Ndwi, WaterIndex::Mndwi] {
            for rule in [Threshold::Otsu, Threshold::Fixed(0.0)] {
                let opts = S2Options {
                    index,
                    threshold: ThresholdOptions {
                        rule,
                        ..ThresholdOptions::otsu(Some(0.0))
                    },
                    ..S2Options::default()
                };
                let map = s2_index(&input, &opts).expect("map");
                let wrong = (0..200).filter(|&i| (map.mask[i] == WATER) != (i % 20 < 8)).count();
                assert_eq!(wrong, 0, "{index:?} {rule:?}: {:?}", map.splits);
                assert_eq!(map.splits[0].feature, index.name());
            }
        }
    }

    #[test]
    fn clouds_shadows_and_snow_are_no_data() {
        let (g, n, s) = scene();
        let mut scl = vec![4.0f32; 200];
        scl[0] = 9.0; // cloud over water
        scl[15] = 3.0; // shadow over land
        scl[30] = 11.0; // snow
        scl[40] = 6.0; // SCL water: kept
        scl[50] = f32::NAN;
        let input = S2Input {
            width: 20,
            height: 10,
            green: &g,
            nir: Some(&n),
            swir16: Some(&s),
            scl: Some(&scl),
        };
        let map = s2_index(&input, &S2Options::default()).expect("map");
        for i in [0, 15, 30, 50] {
            assert_eq!(map.mask[i], NO_DATA, "pixel {i}");
            assert!(map.probability[i].is_nan());
        }
        assert_eq!(map.mask[40], WATER);
        assert_eq!(map.counts().2, 4);
        assert_eq!(map.splits[0].pixels, 196);
        assert_eq!(map.splits[0].source, ThresholdSource::Otsu);
    }

    #[test]
    fn missing_band_is_named() {
        let g = [0.1f32; 4];
        let input = S2Input {
            width: 2,
            height: 2,
            green: &g,
            nir: Some(&g),
            swir16: None,
            scl: None,
        };
        let err = s2_index(&input, &S2Options::default());
        assert!(
            matches!(&err, Err(WaterError::NoInput { reason, .. }) if reason.contains("SWIR1")),
            "{err:?}"
        );
        let short = [0.1f32; 3];
        let input = S2Input {
            width: 2,
            height: 2,
            green: &g,
            nir: Some(&short),
            swir16: None,
            scl: None,
        };
        let opts = S2Options {
            index: WaterIndex::Ndwi,
            ..S2Options::default()
        };
        assert!(matches!(
            s2_index(&input, &opts),
            Err(WaterError::Shape { band: "NIR", .. })
        ));
    }
}

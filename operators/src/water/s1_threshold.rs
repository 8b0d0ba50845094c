//! Sentinel-1 water mapping: open water is a specular reflector and returns little energy to
//! the radar, so it forms the dark mode of the VV and VH backscatter histograms.
//!
//! Per polarisation (VV, VH, in dB; NaN = no data):
//! 1. a 3x3 median filter against speckle ([`super::speckle`]);
//! 2. with a DEM, pixels steeper than `max_slope_deg` become no data and stay out of the
//!    statistics ([`super::terrain`]: radar shadow looks like water);
//! 3. an automatic threshold ([`super::threshold`]): Otsu (1979) per scene, or, with
//!    `tile_size`, split-based (Martinis et al. 2009, Chini et al. 2017): the image is cut
//!    into tiles, the tiles whose own histogram is bimodal (Ashman's D >= 2 of the fitted
//!    mixture) and splits at least 10% into each class are kept, and Otsu runs again on their
//!    pixels only, which keeps a scene with a little water in a lot of land from being split
//!    between two land classes. When no tile is bimodal the scene is taken to have no clear
//!    water and the fixed fallback threshold is used. Per scene, the bimodality is reported
//!    (the summary's `ashman_d`, source `OtsuNotBimodal`) but Otsu's threshold is kept: flood
//!    water is often a shoulder of the land mode rather than a mode of its own;
//! 4. each polarisation's water probability ([`Split::probability`]); the pixel's probability
//!    is their mean, and the mask says water where it exceeds 0.5 (so when VV and VH disagree
//!    the more confident one decides).
//!
//! The fallback thresholds (VV −18 dB, VH −25 dB) are conventional values for calm open
//! water in C-band sigma0, used only where the scene's histogram cannot be split; change them
//! with [`S1Options`]. Nothing here was fitted to a particular scene.

use super::error::{WaterError, WaterResult};
use super::speckle::median_filter;
use super::threshold::{Side, Split, Threshold, ThresholdOptions, ThresholdSource, split};
use super::{DRY, NO_DATA, WATER, WaterMap, check_len};

const METHOD: &str = "s1";

/// Smallest share of each class in a tile for it to take part in a split-based threshold.
const MIN_TILE_CLASS_FRACTION: f32 = 0.1;

/// Co-registered Sentinel-1 backscatter on one pixel grid.
#[derive(Debug, Clone, Copy)]
pub struct S1Input<'a> {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// VV sigma0 (or gamma0) in dB, row-major, NaN = no data.
    pub vv: Option<&'a [f32]>,
    /// VH in dB.
    pub vh: Option<&'a [f32]>,
    /// Terrain slope in degrees on the same grid (see [`super::terrain::slope_degrees`]), for
    /// the steep-terrain guard; NaN = unknown (not guarded).
    pub slope_deg: Option<&'a [f32]>,
}

/// Options of the Sentinel-1 method.
#[derive(Debug, Clone, PartialEq)]
pub struct S1Options {
    /// Median filter window in pixels (odd; 1 = no filter).
    pub speckle_window: usize,
    /// Threshold choice for VV (dB).
    pub vv: ThresholdOptions,
    /// Threshold choice for VH (dB).
    pub vh: ThresholdOptions,
    /// Pixels steeper than this (degrees) are no data when a slope is given.
    pub max_slope_deg: f32,
    /// Split-based thresholding over tiles of this many pixels a side (at least 32; 64 to 256
    /// keep the per-tile bimodality test stable); `None`: one threshold from the whole image.
    pub tile_size: Option<usize>,
}

impl Default for S1Options {
    /// 3x3 median, Otsu per scene with fallbacks VV −18 dB / VH −25 dB, slope limit 15°.
    fn default() -> Self {
        Self {
            speckle_window: 3,
            vv: ThresholdOptions::otsu(Some(-18.0)),
            vh: ThresholdOptions::otsu(Some(-25.0)),
            max_slope_deg: 15.0,
            tile_size: None,
        }
    }
}

/// Water map from Sentinel-1 backscatter (see the module docs). Needs VV or VH.
pub fn s1_threshold(input: &S1Input<'_>, opts: &S1Options) -> WaterResult<WaterMap> {
    let (w, h) = (input.width, input.height);
    if opts.speckle_window > 1 && opts.speckle_window % 2 == 0 {
        return Err(WaterError::Option {
            method: METHOD,
            key: "speckle_window",
            reason: format!("must be odd, got {}", opts.speckle_window),
        });
    }
    if opts.tile_size.is_some_and(|t| t < 32) {
        // Smaller tiles hold too few pixels for a stable bimodality test.
        return Err(WaterError::Option {
            method: METHOD,
            key: "tile_size",
            reason: "must be at least 32 pixels".into(),
        });
    }
    if let Some(s) = input.slope_deg {
        check_len(METHOD, "slope", s.len(), w, h)?;
    }
    let mut features: Vec<(Vec<f32>, Split)> = Vec::new();
    for (band, feature, values, topts) in [("VV", "VV dB", input.vv, &opts.vv), ("VH", "VH dB", input.vh, &opts.vh)] {
        let Some(values) = values else { continue };
        check_len(METHOD, band, values.len(), w, h)?;
        let mut filtered = median_filter(values, w, h, opts.speckle_window);
        if let Some(slope) = input.slope_deg {
            for (v, &s) in filtered.iter_mut().zip(slope) {
                if s > opts.max_slope_deg {
                    *v = f32::NAN;
                }
            }
        }
        let s = match opts.tile_size {
            Some(tile) => tiled_split(feature, &filtered, w, h, tile, topts)?,
            None => split(METHOD, feature, filtered.iter().copied(), Side::Below, topts)?,
        };
        features.push((filtered, s));
    }
    if features.is_empty() {
        return Err(WaterError::NoInput {
            method: METHOD,
            reason: "give VV, VH or both".into(),
        });
    }
    let n = w * h;
    let mut mask = vec![NO_DATA; n];
    let mut probability = vec![f32::NAN; n];
    for i in 0..n {
        let (mut sum, mut count) = (0.0f32, 0u32);
        for (values, s) in &features {
            let p = s.probability(values[i]);
            if !p.is_nan() {
                sum += p;
                count += 1;
            }
        }
        if count > 0 {
            let p = sum / count as f32;
            probability[i] = p;
            mask[i] = if p > 0.5 { WATER } else { DRY };
        }
    }
    Ok(WaterMap {
        width: w,
        height: h,
        mask,
        probability,
        splits: features.into_iter().map(|(_, s)| s).collect(),
    })
}

/// Split-based threshold: Otsu over the pixels of the tiles that are bimodal on their own;
/// the whole image's split when none is.
fn tiled_split(
    feature: &'static str,
    values: &[f32],
    w: usize,
    h: usize,
    tile: usize,
    opts: &ThresholdOptions,
) -> WaterResult<Split> {
    let strict = ThresholdOptions {
        fallback: None,
        require_bimodal: false,
        ..*opts
    };
    let mut tiles = Vec::new();
    for ty in (0..h).step_by(tile) {
        for tx in (0..w).step_by(tile) {
            let Ok(s) = split(
                METHOD,
                feature,
                tile_values(values, w, h, &[(tx, ty)], tile),
                Side::Below,
                &strict,
            ) else {
                continue;
            };
            let balanced = (MIN_TILE_CLASS_FRACTION..=1.0 - MIN_TILE_CLASS_FRACTION).contains(&s.water_fraction);
            if s.source == ThresholdSource::Otsu && balanced {
                tiles.push((tx, ty));
            }
        }
    }
    if tiles.is_empty() {
        // Nothing bimodal anywhere: the fallback threshold (or, without one, Otsu's).
        let rule = opts.fallback.map_or(opts.rule, Threshold::Fixed);
        let s = split(
            METHOD,
            feature,
            values.iter().copied(),
            Side::Below,
            &ThresholdOptions { rule, ..*opts },
        )?;
        let source = if opts.fallback.is_some() {
            ThresholdSource::Fallback
        } else {
            s.source
        };
        return Ok(Split { source, ..s });
    }
    // Otsu's threshold comes from the selected tiles; the class statistics (and so the
    // probability slope) from them too, where both classes are well represented.
    let selected = split(
        METHOD,
        feature,
        tile_values(values, w, h, &tiles, tile),
        Side::Below,
        &strict,
    )?;
    Ok(selected)
}

/// The values of the given tiles (top-left corners), row by row.
fn tile_values<'a>(
    values: &'a [f32],
    w: usize,
    h: usize,
    tiles: &'a [(usize, usize)],
    tile: usize,
) -> impl Iterator<Item = f32> + Clone + 'a {
    tiles.iter().flat_map(move |&(tx, ty)| {
        (ty..(ty + tile).min(h)).flat_map(move |y| values[y * w + tx..y * w + (tx + tile).min(w)].iter().copied())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::water::test_support::{normal, two_region_scene};

    #[test]
    fn dark_region_is_water_with_both_polarisations() {
        let (w, h) = (64, 48);
        let vv = two_region_scene(w, h, 20, -20.0, -9.0, 1.5, 1);
        let vh = two_region_scene(w, h, 20, -27.0, -16.0, 1.5, 3);
        let input = S1Input {
            width: w,
            height: h,
            vv: Some(&vv),
            vh: Some(&vh),
            slope_deg: None,
        };
        let map = s1_threshold(&input, &S1Options::default()).expect("map");
        let wrong = (0..w * h).filter(|&i| (map.mask[i] == WATER) != (i % w < 20)).count();
        assert!(wrong <= w * h / 200, "{wrong} misclassified");
        assert_eq!(map.splits.len(), 2);
        assert!(
            map.splits.iter().all(|s| s.source == ThresholdSource::Otsu),
            "{:?}",
            map.splits
        );
        assert!(map.splits[0].threshold > -20.0 && map.splits[0].threshold < -9.0);
        for i in 0..w * h {
            assert_eq!(map.probability[i] > 0.5, map.mask[i] == WATER);
        }
    }

    #[test]
    fn no_data_and_steep_terrain_are_no_data() {
        let (w, h) = (32, 32);
        let mut vv = two_region_scene(w, h, 10, -21.0, -8.0, 1.0, 5);
        vv[0] = f32::NAN;
        // A steep slope over part of the dark region: shadow, not water.
        let slope: Vec<f32> = (0..w * h).map(|i| if i / w < 4 { 30.0 } else { 2.0 }).collect();
        let input = S1Input {
            width: w,
            height: h,
            vv: Some(&vv),
            vh: None,
            slope_deg: Some(&slope),
        };
        let map = s1_threshold(&input, &S1Options::default()).expect("map");
        assert_eq!(map.mask[0], NO_DATA);
        assert!(map.probability[0].is_nan());
        assert!(map.mask[..4 * w].iter().all(|&m| m == NO_DATA));
        assert!(map.mask[4 * w..].iter().all(|&m| m != NO_DATA));
        assert_eq!(map.splits[0].pixels, w * h - 4 * w);
    }

    #[test]
    fn a_scene_without_water_falls_back_and_finds_none() {
        let (w, h) = (128, 128);
        let vv = normal(w * h, -9.0, 2.0, 9);
        let input = S1Input {
            width: w,
            height: h,
            vv: Some(&vv),
            vh: None,
            slope_deg: None,
        };
        let scene = s1_threshold(&input, &S1Options::default()).expect("scene");
        assert_eq!(
            scene.splits[0].source,
            ThresholdSource::OtsuNotBimodal,
            "{:?}",
            scene.splits
        );
        let map = s1_threshold(
            &input,
            &S1Options {
                tile_size: Some(64),
                ..S1Options::default()
            },
        )
        .expect("map");
        assert_eq!(map.splits[0].source, ThresholdSource::Fallback);
        assert_eq!(map.counts().0, 0, "found water in land");
    }

    #[test]
    fn split_based_threshold_finds_a_small_lake_that_scene_otsu_misses() {
        // 256 x 256 of land with two land covers (-6 and -13 dB) and one 24 x 24 lake (-22 dB).
        let (w, h) = (256, 256);
        let land_a = normal(w * h, -6.0, 1.2, 11);
        let land_b = normal(w * h, -13.0, 1.2, 12);
        let lake = normal(w * h, -22.0, 1.2, 13);
        let vv: Vec<f32> = (0..w * h)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                if (100..124).contains(&x) && (100..124).contains(&y) {
                    lake[i]
                } else if x < w / 2 {
                    land_a[i]
                } else {
                    land_b[i]
                }
            })
            .collect();
        let input = S1Input {
            width: w,
            height: h,
            vv: Some(&vv),
            vh: None,
            slope_deg: None,
        };
        let is_lake = |i: usize| (100..124).contains(&(i % w)) && (100..124).contains(&(i / w));
        let errors = |m: &WaterMap| (0..w * h).filter(|&i| (m.mask[i] == WATER) != is_lake(i)).count();
        let scene = s1_threshold(&input, &S1Options::default()).expect("scene");
        let tiled = s1_threshold(
            &input,
            &S1Options {
                tile_size: Some(64),
                ..S1Options::default()
            },
        )
        .expect("tiled");
        assert!(
            errors(&scene) > w * h / 10,
            "scene-wide Otsu splits land from land: {} errors",
            errors(&scene)
        );
        assert!(
            errors(&tiled) < 24 * 24 / 20,
            "split-based: {} errors, {:?}",
            errors(&tiled),
            tiled.splits
        );
    }

    #[test]
    fn bad_input_is_named() {
        let v = vec![0.0f32; 10];
        let input = S1Input {
            width: 4,
            height: 4,
            vv: Some(&v),
            vh: None,
            slope_deg: None,
        };
        let err = s1_threshold(&input, &S1Options::default());
        assert!(
            matches!(
                err,
                Err(WaterError::Shape {
                    band: "VV",
                    expected: 16,
                    got: 10,
                    ..
                })
            ),
            "{err:?}"
        );
        let input = S1Input {
            width: 4,
            height: 4,
            vv: None,
            vh: None,
            slope_deg: None,
        };
        assert!(matches!(
            s1_threshold(&input, &S1Options::default()),
            Err(WaterError::NoInput { .. })
        ));
        let v = vec![0.0f32; 16];
        let input = S1Input {
            width: 4,
            height: 4,
            vv: Some(&v),
            vh: None,
            slope_deg: None,
        };
        let opts = S1Options {
            speckle_window: 4,
            ..S1Options::default()
        };
        assert!(matches!(
            s1_threshold(&input, &opts),
            Err(WaterError::Option {
                key: "speckle_window",
                ..
            })
        ));
    }
}

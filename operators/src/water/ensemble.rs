//! Ensemble of water maps: the Copernicus Global Flood Monitoring (GFM) product runs three
//! independent Sentinel-1 algorithms and flags a pixel as water where the majority of them
//! agree (Salamon et al. 2021). This is the same rule over whichever methods are available.
//!
//! Per pixel, only methods with data there vote:
//! - more water votes than dry votes: water; more dry than water: dry;
//! - a tie (which is every disagreement between two methods) goes to the mean of the voters'
//!   water probabilities: water above 0.5, dry otherwise. With two methods this is a
//!   confidence-weighted vote: the method that is surer of its answer decides, so the ensemble
//!   of two is not simply their union or intersection;
//! - no voter: no data.
//!
//! The ensemble's probability is the mean of the voters' probabilities.

use super::error::{WaterError, WaterResult};
use super::{DRY, NO_DATA, WATER, WaterMap};

/// Combines `maps` (same grid) by majority vote, ties by mean probability (see the module
/// docs). The result's `splits` are all the members' splits.
pub fn ensemble(maps: &[&WaterMap]) -> WaterResult<WaterMap> {
    let Some(first) = maps.first() else {
        return Err(WaterError::NoInput {
            method: "ensemble",
            reason: "no water maps to combine".into(),
        });
    };
    let (w, h) = (first.width, first.height);
    for m in maps {
        if (m.width, m.height) != (w, h) || m.mask.len() != w * h || m.probability.len() != w * h {
            return Err(WaterError::GridMismatch {
                a: format!("{w} x {h}"),
                b: format!("{} x {}", m.width, m.height),
            });
        }
    }
    let mut mask = vec![NO_DATA; w * h];
    let mut probability = vec![f32::NAN; w * h];
    for i in 0..w * h {
        let (mut water, mut dry, mut p_sum) = (0u32, 0u32, 0.0f32);
        for m in maps {
            match m.mask[i] {
                WATER => water += 1,
                DRY => dry += 1,
                _ => continue,
            }
            p_sum += m.probability[i];
        }
        let voters = water + dry;
        if voters == 0 {
            continue;
        }
        let p = p_sum / voters as f32;
        probability[i] = p;
        mask[i] = if water > dry || (water == dry && p > 0.5) {
            WATER
        } else {
            DRY
        };
    }
    Ok(WaterMap {
        width: w,
        height: h,
        mask,
        probability,
        splits: maps.iter().flat_map(|m| m.splits.iter().copied()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(mask: &[u8], p: &[f32]) -> WaterMap {
        WaterMap {
            width: mask.len(),
            height: 1,
            mask: mask.to_vec(),
            probability: p.to_vec(),
            splits: vec![],
        }
    }

    #[test]
    fn majority_wins_and_ties_go_to_the_surer_method() {
        const N: f32 = f32::NAN;
        let a = map(&[1, 1, 0, 1, 0, 255, 1], &[0.9, 0.6, 0.1, 0.9, 0.4, N, 0.55]);
        let b = map(&[1, 0, 0, 0, 1, 255, 255], &[0.8, 0.2, 0.3, 0.45, 0.51, N, N]);
        let e = ensemble(&[&a, &b]).expect("ensemble");
        // agree water; tie 0.6 vs 0.2 -> dry; agree dry; tie 0.9 vs 0.45 -> water;
        // tie 0.4 vs 0.51 -> dry (mean 0.455); no voter; one voter.
        assert_eq!(e.mask, vec![1, 0, 0, 1, 0, 255, 1]);
        assert!((e.probability[3] - 0.675).abs() < 1e-6);
        assert!(e.probability[5].is_nan());
        let c = map(&[1, 1, 1, 0, 0, 0, 0], &[0.7, 0.7, 0.7, 0.3, 0.3, 0.3, 0.3]);
        let e3 = ensemble(&[&a, &b, &c]).expect("ensemble of three");
        // Pixel 1: water (a, c) beats dry (b) although the mean is 0.5; pixel 3: dry (b, c)
        // beats water (a) although the mean is 0.55; pixel 6: a tie, mean 0.425.
        assert_eq!(e3.mask, vec![1, 1, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn maps_on_different_grids_are_refused() {
        let a = map(&[1, 0], &[0.9, 0.1]);
        let b = map(&[1], &[0.9]);
        assert!(matches!(ensemble(&[&a, &b]), Err(WaterError::GridMismatch { .. })));
        assert!(matches!(ensemble(&[]), Err(WaterError::NoInput { .. })));
    }
}

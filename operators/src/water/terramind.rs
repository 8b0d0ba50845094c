//! TerraMind water: the water class of the land-cover (LULC) map that TerraMind's
//! Thinking-in-Modalities generates from Sentinel-1/2 (zero-shot), or of a fine-tuned
//! segmentation head.
//!
//! TiM produces LULC *token ids* ([`crate::tim`]); turning them into a class map needs the
//! LULC tokenizer's decoder (issue 10), and the map means something only with the official
//! pretrained weights: random weights (what tests and the demo run without a checkpoint)
//! generate arbitrary land cover. [`terramind_water`] therefore refuses clearly until both
//! exist, naming what is missing; [`water_from_lulc`] is the step that follows the decoder.

use std::path::Path;

use super::error::{WaterError, WaterResult};
use super::{DRY, NO_DATA, WATER, WaterMap};

const METHOD: &str = "terramind";

/// Runs TerraMind's LULC generation and keeps its water class. Always an error in this build:
/// without `checkpoint` because random weights make meaningless land cover; with one because
/// the LULC decoder is not implemented yet.
pub fn terramind_water(checkpoint: Option<&Path>) -> WaterResult<WaterMap> {
    Err(WaterError::NotAvailable {
        method: METHOD,
        missing: match checkpoint {
            None => "it needs a real TerraMind checkpoint (TerraMind_v1_<variant>.pt, the official pretrained \
                     weights; give it with --checkpoint): with random weights the generated land cover is noise"
                .into(),
            Some(p) => format!(
                "checkpoint {} given, but the LULC tokenizer decoder that turns TiM's LULC token ids into a class map \
                 is not implemented yet (issue 10)",
                p.display()
            ),
        },
    })
}

/// Water map from a decoded land-cover map: `water_class` is water (probability from
/// `class_probability` when given, else 1), every other class dry, `nodata_class` no data.
pub fn water_from_lulc(
    classes: &[u8],
    width: usize,
    height: usize,
    water_class: u8,
    nodata_class: Option<u8>,
    water_probability: Option<&[f32]>,
) -> WaterResult<WaterMap> {
    super::check_len(METHOD, "LULC", classes.len(), width, height)?;
    if let Some(p) = water_probability {
        super::check_len(METHOD, "water probability", p.len(), width, height)?;
    }
    let mut mask = Vec::with_capacity(classes.len());
    let mut probability = Vec::with_capacity(classes.len());
    for (i, &c) in classes.iter().enumerate() {
        let (m, p) = if Some(c) == nodata_class {
            (NO_DATA, f32::NAN)
        } else if c == water_class {
            (WATER, water_probability.map_or(1.0, |p| p[i].max(0.5 + f32::EPSILON)))
        } else {
            (DRY, water_probability.map_or(0.0, |p| p[i].min(0.5)))
        };
        mask.push(m);
        probability.push(p);
    }
    Ok(WaterMap {
        width,
        height,
        mask,
        probability,
        splits: vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_with_what_is_missing() {
        let err = terramind_water(None).expect_err("no checkpoint");
        assert!(err.to_string().contains("needs a real TerraMind checkpoint"), "{err}");
        let err = terramind_water(Some(Path::new("w.pt"))).expect_err("no decoder");
        assert!(
            err.to_string().contains("w.pt") && err.to_string().contains("issue 10"),
            "{err}"
        );
    }

    #[test]
    fn water_class_is_water() {
        let m = water_from_lulc(&[1, 2, 0, 1], 2, 2, 1, Some(0), None).expect("map");
        assert_eq!(m.mask, vec![WATER, DRY, NO_DATA, WATER]);
        assert_eq!(m.counts(), (2, 1, 1));
        let m = water_from_lulc(&[1, 2], 2, 1, 1, None, Some(&[0.3, 0.9])).expect("map");
        // Probabilities are kept on the side of 0.5 the class decision puts them.
        assert!(m.probability[0] > 0.5 && m.probability[1] <= 0.5);
    }
}

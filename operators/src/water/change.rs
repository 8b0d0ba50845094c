//! Change detection: flood is water in the post-event map that was dry in the pre-event
//! reference. Water in both is permanent (or seasonal) water, never flood; a pixel without an
//! observation in the post-event map, or water after the event over a pixel the reference did
//! not see, is no data: without a reference it can be called neither flood nor permanent
//! water (the Copernicus GFM product keeps such "no reference" pixels out of the flood extent).

use super::error::{WaterError, WaterResult};
use super::{DRY, WATER};

/// Class of a change-detection pixel, as stored in the class raster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FloodClass {
    /// Dry after the event.
    Dry = 0,
    /// Water before and after the event.
    PermanentWater = 1,
    /// Water after the event, dry before it.
    Flood = 2,
    /// No usable observation.
    NoData = 255,
}

impl FloodClass {
    /// All classes with their raster values and names, in value order.
    pub const ALL: [(FloodClass, &'static str); 4] = [
        (FloodClass::Dry, "dry"),
        (FloodClass::PermanentWater, "permanent water"),
        (FloodClass::Flood, "flood"),
        (FloodClass::NoData, "no data"),
    ];

    /// The class of one pixel from its pre- and post-event water masks.
    pub const fn of(pre: u8, post: u8) -> Self {
        match (pre, post) {
            (_, DRY) => Self::Dry,
            (WATER, WATER) => Self::PermanentWater,
            (DRY, WATER) => Self::Flood,
            _ => Self::NoData,
        }
    }
}

/// The flood classes (as `u8`, see [`FloodClass`]) of two water masks on the same grid.
pub fn change_detection(pre: &[u8], post: &[u8]) -> WaterResult<Vec<u8>> {
    if pre.len() != post.len() {
        return Err(WaterError::GridMismatch {
            a: format!("{} pixels (pre-event)", pre.len()),
            b: format!("{} pixels (post-event)", post.len()),
        });
    }
    Ok(pre
        .iter()
        .zip(post)
        .map(|(&a, &b)| FloodClass::of(a, b) as u8)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::water::NO_DATA;

    #[test]
    fn every_combination_has_its_class() {
        let pre = [DRY, DRY, DRY, WATER, WATER, WATER, NO_DATA, NO_DATA, NO_DATA];
        let post = [DRY, WATER, NO_DATA, DRY, WATER, NO_DATA, DRY, WATER, NO_DATA];
        let c = change_detection(&pre, &post).expect("classes");
        assert_eq!(c, vec![0, 2, 255, 0, 1, 255, 0, 255, 255]);
        // Flood only where the reference saw dry land.
        for (i, &v) in c.iter().enumerate() {
            assert_eq!(v == FloodClass::Flood as u8, pre[i] == DRY && post[i] == WATER);
        }
        assert!(matches!(
            change_detection(&pre, &post[..3]),
            Err(WaterError::GridMismatch { .. })
        ));
    }
}

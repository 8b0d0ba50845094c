//! Sampling a source window at fractional source pixel positions, with GDAL's warper rules for
//! no-data so that warps compare pixel for pixel with `gdalwarp`.

use crate::bands::Resampling;

/// A window of one source band: `width` x `height` values from source pixel `(col0, row0)`,
/// row-major, NaN = no data.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SourceWindow {
    pub(crate) col0: isize,
    pub(crate) row0: isize,
    pub(crate) width: usize,
    pub(crate) height: usize,
    pub(crate) data: Vec<f32>,
}

/// GDAL nudges positions up by this much before flooring, so that a position a rounding error
/// below a pixel edge lands in the pixel it names.
const EDGE_NUDGE: f64 = 1e-10;

impl SourceWindow {
    fn get(&self, col: isize, row: isize) -> f32 {
        let (c, r) = (col - self.col0, row - self.row0);
        if c < 0 || r < 0 || c as usize >= self.width || r as usize >= self.height {
            return f32::NAN;
        }
        self.data[r as usize * self.width + c as usize]
    }

    /// The value at source pixel position `(sc, sr)` (pixel corners), or NaN.
    ///
    /// As in GDAL's warper, a position is valid when the pixel containing it is; bilinear then
    /// weights the valid ones of the four neighbouring pixel centres and renormalises, so
    /// no-data never bleeds in and valid edges keep their values.
    pub(crate) fn sample(&self, sc: f64, sr: f64, method: Resampling) -> f32 {
        let (ic, ir) = ((sc + EDGE_NUDGE).floor() as isize, (sr + EDGE_NUDGE).floor() as isize);
        let here = self.get(ic, ir);
        if here.is_nan() || matches!(method, Resampling::Nearest) {
            return here;
        }
        let (fc, fr) = (sc - 0.5, sr - 0.5);
        let (c0, r0) = (fc.floor(), fr.floor());
        let (tx, ty) = (fc - c0, fr - r0);
        let (c0, r0) = (c0 as isize, r0 as isize);
        let taps = [
            (c0, r0, (1.0 - tx) * (1.0 - ty)),
            (c0 + 1, r0, tx * (1.0 - ty)),
            (c0, r0 + 1, (1.0 - tx) * ty),
            (c0 + 1, r0 + 1, tx * ty),
        ];
        let (mut sum, mut weight) = (0.0f64, 0.0f64);
        for (c, r, w) in taps {
            let v = self.get(c, r);
            if !v.is_nan() {
                sum += f64::from(v) * w;
                weight += w;
            }
        }
        if weight < 1e-5 { f32::NAN } else { (sum / weight) as f32 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> SourceWindow {
        // 2x2 pixels at source (10, 20): 0 1 / 2 NaN.
        SourceWindow { col0: 10, row0: 20, width: 2, height: 2, data: vec![0.0, 1.0, 2.0, f32::NAN] }
    }

    #[test]
    fn nearest_takes_the_containing_pixel() {
        let w = window();
        assert_eq!(w.sample(10.99, 20.0, Resampling::Nearest), 0.0);
        assert_eq!(w.sample(11.0, 20.5, Resampling::Nearest), 1.0);
        assert!(w.sample(11.5, 21.5, Resampling::Nearest).is_nan(), "no-data pixel");
        assert!(w.sample(9.5, 20.5, Resampling::Nearest).is_nan(), "outside the window");
    }

    #[test]
    fn bilinear_renormalises_over_valid_neighbours() {
        let w = window();
        // 0.4 px right of and below the first centre: weights .36 .24 .24 (.16 on no-data).
        let v = w.sample(10.9, 20.9, Resampling::Bilinear);
        assert!((v - (0.24 * 1.0 + 0.24 * 2.0) / 0.84).abs() < 1e-6, "{v}");
        // Between the two top centres, the bottom row has zero weight.
        let v = w.sample(10.75, 20.5, Resampling::Bilinear);
        assert!((v - 0.25).abs() < 1e-6, "{v}");
        // At a pixel centre the value is exact even next to no-data.
        assert_eq!(w.sample(11.5, 20.5, Resampling::Bilinear), 1.0);
        // Inside the no-data pixel: no value, whatever the neighbours.
        assert!(w.sample(11.4, 21.4, Resampling::Bilinear).is_nan());
    }
}

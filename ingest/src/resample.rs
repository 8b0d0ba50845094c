//! Resampling a source raster window onto a target grid (same CRS, north-up).

use crate::bands::Resampling;
use crate::geo::GeoTransform;

/// A single-band raster window: `width` x `height` Float32 values, row-major, NaN = no data.
#[derive(Debug, Clone, PartialEq)]
pub struct Raster {
    /// Transform of the window's top-left pixel corner.
    pub transform: GeoTransform,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Values, row-major.
    pub data: Vec<f32>,
}

impl Raster {
    /// A raster filled with no-data.
    pub fn empty(transform: GeoTransform, width: usize, height: usize) -> Self {
        Self { transform, width, height, data: vec![f32::NAN; width * height] }
    }

    fn get(&self, col: isize, row: isize) -> f32 {
        if col < 0 || row < 0 || col as usize >= self.width || row as usize >= self.height {
            return f32::NAN;
        }
        self.data[row as usize * self.width + col as usize]
    }
}

/// Samples `src` at the pixel centres of a `width` x `height` grid with transform `dst`.
///
/// Bilinear falls back to the nearest source pixel where any of the four neighbours is no-data,
/// so no-data never bleeds into valid pixels and valid edges are kept.
pub fn resample(src: &Raster, dst: &GeoTransform, width: usize, height: usize, method: Resampling) -> Raster {
    let mut out = Raster::empty(*dst, width, height);
    for row in 0..height {
        for col in 0..width {
            let (x, y) = dst.apply(col as f64 + 0.5, row as f64 + 0.5);
            let (sc, sr) = src.transform.invert(x, y);
            out.data[row * width + col] = match method {
                Resampling::Nearest => src.get(sc.floor() as isize, sr.floor() as isize),
                Resampling::Bilinear => bilinear(src, sc - 0.5, sr - 0.5),
            };
        }
    }
    out
}

fn bilinear(src: &Raster, fc: f64, fr: f64) -> f32 {
    let (c0, r0) = (fc.floor(), fr.floor());
    let (tx, ty) = ((fc - c0) as f32, (fr - r0) as f32);
    let (c0, r0) = (c0 as isize, r0 as isize);
    let v = [src.get(c0, r0), src.get(c0 + 1, r0), src.get(c0, r0 + 1), src.get(c0 + 1, r0 + 1)];
    if v.iter().any(|x| x.is_nan()) {
        // Nearest of the four (the pixel containing the sample point).
        return src.get((fc + 0.5).floor() as isize, (fr + 0.5).floor() as isize);
    }
    let top = v[0] + (v[1] - v[0]) * tx;
    let bottom = v[2] + (v[3] - v[2]) * tx;
    top + (bottom - top) * ty
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp() -> Raster {
        // 2x2 pixels of 20 m: values 0 1 / 2 3.
        Raster { transform: GeoTransform::north_up(0.0, 40.0, 20.0, 20.0), width: 2, height: 2, data: vec![0.0, 1.0, 2.0, 3.0] }
    }

    #[test]
    fn nearest_upsampling_repeats_pixels() {
        let out = resample(&ramp(), &GeoTransform::north_up(0.0, 40.0, 10.0, 10.0), 4, 4, Resampling::Nearest);
        assert_eq!(&out.data[0..4], &[0.0, 0.0, 1.0, 1.0]);
        assert_eq!(&out.data[12..16], &[2.0, 2.0, 3.0, 3.0]);
    }

    #[test]
    fn bilinear_interpolates_inside_and_keeps_edges() {
        let out = resample(&ramp(), &GeoTransform::north_up(0.0, 40.0, 10.0, 10.0), 4, 4, Resampling::Bilinear);
        // Pixel (1,1) centre is at source (0.75, 0.75) - 0.5 = (0.25, 0.25) from the first centre.
        assert!((out.data[5] - (0.25 + 2.0 * 0.25)).abs() < 1e-6, "{}", out.data[5]);
        // Edge pixels fall back to nearest (their neighbours lie outside the source).
        assert_eq!(out.data[0], 0.0);
        assert!(out.data.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn same_grid_is_identity() {
        let src = ramp();
        let out = resample(&src, &src.transform, 2, 2, Resampling::Bilinear);
        assert_eq!(out.data, src.data);
    }
}

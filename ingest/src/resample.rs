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
/// so no-data never bleeds into valid pixels and valid edges are kept. Average is the
/// area-weighted mean of the valid source pixels under each target pixel (see [`average`]).
pub fn resample(src: &Raster, dst: &GeoTransform, width: usize, height: usize, method: Resampling) -> Raster {
    if method == Resampling::Average {
        return average(src, dst, width, height);
    }
    let mut out = Raster::empty(*dst, width, height);
    for row in 0..height {
        for col in 0..width {
            let (x, y) = dst.apply(col as f64 + 0.5, row as f64 + 0.5);
            let (sc, sr) = src.transform.invert(x, y);
            out.data[row * width + col] = match method {
                Resampling::Nearest => src.get(sc.floor() as isize, sr.floor() as isize),
                Resampling::Bilinear => bilinear(src, sc - 0.5, sr - 0.5),
                Resampling::Average => unreachable!("handled above"),
            };
        }
    }
    out
}

/// Area-weighted mean of the source pixels each target pixel covers, no-data (NaN) and pixels
/// outside `src` left out, as GDAL's `-r average` (3.1 and later) weights partly covered pixels
/// by the covered fraction. Along an axis where a target pixel is no larger than a source pixel
/// (upsampling) it takes the source pixel under its centre, so pure upsampling equals nearest.
pub fn average(src: &Raster, dst: &GeoTransform, width: usize, height: usize) -> Raster {
    let mut out = Raster::empty(*dst, width, height);
    // Grids are north-up, so the footprint of a target pixel is a rectangle of source pixel
    // coordinates and the weights separate into a column part and a row part.
    let cols: Vec<Vec<(usize, f64)>> = (0..width)
        .map(|c| {
            let a = src.transform.invert(dst.apply(c as f64, 0.0).0, 0.0).0;
            let b = src.transform.invert(dst.apply(c as f64 + 1.0, 0.0).0, 0.0).0;
            axis_weights(a, b, src.width)
        })
        .collect();
    let rows: Vec<Vec<(usize, f64)>> = (0..height)
        .map(|r| {
            let a = src.transform.invert(0.0, dst.apply(0.0, r as f64).1).1;
            let b = src.transform.invert(0.0, dst.apply(0.0, r as f64 + 1.0).1).1;
            axis_weights(a, b, src.height)
        })
        .collect();
    for (r, row_w) in rows.iter().enumerate() {
        for (c, col_w) in cols.iter().enumerate() {
            let (mut sum, mut weight) = (0f64, 0f64);
            for &(sr, wr) in row_w {
                let line = &src.data[sr * src.width..(sr + 1) * src.width];
                for &(sc, wc) in col_w {
                    let v = line[sc];
                    if !v.is_nan() {
                        sum += f64::from(v) * wr * wc;
                        weight += wr * wc;
                    }
                }
            }
            if weight > 0.0 {
                out.data[r * width + c] = (sum / weight) as f32;
            }
        }
    }
    out
}

/// Source pixels covered by the target pixel spanning `[a, b)` (source pixel coordinates) and
/// the covered fraction of each, inside `0..n`.
fn axis_weights(a: f64, b: f64, n: usize) -> Vec<(usize, f64)> {
    let (a, b) = (a.min(b), a.max(b));
    // Coordinates within a hair of a pixel edge are on it: exact multiples of the source
    // resolution must not pull in a sliver of the neighbouring pixel through rounding.
    let snap = |x: f64| if (x - x.round()).abs() < 1e-6 { x.round() } else { x };
    let (a, b) = (snap(a), snap(b));
    if b - a <= 1.0 {
        let centre = ((a + b) / 2.0).floor();
        return if centre >= 0.0 && (centre as usize) < n { vec![(centre as usize, 1.0)] } else { Vec::new() };
    }
    let first = a.floor().max(0.0) as usize;
    let last = (b.ceil().max(0.0) as usize).min(n);
    (first..last)
        .filter_map(|k| {
            let w = b.min(k as f64 + 1.0) - a.max(k as f64);
            (w > 0.0).then_some((k, w))
        })
        .collect()
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
        Raster {
            transform: GeoTransform::north_up(0.0, 40.0, 20.0, 20.0),
            width: 2,
            height: 2,
            data: vec![0.0, 1.0, 2.0, 3.0],
        }
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
    fn average_of_whole_blocks_is_their_mean() {
        // 4x2 pixels of 10 m onto 20 m: each target pixel is the mean of a 2x2 block.
        let src = Raster {
            transform: GeoTransform::north_up(0.0, 20.0, 10.0, 10.0),
            width: 4,
            height: 2,
            data: vec![1.0, 2.0, 10.0, 20.0, 3.0, 4.0, 30.0, 40.0],
        };
        let out = resample(&src, &GeoTransform::north_up(0.0, 20.0, 20.0, 20.0), 2, 1, Resampling::Average);
        assert_eq!(out.data, vec![2.5, 25.0]);
    }

    #[test]
    fn average_weights_partly_covered_pixels_and_skips_nodata() {
        // 3 pixels of 10 m in a row: 0, 30, 60. A 15 m target pixel starting at x = 0 covers the
        // first fully and half of the second: (0 * 10 + 30 * 5) / 15 = 10. The next one covers
        // the other half of the second and all of the third: (30 * 5 + 60 * 10) / 15 = 50.
        let src = Raster {
            transform: GeoTransform::north_up(0.0, 10.0, 10.0, 10.0),
            width: 3,
            height: 1,
            data: vec![0.0, 30.0, 60.0],
        };
        let dst = GeoTransform::north_up(0.0, 10.0, 15.0, 10.0);
        let out = resample(&src, &dst, 2, 1, Resampling::Average);
        assert!((out.data[0] - 10.0).abs() < 1e-5 && (out.data[1] - 50.0).abs() < 1e-5, "{:?}", out.data);
        // No-data leaves the weights of the valid pixels only; all no-data gives no-data.
        let holes = Raster { data: vec![f32::NAN, 30.0, f32::NAN], ..src };
        let out = resample(&holes, &dst, 2, 1, Resampling::Average);
        assert_eq!(out.data, vec![30.0, 30.0]);
        let empty = Raster { data: vec![f32::NAN; 3], ..holes };
        assert!(resample(&empty, &dst, 2, 1, Resampling::Average).data.iter().all(|v| v.is_nan()));
    }

    #[test]
    fn average_upsampling_equals_nearest() {
        let dst = GeoTransform::north_up(-5.0, 47.0, 7.0, 7.0);
        let avg = resample(&ramp(), &dst, 7, 7, Resampling::Average);
        let nearest = resample(&ramp(), &dst, 7, 7, Resampling::Nearest);
        assert_eq!(format!("{:?}", avg.data), format!("{:?}", nearest.data));
        assert!(avg.data.iter().any(|v| v.is_nan()) && avg.data.iter().any(|v| v.is_finite()));
    }

    #[test]
    fn same_grid_is_identity() {
        let src = ramp();
        for method in [Resampling::Nearest, Resampling::Bilinear, Resampling::Average] {
            assert_eq!(resample(&src, &src.transform, 2, 2, method).data, src.data, "{method:?}");
        }
    }
}

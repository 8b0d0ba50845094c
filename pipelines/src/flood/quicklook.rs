//! The quick-look PNG of a flood map: the post-event VV backscatter in grey (2nd to 98th
//! percentile stretch of the dB values), permanent water blended blue and flood red over it,
//! no data black. Large grids are subsampled to at most [`MAX_SIDE`] pixels on the long side.

use std::path::{Path, PathBuf};

use anyhow::Result;
use terrastream_operators::water::FloodClass;

/// Longest side of the quick-look, pixels.
pub const MAX_SIDE: usize = 2048;
/// Opacity of the class colours over the grey image.
const ALPHA: f32 = 0.65;

/// RGB pixels of the quick-look: `(width, height, rgb)`.
pub fn render(vv_db: &[f32], classes: &[u8], width: usize, height: usize) -> (usize, usize, Vec<u8>) {
    let step = width.max(height).div_ceil(MAX_SIDE).max(1);
    let (w, h) = (width.div_ceil(step), height.div_ceil(step));
    let mut finite: Vec<f32> = vv_db.iter().copied().filter(|v| v.is_finite()).collect();
    let (lo, hi) = if finite.is_empty() {
        (0.0, 1.0)
    } else {
        finite.sort_unstable_by(f32::total_cmp);
        let at = |q: f32| finite[((finite.len() - 1) as f32 * q) as usize];
        (at(0.02), at(0.98).max(at(0.02) + 1e-3))
    };
    let mut rgb = Vec::with_capacity(w * h * 3);
    for r in 0..h {
        for c in 0..w {
            let i = (r * step) * width + c * step;
            let v = vv_db[i];
            let class = classes[i];
            let grey = if v.is_finite() {
                ((v - lo) / (hi - lo)).clamp(0.0, 1.0) * 255.0
            } else {
                0.0
            };
            let blend = |colour: [f32; 3]| colour.map(|k| (ALPHA * k + (1.0 - ALPHA) * grey).round() as u8);
            let px = match class {
                x if x == FloodClass::Flood as u8 => blend([230.0, 30.0, 30.0]),
                x if x == FloodClass::PermanentWater as u8 => blend([20.0, 80.0, 255.0]),
                x if x == FloodClass::NoData as u8 && !v.is_finite() => [0, 0, 0],
                _ => [grey as u8; 3],
            };
            rgb.extend_from_slice(&px);
        }
    }
    (w, h, rgb)
}

/// Renders and writes the quick-look to `path`; returns the path and the PNG's size.
pub fn write_png(
    path: &Path,
    vv_db: &[f32],
    classes: &[u8],
    width: usize,
    height: usize,
) -> Result<(PathBuf, [usize; 2])> {
    let (w, h, rgb) = render(vv_db, classes, width, height);
    Ok((crate::rgb_png::write_rgb(path, w, h, &rgb)?, [w, h]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_coloured_over_grey() {
        let vv = [-25.0, -5.0, -15.0, f32::NAN];
        let classes = [
            FloodClass::Dry as u8,
            FloodClass::Dry as u8,
            FloodClass::Flood as u8,
            FloodClass::NoData as u8,
        ];
        let (w, h, rgb) = render(&vv, &classes, 2, 2);
        assert_eq!((w, h), (2, 2));
        assert_eq!(&rgb[0..3], &[0, 0, 0], "darkest is black");
        assert_eq!(&rgb[3..6], &[255, 255, 255], "brightest is white");
        assert!(
            rgb[6] > 150 && rgb[7] < 120 && rgb[8] < 120,
            "flood is red: {:?}",
            &rgb[6..9]
        );
        assert_eq!(&rgb[9..12], &[0, 0, 0]);
        let big = vec![0.0f32; 5000 * 10];
        let (w, h, _) = render(&big, &vec![0u8; 5000 * 10], 5000, 10);
        assert!(w <= MAX_SIDE && h >= 1, "{w} x {h}");
    }
}

//! Speckle reduction for SAR backscatter: a median filter that ignores no data.
//!
//! Speckle makes single SAR pixels of open water look like land and vice versa; a small median
//! window (3x3 by default in [`super::s1_threshold`]) removes isolated outliers while keeping
//! the water/land edges, which a mean (boxcar) filter would blur (see Lee et al., "Speckle
//! filtering of synthetic aperture radar images: a review", Remote Sensing Reviews 8, 1994).
//! Works in dB, where the median is the same as in linear power (a monotone transform).

/// The median of each pixel's `window x window` neighbourhood (odd `window`; 1 or 0 copies
/// the input), over the neighbours that are finite. No-data (NaN) pixels stay NaN; at the
/// edges the window is cut to the image.
pub fn median_filter(values: &[f32], width: usize, height: usize, window: usize) -> Vec<f32> {
    if window <= 1 || values.len() != width * height {
        return values.to_vec();
    }
    let r = window / 2;
    let mut out = vec![f32::NAN; values.len()];
    let mut buf = Vec::with_capacity((2 * r + 1) * (2 * r + 1));
    for y in 0..height {
        for x in 0..width {
            let v = values[y * width + x];
            if !v.is_finite() {
                continue;
            }
            buf.clear();
            for ny in y.saturating_sub(r)..(y + r + 1).min(height) {
                let row = &values[ny * width..(ny + 1) * width];
                buf.extend(
                    row[x.saturating_sub(r)..(x + r + 1).min(width)]
                        .iter()
                        .copied()
                        .filter(|v| v.is_finite()),
                );
            }
            out[y * width + x] = median(&mut buf);
        }
    }
    out
}

/// The median of a non-empty buffer (mean of the two middle values for an even count).
fn median(buf: &mut [f32]) -> f32 {
    let n = buf.len();
    let mid = n / 2;
    let (_, &mut upper, _) = buf.select_nth_unstable_by(mid, f32::total_cmp);
    if n % 2 == 1 {
        upper
    } else {
        let lower = buf[..mid].iter().copied().fold(f32::NEG_INFINITY, f32::max);
        (lower + upper) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_an_isolated_outlier_and_keeps_an_edge() {
        // Left half -20 dB (water), right half -8 dB (land), one bright speckle in the water.
        let (w, h) = (8, 6);
        let mut v: Vec<f32> = (0..w * h).map(|i| if i % w < 4 { -20.0 } else { -8.0 }).collect();
        v[2 * w + 1] = 5.0;
        let out = median_filter(&v, w, h, 3);
        assert_eq!(out[2 * w + 1], -20.0);
        for y in 0..h {
            assert_eq!(out[y * w + 3], -20.0, "edge moved at row {y}");
            assert_eq!(out[y * w + 4], -8.0, "edge moved at row {y}");
        }
    }

    #[test]
    fn no_data_is_skipped_and_kept() {
        let v = [1.0, f32::NAN, 3.0, 4.0];
        let out = median_filter(&v, 2, 2, 3);
        assert!(out[1].is_nan());
        // Pixel 0 sees 1, 3, 4: median 3. Pixel 2 sees 1, 3, 4 too.
        assert_eq!((out[0], out[2], out[3]), (3.0, 3.0, 3.0));
        // Even count: pixel 3 of a 2x2 without NaN sees all four: mean of 2 and 3.
        assert_eq!(median_filter(&[1.0, 2.0, 3.0, 4.0], 2, 2, 3)[3], 2.5);
        assert_eq!(median_filter(&v, 2, 2, 1)[0], 1.0);
    }
}

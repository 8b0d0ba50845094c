//! Terrain slope from a DEM, for the steep-terrain guard of SAR water mapping.
//!
//! Radar shadow on slopes facing away from the sensor is as dark as open water, and floods do
//! not stand on steep slopes; [`super::s1_threshold`] therefore excludes pixels steeper than a
//! limit (they become no data and do not enter the threshold statistics), a simplified form of
//! the exclusion mask of the Copernicus Global Flood Monitoring product. Slope uses Horn's
//! (1981) 3x3 finite differences, as `gdaldem slope` does.

/// Slope in degrees of a DEM in metres with pixels `dx` x `dy` metres. Edge pixels repeat
/// their nearest neighbour; a pixel whose 3x3 window holds no data (NaN) gets NaN.
pub fn slope_degrees(dem: &[f32], width: usize, height: usize, dx: f64, dy: f64) -> Vec<f32> {
    if dem.len() != width * height || width == 0 || height == 0 {
        return vec![f32::NAN; dem.len()];
    }
    let at = |x: isize, y: isize| {
        let x = x.clamp(0, width as isize - 1) as usize;
        let y = y.clamp(0, height as isize - 1) as usize;
        f64::from(dem[y * width + x])
    };
    let mut out = Vec::with_capacity(dem.len());
    for y in 0..height as isize {
        for x in 0..width as isize {
            let z = |ox: isize, oy: isize| at(x + ox, y + oy);
            let dzdx = ((z(1, -1) + 2.0 * z(1, 0) + z(1, 1)) - (z(-1, -1) + 2.0 * z(-1, 0) + z(-1, 1))) / (8.0 * dx);
            let dzdy = ((z(-1, 1) + 2.0 * z(0, 1) + z(1, 1)) - (z(-1, -1) + 2.0 * z(0, -1) + z(1, -1))) / (8.0 * dy);
            out.push((dzdx.hypot(dzdy)).atan().to_degrees() as f32);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plane_has_its_analytic_slope() {
        // z = 0.5 x (metres per metre) with 10 m pixels: atan(0.5) = 26.565 degrees.
        let (w, h) = (6, 5);
        let dem: Vec<f32> = (0..w * h).map(|i| (i % w) as f32 * 10.0 * 0.5).collect();
        let s = slope_degrees(&dem, w, h, 10.0, 10.0);
        let expected = 0.5f64.atan().to_degrees() as f32;
        for y in 0..h {
            for x in 1..w - 1 {
                assert!((s[y * w + x] - expected).abs() < 1e-4, "({x},{y}) {}", s[y * w + x]);
            }
        }
        let flat = slope_degrees(&[7.0; 9], 3, 3, 10.0, 10.0);
        assert!(flat.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn no_data_spreads_to_its_neighbours_only() {
        let mut dem = vec![0.0f32; 25];
        dem[0] = f32::NAN;
        let s = slope_degrees(&dem, 5, 5, 1.0, 1.0);
        assert!(s[0].is_nan() && s[1].is_nan() && s[5].is_nan() && s[6].is_nan());
        assert_eq!(s[12], 0.0);
    }
}

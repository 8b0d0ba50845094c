//! Synthetic inputs for the water-mapping unit tests.

/// `n` deterministic pseudo-normal samples with mean `m` and standard deviation `s` (sums of
/// 12 uniform draws from an LCG seeded by `seed`: Irwin-Hall, variance 1).
pub(crate) fn normal(n: usize, m: f32, s: f32, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as f64) / f64::from(1u32 << 31)
    };
    (0..n)
        .map(|_| {
            let z: f64 = (0..12).map(|_| next()).sum::<f64>() - 6.0;
            (f64::from(m) + f64::from(s) * z) as f32
        })
        .collect()
}

/// A `width x height` scene whose left `water_cols` columns are water-like (`water` mean) and
/// the rest land-like (`land` mean), both with standard deviation `s`.
pub(crate) fn two_region_scene(
    width: usize,
    height: usize,
    water_cols: usize,
    water: f32,
    land: f32,
    s: f32,
    seed: u64,
) -> Vec<f32> {
    let w = normal(width * height, water, s, seed);
    let l = normal(width * height, land, s, seed + 1);
    (0..width * height)
        .map(|i| if i % width < water_cols { w[i] } else { l[i] })
        .collect()
}

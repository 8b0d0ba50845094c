//! Automatic two-class split of one feature (backscatter in dB, a water index): Otsu's
//! threshold, the statistics of the two classes, a bimodality test, and a water probability
//! consistent with the threshold.
//!
//! Otsu (1979) picks the histogram threshold that maximises the between-class variance. The
//! histogram spans the 1st to 99th percentile of the feature (values outside are counted in the
//! end bins), so that a few very bright targets (ships, buildings: +20 dB) do not squeeze the
//! land and water modes into a handful of bins. Ashman's D (Ashman et al. 1994),
//! `sqrt(2) |m1 - m2| / sqrt(s1^2 + s2^2)`, measures how well two Gaussian modes separate;
//! below 2 the histogram is not clearly bimodal (e.g. a scene with no water at all). It is
//! computed on a two-Gaussian mixture fitted to the histogram by EM from the Otsu split, not on
//! the two halves Otsu cuts (a single Gaussian cut at its mean gives halves with D = 2.6).
//! With `require_bimodal` a split below the limit is replaced by the fixed fallback threshold
//! (the test of Chini et al. 2017); the split-based mode of [`super::s1_threshold`] always
//! applies it to pick its tiles.
//!
//! Probability: two Gaussian classes with the split's means and their pooled (within-class)
//! variance have log-odds linear in the feature, with slope `|m_dry - m_water| / var_within`
//! (linear discriminant analysis). [`Split::probability`] uses that slope, centred on the
//! chosen threshold, so `p > 0.5` exactly where the mask says water and `p` approaches 0 or 1
//! about one class-mean distance away from it.
//!
//! All passes stream over the values (min/max, a fine histogram for the percentiles, the Otsu
//! histogram, class sums): no copy or sort of a scene's pixels.

use super::error::{WaterError, WaterResult};

/// Bins of the fine histogram that locates the clipping percentiles.
const FINE_BINS: usize = 4096;

/// On which side of the threshold water lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Water is darker than land (SAR backscatter).
    Below,
    /// Water is brighter than land (water indices).
    Above,
}

/// How a threshold is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// Otsu's threshold of the feature's histogram.
    Otsu,
    /// A fixed value, in the feature's units.
    Fixed(f32),
}

/// Where the threshold of a [`Split`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThresholdSource {
    /// Otsu's method on a bimodal histogram.
    Otsu,
    /// Otsu's method although the histogram is not clearly bimodal (no fallback configured).
    OtsuNotBimodal,
    /// A fixed threshold asked for by the caller.
    Fixed,
    /// The fallback, because the histogram was not bimodal or could not be split.
    Fallback,
}

/// How to choose the threshold of one feature.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThresholdOptions {
    /// Otsu or a fixed value.
    pub rule: Threshold,
    /// Threshold used when Otsu's split is impossible, or not bimodal and `require_bimodal`.
    pub fallback: Option<f32>,
    /// Use the fallback when the fitted mixture's Ashman's D is below `min_ashman_d`.
    pub require_bimodal: bool,
    /// Smallest Ashman's D for a split to count as bimodal (2 in Ashman et al. 1994).
    pub min_ashman_d: f32,
    /// Bins of the Otsu histogram (at most the square root of the number of values).
    pub bins: usize,
    /// Percentile (0..50) clipped at each end of the histogram's range.
    pub clip_percent: f32,
}

impl ThresholdOptions {
    /// Otsu with 256 bins over the 1st..99th percentiles; `fallback` only where no split is
    /// possible (bimodality is reported, not required).
    pub const fn otsu(fallback: Option<f32>) -> Self {
        Self {
            rule: Threshold::Otsu,
            fallback,
            require_bimodal: false,
            min_ashman_d: 2.0,
            bins: 256,
            clip_percent: 1.0,
        }
    }

    /// As [`ThresholdOptions::otsu`], with the fallback also where the histogram is not bimodal.
    pub const fn otsu_bimodal(fallback: Option<f32>) -> Self {
        Self {
            require_bimodal: true,
            ..Self::otsu(fallback)
        }
    }

    fn check(&self, method: &'static str) -> WaterResult<()> {
        let bad = |key, reason: String| Err(WaterError::Option { method, key, reason });
        if self.bins < 2 {
            return bad("bins", format!("must be at least 2, got {}", self.bins));
        }
        if !(0.0..50.0).contains(&self.clip_percent) {
            return bad(
                "clip_percent",
                format!("must be within 0..50, got {}", self.clip_percent),
            );
        }
        if let Threshold::Fixed(t) = self.rule
            && !t.is_finite()
        {
            return bad("threshold", format!("must be finite, got {t}"));
        }
        if self.fallback.is_some_and(|t| !t.is_finite()) {
            return bad("fallback", "must be finite".into());
        }
        Ok(())
    }
}

/// The threshold chosen for one feature, and the two classes it makes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Split {
    /// The feature (`VV dB`, `VH dB`, `NDWI`, `MNDWI`).
    pub feature: &'static str,
    /// The threshold, in the feature's units.
    pub threshold: f32,
    /// Which side is water.
    pub side: Side,
    /// Where the threshold came from.
    pub source: ThresholdSource,
    /// Mean of the water class (NaN when it is empty).
    pub water_mean: f32,
    /// Mean of the dry class (NaN when it is empty).
    pub dry_mean: f32,
    /// Pooled within-class standard deviation.
    pub within_std: f32,
    /// Ashman's D of the two-Gaussian mixture fitted to the histogram (NaN without an Otsu
    /// split).
    pub ashman_d: f32,
    /// Fraction of the valid pixels on the water side.
    pub water_fraction: f32,
    /// Valid (finite) pixels the split was computed on.
    pub pixels: usize,
    /// Log-odds per feature unit used by [`Split::probability`].
    pub slope: f32,
}

impl Split {
    /// Whether `x` is on the water side (strictly; the threshold itself is dry).
    pub fn is_water(&self, x: f32) -> bool {
        match self.side {
            Side::Below => x < self.threshold,
            Side::Above => x > self.threshold,
        }
    }

    /// Water probability of `x` (NaN for NaN): a logistic of the signed distance to the
    /// threshold, `> 0.5` exactly on the water side.
    pub fn probability(&self, x: f32) -> f32 {
        if x.is_nan() {
            return f32::NAN;
        }
        let d = match self.side {
            Side::Below => self.threshold - x,
            Side::Above => x - self.threshold,
        };
        if d == 0.0 {
            // The threshold itself is dry (see is_water); keep p and the mask consistent.
            return 0.5;
        }
        let p = 1.0 / (1.0 + (-self.slope * d).exp());
        // An infinite slope (a class without spread) or rounding must not put p on the wrong
        // side of 0.5.
        if d > 0.0 { p.max(0.5 + f32::EPSILON) } else { p.min(0.5) }
    }
}

/// Chooses the threshold of `feature` over `values` (non-finite values are skipped) by
/// `opts`; `method` names the caller in errors.
pub fn split<I>(
    method: &'static str,
    feature: &'static str,
    values: I,
    side: Side,
    opts: &ThresholdOptions,
) -> WaterResult<Split>
where
    I: Iterator<Item = f32> + Clone,
{
    opts.check(method)?;
    let mut ashman_d = f32::NAN;
    let (threshold, source) = match opts.rule {
        Threshold::Fixed(t) => (t, ThresholdSource::Fixed),
        Threshold::Otsu => match otsu_histogram(values.clone(), opts.bins, opts.clip_percent) {
            Some((t, hist)) => {
                ashman_d = hist.fitted_ashman_d(t);
                if ashman_d >= opts.min_ashman_d {
                    (t, ThresholdSource::Otsu)
                } else if let (true, Some(f)) = (opts.require_bimodal, opts.fallback) {
                    (f, ThresholdSource::Fallback)
                } else {
                    (t, ThresholdSource::OtsuNotBimodal)
                }
            }
            None => match opts.fallback {
                Some(f) => (f, ThresholdSource::Fallback),
                None => {
                    return Err(WaterError::NoSplit {
                        method,
                        feature,
                        reason: "fewer than two distinct valid values and no fallback threshold".into(),
                    });
                }
            },
        },
    };
    let stats = class_stats(values, threshold, side);
    if stats.total() == 0 {
        return Err(WaterError::NoSplit {
            method,
            feature,
            reason: "no valid pixels".into(),
        });
    }
    Ok(Split {
        ashman_d,
        ..stats.into_split(feature, threshold, side, source)
    })
}

/// Otsu's threshold of the finite `values`, over a `bins`-bin histogram spanning the
/// `clip_percent`..`100 - clip_percent` percentiles; `None` when they hold fewer than two
/// distinct values. The threshold is a bin edge: values below it form the lower class.
pub fn otsu<I>(values: I, bins: usize, clip_percent: f32) -> Option<f32>
where
    I: Iterator<Item = f32> + Clone,
{
    otsu_histogram(values, bins, clip_percent).map(|(t, _)| t)
}

/// A histogram of equal bins.
#[derive(Debug, Clone)]
struct Histogram {
    lo: f64,
    width: f64,
    counts: Vec<u64>,
}

impl Histogram {
    fn centre(&self, i: usize) -> f64 {
        self.lo + (i as f64 + 0.5) * self.width
    }

    /// Ashman's D of a two-Gaussian mixture fitted by EM (at most 100 iterations), started
    /// from the classes on either side of `threshold`.
    fn fitted_ashman_d(&self, threshold: f32) -> f32 {
        let t = f64::from(threshold);
        let mut m = [Moments::default(), Moments::default()];
        for (i, &n) in self.counts.iter().enumerate() {
            let c = self.centre(i);
            let k = usize::from(c >= t);
            m[k].n += n as f64;
            m[k].sum += n as f64 * c;
            m[k].sum_sq += n as f64 * c * c;
        }
        let total = m[0].n + m[1].n;
        // A variance floor of a quarter bin keeps a component from collapsing onto one bin.
        let floor = (self.width / 2.0).powi(2);
        let mut w = [m[0].n / total, m[1].n / total];
        let mut mean = [m[0].mean(), m[1].mean()];
        let mut var = [m[0].var().max(floor), m[1].var().max(floor)];
        if !(w[0] > 0.0 && w[1] > 0.0) {
            return f32::NAN;
        }
        for _ in 0..100 {
            let mut acc = [Moments::default(), Moments::default()];
            for (i, &n) in self.counts.iter().enumerate() {
                if n == 0 {
                    continue;
                }
                let c = self.centre(i);
                let dens = |k: usize| w[k] * (-0.5 * (c - mean[k]).powi(2) / var[k]).exp() / var[k].sqrt();
                let (d0, d1) = (dens(0), dens(1));
                let sum = d0 + d1;
                if !(sum > 0.0) {
                    continue;
                }
                for (k, r) in [(0, d0 / sum), (1, d1 / sum)] {
                    acc[k].n += r * n as f64;
                    acc[k].sum += r * n as f64 * c;
                    acc[k].sum_sq += r * n as f64 * c * c;
                }
            }
            if !(acc[0].n > 0.0 && acc[1].n > 0.0) {
                break;
            }
            let next_mean = [acc[0].mean(), acc[1].mean()];
            let shift = (next_mean[0] - mean[0]).abs().max((next_mean[1] - mean[1]).abs());
            w = [acc[0].n / total, acc[1].n / total];
            mean = next_mean;
            var = [acc[0].var().max(floor), acc[1].var().max(floor)];
            if shift < self.width * 1e-4 {
                break;
            }
        }
        (std::f64::consts::SQRT_2 * (mean[0] - mean[1]).abs() / (var[0] + var[1]).sqrt()) as f32
    }
}

/// Otsu's threshold and the histogram it was chosen on.
fn otsu_histogram<I>(values: I, bins: usize, clip_percent: f32) -> Option<(f32, Histogram)>
where
    I: Iterator<Item = f32> + Clone,
{
    let (lo, hi, n) = percentile_range(values.clone(), clip_percent)?;
    // The square-root rule caps the bins of small samples (a tile), whose histograms would
    // otherwise be mostly empty bins that make the fitted mixture, and so the bimodality
    // test, noisy.
    let bins = bins.min(((n as f64).sqrt() as usize).max(16));
    let hist = Histogram {
        lo,
        width: (hi - lo) / bins as f64,
        counts: histogram(values, lo, hi, bins),
    };
    let total: f64 = hist.counts.iter().map(|&n| n as f64).sum();
    let sum_all: f64 = hist
        .counts
        .iter()
        .enumerate()
        .map(|(i, &n)| n as f64 * hist.centre(i))
        .sum();
    let (mut w0, mut sum0) = (0.0f64, 0.0f64);
    let mut best: Option<(f64, usize)> = None;
    for (k, &n) in hist.counts.iter().enumerate().take(bins - 1) {
        w0 += n as f64;
        sum0 += n as f64 * hist.centre(k);
        let w1 = total - w0;
        if w0 == 0.0 || w1 == 0.0 {
            continue;
        }
        let between = w0 * w1 * (sum0 / w0 - (sum_all - sum0) / w1).powi(2);
        if best.is_none_or(|(b, _)| between > b) {
            best = Some((between, k));
        }
    }
    let (_, k) = best?;
    Some(((lo + (k + 1) as f64 * hist.width) as f32, hist))
}

/// The `p`-th and `(100 - p)`-th percentiles of the finite values, to within 1/4096 of their
/// range, and the number of finite values; `None` if there are fewer than two distinct values.
fn percentile_range<I>(values: I, p: f32) -> Option<(f64, f64, u64)>
where
    I: Iterator<Item = f32> + Clone,
{
    let (min, max) = values
        .clone()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(f64::from(v)), b.max(f64::from(v)))
        });
    if min.is_infinite() || min >= max {
        return None;
    }
    let fine = histogram(values, min, max, FINE_BINS);
    let total: u64 = fine.iter().sum();
    let cut = (f64::from(p) / 100.0 * total as f64).floor() as u64;
    let width = (max - min) / FINE_BINS as f64;
    let mut seen = 0;
    let mut lo_bin = 0;
    for (i, &n) in fine.iter().enumerate() {
        seen += n;
        if seen > cut {
            lo_bin = i;
            break;
        }
    }
    seen = 0;
    let mut hi_bin = FINE_BINS - 1;
    for (i, &n) in fine.iter().enumerate().rev() {
        seen += n;
        if seen > cut {
            hi_bin = i;
            break;
        }
    }
    let (lo, hi) = (min + lo_bin as f64 * width, min + (hi_bin + 1) as f64 * width);
    // Clipping can collapse a range made of a few values; fall back to the full range.
    if lo < hi {
        Some((lo, hi.min(max), total))
    } else {
        Some((min, max, total))
    }
}

/// Counts of the finite values in `bins` equal bins over `lo..hi`, values outside clamped to
/// the end bins.
fn histogram<I: Iterator<Item = f32>>(values: I, lo: f64, hi: f64, bins: usize) -> Vec<u64> {
    let mut hist = vec![0u64; bins];
    let scale = bins as f64 / (hi - lo);
    for v in values.filter(|v| v.is_finite()) {
        let i = ((f64::from(v) - lo) * scale).floor();
        hist[(i.max(0.0) as usize).min(bins - 1)] += 1;
    }
    hist
}

/// Count, sum and sum of squares of each class.
#[derive(Debug, Default, Clone, Copy)]
struct ClassStats {
    water: Moments,
    dry: Moments,
}

#[derive(Debug, Default, Clone, Copy)]
struct Moments {
    n: f64,
    sum: f64,
    sum_sq: f64,
}

impl Moments {
    fn add(&mut self, v: f64) {
        self.n += 1.0;
        self.sum += v;
        self.sum_sq += v * v;
    }
    fn mean(&self) -> f64 {
        if self.n > 0.0 { self.sum / self.n } else { f64::NAN }
    }
    fn var(&self) -> f64 {
        if self.n > 0.0 {
            (self.sum_sq / self.n - self.mean().powi(2)).max(0.0)
        } else {
            f64::NAN
        }
    }
}

fn class_stats<I: Iterator<Item = f32>>(values: I, threshold: f32, side: Side) -> ClassStats {
    let mut s = ClassStats::default();
    for v in values.filter(|v| v.is_finite()) {
        let water = match side {
            Side::Below => v < threshold,
            Side::Above => v > threshold,
        };
        if water {
            s.water.add(f64::from(v))
        } else {
            s.dry.add(f64::from(v))
        }
    }
    s
}

impl ClassStats {
    fn total(&self) -> usize {
        (self.water.n + self.dry.n) as usize
    }

    fn into_split(self, feature: &'static str, threshold: f32, side: Side, source: ThresholdSource) -> Split {
        let n = self.water.n + self.dry.n;
        let within_var = if self.water.n > 0.0 && self.dry.n > 0.0 {
            (self.water.var() * self.water.n + self.dry.var() * self.dry.n) / n
        } else {
            f64::NAN
        };
        let gap = (self.water.mean() - self.dry.mean()).abs();
        let slope = if within_var.is_finite() && within_var > 0.0 && gap > 0.0 {
            gap / within_var
        } else {
            // One class empty (a fixed threshold on a scene without water) or without spread:
            // scale by the spread of all values, or make a step if there is none.
            let all = Moments {
                n,
                sum: self.water.sum + self.dry.sum,
                sum_sq: self.water.sum_sq + self.dry.sum_sq,
            };
            if all.var() > 0.0 {
                1.0 / all.var().sqrt()
            } else {
                f64::INFINITY
            }
        };
        Split {
            feature,
            threshold,
            side,
            source,
            water_mean: self.water.mean() as f32,
            dry_mean: self.dry.mean() as f32,
            within_std: within_var.sqrt() as f32,
            ashman_d: f32::NAN,
            water_fraction: (self.water.n / n) as f32,
            pixels: n as usize,
            slope: slope as f32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::water::test_support::normal;

    #[test]
    fn otsu_splits_two_modes_between_them() {
        let mut v = normal(3000, -20.0, 1.5, 1);
        v.extend(normal(7000, -8.0, 2.0, 2));
        let t = otsu(v.iter().copied(), 256, 1.0).expect("threshold");
        assert!((-17.0..-11.0).contains(&t), "threshold {t}");
        let s = split(
            "test",
            "VV dB",
            v.iter().copied(),
            Side::Below,
            &ThresholdOptions::otsu(None),
        )
        .expect("split");
        assert_eq!(s.source, ThresholdSource::Otsu);
        assert!((s.water_fraction - 0.3).abs() < 0.01, "{s:?}");
        assert!(
            (s.water_mean + 20.0).abs() < 0.2 && (s.dry_mean + 8.0).abs() < 0.2,
            "{s:?}"
        );
        assert!(s.ashman_d > 5.0, "{s:?}");
    }

    #[test]
    fn otsu_matches_a_brute_force_search() {
        // Exhaustive between-class variance over every candidate split of the clipped range.
        let mut v = normal(500, 0.2, 0.1, 3);
        v.extend(normal(1500, -0.3, 0.15, 4));
        let t = otsu(v.iter().copied(), 64, 0.0).expect("threshold");
        let (lo, hi) = v.iter().fold((f32::MAX, f32::MIN), |(a, b), &x| (a.min(x), b.max(x)));
        let w = (hi - lo) / 64.0;
        let score = |t: f32| {
            let (a, b): (Vec<f32>, Vec<f32>) = v.iter().partition(|&&x| x < t);
            if a.is_empty() || b.is_empty() {
                return 0.0;
            }
            let m = |c: &[f32]| c.iter().map(|&x| f64::from(x)).sum::<f64>() / c.len() as f64;
            a.len() as f64 * b.len() as f64 * (m(&a) - m(&b)).powi(2)
        };
        let best = (1..64)
            .map(|k| lo + k as f32 * w)
            .max_by(|x, y| score(*x).total_cmp(&score(*y)))
            .expect("candidates");
        // Bin-centre vs exact means may move the optimum by one bin at most.
        assert!((t - best).abs() <= w * 1.01, "otsu {t} vs brute force {best} (bin {w})");
    }

    #[test]
    fn unimodal_histogram_uses_the_fallback() {
        let v = normal(5000, -10.0, 2.0, 5);
        let s = split(
            "test",
            "VV dB",
            v.iter().copied(),
            Side::Below,
            &ThresholdOptions::otsu_bimodal(Some(-18.0)),
        )
        .expect("split");
        assert_eq!(s.source, ThresholdSource::Fallback, "{s:?}");
        assert!(s.ashman_d < 2.0, "{s:?}");
        assert_eq!(s.threshold, -18.0);
        assert!(s.water_fraction < 0.001, "{s:?}");
        let s = split(
            "test",
            "VV dB",
            v.iter().copied(),
            Side::Below,
            &ThresholdOptions::otsu(None),
        )
        .expect("split");
        assert_eq!(s.source, ThresholdSource::OtsuNotBimodal);
        // Without require_bimodal the fallback is only for impossible splits.
        let s = split(
            "test",
            "VV dB",
            v.iter().copied(),
            Side::Below,
            &ThresholdOptions::otsu(Some(-18.0)),
        )
        .expect("split");
        assert_eq!(s.source, ThresholdSource::OtsuNotBimodal);
    }

    #[test]
    fn constant_or_empty_input_needs_a_fallback() {
        let v = vec![3.0f32; 100];
        let err = split(
            "test",
            "NDWI",
            v.iter().copied(),
            Side::Above,
            &ThresholdOptions::otsu(None),
        );
        assert!(
            matches!(err, Err(WaterError::NoSplit { feature: "NDWI", .. })),
            "{err:?}"
        );
        let s = split(
            "test",
            "NDWI",
            v.iter().copied(),
            Side::Above,
            &ThresholdOptions::otsu(Some(0.0)),
        )
        .expect("fallback");
        assert_eq!((s.source, s.water_fraction), (ThresholdSource::Fallback, 1.0));
        let nan = [f32::NAN; 4];
        let err = split(
            "test",
            "NDWI",
            nan.iter().copied(),
            Side::Above,
            &ThresholdOptions::otsu(Some(0.0)),
        );
        assert!(matches!(err, Err(WaterError::NoSplit { .. })), "{err:?}");
    }

    #[test]
    fn probability_agrees_with_the_mask_and_is_monotone() {
        let mut v = normal(2000, -20.0, 1.5, 6);
        v.extend(normal(2000, -8.0, 2.0, 7));
        let s = split(
            "test",
            "VV dB",
            v.iter().copied(),
            Side::Below,
            &ThresholdOptions::otsu(None),
        )
        .expect("split");
        let mut last = 1.0;
        for i in 0..400 {
            let x = -30.0 + i as f32 * 0.07;
            let p = s.probability(x);
            assert_eq!(p > 0.5, s.is_water(x), "x {x} p {p} threshold {}", s.threshold);
            assert!(p <= last, "not monotone at {x}");
            last = p;
        }
        assert!(
            s.probability(s.water_mean) > 0.95 && s.probability(s.dry_mean) < 0.05,
            "{s:?}"
        );
        assert!(s.probability(f32::NAN).is_nan());
    }

    #[test]
    fn invalid_options_are_named() {
        let v = [1.0f32, 2.0];
        let opts = ThresholdOptions {
            rule: Threshold::Fixed(f32::NAN),
            ..ThresholdOptions::otsu(None)
        };
        let err = split("s2", "NDWI", v.iter().copied(), Side::Above, &opts);
        assert!(
            matches!(err, Err(WaterError::Option { key: "threshold", .. })),
            "{err:?}"
        );
        let opts = ThresholdOptions {
            bins: 1,
            ..ThresholdOptions::otsu(None)
        };
        assert!(matches!(
            split("s2", "NDWI", v.iter().copied(), Side::Above, &opts),
            Err(WaterError::Option { key: "bins", .. })
        ));
    }
}

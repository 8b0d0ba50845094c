//! Polynomial geocoding from ground control points (Sentinel-1 GRD in radar geometry).
//!
//! As GDAL's GCP transformer does: two least-squares polynomials are fitted, CRS -> pixel (used
//! to warp) and pixel -> CRS (used for footprints), in coordinates centred on the GCPs' means;
//! the height of the GCPs is ignored. Without a requested order the order is 2 for six GCPs or
//! more and 1 below (GDAL avoids order 3 by default as numerically unstable).

use crate::cog::Gcp;

/// Polynomial order, 1 to 3.
pub type Order = usize;

/// Terms of a bivariate polynomial of `order`: 3, 6 or 10.
const fn terms(order: Order) -> usize {
    (order + 1) * (order + 2) / 2
}

/// One direction of the fit: centring, scaling and the two coefficient vectors.
#[derive(Debug, Clone, PartialEq)]
struct Poly {
    order: Order,
    mean: (f64, f64),
    scale: f64,
    cx: Vec<f64>,
    cy: Vec<f64>,
}

impl Poly {
    fn apply(&self, x: f64, y: f64) -> (f64, f64) {
        let m = monomials(self.order, (x - self.mean.0) / self.scale, (y - self.mean.1) / self.scale);
        let dot = |c: &[f64]| c.iter().zip(&m).map(|(a, b)| a * b).sum::<f64>();
        (dot(&self.cx), dot(&self.cy))
    }
}

/// A fitted GCP transformation between pixel/line and CRS coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct GcpTransform {
    to_pixel: Poly,
    to_crs: Poly,
}

/// Why the GCPs do not determine a transformation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{gcps} ground control points do not determine an order-{order} polynomial: {reason}")]
pub struct GcpFitError {
    /// GCPs given.
    pub gcps: usize,
    /// Order asked for.
    pub order: Order,
    /// Why.
    pub reason: &'static str,
}

impl GcpTransform {
    /// GDAL's default order for `n` GCPs: 2 from six GCPs on, else 1.
    pub fn default_order(n: usize) -> Order {
        if n >= 6 { 2 } else { 1 }
    }

    /// Fits both directions with `order` (1 to 3; `None`: [`GcpTransform::default_order`]).
    pub fn fit(gcps: &[Gcp], order: Option<Order>) -> Result<Self, GcpFitError> {
        let order = order.unwrap_or_else(|| Self::default_order(gcps.len()));
        let err = |reason| GcpFitError { gcps: gcps.len(), order, reason };
        if !(1..=3).contains(&order) {
            return Err(err("the order must be 1, 2 or 3"));
        }
        if gcps.len() < terms(order) {
            return Err(err("too few points"));
        }
        if gcps.iter().any(|g| ![g.pixel, g.line, g.x, g.y].iter().all(|v| v.is_finite())) {
            return Err(err("a point has a non-finite coordinate"));
        }
        let pixel: Vec<(f64, f64)> = gcps.iter().map(|g| (g.pixel, g.line)).collect();
        let crs: Vec<(f64, f64)> = gcps.iter().map(|g| (g.x, g.y)).collect();
        Ok(Self {
            to_pixel: fit_poly(&crs, &pixel, order).ok_or_else(|| err("the points are degenerate (collinear)"))?,
            to_crs: fit_poly(&pixel, &crs, order).ok_or_else(|| err("the points are degenerate (collinear)"))?,
        })
    }

    /// The polynomial order.
    pub fn order(&self) -> Order {
        self.to_pixel.order
    }

    /// Fractional `(pixel, line)` of CRS point `(x, y)` (pixel-corner convention).
    pub fn to_pixel(&self, x: f64, y: f64) -> (f64, f64) {
        self.to_pixel.apply(x, y)
    }

    /// CRS point of fractional `(pixel, line)`.
    pub fn to_crs(&self, pixel: f64, line: f64) -> (f64, f64) {
        self.to_crs.apply(pixel, line)
    }
}

/// `1, x, y, x², xy, y², x³, x²y, xy², y³`, up to `order`.
fn monomials(order: Order, x: f64, y: f64) -> [f64; 10] {
    let mut m = [0.0; 10];
    let mut k = 0;
    for deg in 0..=order {
        for j in 0..=deg {
            m[k] = x.powi((deg - j) as i32) * y.powi(j as i32);
            k += 1;
        }
    }
    m
}

/// Least-squares polynomial from `from` to `to` (Householder QR, well conditioned after
/// centring and scaling the inputs to about [-1, 1]); `None` when rank deficient.
fn fit_poly(from: &[(f64, f64)], to: &[(f64, f64)], order: Order) -> Option<Poly> {
    let n = from.len() as f64;
    let mean = (from.iter().map(|p| p.0).sum::<f64>() / n, from.iter().map(|p| p.1).sum::<f64>() / n);
    let scale = from.iter().map(|p| (p.0 - mean.0).abs().max((p.1 - mean.1).abs())).fold(0.0, f64::max);
    if scale <= 0.0 {
        return None;
    }
    let t = terms(order);
    let rows: Vec<Vec<f64>> =
        from.iter().map(|p| monomials(order, (p.0 - mean.0) / scale, (p.1 - mean.1) / scale)[..t].to_vec()).collect();
    let bx: Vec<f64> = to.iter().map(|p| p.0).collect();
    let by: Vec<f64> = to.iter().map(|p| p.1).collect();
    let [cx, cy] = least_squares(rows, [bx, by])?;
    Some(Poly { order, mean, scale, cx, cy })
}

/// Solves `min |A c - b|` for each right-hand side `b` by Householder QR of `a` (rows x cols,
/// rows >= cols). `None` when `a` is rank deficient.
fn least_squares<const R: usize>(mut a: Vec<Vec<f64>>, mut b: [Vec<f64>; R]) -> Option<[Vec<f64>; R]> {
    let (m, n) = (a.len(), a.first().map_or(0, Vec::len));
    let norm_a = a.iter().flatten().map(|v| v * v).sum::<f64>().sqrt();
    for k in 0..n {
        let norm = (k..m).map(|i| a[i][k] * a[i][k]).sum::<f64>().sqrt();
        if norm <= 1e-12 * norm_a {
            return None;
        }
        let alpha = if a[k][k] > 0.0 { -norm } else { norm };
        // v = x - alpha e1, stored in place in column k.
        a[k][k] -= alpha;
        let vnorm2 = (k..m).map(|i| a[i][k] * a[i][k]).sum::<f64>();
        for j in k + 1..n {
            let dot = (k..m).map(|i| a[i][k] * a[i][j]).sum::<f64>();
            let f = 2.0 * dot / vnorm2;
            for row in &mut a[k..m] {
                row[j] -= f * row[k];
            }
        }
        for bb in &mut b {
            let dot = (k..m).map(|i| a[i][k] * bb[i]).sum::<f64>();
            let f = 2.0 * dot / vnorm2;
            for i in k..m {
                bb[i] -= f * a[i][k];
            }
        }
        a[k][k] = alpha;
    }
    // Back substitution on the upper triangle R (diagonal in a[k][k], above it in a[i][j]).
    Some(b.map(|bb| {
        let mut c = vec![0.0; n];
        for k in (0..n).rev() {
            let s = (k + 1..n).map(|j| a[k][j] * c[j]).sum::<f64>();
            c[k] = (bb[k] - s) / a[k][k];
        }
        c
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A grid of GCPs over a 1000 x 800 image whose CRS position is `f(pixel, line)`.
    fn gcps(f: impl Fn(f64, f64) -> (f64, f64)) -> Vec<Gcp> {
        (0..=10)
            .flat_map(|i| (0..=8).map(move |j| (i as f64 * 100.0, j as f64 * 100.0)))
            .map(|(p, l)| {
                let (x, y) = f(p, l);
                Gcp { pixel: p, line: l, x, y, z: 0.0 }
            })
            .collect()
    }

    #[test]
    fn recovers_a_quadratic_exactly() {
        // A mildly curved map, as a swath in lon/lat is.
        let f = |p: f64, l: f64| {
            (78.2 - 0.0018 * p + 0.0004 * l + 1e-8 * p * p, 10.7 + 0.0004 * p - 0.0018 * l + 2e-9 * p * l)
        };
        let t = GcpTransform::fit(&gcps(f), None).expect("fit");
        assert_eq!(t.order(), 2, "GDAL's default for 99 GCPs");
        for (p, l) in [(0.0, 0.0), (333.3, 777.7), (1000.0, 800.0), (512.5, 12.25)] {
            let (x, y) = f(p, l);
            let (x2, y2) = t.to_crs(p, l);
            assert!((x - x2).abs() < 1e-10 && (y - y2).abs() < 1e-10, "to_crs at {p},{l}");
        }
        // The inverse of a quadratic is not quadratic: round trips are close, not exact.
        let (x, y) = f(500.0, 400.0);
        let (p, l) = t.to_pixel(x, y);
        assert!((p - 500.0).abs() < 0.05 && (l - 400.0).abs() < 0.05, "{p} {l}");
    }

    #[test]
    fn affine_gcps_give_an_exact_inverse_at_every_order() {
        let f = |p: f64, l: f64| (500000.0 + 10.0 * p + 2.0 * l, 4000000.0 - 3.0 * p - 10.0 * l);
        for order in 1..=3 {
            let t = GcpTransform::fit(&gcps(f), Some(order)).expect("fit");
            let (x, y) = f(123.4, 567.8);
            let (p, l) = t.to_pixel(x, y);
            assert!((p - 123.4).abs() < 1e-6 && (l - 567.8).abs() < 1e-6, "order {order}: {p} {l}");
        }
    }

    #[test]
    fn default_order_follows_gdal() {
        assert_eq!(GcpTransform::default_order(3), 1);
        assert_eq!(GcpTransform::default_order(5), 1);
        assert_eq!(GcpTransform::default_order(6), 2);
        assert_eq!(GcpTransform::default_order(210), 2);
    }

    #[test]
    fn unusable_gcps_are_errors() {
        let few: Vec<Gcp> = gcps(|p, l| (p, l)).into_iter().take(5).collect();
        let e = GcpTransform::fit(&few, Some(2)).expect_err("5 points, 6 terms");
        assert!(e.to_string().contains("too few"), "{e}");
        // All on one line: the fit is rank deficient.
        let line: Vec<Gcp> =
            (0..20).map(|i| Gcp { pixel: i as f64, line: i as f64, x: i as f64, y: 2.0 * i as f64, z: 0.0 }).collect();
        let e = GcpTransform::fit(&line, Some(1)).expect_err("collinear");
        assert!(e.to_string().contains("degenerate"), "{e}");
        assert!(GcpTransform::fit(&line, Some(4)).is_err());
    }
}

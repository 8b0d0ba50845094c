//! From destination pixels to source pixels: through CRS reprojection for sources with an affine
//! transform, through a GCP polynomial for sources in radar geometry, and GDAL's approximation
//! (exact transforms at a few points per row, linear in between while that stays within a
//! tolerance in source pixels) so that whole grids transform at the cost of a few points a row.

use crate::cog::{CogInfo, Gcp};
use crate::error::CogError;
use crate::geo::{GeoTransform, Reproject};

use super::gcp::{GcpTransform, Order};

/// How a source raster is located.
#[derive(Debug)]
pub enum SourceModel {
    /// An affine pixel-to-CRS transform (RTC in UTM, Sen1Floods11 in EPSG:4326, Sentinel-2).
    Affine {
        /// EPSG code of the source CRS.
        epsg: u32,
        /// Pixel-to-CRS transform (pixel corners).
        transform: GeoTransform,
    },
    /// Ground control points (Sentinel-1 GRD in radar geometry).
    Gcps {
        /// EPSG code of the GCPs' CRS.
        epsg: u32,
        /// Fitted polynomials.
        poly: GcpTransform,
    },
}

impl SourceModel {
    /// The model of a COG: its affine transform, else its GCPs fitted with `gcp_order` (`None`:
    /// GDAL's default). Fails when the file has neither, no EPSG code, or unusable GCPs.
    pub fn of_cog(info: &CogInfo, gcp_order: Option<Order>) -> Result<Self, CogError> {
        let epsg = info.epsg.ok_or_else(|| CogError::NotGeoreferenced("no EPSG code in the GeoKeys".into()))?;
        match info.transform {
            Some(transform) => Ok(Self::Affine { epsg, transform }),
            None if !info.gcps.is_empty() => Self::gcps(epsg, &info.gcps, gcp_order),
            None => {
                Err(info.geo_transform().err().unwrap_or_else(|| CogError::NotGeoreferenced("no transform".into())))
            }
        }
    }

    /// A GCP model fitted with `order` (`None`: GDAL's default for the number of GCPs).
    pub fn gcps(epsg: u32, gcps: &[Gcp], order: Option<Order>) -> Result<Self, CogError> {
        let poly = GcpTransform::fit(gcps, order).map_err(|e| CogError::NotGeoreferenced(e.to_string()))?;
        Ok(Self::Gcps { epsg, poly })
    }

    /// EPSG code of the source CRS.
    pub fn epsg(&self) -> u32 {
        match self {
            Self::Affine { epsg, .. } | Self::Gcps { epsg, .. } => *epsg,
        }
    }

    /// Fractional source pixel of source-CRS point `(x, y)`.
    pub fn to_pixel(&self, x: f64, y: f64) -> (f64, f64) {
        match self {
            Self::Affine { transform, .. } => transform.invert(x, y),
            Self::Gcps { poly, .. } => poly.to_pixel(x, y),
        }
    }

    /// Source-CRS point of fractional source pixel `(col, row)`.
    pub fn to_crs(&self, col: f64, row: f64) -> (f64, f64) {
        match self {
            Self::Affine { transform, .. } => transform.apply(col, row),
            Self::Gcps { poly, .. } => poly.to_crs(col, row),
        }
    }
}

/// Destination pixel -> source pixel, exactly and approximately.
#[derive(Debug)]
pub(crate) struct PixelMap<'a> {
    source: &'a SourceModel,
    dst: GeoTransform,
    /// Destination CRS -> source CRS.
    reproject: Reproject,
    /// Largest allowed error of the linear approximation, in source pixels (0: exact).
    max_error: f64,
}

/// Rows shorter than this are transformed exactly (GDAL's approximate transformer does the same).
const MIN_APPROX_POINTS: usize = 5;

impl<'a> PixelMap<'a> {
    pub(crate) fn new(
        source: &'a SourceModel,
        dst_epsg: u32,
        dst: GeoTransform,
        max_error: f64,
    ) -> Result<Self, CogError> {
        let reproject =
            Reproject::new(dst_epsg, source.epsg()).map_err(|e| CogError::NotGeoreferenced(e.to_string()))?;
        Ok(Self { source, dst, reproject, max_error })
    }

    /// Source pixel of destination pixel position `(col, row)` (fractional, pixel corners).
    pub(crate) fn exact(&self, col: f64, row: f64) -> Option<(f64, f64)> {
        let (x, y) = self.dst.apply(col, row);
        let (sx, sy) = self.reproject.apply(x, y)?;
        let p = self.source.to_pixel(sx, sy);
        (p.0.is_finite() && p.1.is_finite()).then_some(p)
    }

    /// Source pixels of the centres of destination row `row`, columns `0..out.len()`.
    pub(crate) fn row(&self, row: usize, out: &mut [Option<(f64, f64)>]) {
        let y = row as f64 + 0.5;
        let at = |c: usize| self.exact(c as f64 + 0.5, y);
        if out.is_empty() {
            return;
        }
        if self.max_error <= 0.0 {
            out.iter_mut().enumerate().for_each(|(c, o)| *o = at(c));
            return;
        }
        // Segments [a, b] whose end points are already set; split in two until the midpoint
        // lies within `max_error` of the chord.
        let last = out.len() - 1;
        out[0] = at(0);
        out[last] = at(last);
        let mut stack = vec![(0, last)];
        while let Some((a, b)) = stack.pop() {
            if b - a < MIN_APPROX_POINTS {
                (a + 1..b).for_each(|c| out[c] = at(c));
                continue;
            }
            let m = (a + b) / 2;
            out[m] = at(m);
            let (Some(pa), Some(pm), Some(pb)) = (out[a], out[m], out[b]) else {
                // Partly undefined (off the projection's domain): no straight line to trust.
                stack.push((a, m));
                stack.push((m, b));
                continue;
            };
            let t = (m - a) as f64 / (b - a) as f64;
            let lerp = (pa.0 + (pb.0 - pa.0) * t, pa.1 + (pb.1 - pa.1) * t);
            if (lerp.0 - pm.0).abs() + (lerp.1 - pm.1).abs() > self.max_error {
                stack.push((a, m));
                stack.push((m, b));
                continue;
            }
            for (c, o) in out.iter_mut().enumerate().take(b).skip(a + 1) {
                if c != m {
                    let t = (c - a) as f64 / (b - a) as f64;
                    *o = Some((pa.0 + (pb.0 - pa.0) * t, pa.1 + (pb.1 - pa.1) * t));
                }
            }
        }
    }
}

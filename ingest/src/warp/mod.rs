//! Warping a source raster onto a destination grid in another CRS: Sentinel-1 onto the
//! Sentinel-2 grid.
//!
//! For every destination pixel centre the source pixel is found through
//! - CRS reprojection (`proj4rs`) and the source's affine transform, for sources with one
//!   (Sentinel-1 RTC in UTM, Sen1Floods11 in EPSG:4326), or
//! - a least-squares polynomial fitted to the source's ground control points, for Sentinel-1 GRD
//!   in radar geometry ([`GcpTransform`], GDAL's default order),
//!
//! transformed exactly at a few points per destination row and linearly in between while that
//! stays within [`WarpOptions::max_error_px`] (GDAL's approximate transformer, `-et 0.125`).
//! Only the source window under the destination grid is read ([`Cog::read_window`]), then
//! sampled with nearest or bilinear and GDAL's no-data rules, so results compare pixel for
//! pixel with `gdalwarp -r near|bilinear` (tests/tests/ingest/coregister.rs measures how close).
//!
//! Whole scenes are large: warp them strip by strip with [`DstGrid::window`], which keeps the
//! source window, and memory, proportional to the strip.

mod gcp;
mod kernel;
mod transform;

pub use gcp::{GcpFitError, GcpTransform, Order};
pub use transform::SourceModel;

use crate::bands::Resampling;
use crate::cog::{Cog, CogInfo};
use crate::error::CogError;
use crate::geo::{GeoTransform, Reproject};
use crate::resample::Raster;
use crate::{Error, Result};

use kernel::SourceWindow;
use transform::PixelMap;

/// A destination grid: `width` x `height` pixels with transform `transform` in EPSG:`epsg`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DstGrid {
    /// EPSG code of the grid's CRS (see [`crate::geo::proj_string`] for those supported).
    pub epsg: u32,
    /// North-up pixel-to-CRS transform (pixel corners).
    pub transform: GeoTransform,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
}

impl DstGrid {
    /// A grid; fails for an unsupported CRS or a transform that is not north-up.
    pub fn new(epsg: u32, transform: GeoTransform, width: usize, height: usize) -> Result<Self> {
        Reproject::new(epsg, 4326)?;
        if !transform.is_north_up() {
            return Err(Error::Option {
                key: "grid.transform".into(),
                reason: format!("not a north-up transform: {:?}", transform.0),
            });
        }
        Ok(Self { epsg, transform, width, height })
    }

    /// The full-resolution grid of a georeferenced COG: for a Sentinel-2 scene, the grid of a
    /// 10 m band (B02, B03, B04, B08) is the grid Sentinel-1 is warped onto.
    pub fn of_cog(info: &CogInfo) -> Result<Self, CogError> {
        let transform = info.geo_transform()?;
        let epsg = info.epsg.ok_or_else(|| CogError::NotGeoreferenced("no EPSG code in the GeoKeys".into()))?;
        Self::new(epsg, transform, info.width, info.height).map_err(|e| CogError::NotGeoreferenced(e.to_string()))
    }

    /// The `width` x `height` sub-grid whose top-left pixel is `(col, row)` of this grid (it may
    /// extend past this grid).
    pub fn window(&self, col: usize, row: usize, width: usize, height: usize) -> Self {
        Self { transform: self.transform.offset(col as f64, row as f64), width, height, ..*self }
    }

    /// The smallest grid in EPSG:`epsg` with square pixels of `res` CRS units, its edges on
    /// multiples of `res` (`gdalwarp -tap`), that covers the `width` x `height` pixels of a source
    /// located by `source`.
    pub fn covering(source: &SourceModel, width: usize, height: usize, epsg: u32, res: f64) -> Result<Self> {
        if !(res > 0.0 && res.is_finite()) {
            return Err(Error::Option {
                key: "grid.resolution".into(),
                reason: format!("{res} is not a positive size"),
            });
        }
        let to_dst = Reproject::new(source.epsg(), epsg)?;
        // The outline, densified: edges bend under reprojection and GCP polynomials.
        const PER_EDGE: usize = 32;
        let (w, h) = (width as f64, height as f64);
        let mut b = [f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY];
        for k in 0..=PER_EDGE {
            let t = k as f64 / PER_EDGE as f64;
            for (c, r) in [(t * w, 0.0), (t * w, h), (0.0, t * h), (w, t * h)] {
                let (x, y) = source.to_crs(c, r);
                let (x, y) = to_dst.apply(x, y).ok_or_else(|| Error::Crs {
                    epsg,
                    reason: format!("source pixel ({c}, {r}) has no position in EPSG:{epsg}"),
                })?;
                b = [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)];
            }
        }
        let (x0, y0) = ((b[0] / res).floor() * res, (b[1] / res).floor() * res);
        let (x1, y1) = ((b[2] / res).ceil() * res, (b[3] / res).ceil() * res);
        let (cols, rows) = (((x1 - x0) / res).round() as usize, ((y1 - y0) / res).round() as usize);
        Self::new(epsg, GeoTransform::north_up(x0, y1, res, res), cols.max(1), rows.max(1))
    }
}

/// How to warp.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WarpOptions {
    /// Sampling of the source: nearest or bilinear (others are refused).
    pub resampling: Resampling,
    /// A source value that is no-data besides the file's own no-data value (Sentinel-1 GRD
    /// DN files carry none, but 0 marks their borders: see
    /// [`crate::sar::Radiometry::source_nodata`]).
    pub src_nodata: Option<f32>,
    /// Largest error of the linear approximation of the transformation, in source pixels
    /// (GDAL's `-et`; 0 transforms every pixel exactly).
    pub max_error_px: f64,
    /// Order of the GCP polynomial, 1 to 3; `None`: 2 from six GCPs on, else 1 (GDAL's default).
    pub gcp_order: Option<Order>,
}

impl Default for WarpOptions {
    fn default() -> Self {
        Self { resampling: Resampling::Bilinear, src_nodata: None, max_error_px: 0.125, gcp_order: None }
    }
}

/// Warps band `band` (0-based) of `cog` onto `dst`, reading only the source window the grid
/// needs. Destination pixels off the source, or on its no-data, are NaN.
pub async fn warp_cog_onto(cog: &Cog, band: usize, dst: &DstGrid, options: &WarpOptions) -> Result<Raster, CogError> {
    check_resampling(options.resampling)?;
    let info = cog.info();
    let source = SourceModel::of_cog(info, options.gcp_order)?;
    let map = PixelMap::new(&source, dst.epsg, dst.transform, options.max_error_px)?;
    let Some((c0, r0, w, h)) = source_window(&map, dst, info.width, info.height) else {
        return Ok(Raster::empty(dst.transform, dst.width, dst.height));
    };
    let data = cog.read_window(band, c0, r0, w, h).await?;
    let window = SourceWindow { col0: c0, row0: r0, width: w, height: h, data: mask(data, options.src_nodata) };
    Ok(sample(&map, dst, &window, options.resampling))
}

/// The full-resolution source pixels `(col, row, width, height)` that [`warp_cog_onto`] reads
/// to fill `dst`; `None` when the grid misses the image. For keeping a COG's tile cache to
/// what the next warp needs ([`Cog::retain_windows`]).
pub fn source_window_of(
    cog: &Cog,
    dst: &DstGrid,
    options: &WarpOptions,
) -> Result<Option<(isize, isize, usize, usize)>, CogError> {
    let info = cog.info();
    let source = SourceModel::of_cog(info, options.gcp_order)?;
    let map = PixelMap::new(&source, dst.epsg, dst.transform, options.max_error_px)?;
    Ok(source_window(&map, dst, info.width, info.height))
}

/// Warps an in-memory source raster in EPSG:`src_epsg` onto `dst`.
pub fn warp_raster(src: &Raster, src_epsg: u32, dst: &DstGrid, options: &WarpOptions) -> Result<Raster, CogError> {
    check_resampling(options.resampling)?;
    let source = SourceModel::Affine { epsg: src_epsg, transform: src.transform };
    let map = PixelMap::new(&source, dst.epsg, dst.transform, options.max_error_px)?;
    let window = SourceWindow {
        col0: 0,
        row0: 0,
        width: src.width,
        height: src.height,
        data: mask(src.data.clone(), options.src_nodata),
    };
    Ok(sample(&map, dst, &window, options.resampling))
}

/// The warp samples (nearest, bilinear); area averages across CRSs are not implemented.
fn check_resampling(method: Resampling) -> Result<(), CogError> {
    match method {
        Resampling::Nearest | Resampling::Bilinear => Ok(()),
        #[allow(unreachable_patterns)]
        other => Err(CogError::Unsupported(format!("{other:?} resampling in a warp (use Nearest or Bilinear)"))),
    }
}

fn mask(mut data: Vec<f32>, nodata: Option<f32>) -> Vec<f32> {
    if let Some(n) = nodata {
        data.iter_mut().filter(|v| **v == n).for_each(|v| *v = f32::NAN);
    }
    data
}

/// The source pixels `(col, row, width, height)` under `dst`, with one pixel of margin for the
/// bilinear neighbours, clipped to the `src_width` x `src_height` image; `None` when the grid
/// misses the image.
fn source_window(
    map: &PixelMap<'_>,
    dst: &DstGrid,
    src_width: usize,
    src_height: usize,
) -> Option<(isize, isize, usize, usize)> {
    let mut b = [f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY];
    let mut coords = vec![None; dst.width];
    for row in 0..dst.height {
        map.row(row, &mut coords);
        for &(c, r) in coords.iter().flatten() {
            b = [b[0].min(c), b[1].min(r), b[2].max(c), b[3].max(r)];
        }
    }
    if !b.iter().all(|v| v.is_finite()) {
        return None;
    }
    let c0 = (b[0].floor() - 1.0).max(0.0);
    let r0 = (b[1].floor() - 1.0).max(0.0);
    let c1 = (b[2].ceil() + 1.0).min(src_width as f64);
    let r1 = (b[3].ceil() + 1.0).min(src_height as f64);
    if c0 >= c1 || r0 >= r1 {
        return None;
    }
    Some((c0 as isize, r0 as isize, (c1 - c0) as usize, (r1 - r0) as usize))
}

fn sample(map: &PixelMap<'_>, dst: &DstGrid, window: &SourceWindow, method: Resampling) -> Raster {
    let mut out = Raster::empty(dst.transform, dst.width, dst.height);
    let mut coords = vec![None; dst.width];
    for (row, line) in out.data.chunks_exact_mut(dst.width.max(1)).enumerate() {
        map.row(row, &mut coords);
        for (v, p) in line.iter_mut().zip(&coords) {
            if let Some((c, r)) = *p {
                *v = window.sample(c, r, method);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cog::Gcp;

    /// A 400 x 300 source in EPSG:4326 near Murcia (Sen1Floods11's chip) whose values are linear
    /// in longitude and latitude, so bilinear reproduces them exactly at any position.
    fn linear_source() -> (Raster, impl Fn(f64, f64) -> f64) {
        let res = 0.0001;
        let t = GeoTransform::north_up(-0.78, 38.13, res, res);
        let f = |lon: f64, lat: f64| 1e5 * (lon + 0.78) + 3e5 * (38.13 - lat);
        let (w, h) = (400, 300);
        let data = (0..h)
            .flat_map(|r| (0..w).map(move |c| (c, r)))
            .map(|(c, r)| {
                let (lon, lat) = t.apply(c as f64 + 0.5, r as f64 + 0.5);
                f(lon, lat) as f32
            })
            .collect();
        (Raster { transform: t, width: w, height: h, data }, f)
    }

    /// UTM 30N grid of 10 m inside the linear source.
    fn utm_grid() -> DstGrid {
        DstGrid::new(32630, GeoTransform::north_up(695000.0, 4222000.0, 10.0, 10.0), 200, 150).expect("grid")
    }

    /// Mean and max |warped - f(centre)| over valid pixels, with the expected value taken
    /// `shift` destination pixels away.
    fn errors(out: &Raster, grid: &DstGrid, f: &impl Fn(f64, f64) -> f64, shift: f64) -> (f64, f64, usize) {
        let to_ll = Reproject::new(grid.epsg, 4326).expect("proj");
        let (mut sum, mut max, mut n) = (0.0, 0.0f64, 0);
        for r in 0..grid.height {
            for c in 0..grid.width {
                let v = out.data[r * grid.width + c];
                if v.is_nan() {
                    continue;
                }
                let (x, y) = grid.transform.apply(c as f64 + 0.5 + shift, r as f64 + 0.5);
                let (lon, lat) = to_ll.apply(x, y).expect("inside zone");
                let e = (f64::from(v) - f(lon, lat)).abs();
                sum += e;
                max = max.max(e);
                n += 1;
            }
        }
        (sum / n.max(1) as f64, max, n)
    }

    #[test]
    fn same_grid_is_identity() {
        let (src, _) = linear_source();
        let grid = DstGrid::new(4326, src.transform, src.width, src.height).expect("grid");
        let out = warp_raster(&src, 4326, &grid, &WarpOptions::default()).expect("warp");
        assert_eq!(out.data, src.data);
    }

    #[test]
    fn reprojection_lands_on_the_right_ground_position() {
        let (src, f) = linear_source();
        let grid = utm_grid();
        let exact = WarpOptions { max_error_px: 0.0, ..WarpOptions::default() };
        let (mean, max, n) = errors(&warp_raster(&src, 4326, &grid, &exact).expect("warp"), &grid, &f, 0.0);
        assert_eq!(n, grid.width * grid.height, "the grid lies inside the source");
        // f32 rounding of values near 1e4 is the only error.
        assert!(max < 0.01, "exact transform: mean {mean}, max {max}");
        let (mean, max, _) =
            errors(&warp_raster(&src, 4326, &grid, &WarpOptions::default()).expect("warp"), &grid, &f, 0.0);
        // |dx| + |dy| <= 0.125 source pixels: |df| <= 0.125 * 1e-4 * max(1e5, 3e5) = 3.75.
        assert!(max < 3.75 && mean < 1.0, "approximate transform: mean {mean}, max {max}");
        // f grows 1.14 per metre east at 38°N: a result one destination pixel (10 m) off fails.
        let (shifted, _, _) = errors(&warp_raster(&src, 4326, &grid, &exact).expect("warp"), &grid, &f, 1.0);
        assert!(shifted > 10.0, "a 10 m shift must show: {shifted}");
    }

    #[test]
    fn gcp_geocoding_of_an_affine_source_equals_the_affine_warp() {
        let (src, _) = linear_source();
        let gcps: Vec<Gcp> = (0..=8)
            .flat_map(|i| (0..=6).map(move |j| (i as f64 * 50.0, j as f64 * 50.0)))
            .map(|(p, l)| {
                let (x, y) = src.transform.apply(p, l);
                Gcp { pixel: p, line: l, x, y, z: 0.0 }
            })
            .collect();
        let grid = utm_grid();
        let model = SourceModel::gcps(4326, &gcps, None).expect("fit");
        let map = PixelMap::new(&model, grid.epsg, grid.transform, 0.0).expect("map");
        let window = SourceWindow { col0: 0, row0: 0, width: src.width, height: src.height, data: src.data.clone() };
        let via_gcps = sample(&map, &grid, &window, Resampling::Bilinear);
        let exact = WarpOptions { max_error_px: 0.0, ..WarpOptions::default() };
        let via_affine = warp_raster(&src, 4326, &grid, &exact).expect("warp");
        let max = via_gcps.data.iter().zip(&via_affine.data).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(max < 0.01, "{max}");
    }

    #[test]
    fn approximation_error_stays_under_the_tolerance() {
        // A curved GCP model (quadratic in lon/lat) seen from a UTM grid.
        let gcps: Vec<Gcp> = (0..=10)
            .flat_map(|i| (0..=10).map(move |j| (i as f64 * 128.0, j as f64 * 84.0)))
            .map(|(p, l)| Gcp {
                pixel: p,
                line: l,
                x: 78.2 - 0.0018 * p + 1e-7 * p * p,
                y: 10.74 - 0.0018 * l + 0.0004 * p,
                z: 0.0,
            })
            .collect();
        let model = SourceModel::gcps(4326, &gcps, None).expect("fit");
        let grid = DstGrid::covering(&model, 1280, 837, 32643, 100.0).expect("grid");
        let approx = PixelMap::new(&model, grid.epsg, grid.transform, 0.125).expect("map");
        let exact = PixelMap::new(&model, grid.epsg, grid.transform, 0.0).expect("map");
        let (mut a, mut e) = (vec![None; grid.width], vec![None; grid.width]);
        let mut worst = 0.0f64;
        for row in (0..grid.height).step_by(97) {
            approx.row(row, &mut a);
            exact.row(row, &mut e);
            for (p, q) in a.iter().zip(&e) {
                let (p, q) = (p.expect("defined"), q.expect("defined"));
                worst = worst.max((p.0 - q.0).abs() + (p.1 - q.1).abs());
            }
        }
        assert!(worst <= 0.125, "{worst}");
        assert!(worst > 0.0, "the model is curved: some interpolation must happen");
    }

    #[test]
    fn covering_grid_contains_the_source_and_is_aligned() {
        let (src, _) = linear_source();
        let model = SourceModel::Affine { epsg: 4326, transform: src.transform };
        let grid = DstGrid::covering(&model, src.width, src.height, 32630, 10.0).expect("grid");
        let to_utm = Reproject::new(4326, 32630).expect("proj");
        for (c, r) in [(0.0, 0.0), (400.0, 0.0), (0.0, 300.0), (400.0, 300.0)] {
            let (lon, lat) = src.transform.apply(c, r);
            let (x, y) = to_utm.apply(lon, lat).expect("pt");
            let (gc, gr) = grid.transform.invert(x, y);
            assert!((0.0..=grid.width as f64).contains(&gc) && (0.0..=grid.height as f64).contains(&gr), "{c},{r}");
        }
        assert_eq!(grid.transform.0[0] % 10.0, 0.0);
        assert_eq!(grid.transform.0[3] % 10.0, 0.0);
        assert!(DstGrid::covering(&model, 10, 10, 32630, 0.0).is_err());
    }

    #[test]
    fn window_is_a_sub_grid() {
        let g = utm_grid();
        let w = g.window(10, 20, 5, 5);
        assert_eq!(w.transform.apply(0.0, 0.0), g.transform.apply(10.0, 20.0));
        assert_eq!((w.epsg, w.width), (32630, 5));
    }

    #[test]
    fn unsupported_crs_fails_before_any_read() {
        let e = DstGrid::new(2154, GeoTransform::north_up(0.0, 0.0, 10.0, 10.0), 1, 1).expect_err("lambert-93");
        assert!(e.to_string().contains("EPSG:2154"), "{e}");
        let (src, _) = linear_source();
        let e = warp_raster(&src, 2154, &utm_grid(), &WarpOptions::default()).expect_err("source CRS");
        assert!(e.to_string().contains("EPSG:2154"), "{e}");
    }
}

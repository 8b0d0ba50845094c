//! Georeferencing: affine transforms, CRS lookups, and chip footprints in EPSG:4326.

use proj4rs::Proj;

use crate::{Error, Result};

/// A north-up affine pixel-to-CRS transform in GDAL GeoTransform order:
/// `x = c[0] + col * c[1] + row * c[2]`, `y = c[3] + col * c[4] + row * c[5]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeoTransform(pub [f64; 6]);

impl GeoTransform {
    /// A north-up transform with origin `(x0, y0)` (top-left corner) and pixel size `res`
    /// (CRS units, positive).
    pub fn north_up(x0: f64, y0: f64, res_x: f64, res_y: f64) -> Self {
        Self([x0, res_x, 0.0, y0, 0.0, -res_y])
    }

    /// CRS coordinates of pixel corner `(col, row)` (fractional pixels allowed).
    pub fn apply(&self, col: f64, row: f64) -> (f64, f64) {
        let c = &self.0;
        (c[0] + col * c[1] + row * c[2], c[3] + col * c[4] + row * c[5])
    }

    /// Fractional pixel `(col, row)` of CRS point `(x, y)`. Only for transforms without
    /// rotation, which is all this crate creates or accepts.
    pub fn invert(&self, x: f64, y: f64) -> (f64, f64) {
        let c = &self.0;
        ((x - c[0]) / c[1], (y - c[3]) / c[5])
    }

    /// The transform of the window starting at pixel `(col, row)`.
    pub fn offset(&self, col: f64, row: f64) -> Self {
        let (x, y) = self.apply(col, row);
        let c = self.0;
        Self([x, c[1], c[2], y, c[4], c[5]])
    }

    /// Pixel width in CRS units.
    pub fn res_x(&self) -> f64 {
        self.0[1].abs()
    }

    /// Pixel height in CRS units.
    pub fn res_y(&self) -> f64 {
        self.0[5].abs()
    }

    /// True when the transform has no rotation terms.
    pub fn is_north_up(&self) -> bool {
        self.0[2] == 0.0 && self.0[4] == 0.0 && self.0[1] > 0.0 && self.0[5] < 0.0
    }
}

/// A projection from one EPSG code to EPSG:4326 longitude/latitude.
#[derive(Debug)]
pub struct ToWgs84 {
    epsg: u32,
    src: Proj,
    dst: Proj,
}

/// The PROJ string of an EPSG code. Covers what Sentinel data comes in: WGS 84 (4326), UTM
/// north and south on WGS 84 (326xx, 327xx) and Web Mercator (3857).
pub fn proj_string(epsg: u32) -> Option<String> {
    match epsg {
        4326 => Some("+proj=longlat +datum=WGS84 +no_defs".into()),
        3857 => Some(
            "+proj=merc +a=6378137 +b=6378137 +lat_ts=0 +lon_0=0 +x_0=0 +y_0=0 +k=1 +units=m +nadgrids=@null +no_defs"
                .into(),
        ),
        32601..=32660 => Some(format!("+proj=utm +zone={} +datum=WGS84 +units=m +no_defs", epsg - 32600)),
        32701..=32760 => Some(format!("+proj=utm +zone={} +south +datum=WGS84 +units=m +no_defs", epsg - 32700)),
        _ => None,
    }
}

impl ToWgs84 {
    /// A transformation from `epsg` to EPSG:4326.
    pub fn new(epsg: u32) -> Result<Self> {
        let def = proj_string(epsg).ok_or_else(|| Error::Crs {
            epsg,
            reason: "unsupported CRS (supported: EPSG:4326, 3857, UTM 326xx/327xx)".into(),
        })?;
        let src = Proj::from_proj_string(&def).map_err(|e| Error::Crs { epsg, reason: e.to_string() })?;
        let dst = Proj::from_proj_string("+proj=longlat +datum=WGS84 +no_defs")
            .map_err(|e| Error::Crs { epsg: 4326, reason: e.to_string() })?;
        Ok(Self { epsg, src, dst })
    }

    /// Longitude/latitude in degrees of CRS point `(x, y)`.
    pub fn lon_lat(&self, x: f64, y: f64) -> Result<(f64, f64)> {
        if self.epsg == 4326 {
            return Ok((x, y));
        }
        let (lon, lat) = proj4rs::adaptors::transform_vertex_2d(&self.src, &self.dst, (x, y))
            .map_err(|e| Error::Crs { epsg: self.epsg, reason: format!("({x}, {y}): {e}") })?;
        Ok((lon.to_degrees(), lat.to_degrees()))
    }
}

/// A point transformation between two supported CRSs (see [`proj_string`]), in each CRS's own
/// units: degrees (longitude, latitude) for EPSG:4326, metres for projected CRSs.
#[derive(Debug)]
pub struct Reproject {
    from: u32,
    to: u32,
    src: Proj,
    dst: Proj,
}

impl Reproject {
    /// A transformation from EPSG:`from` to EPSG:`to`.
    pub fn new(from: u32, to: u32) -> Result<Self> {
        let proj = |epsg: u32| {
            let def = proj_string(epsg).ok_or_else(|| Error::Crs {
                epsg,
                reason: "unsupported CRS (supported: EPSG:4326, 3857, UTM 326xx/327xx)".into(),
            })?;
            Proj::from_proj_string(&def).map_err(|e| Error::Crs { epsg, reason: e.to_string() })
        };
        Ok(Self { from, to, src: proj(from)?, dst: proj(to)? })
    }

    /// The source EPSG code.
    pub fn from_epsg(&self) -> u32 {
        self.from
    }

    /// The target EPSG code.
    pub fn to_epsg(&self) -> u32 {
        self.to
    }

    /// Point `(x, y)` of the source CRS in the target CRS, or `None` where the projection is
    /// undefined (far outside a UTM zone, beyond the poles).
    pub fn apply(&self, x: f64, y: f64) -> Option<(f64, f64)> {
        if self.from == self.to {
            return Some((x, y));
        }
        // proj4rs works in radians for geographic CRSs.
        let p = if self.src.is_latlong() { (x.to_radians(), y.to_radians()) } else { (x, y) };
        let (u, v) = proj4rs::adaptors::transform_vertex_2d(&self.src, &self.dst, p).ok()?;
        let q = if self.dst.is_latlong() { (u.to_degrees(), v.to_degrees()) } else { (u, v) };
        (q.0.is_finite() && q.1.is_finite()).then_some(q)
    }
}

/// The EPSG code of the WGS 84 UTM zone (north 326xx, south 327xx) that contains longitude/
/// latitude `(lon, lat)` in degrees; the Norway/Svalbard exceptions are not applied.
pub fn utm_epsg(lon: f64, lat: f64) -> u32 {
    let zone = (((lon + 180.0) / 6.0).floor() as i64).rem_euclid(60) as u32 + 1;
    if lat >= 0.0 { 32600 + zone } else { 32700 + zone }
}

/// A footprint polygon in longitude/latitude degrees (one closed ring, counter-clockwise).
#[derive(Debug, Clone, PartialEq)]
pub struct Footprint {
    /// Ring vertices, first equal to last.
    pub ring: Vec<(f64, f64)>,
}

/// Vertices per chip edge. Chips are small enough that the projected edge is straight to
/// well under a pixel; the midpoints still keep the polygon honest near the poles.
const EDGE_POINTS: usize = 2;

impl Footprint {
    /// The footprint of a `width` x `height` pixel window with transform `transform`.
    pub fn of_window(transform: &GeoTransform, width: usize, height: usize, proj: &ToWgs84) -> Result<Self> {
        let (w, h) = (width as f64, height as f64);
        // Counter-clockwise in lon/lat: bottom-left, bottom-right, top-right, top-left.
        let corners = [(0.0, h), (w, h), (w, 0.0), (0.0, 0.0)];
        let mut ring = Vec::with_capacity(4 * EDGE_POINTS + 1);
        for i in 0..4 {
            let (c0, r0) = corners[i];
            let (c1, r1) = corners[(i + 1) % 4];
            for k in 0..EDGE_POINTS {
                let t = k as f64 / EDGE_POINTS as f64;
                let (x, y) = transform.apply(c0 + (c1 - c0) * t, r0 + (r1 - r0) * t);
                ring.push(proj.lon_lat(x, y)?);
            }
        }
        ring.push(ring[0]);
        Ok(Self { ring })
    }

    /// `(xmin, ymin, xmax, ymax)` in degrees.
    pub fn bbox(&self) -> [f64; 4] {
        let mut b = [f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY];
        for &(x, y) in &self.ring {
            b[0] = b[0].min(x);
            b[1] = b[1].min(y);
            b[2] = b[2].max(x);
            b[3] = b[3].max(y);
        }
        b
    }

    /// ISO WKB (little endian) of the polygon.
    pub fn to_wkb(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(13 + 16 * self.ring.len());
        out.push(1u8); // little endian
        out.extend_from_slice(&3u32.to_le_bytes()); // Polygon
        out.extend_from_slice(&1u32.to_le_bytes()); // one ring
        out.extend_from_slice(&(self.ring.len() as u32).to_le_bytes());
        for &(x, y) in &self.ring {
            out.extend_from_slice(&x.to_le_bytes());
            out.extend_from_slice(&y.to_le_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utm_corner_matches_known_lon_lat() {
        // The sample scene's top-left corner (EPSG:32629 199980, 2800020); reference values
        // from PROJ 9 (`gdaltransform -s_srs EPSG:32629 -t_srs EPSG:4326`).
        let p = ToWgs84::new(32629).expect("utm");
        let (lon, lat) = p.lon_lat(199980.0, 2800020.0).expect("transform");
        assert!((lon - -11.9792448654303).abs() < 1e-9, "{lon}");
        assert!((lat - 25.2866271845146).abs() < 1e-9, "{lat}");
    }

    #[test]
    fn reproject_utm_round_trip_and_known_point() {
        // Same reference point as above, through the general transformation both ways.
        let to_ll = Reproject::new(32629, 4326).expect("utm to wgs84");
        let (lon, lat) = to_ll.apply(199980.0, 2800020.0).expect("inside zone");
        assert!((lon - -11.9792448654303).abs() < 1e-9 && (lat - 25.2866271845146).abs() < 1e-9, "{lon} {lat}");
        let back = Reproject::new(4326, 32629).expect("wgs84 to utm");
        let (x, y) = back.apply(lon, lat).expect("inside zone");
        assert!((x - 199980.0).abs() < 1e-6 && (y - 2800020.0).abs() < 1e-6, "{x} {y}");
        // Zone to zone goes through the geographic CRS.
        let (x30, _) = Reproject::new(32629, 32630).expect("29 to 30").apply(199980.0, 2800020.0).expect("pt");
        assert!(x30 < 0.0, "a point far west of zone 30's meridian has negative easting: {x30}");
    }

    #[test]
    fn utm_zone_of_a_point() {
        assert_eq!(utm_epsg(-0.76, 38.1), 32630);
        assert_eq!(utm_epsg(77.0, 10.5), 32643);
        assert_eq!(utm_epsg(-70.0, -33.0), 32719);
        assert_eq!(utm_epsg(180.0, 0.0), 32601);
    }

    #[test]
    fn unsupported_crs_is_named() {
        let err = ToWgs84::new(2154).expect_err("lambert-93 is not supported");
        assert!(err.to_string().contains("EPSG:2154"), "{err}");
    }

    #[test]
    fn wkb_polygon_layout() {
        let t = GeoTransform::north_up(0.0, 10.0, 1.0, 1.0);
        let fp = Footprint::of_window(&t, 10, 10, &ToWgs84::new(4326).expect("wgs84")).expect("fp");
        let wkb = fp.to_wkb();
        assert_eq!(wkb.len(), 1 + 4 + 4 + 4 + 16 * fp.ring.len());
        assert_eq!(fp.ring.first(), fp.ring.last());
        assert_eq!(fp.bbox(), [0.0, 0.0, 10.0, 10.0]);
    }
}

//! The area of interest of a flood event: a GeoJSON Polygon or MultiPolygon in WGS 84
//! longitude/latitude, checked, measured (km² on the sphere) and boxed.

use anyhow::{Result, bail, ensure};
use serde_json::Value;

/// Mean Earth radius (IUGG), metres: the AOI area is computed on this sphere (within about
/// 0.5% of the WGS 84 ellipsoid area, ample for an area limit).
const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// A checked AOI: its polygons' rings as `(lon, lat)` degrees.
#[derive(Debug, Clone, PartialEq)]
pub struct Aoi {
    /// Polygons, each an exterior ring followed by its holes, every ring closed.
    pub polygons: Vec<Vec<Vec<(f64, f64)>>>,
}

impl Aoi {
    /// Parses and checks a GeoJSON geometry (a Feature's geometry is taken too); errors name
    /// the offending member under `field` (e.g. `aoi.coordinates[0][2]`).
    pub fn from_geojson(value: &Value, field: &str) -> Result<Self> {
        let geometry = match value.get("type").and_then(Value::as_str) {
            Some("Feature") => value.get("geometry").unwrap_or(&Value::Null),
            _ => value,
        };
        let Some(kind) = geometry.get("type").and_then(Value::as_str) else {
            bail!("{field}: not a GeoJSON geometry (no \"type\")")
        };
        let Some(coords) = geometry.get("coordinates") else {
            bail!("{field}: {kind} without \"coordinates\"")
        };
        let polygons = match kind {
            "Polygon" => vec![polygon(coords, &format!("{field}.coordinates"))?],
            "MultiPolygon" => {
                let Some(list) = coords.as_array() else {
                    bail!("{field}.coordinates: expected an array of polygons")
                };
                ensure!(!list.is_empty(), "{field}.coordinates: empty MultiPolygon");
                list.iter()
                    .enumerate()
                    .map(|(i, p)| polygon(p, &format!("{field}.coordinates[{i}]")))
                    .collect::<Result<_>>()?
            }
            other => bail!("{field}: type {other:?}: the AOI must be a Polygon or MultiPolygon"),
        };
        let vertices: usize = polygons.iter().flatten().map(Vec::len).sum();
        ensure!(
            vertices <= MAX_VERTICES,
            "{field}: {vertices} positions; at most {MAX_VERTICES} are accepted (simplify the AOI)"
        );
        for (p, rings) in polygons.iter().enumerate() {
            for (r, ring) in rings.iter().enumerate() {
                let at = match kind {
                    "Polygon" => format!("{field}.coordinates[{r}]"),
                    _ => format!("{field}.coordinates[{p}][{r}]"),
                };
                simple_ring(ring, &at)?;
            }
        }
        let aoi = Self { polygons };
        ensure!(aoi.area_km2() > 0.0, "{field}: the AOI has no area");
        Ok(aoi)
    }

    /// A rectangle `[west, south, east, north]` in degrees as an AOI.
    pub fn from_bbox(b: [f64; 4]) -> Result<Self> {
        let [w, s, e, n] = b;
        let v = serde_json::json!({"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]});
        ensure!(
            w < e && s < n,
            "bbox {b:?}: expected west,south,east,north with west < east and south < north"
        );
        Self::from_geojson(&v, "aoi")
    }

    /// `[west, south, east, north]` of every vertex, degrees.
    pub fn bbox(&self) -> [f64; 4] {
        let mut b = [f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY];
        for &(x, y) in self.polygons.iter().flatten().flatten() {
            b = [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)];
        }
        b
    }

    /// Area in km² on the sphere: exteriors minus holes.
    pub fn area_km2(&self) -> f64 {
        self.polygons
            .iter()
            .map(|rings| {
                let outer = ring_area_m2(&rings[0]);
                let holes: f64 = rings[1..].iter().map(|r| ring_area_m2(r)).sum();
                (outer - holes).max(0.0)
            })
            .sum::<f64>()
            / 1e6
    }

    /// The AOI as a GeoJSON geometry (for STAC `intersects`).
    pub fn to_geojson(&self) -> Value {
        let ring = |r: &Vec<(f64, f64)>| r.iter().map(|&(x, y)| vec![x, y]).collect::<Vec<_>>();
        let poly = |p: &Vec<Vec<(f64, f64)>>| p.iter().map(ring).collect::<Vec<_>>();
        match &self.polygons[..] {
            [one] => serde_json::json!({"type": "Polygon", "coordinates": poly(one)}),
            many => {
                serde_json::json!({"type": "MultiPolygon", "coordinates": many.iter().map(poly).collect::<Vec<_>>()})
            }
        }
    }
}

fn polygon(value: &Value, field: &str) -> Result<Vec<Vec<(f64, f64)>>> {
    let Some(rings) = value.as_array() else {
        bail!("{field}: expected an array of linear rings")
    };
    ensure!(!rings.is_empty(), "{field}: a polygon needs an exterior ring");
    rings
        .iter()
        .enumerate()
        .map(|(i, r)| ring(r, &format!("{field}[{i}]")))
        .collect()
}

fn ring(value: &Value, field: &str) -> Result<Vec<(f64, f64)>> {
    let Some(points) = value.as_array() else {
        bail!("{field}: expected an array of positions")
    };
    let mut ring = Vec::with_capacity(points.len());
    for (i, p) in points.iter().enumerate() {
        let xy = p
            .as_array()
            .map(|a| a.iter().take(2).map(Value::as_f64).collect::<Option<Vec<f64>>>());
        let Some(Some(xy)) = xy.filter(|v| v.as_ref().is_some_and(|v| v.len() == 2)) else {
            bail!("{field}[{i}]: expected a [longitude, latitude] position, got {p}")
        };
        let (x, y) = (xy[0], xy[1]);
        ensure!(
            x.is_finite() && y.is_finite() && (-180.0..=180.0).contains(&x) && (-90.0..=90.0).contains(&y),
            "{field}[{i}]: ({x}, {y}) is not a WGS 84 longitude/latitude"
        );
        ring.push((x, y));
    }
    ensure!(
        ring.len() >= 4,
        "{field}: a linear ring needs at least 4 positions, got {}",
        ring.len()
    );
    ensure!(
        ring.first() == ring.last(),
        "{field}: the ring is not closed (first position differs from the last)"
    );
    Ok(ring)
}

/// Most positions an AOI may have: the self-intersection check is quadratic in a ring's size.
const MAX_VERTICES: usize = 10_000;

/// Refuses a ring that crosses the antimeridian (an edge spanning more than 180° of longitude,
/// which RFC 7946 §3.1.9 says to split into a MultiPolygon at ±180°) or crosses itself (a
/// "bow tie", whose lobes' areas cancel, so its area, and the service's area limit, would be
/// wrong).
fn simple_ring(ring: &[(f64, f64)], field: &str) -> Result<()> {
    for (i, w) in ring.windows(2).enumerate() {
        ensure!(
            (w[1].0 - w[0].0).abs() <= 180.0,
            "{field}[{i}]..[{}]: the edge crosses the antimeridian (longitude {} to {}); split the AOI into a \
             MultiPolygon at ±180° (RFC 7946 §3.1.9)",
            i + 1,
            w[0].0,
            w[1].0
        );
    }
    let n = ring.len() - 1; // edges; the ring is closed
    for i in 0..n {
        for j in i + 1..n {
            // Neighbouring edges share a vertex, as do the first and the last.
            if j == i + 1 || (i == 0 && j == n - 1) {
                continue;
            }
            if segments_meet(ring[i], ring[i + 1], ring[j], ring[j + 1]) {
                bail!(
                    "{field}: the ring crosses itself: edge {i} ({:?} to {:?}) meets edge {j} ({:?} to {:?})",
                    ring[i],
                    ring[i + 1],
                    ring[j],
                    ring[j + 1]
                );
            }
        }
    }
    Ok(())
}

/// Whether segments `ab` and `cd` share a point (crossing, touching or overlapping).
fn segments_meet(a: (f64, f64), b: (f64, f64), c: (f64, f64), d: (f64, f64)) -> bool {
    let orient = |p: (f64, f64), q: (f64, f64), r: (f64, f64)| {
        let v = (q.0 - p.0) * (r.1 - p.1) - (q.1 - p.1) * (r.0 - p.0);
        if v > 0.0 {
            1
        } else if v < 0.0 {
            -1
        } else {
            0
        }
    };
    let on = |p: (f64, f64), q: (f64, f64), r: (f64, f64)| {
        r.0 >= p.0.min(q.0) && r.0 <= p.0.max(q.0) && r.1 >= p.1.min(q.1) && r.1 <= p.1.max(q.1)
    };
    let (o1, o2, o3, o4) = (orient(a, b, c), orient(a, b, d), orient(c, d, a), orient(c, d, b));
    (o1 != o2 && o3 != o4)
        || (o1 == 0 && on(a, b, c))
        || (o2 == 0 && on(a, b, d))
        || (o3 == 0 && on(c, d, a))
        || (o4 == 0 && on(c, d, b))
}

/// Area of a ring on the sphere, m², whatever its orientation (Chamberlain & Duquette 2007,
/// "Some algorithms for polygons on a sphere", JPL).
fn ring_area_m2(ring: &[(f64, f64)]) -> f64 {
    let n = ring.len();
    if n < 4 {
        return 0.0;
    }
    let mut sum = 0.0;
    for i in 0..n - 1 {
        let (lon1, lat1) = ring[i];
        let (lon2, lat2) = ring[i + 1];
        sum += (lon2 - lon1).to_radians() * (2.0 + lat1.to_radians().sin() + lat2.to_radians().sin());
    }
    (sum * EARTH_RADIUS_M * EARTH_RADIUS_M / 2.0).abs()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_one_degree_cell_at_the_equator() {
        let aoi = Aoi::from_bbox([0.0, 0.0, 1.0, 1.0]).expect("bbox");
        // 1° x 1° at the equator on the 6371 km sphere: (π/180 R)² cos(0.5°) ≈ 12364 km².
        let expect = (std::f64::consts::PI / 180.0 * EARTH_RADIUS_M / 1e3).powi(2) * 0.5f64.to_radians().cos();
        assert!(
            (aoi.area_km2() - expect).abs() / expect < 1e-4,
            "{} vs {expect}",
            aoi.area_km2()
        );
        assert_eq!(aoi.bbox(), [0.0, 0.0, 1.0, 1.0]);
        let back = Aoi::from_geojson(&aoi.to_geojson(), "aoi").expect("round trip");
        assert_eq!(back, aoi);
    }

    #[test]
    fn errors_name_the_field() {
        let err = |v: Value| Aoi::from_geojson(&v, "aoi").expect_err("invalid").to_string();
        assert!(err(json!({"type": "Point", "coordinates": [0, 0]})).contains("Polygon or MultiPolygon"));
        assert!(
            err(json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0.5]]]}))
                .contains("aoi.coordinates[0]: the ring is not closed")
        );
        assert!(err(json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]})).contains("at least 4"));
        assert!(
            err(json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 91], [0, 0]]]}))
                .contains("aoi.coordinates[0][2]")
        );
        assert!(
            err(json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], ["x", 1], [0, 0]]]}))
                .contains("aoi.coordinates[0][2]")
        );
        assert!(err(json!({"coordinates": []})).contains("no \"type\""));
        assert!(err(json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [2, 0], [0, 0]]]})).contains("no area"));
        let multi = json!({"type": "MultiPolygon", "coordinates": [[[[0, 0], [1, 0], [1, 1], [0, 0]]], [[[5, 5]]]]});
        assert!(err(multi).contains("aoi.coordinates[1][0]"));
    }

    #[test]
    fn bow_ties_antimeridian_crossings_and_huge_rings_are_refused() {
        let err = |v: Value| Aoi::from_geojson(&v, "aoi").expect_err("invalid").to_string();
        // A bow tie: its two lobes' signed areas cancel, so its area (and an area limit) would lie.
        let bow = json!({"type": "Polygon", "coordinates": [[[0, 0], [2, 2], [2, 0], [0, 2], [0, 0]]]});
        let e = err(bow);
        assert!(e.contains("aoi.coordinates[0]: the ring crosses itself"), "{e}");
        // A hole that touches itself, inside a MultiPolygon: the path names polygon and ring.
        let multi = json!({"type": "MultiPolygon", "coordinates": [
            [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]],
            [[[10, 10], [14, 10], [14, 14], [10, 14], [10, 10]], [[11, 11], [13, 13], [13, 11], [11, 13], [11, 11]]]
        ]});
        let e = err(multi);
        assert!(e.contains("aoi.coordinates[1][1]: the ring crosses itself"), "{e}");
        // The short way across ±180° is written as a jump of 358° of longitude.
        let across = json!({"type": "Polygon", "coordinates": [[[179, 0], [-179, 0], [-179, 1], [179, 1], [179, 0]]]});
        let e = err(across);
        assert!(e.contains("aoi.coordinates[0][0]..[1]") && e.contains("antimeridian"), "{e}");
        // Split at the antimeridian, the same area is accepted.
        let split = json!({"type": "MultiPolygon", "coordinates": [
            [[[179, 0], [180, 0], [180, 1], [179, 1], [179, 0]]],
            [[[-180, 0], [-179, 0], [-179, 1], [-180, 1], [-180, 0]]]
        ]});
        let aoi = Aoi::from_geojson(&split, "aoi").expect("split AOI");
        assert!((aoi.area_km2() - 2.0 * Aoi::from_bbox([0.0, 0.0, 1.0, 1.0]).expect("cell").area_km2()).abs() < 1.0);
        // Too many positions.
        let mut ring: Vec<Value> = (0..=MAX_VERTICES).map(|i| json!([i as f64 * 1e-4, 0.0])).collect();
        ring.extend([json!([0.5, 1.0]), json!([0.0, 0.0])]);
        let e = err(json!({"type": "Polygon", "coordinates": [ring]}));
        assert!(e.contains("at most 10000"), "{e}");
        // A simple concave ring is fine.
        let concave = json!({"type": "Polygon", "coordinates": [[[0, 0], [4, 0], [4, 4], [2, 1], [0, 4], [0, 0]]]});
        assert!(Aoi::from_geojson(&concave, "aoi").is_ok());
    }
}

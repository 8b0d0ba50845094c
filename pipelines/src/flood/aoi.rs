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
}

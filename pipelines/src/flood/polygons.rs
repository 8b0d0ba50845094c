//! Raster to polygons: the pixels of one class as polygons with holes, one per 4-connected
//! region, written as GeoJSON (RFC 7946: WGS 84 longitude/latitude, exteriors
//! counter-clockwise, holes clockwise).
//!
//! Every boundary between a class pixel and a non-class pixel (or the raster's edge) becomes a
//! directed unit edge with the class pixel on its left; the edges are chained into rings. Where
//! two class pixels touch only at a corner the walk turns left, which keeps them apart, so
//! the regions are 4-connected like the labelling that names them. Each region yields one
//! exterior ring and one ring per hole, and straight runs of edges are merged. The rings
//! follow pixel edges exactly, so a polygon's area in the raster's CRS is its pixel count
//! times the pixel area.

use std::collections::HashMap;

use anyhow::Result;
use serde_json::json;
use terrastream_ingest::geo::ToWgs84;

use super::raster::Grid;

/// A polygon in pixel-corner coordinates `(col, row)` of the raster.
#[derive(Debug, Clone, PartialEq)]
pub struct PixelPolygon {
    /// Closed exterior ring (first vertex repeated last), counter-clockwise on the map.
    pub exterior: Vec<(u32, u32)>,
    /// Closed hole rings, clockwise on the map.
    pub holes: Vec<Vec<(u32, u32)>>,
    /// Class pixels in the region.
    pub pixels: u64,
}

/// A directed boundary edge and the region on its left.
#[derive(Debug, Clone, Copy)]
struct Edge {
    from: (u32, u32),
    to: (u32, u32),
    region: u32,
}

/// The polygons of the pixels of `mask` (row-major, `width x height`) where `is_class` holds.
pub fn polygonize(mask: &[u8], width: usize, height: usize, is_class: impl Fn(u8) -> bool) -> Vec<PixelPolygon> {
    if mask.len() != width * height {
        return Vec::new();
    }
    let (labels, sizes) = label_regions(mask, width, height, &is_class);
    let inside = |x: i64, y: i64| {
        x >= 0
            && y >= 0
            && (x as usize) < width
            && (y as usize) < height
            && labels[y as usize * width + x as usize] != u32::MAX
    };
    // Edges with the class pixel on the left as seen on the map (north up): counter-clockwise
    // around each pixel in image coordinates (rows down) when read on screen.
    let mut edges: Vec<Edge> = Vec::new();
    for y in 0..height {
        for x in 0..width {
            let region = labels[y * width + x];
            if region == u32::MAX {
                continue;
            }
            let (xi, yi) = (x as i64, y as i64);
            let (x, y) = (x as u32, y as u32);
            if !inside(xi, yi - 1) {
                edges.push(Edge {
                    from: (x + 1, y),
                    to: (x, y),
                    region,
                });
            }
            if !inside(xi - 1, yi) {
                edges.push(Edge {
                    from: (x, y),
                    to: (x, y + 1),
                    region,
                });
            }
            if !inside(xi, yi + 1) {
                edges.push(Edge {
                    from: (x, y + 1),
                    to: (x + 1, y + 1),
                    region,
                });
            }
            if !inside(xi + 1, yi) {
                edges.push(Edge {
                    from: (x + 1, y + 1),
                    to: (x + 1, y),
                    region,
                });
            }
        }
    }
    let mut outgoing: HashMap<(u32, u32), Vec<usize>> = HashMap::with_capacity(edges.len());
    for (i, e) in edges.iter().enumerate() {
        outgoing.entry(e.from).or_default().push(i);
    }
    let mut used = vec![false; edges.len()];
    let mut polygons: Vec<PixelPolygon> = sizes
        .iter()
        .map(|&pixels| PixelPolygon {
            exterior: Vec::new(),
            holes: Vec::new(),
            pixels,
        })
        .collect();
    for start in 0..edges.len() {
        if used[start] {
            continue;
        }
        let mut ring = vec![edges[start].from];
        let mut cur = start;
        loop {
            used[cur] = true;
            let e = edges[cur];
            ring.push(e.to);
            let dir = direction(e);
            let next = outgoing.get(&e.to).and_then(|c| {
                let free: Vec<usize> = c.iter().copied().filter(|&i| !used[i] || i == start).collect();
                // At a corner where two class pixels touch diagonally, turn left (image
                // coordinates: the left of (dx, dy) is (dy, -dx)).
                let left = (dir.1, -dir.0);
                free.iter()
                    .copied()
                    .find(|&i| direction(edges[i]) == left)
                    .or_else(|| free.first().copied())
            });
            match next {
                Some(n) if n == start => break,
                Some(n) => cur = n,
                None => break,
            }
        }
        let ring = merge_collinear(ring);
        let region = edges[start].region as usize;
        // Image coordinates have rows downwards, so a ring that is counter-clockwise on the map
        // has a negative shoelace sum here.
        if signed_area2(&ring) < 0 {
            polygons[region].exterior = ring;
        } else {
            polygons[region].holes.push(ring);
        }
    }
    polygons
}

fn direction(e: Edge) -> (i64, i64) {
    (
        i64::from(e.to.0) - i64::from(e.from.0),
        i64::from(e.to.1) - i64::from(e.from.1),
    )
}

/// 4-connected regions of class pixels: labels (`u32::MAX` outside the class) and sizes.
fn label_regions(mask: &[u8], width: usize, height: usize, is_class: &impl Fn(u8) -> bool) -> (Vec<u32>, Vec<u64>) {
    let mut labels = vec![u32::MAX; mask.len()];
    let mut sizes = Vec::new();
    let mut stack = Vec::new();
    for seed in 0..mask.len() {
        if labels[seed] != u32::MAX || !is_class(mask[seed]) {
            continue;
        }
        let id = sizes.len() as u32;
        let mut n = 0u64;
        labels[seed] = id;
        stack.push(seed);
        while let Some(i) = stack.pop() {
            n += 1;
            let (x, y) = (i % width, i / width);
            let mut visit = |j: usize| {
                if labels[j] == u32::MAX && is_class(mask[j]) {
                    labels[j] = id;
                    stack.push(j);
                }
            };
            if x > 0 {
                visit(i - 1);
            }
            if x + 1 < width {
                visit(i + 1);
            }
            if y > 0 {
                visit(i - width);
            }
            if y + 1 < height {
                visit(i + width);
            }
        }
        sizes.push(n);
    }
    (labels, sizes)
}

/// Drops vertices in the middle of straight runs; the ring stays closed.
fn merge_collinear(ring: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    let n = ring.len() - 1; // distinct vertices of the closed ring
    if n < 4 {
        return ring;
    }
    let at = |i: usize| ring[i % n];
    let turn = |a: (u32, u32), b: (u32, u32), c: (u32, u32)| {
        let (ax, ay, bx, by, cx, cy) = (a.0 as i64, a.1 as i64, b.0 as i64, b.1 as i64, c.0 as i64, c.1 as i64);
        (bx - ax) * (cy - by) - (by - ay) * (cx - bx) != 0
    };
    let mut out: Vec<(u32, u32)> = (0..n)
        .filter(|&i| turn(at(i + n - 1), at(i), at(i + 1)))
        .map(at)
        .collect();
    if let Some(&first) = out.first() {
        out.push(first);
    }
    out
}

/// Twice the shoelace area of a closed ring, in pixel units (image coordinates).
fn signed_area2(ring: &[(u32, u32)]) -> i64 {
    ring.windows(2)
        .map(|w| i64::from(w[0].0) * i64::from(w[1].1) - i64::from(w[1].0) * i64::from(w[0].1))
        .sum()
}

/// A GeoJSON FeatureCollection of `polygons` on `grid`, in WGS 84; each feature carries its
/// pixel count and area in square metres (pixel count x pixel area, see
/// [`Grid::pixel_metres`]) and `properties`.
pub fn to_geojson(polygons: &[PixelPolygon], grid: &Grid, properties: &serde_json::Value) -> Result<serde_json::Value> {
    let proj = ToWgs84::new(grid.epsg)?;
    let t = grid.transform;
    let (mx, my) = grid.pixel_metres();
    let ring = |r: &[(u32, u32)]| -> Result<Vec<[f64; 2]>> {
        r.iter()
            .map(|&(c, row)| {
                let (c, row) = (f64::from(c), f64::from(row));
                let (x, y) = (t[0] + c * t[1] + row * t[2], t[3] + c * t[4] + row * t[5]);
                let (lon, lat) = proj.lon_lat(x, y)?;
                Ok([lon, lat])
            })
            .collect()
    };
    let mut features = Vec::with_capacity(polygons.len());
    for (i, p) in polygons.iter().enumerate() {
        let mut rings = vec![ring(&p.exterior)?];
        for h in &p.holes {
            rings.push(ring(h)?);
        }
        let mut props = json!({ "id": i, "pixels": p.pixels, "area_m2": p.pixels as f64 * mx * my });
        if let (Some(dst), Some(src)) = (props.as_object_mut(), properties.as_object()) {
            dst.extend(src.clone());
        }
        features.push(json!({
            "type": "Feature",
            "geometry": { "type": "Polygon", "coordinates": rings },
            "properties": props,
        }));
    }
    Ok(json!({ "type": "FeatureCollection", "features": features }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The area of a polygon from its rings, in pixels.
    fn area(p: &PixelPolygon) -> i64 {
        (-signed_area2(&p.exterior) - p.holes.iter().map(|h| signed_area2(h)).sum::<i64>()) / 2
    }

    fn grid(rows: &[&str]) -> (Vec<u8>, usize, usize) {
        let w = rows[0].len();
        (
            rows.iter()
                .flat_map(|r| r.bytes().map(|b| u8::from(b == b'#')))
                .collect(),
            w,
            rows.len(),
        )
    }

    #[test]
    fn a_square_with_a_hole() {
        let (m, w, h) = grid(&["#####", "#...#", "#.#.#", "#...#", "#####"]);
        let polys = polygonize(&m, w, h, |v| v == 1);
        assert_eq!(polys.len(), 2, "ring and island: {polys:?}");
        let ring = &polys[0];
        assert_eq!(ring.exterior, vec![(0, 0), (0, 5), (5, 5), (5, 0), (0, 0)]);
        assert_eq!(ring.holes.len(), 1);
        assert_eq!(ring.holes[0].len(), 5, "hole is a square: {:?}", ring.holes[0]);
        assert_eq!(area(ring), 16);
        assert_eq!(ring.pixels, 16);
        assert_eq!(area(&polys[1]), 1);
    }

    #[test]
    fn diagonal_neighbours_are_separate_regions() {
        let (m, w, h) = grid(&["#.", ".#"]);
        let polys = polygonize(&m, w, h, |v| v == 1);
        assert_eq!(polys.len(), 2);
        for p in &polys {
            assert_eq!((area(p), p.exterior.len(), p.holes.len()), (1, 5, 0), "{p:?}");
        }
    }

    #[test]
    fn areas_add_up_on_a_noisy_mask() {
        // A pseudo-random mask: every region's rings enclose exactly its pixels.
        let (w, h) = (37, 23);
        let mut s = 12345u64;
        let m: Vec<u8> = (0..w * h)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                u8::from((s >> 40) % 3 != 0)
            })
            .collect();
        let polys = polygonize(&m, w, h, |v| v == 1);
        let total: i64 = polys.iter().map(area).sum();
        assert_eq!(total, m.iter().filter(|&&v| v == 1).count() as i64);
        for p in &polys {
            assert_eq!(area(p), p.pixels as i64, "{p:?}");
            assert!(!p.exterior.is_empty());
        }
    }

    #[test]
    fn geojson_is_wgs84_and_counter_clockwise() {
        let (m, w, h) = grid(&["##", "##"]);
        let polys = polygonize(&m, w, h, |v| v == 1);
        let g = Grid {
            epsg: 32629,
            transform: [500_000.0, 10.0, 0.0, 4_000_000.0, 0.0, -10.0],
            width: w,
            height: h,
        };
        let fc = to_geojson(&polys, &g, &json!({ "class": "flood" })).expect("geojson");
        let f = &fc["features"][0];
        assert_eq!(f["properties"]["area_m2"], 400.0);
        assert_eq!(f["properties"]["class"], "flood");
        let ring: Vec<[f64; 2]> = serde_json::from_value(f["geometry"]["coordinates"][0].clone()).expect("ring");
        // UTM 29N, easting 500 km is the central meridian -9°.
        assert!(
            (ring[0][0] + 9.0).abs() < 0.01 && (ring[0][1] - 36.14).abs() < 0.01,
            "{ring:?}"
        );
        let shoelace: f64 = ring.windows(2).map(|p| p[0][0] * p[1][1] - p[1][0] * p[0][1]).sum();
        assert!(shoelace > 0.0, "exterior must be counter-clockwise");
    }
}

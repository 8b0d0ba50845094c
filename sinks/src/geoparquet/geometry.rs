//! Chip footprints: reading the WKB polygons of the chip batches, re-encoding them as GeoArrow
//! native polygons, and the convex hull of a file's footprints (its STAC geometry).

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{Float64Builder, ListBuilder, StructBuilder};
use arrow_array::{Array, ArrayRef, BinaryArray};
use arrow_schema::{DataType, Field, Fields};

use crate::{Error, Result};

/// A polygon: its rings (exterior first), each closed, as `(x, y)` = (longitude, latitude).
pub type Rings = Vec<Vec<(f64, f64)>>;

fn wkb_err(row: usize, reason: &str) -> Error {
    Error::Column {
        sink: "geoparquet",
        column: terrastream_ingest::schema::GEOMETRY.into(),
        reason: format!("row {row}: {reason}"),
    }
}

/// Parses one WKB (ISO or OGC, either byte order) 2-D polygon; `row` names it in errors.
pub fn parse_wkb_polygon(wkb: &[u8], row: usize) -> Result<Rings> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8]> {
        let s = wkb.get(at..at + n).ok_or_else(|| wkb_err(row, "WKB truncated"))?;
        at += n;
        Ok(s)
    };
    let little = match take(1)?[0] {
        0 => false,
        1 => true,
        b => return Err(wkb_err(row, &format!("WKB byte order {b}"))),
    };
    let word = |b: &[u8]| -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        if little { u32::from_le_bytes(a) } else { u32::from_be_bytes(a) }
    };
    let float = |b: &[u8]| -> f64 {
        let a = [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]];
        if little { f64::from_le_bytes(a) } else { f64::from_be_bytes(a) }
    };
    let kind = word(take(4)?);
    if kind != 3 {
        return Err(wkb_err(row, &format!("WKB geometry type {kind}: only 2-D Polygon (3) is supported")));
    }
    let nrings = word(take(4)?) as usize;
    let mut rings = Vec::with_capacity(nrings.min(16));
    for _ in 0..nrings {
        let npoints = word(take(4)?) as usize;
        if npoints > wkb.len() / 16 {
            return Err(wkb_err(row, "WKB ring longer than the geometry"));
        }
        let mut ring = Vec::with_capacity(npoints);
        for _ in 0..npoints {
            let p = take(16)?;
            ring.push((float(&p[..8]), float(&p[8..])));
        }
        rings.push(ring);
    }
    Ok(rings)
}

/// Every polygon of WKB column `wkb`.
pub fn parse_column(wkb: &BinaryArray) -> Result<Vec<Option<Rings>>> {
    (0..wkb.len())
        .map(|i| if wkb.is_null(i) { Ok(None) } else { parse_wkb_polygon(wkb.value(i), i).map(Some) })
        .collect()
}

/// GeoArrow extension name of native polygons.
pub const GEOARROW_POLYGON: &str = "geoarrow.polygon";

fn coord_fields() -> Fields {
    Fields::from(vec![Field::new("x", DataType::Float64, false), Field::new("y", DataType::Float64, false)])
}

/// The GeoArrow polygon field `name`: `List<rings: List<vertices: Struct<x, y>>>`, tagged
/// with the GeoArrow extension type and `crs` (PROJJSON).
pub fn geoarrow_field(name: &str, nullable: bool, crs: &serde_json::Value) -> Field {
    let vertices = Field::new("vertices", DataType::Struct(coord_fields()), false);
    let rings = Field::new("rings", DataType::List(Arc::new(vertices)), false);
    let metadata = HashMap::from([
        ("ARROW:extension:name".to_string(), GEOARROW_POLYGON.to_string()),
        ("ARROW:extension:metadata".to_string(), serde_json::json!({"crs": crs}).to_string()),
    ]);
    Field::new(name, DataType::List(Arc::new(rings)), nullable).with_metadata(metadata)
}

/// Builds the GeoArrow polygon column of `polygons` (type of [`geoarrow_field`], minus the
/// extension metadata, which lives on the field).
pub fn geoarrow_column(polygons: &[Option<Rings>], field: &Field) -> Result<ArrayRef> {
    let DataType::List(rings_field) = field.data_type() else {
        return Err(Error::Column { sink: "geoparquet", column: field.name().clone(), reason: "not a list".into() });
    };
    let DataType::List(vertex_field) = rings_field.data_type() else {
        return Err(Error::Column {
            sink: "geoparquet",
            column: field.name().clone(),
            reason: "rings not a list".into(),
        });
    };
    let coords =
        StructBuilder::new(coord_fields(), vec![Box::new(Float64Builder::new()), Box::new(Float64Builder::new())]);
    let rings = ListBuilder::new(coords).with_field(Arc::clone(vertex_field));
    let mut polys = ListBuilder::new(rings).with_field(Arc::clone(rings_field));
    for polygon in polygons {
        match polygon {
            None => polys.append(false),
            Some(rs) => {
                for ring in rs {
                    let vertices = polys.values().values();
                    for &(x, y) in ring {
                        for (k, v) in [(0, x), (1, y)] {
                            if let Some(b) = vertices.field_builder::<Float64Builder>(k) {
                                b.append_value(v);
                            }
                        }
                        vertices.append(true);
                    }
                    polys.values().append(true);
                }
                polys.append(true);
            }
        }
    }
    Ok(Arc::new(polys.finish()))
}

/// The convex hull of `points` as a closed counter-clockwise ring (Andrew's monotone
/// chain); `None` for fewer than three distinct, non-collinear points.
pub fn convex_hull(points: &[(f64, f64)]) -> Option<Vec<(f64, f64)>> {
    let mut p: Vec<(f64, f64)> = points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
    p.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    p.dedup();
    if p.len() < 3 {
        return None;
    }
    let cross = |o: (f64, f64), a: (f64, f64), b: (f64, f64)| (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0);
    let mut hull: Vec<(f64, f64)> = Vec::with_capacity(2 * p.len());
    for pass in 0..2 {
        let start = hull.len();
        let iter: Box<dyn Iterator<Item = &(f64, f64)>> =
            if pass == 0 { Box::new(p.iter()) } else { Box::new(p.iter().rev()) };
        for &q in iter {
            while hull.len() >= start + 2 && cross(hull[hull.len() - 2], hull[hull.len() - 1], q) <= 0.0 {
                hull.pop();
            }
            hull.push(q);
        }
        hull.pop();
    }
    if hull.len() < 3 {
        return None;
    }
    hull.push(hull[0]);
    Some(hull)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Float64Array, ListArray, StructArray};

    fn wkb(ring: &[(f64, f64)], little: bool) -> Vec<u8> {
        let u = |v: u32| if little { v.to_le_bytes() } else { v.to_be_bytes() };
        let f = |v: f64| if little { v.to_le_bytes() } else { v.to_be_bytes() };
        let mut b = vec![u8::from(little)];
        b.extend(u(3));
        b.extend(u(1));
        b.extend(u(ring.len() as u32));
        for &(x, y) in ring {
            b.extend(f(x));
            b.extend(f(y));
        }
        b
    }

    #[test]
    fn wkb_polygons_in_both_byte_orders() {
        let ring = [(0.0, 0.0), (2.0, 0.0), (2.0, 1.0), (0.0, 0.0)];
        assert_eq!(parse_wkb_polygon(&wkb(&ring, true), 0).expect("le"), vec![ring.to_vec()]);
        assert_eq!(parse_wkb_polygon(&wkb(&ring, false), 0).expect("be"), vec![ring.to_vec()]);
        let short = &wkb(&ring, true)[..30];
        assert!(parse_wkb_polygon(short, 7).expect_err("truncated").to_string().contains("row 7"));
        let mut point = wkb(&ring, true);
        point[1] = 1;
        assert!(parse_wkb_polygon(&point, 0).expect_err("point").to_string().contains("type 1"));
    }

    #[test]
    fn geoarrow_column_holds_the_same_coordinates() {
        let a = vec![(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 0.0)];
        let b = vec![(5.0, 5.0), (6.0, 5.0), (6.0, 7.0), (5.0, 5.0)];
        let polys = vec![Some(vec![a.clone()]), None, Some(vec![b.clone()])];
        let field = geoarrow_field("geometry", true, &crate::crs::epsg_4326());
        let col = geoarrow_column(&polys, &field).expect("column");
        assert_eq!(col.data_type(), field.data_type());
        let list = col.as_any().downcast_ref::<ListArray>().expect("list");
        assert!(list.is_null(1));
        let rings = list.value(2);
        let rings = rings.as_any().downcast_ref::<ListArray>().expect("rings");
        let v = rings.value(0);
        let v = v.as_any().downcast_ref::<StructArray>().expect("vertices");
        let y = v.column(1).as_any().downcast_ref::<Float64Array>().expect("y");
        assert_eq!(y.values().to_vec(), b.iter().map(|p| p.1).collect::<Vec<_>>());
    }

    #[test]
    fn hull_of_overlapping_squares() {
        let pts = [(0.0, 0.0), (2.0, 0.0), (2.0, 2.0), (0.0, 2.0), (1.0, 1.0), (3.0, 1.0), (1.0, 0.5)];
        let hull = convex_hull(&pts).expect("hull");
        assert_eq!(hull, vec![(0.0, 0.0), (2.0, 0.0), (3.0, 1.0), (2.0, 2.0), (0.0, 2.0), (0.0, 0.0)]);
        assert!(convex_hull(&[(0.0, 0.0), (1.0, 1.0), (2.0, 2.0)]).is_none());
    }
}

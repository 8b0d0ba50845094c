//! Labelled examples: a GeoJSON FeatureCollection of points or polygons (WGS 84) with a label
//! property; features with `"negative": true` are examples of "none of the labels".

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// A polygon ring as `(lon, lat)` vertices in degrees.
pub type Ring = Vec<(f64, f64)>;

/// The geometry of an example.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// A point, `(lon, lat)` in degrees.
    Point((f64, f64)),
    /// Polygons, each an exterior ring followed by its holes.
    Polygons(Vec<Vec<Ring>>),
}

/// One labelled feature.
#[derive(Debug, Clone)]
pub struct Example {
    /// How errors name it: `feature 3 (id "a")` of the file.
    pub name: String,
    /// The label; `None` for negative examples.
    pub label: Option<String>,
    /// Where.
    pub shape: Shape,
}

/// Reads the examples of `path`, labels from property `label_key`.
///
/// Errors name the file and the feature: an empty file or collection, a feature without the
/// label property (unless negative), geometry other than (Multi)Point/(Multi)Polygon.
pub fn read(path: &Path, label_key: &str) -> Result<Vec<Example>> {
    let ctx = || format!("examples {}", path.display());
    let text = std::fs::read_to_string(path).with_context(ctx)?;
    if text.trim().is_empty() {
        bail!("examples {}: the file is empty", path.display());
    }
    let value: Value = serde_json::from_str(&text).with_context(ctx)?;
    parse(&value, label_key).with_context(ctx)
}

/// Parses a FeatureCollection (or a single Feature).
pub fn parse(value: &Value, label_key: &str) -> Result<Vec<Example>> {
    let features: Vec<&Value> = match value.get("type").and_then(Value::as_str) {
        Some("FeatureCollection") => value
            .get("features")
            .and_then(Value::as_array)
            .context("FeatureCollection without a `features` array")?
            .iter()
            .collect(),
        Some("Feature") => vec![value],
        other => bail!("expected a GeoJSON FeatureCollection, got type {other:?}"),
    };
    if features.is_empty() {
        bail!("the FeatureCollection has no features");
    }
    let mut out = Vec::new();
    for (i, f) in features.iter().enumerate() {
        let name = match f.get("id") {
            Some(Value::String(s)) => format!("feature {i} (id {s:?})"),
            Some(Value::Number(n)) => format!("feature {i} (id {n})"),
            _ => format!("feature {i}"),
        };
        let props = f.get("properties").cloned().unwrap_or(Value::Null);
        let negative = props.get("negative").and_then(Value::as_bool).unwrap_or(false);
        let label = match props.get(label_key) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ if negative => None,
            Some(other) => bail!("{name}: property {label_key:?} is {other}, not a label"),
            None => {
                let keys: Vec<&String> = props.as_object().map(|o| o.keys().collect()).unwrap_or_default();
                bail!("{name}: no property {label_key:?} (its properties: {keys:?}); choose the label property with --label-property")
            }
        };
        let geometry = f.get("geometry").filter(|g| !g.is_null()).with_context(|| format!("{name}: no geometry"))?;
        for shape in shapes(geometry).with_context(|| name.clone())? {
            out.push(Example { name: name.clone(), label: label.clone(), shape });
        }
    }
    Ok(out)
}

fn shapes(g: &Value) -> Result<Vec<Shape>> {
    let coords = g.get("coordinates");
    let kind = g.get("type").and_then(Value::as_str).unwrap_or("");
    let need = || coords.with_context(|| format!("{kind} without coordinates"));
    Ok(match kind {
        "Point" => vec![Shape::Point(position(need()?)?)],
        "MultiPoint" => array(need()?)?.iter().map(|p| position(p).map(Shape::Point)).collect::<Result<_>>()?,
        "Polygon" => vec![Shape::Polygons(vec![polygon(need()?)?])],
        "MultiPolygon" => vec![Shape::Polygons(array(need()?)?.iter().map(polygon).collect::<Result<_>>()?)],
        other => bail!("geometry type {other:?}: examples are Points or Polygons"),
    })
}

fn array(v: &Value) -> Result<&Vec<Value>> {
    v.as_array().with_context(|| format!("expected an array of coordinates, got {v}"))
}

fn position(v: &Value) -> Result<(f64, f64)> {
    let a = array(v)?;
    match (a.first().and_then(Value::as_f64), a.get(1).and_then(Value::as_f64)) {
        (Some(lon), Some(lat)) if (-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat) => Ok((lon, lat)),
        _ => bail!("position {v} is not [lon, lat] in degrees"),
    }
}

fn polygon(v: &Value) -> Result<Vec<Ring>> {
    let rings: Vec<Ring> = array(v)?.iter().map(|r| array(r)?.iter().map(position).collect()).collect::<Result<_>>()?;
    if rings.first().is_none_or(|r| r.len() < 4) {
        bail!("a polygon needs an exterior ring of at least 4 positions");
    }
    Ok(rings)
}

/// Whether `p` lies inside `ring` (even-odd rule).
pub fn in_ring(ring: &[(f64, f64)], p: (f64, f64)) -> bool {
    let mut inside = false;
    let mut j = ring.len().wrapping_sub(1);
    for i in 0..ring.len() {
        let (xi, yi) = ring[i];
        let (xj, yj) = ring[j];
        if (yi > p.1) != (yj > p.1) && p.0 < (xj - xi) * (p.1 - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// Whether `p` lies inside a polygon given as exterior ring + holes.
pub fn in_polygon(rings: &[Ring], p: (f64, f64)) -> bool {
    rings.first().is_some_and(|outer| in_ring(outer, p)) && !rings[1..].iter().any(|hole| in_ring(hole, p))
}

/// The vertex mean of a polygon's exterior ring (its closing vertex counted once).
pub fn ring_centre(ring: &[(f64, f64)]) -> (f64, f64) {
    let open = if ring.len() > 1 && ring.first() == ring.last() { &ring[..ring.len() - 1] } else { ring };
    let n = open.len().max(1) as f64;
    (open.iter().map(|p| p.0).sum::<f64>() / n, open.iter().map(|p| p.1).sum::<f64>() / n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn points_polygons_and_negatives() {
        let fc = json!({"type": "FeatureCollection", "features": [
            {"type": "Feature", "id": "a", "properties": {"label": "water"}, "geometry": {"type": "Point", "coordinates": [1.0, 2.0]}},
            {"type": "Feature", "properties": {"negative": true}, "geometry": {"type": "Polygon", "coordinates": [[[0,0],[1,0],[1,1],[0,1],[0,0]]]}},
        ]});
        let ex = parse(&fc, "label").expect("parse");
        assert_eq!(ex.len(), 2);
        assert_eq!(ex[0].label.as_deref(), Some("water"));
        assert_eq!(ex[0].shape, Shape::Point((1.0, 2.0)));
        assert!(ex[1].label.is_none());
        let Shape::Polygons(p) = &ex[1].shape else { panic!("polygon") };
        assert!(in_polygon(&p[0], (0.5, 0.5)) && !in_polygon(&p[0], (1.5, 0.5)));
    }

    #[test]
    fn errors_name_the_feature() {
        let fc = json!({"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {"label": "x"}, "geometry": {"type": "Point", "coordinates": [1.0, 2.0]}},
            {"type": "Feature", "id": 7, "properties": {"class": "x"}, "geometry": {"type": "Point", "coordinates": [1.0, 2.0]}},
        ]});
        let e = format!("{:#}", parse(&fc, "label").expect_err("missing label"));
        assert!(e.contains("feature 1 (id 7)") && e.contains("\"label\"") && e.contains("class"), "{e}");
        let e = format!("{:#}", parse(&json!({"type": "FeatureCollection", "features": []}), "label").expect_err("empty"));
        assert!(e.contains("no features"), "{e}");
        let line = json!({"type": "Feature", "properties": {"label": "x"}, "geometry": {"type": "LineString", "coordinates": [[0,0],[1,1]]}});
        let e = format!("{:#}", parse(&line, "label").expect_err("line"));
        assert!(e.contains("feature 0") && e.contains("LineString"), "{e}");
        let bad = json!({"type": "Feature", "properties": {"label": "x"}, "geometry": {"type": "Point", "coordinates": [500.0, 2.0]}});
        assert!(format!("{:#}", parse(&bad, "label").expect_err("range")).contains("degrees"));
    }
}

//! Reading `POST /events` bodies: the JSON's shape, the AOI's GeoJSON structure and its area are
//! checked here, before anything is stored, and each failure names the field and its status:
//! 400 for a body or GeoJSON that is malformed, 422 for a well-formed request the service will
//! not map (AOI larger than the limit, event time in the future, what
//! [`validate_request`](crate::flood::event::validate_request) refuses).

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::flood::event::{EventConfig, EventRequest, validate_request};

/// Mean Earth radius (IUGG), km: the sphere AOI areas are measured on.
const EARTH_RADIUS_KM: f64 = 6371.0088;

/// Longest event name, characters.
const MAX_NAME_CHARS: usize = 200;

/// A refused request: status, the field at fault and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    /// 400 or 422.
    pub status: StatusCode,
    /// The field, e.g. `aoi.coordinates[0][3]`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        status: StatusCode::BAD_REQUEST,
        field: field.into(),
        message: message.into(),
    }
}

fn unprocessable(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        field: field.into(),
        message: message.into(),
    }
}

/// Parses and checks a `POST /events` body (`{"aoi": geometry or Feature, "event_time": RFC 3339,
/// "name": optional}`).
pub fn parse_request(body: &[u8], cfg: &EventConfig, now: DateTime<Utc>) -> Result<EventRequest, Invalid> {
    let v: Value = serde_json::from_slice(body).map_err(|e| bad("body", format!("not JSON: {e}")))?;
    let Value::Object(obj) = v else {
        return Err(bad("body", "expected a JSON object"));
    };
    if let Some(k) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "aoi" | "event_time" | "name"))
    {
        // An empty key names no field: the body is at fault then (found by fuzzing).
        let field = if k.is_empty() { "body" } else { k.as_str() };
        return Err(bad(field, format!("unknown field {k:?} (expected aoi, event_time, name)")));
    }
    let name = match obj.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.chars().count() <= MAX_NAME_CHARS => Some(s.clone()),
        Some(Value::String(_)) => return Err(bad("name", format!("longer than {MAX_NAME_CHARS} characters"))),
        Some(_) => return Err(bad("name", "expected a string")),
    };
    let event_time = match obj.get("event_time") {
        None => return Err(bad("event_time", "missing")),
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map_err(|e| bad("event_time", format!("{s:?} is not an RFC 3339 time: {e}")))?
            .with_timezone(&Utc),
        Some(_) => return Err(bad("event_time", "expected an RFC 3339 string")),
    };
    if event_time > now + chrono::Duration::days(1) {
        return Err(unprocessable("event_time", format!("{event_time} is in the future")));
    }
    let mut aoi = obj.get("aoi").cloned().ok_or_else(|| bad("aoi", "missing"))?;
    let mut field = "aoi".to_string();
    if aoi.get("type").and_then(Value::as_str) == Some("Feature") {
        aoi = aoi.get("geometry").cloned().unwrap_or(Value::Null);
        field = "aoi.geometry".into();
    }
    let polygons = polygons(&aoi, &field)?;
    let km2: f64 = polygons.iter().map(|p| polygon_area_km2(p)).sum();
    if km2 > cfg.max_area_km2 {
        return Err(unprocessable(
            field,
            format!(
                "the AOI covers {km2:.1} km², more than the limit of {} km²",
                cfg.max_area_km2
            ),
        ));
    }
    let req = EventRequest { name, aoi, event_time };
    validate_request(cfg, &req).map_err(|e| unprocessable("request", format!("{e:#}")))?;
    Ok(req)
}

/// A polygon: rings of `[lon, lat]` positions, the outer ring first.
type Polygon = Vec<Vec<[f64; 2]>>;

/// The polygons of a Polygon or MultiPolygon geometry, with its structure checked: closed rings
/// of at least four positions, longitudes in [-180, 180], latitudes in [-90, 90].
fn polygons(g: &Value, field: &str) -> Result<Vec<Polygon>, Invalid> {
    let Some(obj) = g.as_object() else {
        return Err(bad(field, "expected a GeoJSON geometry object"));
    };
    let kind = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("{field}.type"), "missing"))?;
    let cfield = format!("{field}.coordinates");
    let coords = obj.get("coordinates").ok_or_else(|| bad(&cfield, "missing"))?;
    let field_type = format!("{field}.type");
    let field = cfield;
    match kind {
        "Polygon" => Ok(vec![polygon(coords, &field)?]),
        "MultiPolygon" => {
            let parts = coords
                .as_array()
                .ok_or_else(|| bad(&field, "expected an array of polygons"))?;
            if parts.is_empty() {
                return Err(bad(&field, "no polygon"));
            }
            parts
                .iter()
                .enumerate()
                .map(|(i, p)| polygon(p, &format!("{field}[{i}]")))
                .collect()
        }
        other => Err(bad(field_type, format!("{other:?}: expected Polygon or MultiPolygon"))),
    }
}

fn polygon(v: &Value, field: &str) -> Result<Polygon, Invalid> {
    let rings = v
        .as_array()
        .ok_or_else(|| bad(field, "expected an array of linear rings"))?;
    if rings.is_empty() {
        return Err(bad(field, "a polygon needs an outer ring"));
    }
    let mut out = Vec::with_capacity(rings.len());
    for (r, ring) in rings.iter().enumerate() {
        let rf = format!("{field}[{r}]");
        let pts = ring
            .as_array()
            .ok_or_else(|| bad(&rf, "expected an array of positions"))?;
        let mut ring_out = Vec::with_capacity(pts.len());
        for (i, p) in pts.iter().enumerate() {
            let pf = format!("{rf}[{i}]");
            let xy = p.as_array().ok_or_else(|| bad(&pf, "expected a [lon, lat] position"))?;
            let (Some(lon), Some(lat)) = (xy.first().and_then(Value::as_f64), xy.get(1).and_then(Value::as_f64)) else {
                return Err(bad(&pf, "expected a [lon, lat] position of numbers"));
            };
            if !(-180.0..=180.0).contains(&lon) || !(-90.0..=90.0).contains(&lat) {
                return Err(bad(&pf, format!("[{lon}, {lat}] is outside WGS 84 longitude/latitude")));
            }
            ring_out.push([lon, lat]);
        }
        if ring_out.len() < 4 {
            return Err(bad(
                &rf,
                format!("a linear ring needs at least 4 positions, got {}", ring_out.len()),
            ));
        }
        if ring_out.first() != ring_out.last() {
            return Err(bad(&rf, "the ring is not closed (first and last positions differ)"));
        }
        out.push(ring_out);
    }
    Ok(out)
}

/// Area of a polygon on the sphere, km² (outer ring minus holes), by the line integral of
/// Chamberlain & Duquette (2007): good to a fraction of a percent against the ellipsoid, which
/// is plenty for a size limit.
fn polygon_area_km2(p: &Polygon) -> f64 {
    let ring = |r: &[[f64; 2]]| -> f64 {
        let s: f64 = r
            .windows(2)
            .map(|w| {
                let (l1, p1) = (w[0][0].to_radians(), w[0][1].to_radians());
                let (l2, p2) = (w[1][0].to_radians(), w[1][1].to_radians());
                (l2 - l1) * (2.0 + p1.sin() + p2.sin())
            })
            .sum();
        (s * EARTH_RADIUS_KM * EARTH_RADIUS_KM / 2.0).abs()
    };
    let outer = p.first().map_or(0.0, |r| ring(r));
    let holes: f64 = p.iter().skip(1).map(|r| ring(r)).sum();
    (outer - holes).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> EventConfig {
        EventConfig {
            max_area_km2: 1000.0,
            ..EventConfig::default()
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-06-01T00:00:00Z")
            .expect("t")
            .with_timezone(&Utc)
    }

    fn square(deg: f64) -> String {
        format!(r#"{{"type":"Polygon","coordinates":[[[0,0],[{deg},0],[{deg},{deg}],[0,{deg}],[0,0]]]}}"#)
    }

    fn refused(body: &str) -> Invalid {
        match parse_request(body.as_bytes(), &cfg(), now()) {
            Err(e) => e,
            Ok(r) => panic!("accepted {r:?}"),
        }
    }

    #[test]
    fn the_area_of_a_one_degree_square_at_the_equator() {
        // Independently: R² (λ2-λ1) (sin φ2 - sin φ1) for a lat/lon box on the sphere.
        let want = EARTH_RADIUS_KM.powi(2) * 1f64.to_radians() * 1f64.to_radians().sin();
        let p = vec![vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]];
        assert!(
            (polygon_area_km2(&p) - want).abs() < 1e-6 * want,
            "{} vs {want}",
            polygon_area_km2(&p)
        );
        let with_hole = vec![
            p[0].clone(),
            vec![[0.25, 0.25], [0.75, 0.25], [0.75, 0.75], [0.25, 0.75], [0.25, 0.25]],
        ];
        let hole =
            EARTH_RADIUS_KM.powi(2) * 0.5f64.to_radians() * (0.75f64.to_radians().sin() - 0.25f64.to_radians().sin());
        assert!((polygon_area_km2(&with_hole) - (want - hole)).abs() < 1e-6 * want);
    }

    #[test]
    fn malformed_bodies_and_geojson_are_400_naming_the_field() {
        let e = refused("{not json");
        assert_eq!((e.status, e.field.as_str()), (StatusCode::BAD_REQUEST, "body"));
        // An empty key (found by fuzzing) is the body's fault, and the message shows the key.
        let e = refused(r#"{"": 1}"#);
        assert_eq!((e.status, e.field.as_str()), (StatusCode::BAD_REQUEST, "body"), "{e:?}");
        assert!(e.message.contains("unknown field \"\""), "{e:?}");
        let e = refused(r#"{"aoj": 1}"#);
        assert_eq!(e.field, "aoj", "{e:?}");
        let e = refused(
            r#"{"aoi": {"type": "Polygon", "coordinates": [[[0,0],[1,0],[1,1]]]}, "event_time": "2024-05-01T00:00:00Z"}"#,
        );
        assert_eq!(
            (e.status, e.field.as_str()),
            (StatusCode::BAD_REQUEST, "aoi.coordinates[0]"),
            "{e:?}"
        );
        let e = refused(
            r#"{"aoi": {"type": "Polygon", "coordinates": [[[0,0],[1,0],["x",1],[0,0]]]}, "event_time": "2024-05-01T00:00:00Z"}"#,
        );
        assert_eq!(e.field, "aoi.coordinates[0][2]");
        let e = refused(r#"{"aoi": {"type": "Point", "coordinates": [0,0]}, "event_time": "2024-05-01T00:00:00Z"}"#);
        assert_eq!(
            (e.status, e.field.as_str()),
            (StatusCode::BAD_REQUEST, "aoi.type"),
            "{e:?}"
        );
        let e = refused(&format!(r#"{{"aoi": {}, "event_time": "yesterday"}}"#, square(0.1)));
        assert_eq!((e.status, e.field.as_str()), (StatusCode::BAD_REQUEST, "event_time"));
        let e = refused(&format!(
            r#"{{"aoi": {}, "event_time": "2024-05-01T00:00:00Z", "colour": 1}}"#,
            square(0.1)
        ));
        assert_eq!(e.field, "colour");
        let e = refused(r#"{"event_time": "2024-05-01T00:00:00Z"}"#);
        assert_eq!(e.field, "aoi");
        let e = refused(
            r#"{"aoi": {"type":"Polygon","coordinates":[[[0,0],[200,0],[1,1],[0,0]]]}, "event_time": "2024-05-01T00:00:00Z"}"#,
        );
        assert_eq!(e.field, "aoi.coordinates[0][1]");
    }

    #[test]
    fn oversized_aois_and_future_events_are_422() {
        // A 1° square at the equator is over 12,000 km², over the 1,000 km² limit.
        let e = refused(&format!(
            r#"{{"aoi": {}, "event_time": "2024-05-01T00:00:00Z"}}"#,
            square(1.0)
        ));
        assert_eq!(
            (e.status, e.field.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "aoi"),
            "{e:?}"
        );
        let want = EARTH_RADIUS_KM.powi(2) * 1f64.to_radians() * 1f64.to_radians().sin();
        assert!(e.message.contains(&format!("{want:.1} km²")), "{}", e.message);
        let e = refused(&format!(
            r#"{{"aoi": {}, "event_time": "2024-07-01T00:00:00Z"}}"#,
            square(0.1)
        ));
        assert_eq!(
            (e.status, e.field.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "event_time")
        );
    }
}

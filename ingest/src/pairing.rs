//! Pairing Sentinel-2 scenes with a Sentinel-1 acquisition, for runs that feed both to the
//! model.
//!
//! A Sentinel-1 item matches a Sentinel-2 item when its bbox intersects the Sentinel-2 item's
//! bbox and it was acquired at most `max_days` before or after it; of those, the nearest in time
//! is taken (ties: the larger bbox overlap, then the smaller id). The orbit (ascending or
//! descending, relative orbit) does not matter: the warp puts any acquisition onto the
//! Sentinel-2 grid. Items without a datetime or bbox cannot be checked and never match.

use chrono::{DateTime, Utc};

use crate::Result;
use crate::item::SceneItem;

/// A Sentinel-2 scene and the Sentinel-1 acquisition read with it, if one matched.
#[derive(Debug, Clone)]
pub struct ScenePair {
    /// The Sentinel-2 item: it defines the chip grid.
    pub s2: SceneItem,
    /// The matched Sentinel-1 item, warped onto the Sentinel-2 grid.
    pub s1: Option<SceneItem>,
}

impl From<SceneItem> for ScenePair {
    /// A scene read alone.
    fn from(s2: SceneItem) -> Self {
        Self { s2, s1: None }
    }
}

/// The Sentinel-1 item of `candidates` that matches `s2` (see the module docs) within
/// `max_days` days; `None` when none does. Fails only when `s2` has no datetime.
pub fn nearest_s1<'a>(s2: &SceneItem, candidates: &'a [SceneItem], max_days: f64) -> Result<Option<&'a SceneItem>> {
    let t2 = s2.datetime()?;
    let Some(b2) = bbox(s2) else { return Ok(None) };
    let max_seconds = max_days * 86_400.0;
    let mut best: Option<(f64, f64, &SceneItem)> = None;
    for c in candidates {
        let (Ok(t1), Some(b1)) = (c.datetime(), bbox(c)) else { continue };
        let overlap = overlap_area(b1, b2);
        let dt = seconds_between(t1, t2);
        if overlap.is_none() || dt > max_seconds {
            continue;
        }
        let overlap = overlap.unwrap_or(0.0);
        let better = match best {
            None => true,
            Some((bdt, bov, bitem)) => {
                dt < bdt || (dt == bdt && (overlap > bov || (overlap == bov && c.id() < bitem.id())))
            }
        };
        if better {
            best = Some((dt, overlap, c));
        }
    }
    Ok(best.map(|(_, _, item)| item))
}

/// Pairs every Sentinel-2 item with its nearest Sentinel-1 item in `s1` ([`nearest_s1`]).
pub fn pair_scenes(s2: Vec<SceneItem>, s1: &[SceneItem], max_days: f64) -> Result<Vec<ScenePair>> {
    s2.into_iter()
        .map(|item| {
            let s1 = nearest_s1(&item, s1, max_days)?.cloned();
            Ok(ScenePair { s2: item, s1 })
        })
        .collect()
}

fn seconds_between(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (a - b).num_milliseconds().unsigned_abs() as f64 / 1000.0
}

fn bbox(item: &SceneItem) -> Option<[f64; 4]> {
    item.item.bbox.map(|b| [b.xmin(), b.ymin(), b.xmax(), b.ymax()])
}

/// The longitude intervals of a bbox: two for one that crosses the antimeridian (west > east).
fn lon_intervals(b: [f64; 4]) -> Vec<(f64, f64)> {
    if b[0] > b[2] { vec![(b[0], 180.0), (-180.0, b[2])] } else { vec![(b[0], b[2])] }
}

/// The area in square degrees of the intersection of two bboxes (`[w, s, e, n]`), `None` when
/// they do not intersect; bboxes that only touch intersect with area 0.
fn overlap_area(a: [f64; 4], b: [f64; 4]) -> Option<f64> {
    let lat = a[3].min(b[3]) - a[1].max(b[1]);
    if lat < 0.0 {
        return None;
    }
    let mut lon: Option<f64> = None;
    for (aw, ae) in lon_intervals(a) {
        for (bw, be) in lon_intervals(b) {
            let d = ae.min(be) - aw.max(bw);
            if d >= 0.0 {
                lon = Some(lon.unwrap_or(0.0) + d);
            }
        }
    }
    lon.map(|l| l * lat)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, datetime: Option<&str>, bbox: Option<[f64; 4]>) -> SceneItem {
        let mut value = serde_json::json!({
            "type": "Feature", "stac_version": "1.0.0", "id": id, "geometry": null,
            "properties": {"datetime": datetime}, "links": [], "assets": {},
        });
        if let Some(b) = bbox {
            value["bbox"] = serde_json::json!(b);
        }
        SceneItem { item: serde_json::from_value(value).expect("item"), base_dir: Default::default() }
    }

    const TILE: [f64; 4] = [-11.0, 26.0, -10.0, 27.0];

    #[test]
    fn nearest_in_time_among_intersecting() {
        let s2 = item("S2", Some("2020-02-19T11:00:00Z"), Some(TILE));
        let s1 = vec![
            item("far-away", Some("2020-02-19T11:00:00Z"), Some([10.0, 26.0, 11.0, 27.0])),
            item("three-days-before", Some("2020-02-16T18:00:00Z"), Some([-10.5, 25.5, -9.0, 26.5])),
            item("one-day-after", Some("2020-02-20T06:00:00Z"), Some([-12.0, 26.8, -10.8, 28.0])),
            item("too-late", Some("2020-02-27T11:00:00Z"), Some(TILE)),
        ];
        let got = nearest_s1(&s2, &s1, 6.0).expect("pair").map(SceneItem::id);
        assert_eq!(got, Some("one-day-after"));
        // Inside a one-day window nothing is left: 19 h is the nearest, then 2.7 days.
        assert_eq!(nearest_s1(&s2, &s1, 0.5).expect("pair").map(SceneItem::id), None);
        assert_eq!(nearest_s1(&s2, &s1[..3], 0.8).expect("pair").map(SceneItem::id), Some("one-day-after"));
        assert_eq!(nearest_s1(&s2, &s1[..2], 6.0).expect("pair").map(SceneItem::id), Some("three-days-before"));
        // The window is inclusive: exactly eight days.
        assert_eq!(nearest_s1(&s2, &s1[3..], 8.0).expect("pair").map(SceneItem::id), Some("too-late"));
        assert_eq!(nearest_s1(&s2, &s1[3..], 7.99).expect("pair").map(SceneItem::id), None);
    }

    #[test]
    fn ties_go_to_the_larger_overlap_then_the_smaller_id() {
        let s2 = item("S2", Some("2020-02-19T11:00:00Z"), Some(TILE));
        let at = Some("2020-02-18T11:00:00Z");
        let s1 = vec![
            item("b-corner", at, Some([-10.2, 26.8, -9.0, 28.0])),
            item("c-most", at, Some([-11.5, 25.5, -10.1, 27.5])),
            item("a-most", at, Some([-11.5, 25.5, -10.1, 27.5])),
        ];
        assert_eq!(nearest_s1(&s2, &s1, 6.0).expect("pair").map(SceneItem::id), Some("a-most"));
        assert_eq!(nearest_s1(&s2, &s1[..2], 6.0).expect("pair").map(SceneItem::id), Some("c-most"));
    }

    #[test]
    fn antimeridian_bboxes_and_items_that_cannot_be_checked() {
        let s2 = item("fiji", Some("2021-06-01T00:00:00Z"), Some([178.5, -18.5, 179.5, -17.5]));
        let across = item("across", Some("2021-06-02T00:00:00Z"), Some([179.0, -19.0, -179.0, -17.0]));
        let west = item("west", Some("2021-06-02T00:00:00Z"), Some([-179.9, -19.0, -179.0, -17.0]));
        assert_eq!(nearest_s1(&s2, &[west.clone(), across], 6.0).expect("pair").map(SceneItem::id), Some("across"));
        assert_eq!(nearest_s1(&s2, &[west], 6.0).expect("pair").map(SceneItem::id), None);
        let undated = item("undated", None, Some([178.5, -18.5, 179.5, -17.5]));
        let unboxed = item("unboxed", Some("2021-06-01T00:00:00Z"), None);
        assert_eq!(nearest_s1(&s2, &[undated.clone(), unboxed.clone()], 6.0).expect("pair").map(SceneItem::id), None);
        assert!(nearest_s1(&undated, &[unboxed], 6.0).is_err(), "an S2 item without a datetime is an error");
    }

    #[test]
    fn pairs_keep_the_sentinel_2_order() {
        let s2 = vec![
            item("S2-feb", Some("2020-02-19T11:00:00Z"), Some(TILE)),
            item("S2-mar", Some("2020-03-10T11:00:00Z"), Some(TILE)),
        ];
        let s1 = [item("S1-mar", Some("2020-03-12T18:00:00Z"), Some(TILE))];
        let pairs = pair_scenes(s2, &s1, 6.0).expect("pairs");
        let ids: Vec<_> = pairs.iter().map(|p| (p.s2.id(), p.s1.as_ref().map(SceneItem::id))).collect();
        assert_eq!(ids, [("S2-feb", None), ("S2-mar", Some("S1-mar"))]);
    }
}

//! The scenes of a flood event, found by STAC API search: the first Sentinel-1 pass after the
//! event (all its slices over the AOI), the most recent earlier pass of the same relative orbit
//! and orbit direction as the pre-event reference, and optionally the least cloudy Sentinel-2
//! scene after the event.

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use futures::StreamExt;
use serde_json::Value;
use terrastream_ingest::item::SceneItem;
use terrastream_ingest::stac_api::{SearchParams, StacClient};
use terrastream_ingest::store::RemoteOptions;

use super::aoi::Aoi;

/// Slices of one Sentinel-1 pass are acquired seconds apart; passes of one orbit days apart.
const SAME_PASS: Duration = Duration::minutes(30);

/// A search window `[start, end]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// First instant.
    pub start: DateTime<Utc>,
    /// Last instant.
    pub end: DateTime<Utc>,
}

impl Window {
    /// RFC 3339 interval, as STAC `datetime` takes it.
    pub fn interval(&self) -> String {
        format!(
            "{}/{}",
            self.start.to_rfc3339_opts(SecondsFormat::Secs, true),
            self.end.to_rfc3339_opts(SecondsFormat::Secs, true)
        )
    }
}

/// The scenes an event is mapped from.
#[derive(Debug, Clone)]
pub struct EventScenes {
    /// The post-event Sentinel-1 pass: one or more slices, oldest first.
    pub post: Vec<SceneItem>,
    /// The pre-event reference pass (same orbit); empty when none was found.
    pub reference: Vec<SceneItem>,
    /// The least cloudy post-event Sentinel-2 scene, when a collection was given and one found.
    pub s2: Option<SceneItem>,
    /// The post-event window searched.
    pub post_window: Window,
    /// The reference window searched.
    pub reference_window: Window,
}

/// Searches `stac` for the scenes of an event at `event_time` over `aoi`.
#[allow(clippy::too_many_arguments)]
pub async fn find(
    stac: &str,
    s1_collection: &str,
    s2_collection: Option<&str>,
    aoi: &Aoi,
    event_time: DateTime<Utc>,
    after_days: f64,
    reference_days: f64,
) -> Result<EventScenes> {
    use crate::time_span::days;
    let post_window = Window {
        start: event_time,
        end: event_time + days(after_days),
    };
    // The reference must be strictly before the event.
    let reference_window = Window {
        start: event_time - days(reference_days),
        end: event_time - Duration::milliseconds(1),
    };
    let client = StacClient::new(stac, RemoteOptions::default()).with_context(|| format!("stac {stac}"))?;
    let mut after = search(&client, stac, s1_collection, aoi, &post_window).await?;
    sort_by_time(&mut after);
    let Some(first) = after.first() else {
        bail!(
            "no Sentinel-1 scene of collection {s1_collection:?} at {stac} intersects the AOI (bbox {:?}) between \
             {} and {} (event time + after_days {after_days})",
            aoi.bbox(),
            post_window.start.to_rfc3339_opts(SecondsFormat::Secs, true),
            post_window.end.to_rfc3339_opts(SecondsFormat::Secs, true)
        )
    };
    let post = same_pass(first, &after);
    let mut before = search(&client, stac, s1_collection, aoi, &reference_window).await?;
    before.retain(|i| same_orbit(&post[0], i));
    sort_by_time(&mut before);
    let reference = match before.last() {
        Some(last) => same_pass(last, &before),
        None => Vec::new(),
    };
    let s2 = match s2_collection {
        Some(c) => {
            let mut items = search(&client, stac, c, aoi, &post_window).await?;
            sort_by_time(&mut items);
            // Least cloudy; the earliest among equals (closest to the event).
            items
                .into_iter()
                .min_by(|a, b| cloud_cover(a).total_cmp(&cloud_cover(b)))
        }
        None => None,
    };
    Ok(EventScenes {
        post,
        reference,
        s2,
        post_window,
        reference_window,
    })
}

async fn search(
    client: &StacClient,
    url: &str,
    collection: &str,
    aoi: &Aoi,
    window: &Window,
) -> Result<Vec<SceneItem>> {
    let params = SearchParams {
        collections: vec![collection.to_string()],
        intersects: Some(aoi.to_geojson()),
        datetime: Some(window.interval()),
        limit: Some(100),
        ..SearchParams::default()
    };
    let mut stream = Box::pin(client.search(&params, Some(1000)));
    let base = format!("{}/search", url.trim_end_matches('/'));
    let mut items = Vec::new();
    while let Some(item) = stream.next().await {
        let item = item.with_context(|| format!("searching {url} for {collection} in {}", window.interval()))?;
        let item = SceneItem::from_item(item, &base);
        // An item without a time cannot be placed before or after the event.
        if item.datetime().is_ok() {
            items.push(item);
        }
    }
    Ok(items)
}

fn sort_by_time(items: &mut [SceneItem]) {
    items.sort_by_key(|i| (i.datetime().ok(), i.id().to_string()));
}

fn property<'a>(item: &'a SceneItem, key: &str) -> Option<&'a Value> {
    item.item.properties.additional_fields.get(key)
}

/// Same relative orbit and orbit direction, for the properties both items have.
fn same_orbit(a: &SceneItem, b: &SceneItem) -> bool {
    ["sat:relative_orbit", "sat:orbit_state"]
        .iter()
        .all(|k| match (property(a, k), property(b, k)) {
            (Some(x), Some(y)) => x == y,
            _ => true,
        })
}

/// The slices of `anchor`'s pass among `items`: same orbit, acquired within [`SAME_PASS`].
fn same_pass(anchor: &SceneItem, items: &[SceneItem]) -> Vec<SceneItem> {
    let t = anchor.datetime().ok();
    items
        .iter()
        .filter(|i| same_orbit(anchor, i))
        .filter(|i| match (t, i.datetime().ok()) {
            (Some(a), Some(b)) => (a - b).abs() <= SAME_PASS,
            _ => false,
        })
        .cloned()
        .collect()
}

fn cloud_cover(item: &SceneItem) -> f64 {
    property(item, "eo:cloud_cover")
        .and_then(Value::as_f64)
        .unwrap_or(100.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(id: &str, time: &str, orbit: Option<u64>, state: &str) -> SceneItem {
        let mut i = stac::Item::new(id);
        i.properties.datetime = Some(time.parse().expect("time"));
        if let Some(o) = orbit {
            i.properties
                .additional_fields
                .insert("sat:relative_orbit".into(), json!(o));
        }
        i.properties
            .additional_fields
            .insert("sat:orbit_state".into(), json!(state));
        SceneItem::from_item(i, "/tmp/x.json")
    }

    #[test]
    fn passes_group_slices_of_one_orbit() {
        let a = item("a", "2024-05-01T06:00:00Z", Some(74), "ascending");
        let b = item("b", "2024-05-01T06:00:25Z", Some(74), "ascending");
        let c = item("c", "2024-05-01T17:00:00Z", Some(81), "descending");
        let d = item("d", "2024-05-07T06:00:00Z", Some(74), "ascending");
        let all = vec![a.clone(), b, c.clone(), d];
        let ids = |v: Vec<SceneItem>| v.iter().map(|i| i.id().to_string()).collect::<Vec<_>>();
        assert_eq!(ids(same_pass(&a, &all)), ["a", "b"]);
        assert_eq!(ids(same_pass(&c, &all)), ["c"]);
        assert!(!same_orbit(&a, &c));
        // Items without the property match any orbit.
        assert!(same_orbit(&a, &item("e", "2024-04-01T00:00:00Z", None, "ascending")));
        let w = Window {
            start: "2024-05-01T00:00:00Z".parse().expect("t"),
            end: "2024-05-13T00:00:00Z".parse().expect("t"),
        };
        assert_eq!(w.interval(), "2024-05-01T00:00:00Z/2024-05-13T00:00:00Z");
    }
}

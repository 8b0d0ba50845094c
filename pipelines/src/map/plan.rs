//! Planning: the run's scenes, found and filtered, grouped into work units (grid tile x period).
//!
//! A unit's id is `<tile>_<period>` (e.g. `MGRS-29RKH_2020-02`): the same on every machine and
//! every re-run, so the manifest and the output file names can key on it.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use futures::StreamExt;
use serde::Serialize;
use terrastream_ingest::bands::ModalityBands;
use terrastream_ingest::grid::ChipGrid;
use terrastream_ingest::item::SceneItem;
use terrastream_ingest::pairing::nearest_s1;
use terrastream_ingest::stac_api::{SearchParams, StacClient};

use super::config::{MapConfig, Period, S1SourceConfig, Selection};
use super::shard::fnv1a;

/// A closed or open time range (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    /// Inclusive start; `None` = open.
    pub start: Option<DateTime<Utc>>,
    /// Inclusive end; `None` = open.
    pub end: Option<DateTime<Utc>>,
}

impl DateRange {
    /// Parses `start/end` (RFC 3339 instants or `YYYY-MM-DD` dates, `..` or empty = open) or a
    /// single instant or date (that whole day).
    pub fn parse(s: &str) -> Result<Self> {
        let bound = |part: &str, end: bool| -> Result<Option<DateTime<Utc>>> {
            let part = part.trim();
            if part.is_empty() || part == ".." {
                return Ok(None);
            }
            if let Ok(t) = DateTime::parse_from_rfc3339(part) {
                return Ok(Some(t.with_timezone(&Utc)));
            }
            let d = NaiveDate::parse_from_str(part, "%Y-%m-%d")
                .map_err(|_| anyhow!("{part:?} is neither an RFC 3339 instant nor a YYYY-MM-DD date"))?;
            let t = if end {
                d.and_hms_micro_opt(23, 59, 59, 999_999)
            } else {
                d.and_hms_opt(0, 0, 0)
            };
            Ok(t.map(|t| t.and_utc()))
        };
        let range = match s.split_once('/') {
            Some((a, b)) => Self {
                start: bound(a, false)?,
                end: bound(b, true)?,
            },
            None if !s.contains('T') => Self {
                start: bound(s, false)?,
                end: bound(s, true)?,
            },
            None => {
                let t = bound(s, false)?;
                Self { start: t, end: t }
            }
        };
        if let (Some(a), Some(b)) = (range.start, range.end)
            && a > b
        {
            bail!("{s:?}: the start is after the end");
        }
        Ok(range)
    }

    /// True when `t` is inside.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start.is_none_or(|s| t >= s) && self.end.is_none_or(|e| t <= e)
    }

    /// The range as a STAC API `datetime` parameter.
    pub fn to_stac(&self) -> String {
        let f = |t: Option<DateTime<Utc>>| {
            t.map_or("..".to_string(), |t| {
                t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            })
        };
        format!("{}/{}", f(self.start), f(self.end))
    }
}

/// A scene in a plan, with what selection and estimates need.
#[derive(Debug, Clone)]
pub struct PlannedScene {
    /// The item.
    pub item: SceneItem,
    /// Acquisition time.
    pub datetime: DateTime<Utc>,
    /// `eo:cloud_cover` in percent, when the item has it.
    pub cloud_cover: Option<f64>,
    /// The item's `updated` property, when it has one: a changed item is a changed unit.
    pub updated: Option<String>,
    /// Chips of the scene's grid, from the item's `proj:shape` (exact after `--exact`).
    pub chips: Option<u64>,
    /// The Sentinel-1 item matched to the scene, when the run reads Sentinel-1 (`[source.s1]`)
    /// and one matched.
    pub s1: Option<SceneItem>,
}

/// One work unit: a grid tile in one period, and the scenes selected for it.
#[derive(Debug, Clone)]
pub struct WorkUnit {
    /// `<tile>_<period>`.
    pub id: String,
    /// Grid tile (`grid:code`, or the scene id for items without one).
    pub tile: String,
    /// Period key: `2020-02-19`, `2020-W08`, `2020-02`, `2020` or `all`.
    pub period: String,
    /// Scenes to map, in acquisition order.
    pub scenes: Vec<PlannedScene>,
    /// Scenes found for the unit before selection.
    pub candidates: usize,
}

impl WorkUnit {
    /// Estimated chips: the sum over scenes, `None` when a scene's size is unknown.
    pub fn chips(&self) -> Option<u64> {
        self.scenes.iter().map(|s| s.chips).sum()
    }

    /// What the unit's output depends on: the run's settings and each scene's id and
    /// `updated` time, and those of its Sentinel-1 match. A finished unit whose fingerprint
    /// changed (e.g. a Sentinel-1 acquisition published since, or reprocessed) is mapped again.
    pub fn fingerprint(&self, settings: &str) -> String {
        let mut text = settings.to_string();
        for s in &self.scenes {
            text.push('\n');
            text.push_str(s.item.id());
            text.push('@');
            text.push_str(s.updated.as_deref().unwrap_or("-"));
            if let Some(s1) = &s.s1 {
                text.push_str(" + ");
                text.push_str(s1.id());
                text.push('@');
                text.push_str(s1.item.properties.updated.as_deref().unwrap_or("-"));
            }
        }
        format!("{:016x}", fnv1a(text.as_bytes()))
    }
}

/// A planned run: its units, sorted by id.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Work units.
    pub units: Vec<WorkUnit>,
    /// Scenes found (before selection).
    pub scenes_found: usize,
    /// Items that could not be used, each with its reason.
    pub rejected: Vec<String>,
    /// The latest acquisition time among the items found: the next watch cycle's watermark.
    pub latest: Option<DateTime<Utc>>,
    /// Where the STAC search started when the plan was narrowed by a watermark.
    pub searched_from: Option<DateTime<Utc>>,
}

/// One line of `map plan --json`.
#[derive(Debug, Serialize)]
pub struct UnitLine<'a> {
    /// Unit id.
    pub unit: &'a str,
    /// Grid tile.
    pub tile: &'a str,
    /// Period key.
    pub period: &'a str,
    /// Scene ids selected.
    pub scenes: Vec<&'a str>,
    /// Scenes found before selection.
    pub candidates: usize,
    /// Estimated chips.
    pub chips: Option<u64>,
    /// The shard that maps it (`I/N`).
    pub shard: String,
    /// Manifest state: `pending`, `running`, `done` or `failed`.
    pub state: String,
}

/// Finds the config's scenes (item files or a STAC API search), filters them by AOI, date, tile
/// and cloud cover, and groups them into work units.
pub async fn plan(cfg: &MapConfig, modality: &ModalityBands) -> Result<Plan> {
    plan_since(cfg, modality, None).await
}

/// [`plan`], with a `stac` source searched only from the start of the run period that holds
/// `since` (a watch cycle's watermark less its lookback). Units of earlier periods are then not
/// planned, and every unit planned still has all its scenes: a unit is one period of one tile,
/// so its file is never rewritten with part of its scenes.
pub async fn plan_since(cfg: &MapConfig, modality: &ModalityBands, since: Option<DateTime<Utc>>) -> Result<Plan> {
    let range = cfg
        .source
        .datetime
        .as_deref()
        .map(DateRange::parse)
        .transpose()
        .context("source.datetime")?;
    let searched_from = since
        .filter(|_| cfg.source.stac.is_some())
        .and_then(|t| period_start(cfg.run.period, t))
        .filter(|from| range.as_ref().and_then(|r| r.start).is_none_or(|start| *from > start));
    let search_range = match searched_from {
        Some(from) => Some(DateRange {
            start: Some(from),
            end: range.as_ref().and_then(|r| r.end),
        }),
        None => range.clone(),
    };
    let aoi = match &cfg.source.aoi {
        Some(path) => Some(Aoi::from_file(path)?),
        None => cfg.source.bbox.map(Aoi::from_bbox),
    };
    let mut rejected = Vec::new();
    let items = match &cfg.source.stac {
        Some(url) => search(cfg, url, search_range.as_ref(), aoi.as_ref()).await?,
        None => {
            let mut items = Vec::new();
            for path in &cfg.source.items {
                match SceneItem::from_path(path) {
                    Ok(item) => items.push(item),
                    Err(e) => rejected.push(terrastream_ingest::scene::error_chain(&e)),
                }
            }
            items
        }
    };
    let mut scenes = Vec::new();
    let mut latest: Option<DateTime<Utc>> = None;
    for item in items {
        let datetime = match item.datetime() {
            Ok(t) => t,
            Err(e) => {
                rejected.push(terrastream_ingest::scene::error_chain(&e));
                continue;
            }
        };
        latest = latest.max(Some(datetime));
        let props = &item.item.properties.additional_fields;
        let cloud_cover = props.get("eo:cloud_cover").and_then(serde_json::Value::as_f64);
        if range.is_some_and(|r| !r.contains(datetime))
            || cfg
                .source
                .max_cloud_cover
                .zip(cloud_cover)
                .is_some_and(|(max, c)| c > max)
            || aoi
                .as_ref()
                .is_some_and(|a| !a.touches(item.item.bbox.map(|b| [b.xmin(), b.ymin(), b.xmax(), b.ymax()])))
        {
            continue;
        }
        let tile = item.grid_id().unwrap_or_else(|| item.id().to_string());
        if !cfg.source.tiles.is_empty() && !cfg.source.tiles.contains(&tile) {
            continue;
        }
        // Without re-processing, `updated` stays out of the unit's fingerprint.
        let updated = item.item.properties.updated.clone().filter(|_| cfg.run.reprocess_updated);
        let chips = chips_from_metadata(&item, modality, cfg);
        scenes.push((
            tile,
            PlannedScene {
                item,
                datetime,
                cloud_cover,
                updated,
                chips,
                s1: None,
            },
        ));
    }
    if let Some(s1_cfg) = &cfg.source.s1 {
        let candidates = s1_candidates(s1_cfg, &scenes, &mut rejected).await?;
        for (_, scene) in &mut scenes {
            scene.s1 = nearest_s1(&scene.item, &candidates, s1_cfg.max_days)?.cloned();
            if let Some(s1) = scene.s1.as_mut().filter(|_| !cfg.run.reprocess_updated) {
                s1.item.properties.updated = None;
            }
        }
    }
    let scenes_found = scenes.len();
    let mut groups: BTreeMap<(String, String), Vec<PlannedScene>> = BTreeMap::new();
    for (tile, scene) in scenes {
        let period = period_key(cfg.run.period, scene.datetime);
        groups.entry((tile, period)).or_default().push(scene);
    }
    let mut units = Vec::with_capacity(groups.len());
    let mut ids = BTreeMap::new();
    for ((tile, period), mut scenes) in groups {
        let candidates = scenes.len();
        // The same scene listed twice (two item files, overlapping pages) is mapped once.
        scenes.sort_by(|a, b| a.datetime.cmp(&b.datetime).then_with(|| a.item.id().cmp(b.item.id())));
        scenes.dedup_by(|a, b| a.item.id() == b.item.id());
        if cfg.run.selection == Selection::LeastCloudy {
            // With Sentinel-1, a scene that has a match beats any that has none.
            let best = scenes.iter().min_by(|a, b| {
                let (ca, cb) = (a.cloud_cover.unwrap_or(100.0), b.cloud_cover.unwrap_or(100.0));
                let unmatched = |s: &PlannedScene| cfg.source.s1.is_some() && s.s1.is_none();
                unmatched(a)
                    .cmp(&unmatched(b))
                    .then_with(|| ca.total_cmp(&cb))
                    .then_with(|| b.datetime.cmp(&a.datetime))
                    .then_with(|| a.item.id().cmp(b.item.id()))
            });
            scenes = best.cloned().into_iter().collect();
        }
        let id = unit_id(&tile, &period);
        if let Some(other) = ids.insert(id.clone(), tile.clone()) {
            bail!("grid tiles {other:?} and {tile:?} map to the same work unit id {id:?}");
        }
        units.push(WorkUnit {
            id,
            tile,
            period,
            scenes,
            candidates,
        });
    }
    Ok(Plan {
        units,
        scenes_found,
        rejected,
        latest,
        searched_from,
    })
}

/// `<tile>_<period>`, with characters that are unsafe in file names and object keys replaced.
pub fn unit_id(tile: &str, period: &str) -> String {
    terrastream_sinks::commit::safe_file_stem(&format!("{tile}_{period}"))
}

/// The period key of `t`.
pub fn period_key(period: Period, t: DateTime<Utc>) -> String {
    match period {
        Period::Day => t.format("%Y-%m-%d").to_string(),
        Period::Week => {
            let w = t.iso_week();
            format!("{}-W{:02}", w.year(), w.week())
        }
        Period::Month => t.format("%Y-%m").to_string(),
        Period::Year => t.format("%Y").to_string(),
        Period::All => "all".to_string(),
    }
}

/// The first instant of the period that holds `t` (UTC); `None` for [`Period::All`], which has
/// no start.
pub fn period_start(period: Period, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let day = t.date_naive();
    let first = match period {
        Period::Day => day,
        Period::Week => day - chrono::Duration::days(i64::from(day.weekday().num_days_from_monday())),
        Period::Month => day.with_day(1)?,
        Period::Year => day.with_day(1)?.with_month(1)?,
        Period::All => return None,
    };
    Some(first.and_hms_opt(0, 0, 0)?.and_utc())
}

/// The Sentinel-1 items the scenes are paired from: `[source.s1]`'s item files, or a search of
/// its STAC API over the scenes' bbox and dates widened by `max_days`. Unreadable item files
/// go to `rejected`.
async fn s1_candidates(
    s1: &S1SourceConfig,
    scenes: &[(String, PlannedScene)],
    rejected: &mut Vec<String>,
) -> Result<Vec<SceneItem>> {
    let Some(url) = &s1.stac else {
        let mut items = Vec::new();
        for path in &s1.items {
            match SceneItem::from_path(path) {
                Ok(item) => items.push(item),
                Err(e) => rejected.push(format!("source.s1: {}", terrastream_ingest::scene::error_chain(&e))),
            }
        }
        return Ok(items);
    };
    let mut bbox: Option<[f64; 4]> = None;
    let mut times: Option<(DateTime<Utc>, DateTime<Utc>)> = None;
    for (_, s) in scenes {
        if let Some(b) = s.item.item.bbox {
            let b = [b.xmin(), b.ymin(), b.xmax(), b.ymax()];
            bbox = Some(bbox.map_or(b, |a| [a[0].min(b[0]), a[1].min(b[1]), a[2].max(b[2]), a[3].max(b[3])]));
        }
        times = Some(times.map_or((s.datetime, s.datetime), |(a, b)| (a.min(s.datetime), b.max(s.datetime))));
    }
    let (Some(bbox), Some((first, last))) = (bbox, times) else {
        return Ok(Vec::new());
    };
    let slack = crate::time_span::days(s1.max_days);
    let range = DateRange {
        start: Some(first - slack),
        end: Some(last + slack),
    };
    // Scenes across the antimeridian give a bbox whose west > east: search the whole band.
    let bbox = if bbox[0] > bbox[2] {
        [-180.0, bbox[1], 180.0, bbox[3]]
    } else {
        bbox
    };
    let params = SearchParams {
        collections: s1.collections.clone(),
        bbox: Some(bbox),
        datetime: Some(range.to_stac()),
        limit: s1.page_size,
        ..Default::default()
    }
    .sort_by("properties.datetime,id");
    search_items(url, &params).await.context("source.s1.stac")
}

async fn search(cfg: &MapConfig, url: &str, range: Option<&DateRange>, aoi: Option<&Aoi>) -> Result<Vec<SceneItem>> {
    let filter = cfg
        .source
        .max_cloud_cover
        .map(|c| serde_json::json!({"op": "<=", "args": [{"property": "eo:cloud_cover"}, c]}));
    let params = SearchParams {
        collections: cfg.source.collections.clone(),
        bbox: match aoi {
            Some(Aoi { geometry: None, bbox }) => Some(*bbox),
            _ => None,
        },
        intersects: aoi.and_then(|a| a.geometry.clone()),
        datetime: range.map(DateRange::to_stac),
        filter_lang: filter.as_ref().map(|_| "cql2-json".to_string()),
        filter,
        limit: cfg.source.page_size,
        ..Default::default()
    }
    .sort_by("properties.datetime,id");
    search_items(url, &params).await
}

/// Every item a STAC API search returns, following its pages.
async fn search_items(url: &str, params: &SearchParams) -> Result<Vec<SceneItem>> {
    let options = terrastream_ingest::store::Stores::global().options().clone();
    let client = StacClient::new(url, options).with_context(|| format!("source.stac {url}"))?;
    let mut stream = Box::pin(client.search(params, None));
    let mut items = Vec::new();
    let base = std::env::current_dir().unwrap_or_default();
    while let Some(item) = stream.next().await {
        let item = item.with_context(|| format!("searching {url}"))?;
        items.push(SceneItem {
            item,
            base_dir: base.clone(),
        });
    }
    Ok(items)
}

/// Chips of the scene grid from the `proj:shape` of the modality's finest band asset (or the
/// item's), without reading any file.
fn chips_from_metadata(item: &SceneItem, modality: &ModalityBands, cfg: &MapConfig) -> Option<u64> {
    let shape = |v: Option<&serde_json::Value>| -> Option<(usize, usize)> {
        let a = v?.as_array()?;
        Some((a.first()?.as_u64()? as usize, a.get(1)?.as_u64()? as usize))
    };
    let mut best: Option<(usize, usize)> = None;
    for band in modality.bands {
        let asset = band.asset_keys.iter().find_map(|k| item.item.assets.get(*k));
        if let Some(s) = asset.and_then(|a| shape(a.additional_fields.get("proj:shape"))) {
            best = Some(best.map_or(s, |b| if s.0 * s.1 > b.0 * b.1 { s } else { b }));
        }
    }
    let (rows, cols) = best.or_else(|| shape(item.item.properties.additional_fields.get("proj:shape")))?;
    let chip = cfg.grid.chip_size;
    let grid = ChipGrid::new(cols, rows, chip, cfg.grid.stride.unwrap_or(chip), cfg.grid.edge).ok()?;
    Some(grid.len() as u64)
}

/// An area of interest: a bbox, and the geometry when one was given (sent to STAC APIs as
/// `intersects`; item files are filtered by bbox).
#[derive(Debug, Clone)]
pub struct Aoi {
    /// `[west, south, east, north]` in degrees.
    pub bbox: [f64; 4],
    /// The GeoJSON geometry.
    pub geometry: Option<serde_json::Value>,
}

impl Aoi {
    fn from_bbox(bbox: [f64; 4]) -> Self {
        Self { bbox, geometry: None }
    }

    /// Reads a GeoJSON geometry, Feature or FeatureCollection (its geometries as one
    /// GeometryCollection).
    pub fn from_file(path: &Path) -> Result<Self> {
        let ctx = || format!("source.aoi {}", path.display());
        let text = std::fs::read_to_string(path).with_context(ctx)?;
        let value: serde_json::Value = serde_json::from_str(&text).with_context(ctx)?;
        let geometry = match value.get("type").and_then(|t| t.as_str()) {
            Some("Feature") => value.get("geometry").cloned(),
            Some("FeatureCollection") => {
                let geoms: Vec<_> = value
                    .get("features")
                    .and_then(|f| f.as_array())
                    .map(|f| f.iter().filter_map(|f| f.get("geometry").cloned()).collect())
                    .unwrap_or_default();
                match geoms.len() {
                    0 => None,
                    1 => geoms.into_iter().next(),
                    _ => Some(serde_json::json!({"type": "GeometryCollection", "geometries": geoms})),
                }
            }
            Some(_) => Some(value.clone()),
            None => None,
        }
        .ok_or_else(|| anyhow!("{}: no geometry in the GeoJSON", ctx()))?;
        let mut bbox = [f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY];
        extend_bbox(&geometry, &mut bbox);
        if !bbox.iter().all(|v| v.is_finite()) {
            bail!("{}: the geometry has no coordinates", ctx());
        }
        if bbox[0] < -180.0 || bbox[2] > 180.0 || bbox[1] < -90.0 || bbox[3] > 90.0 {
            bail!(
                "{}: coordinates outside [-180, 180] x [-90, 90]: is it in EPSG:4326?",
                ctx()
            );
        }
        Ok(Self {
            bbox,
            geometry: Some(geometry),
        })
    }

    /// True when an item's bbox `[w, s, e, n]` intersects the AOI's bbox; items without a bbox
    /// are kept.
    fn touches(&self, item_bbox: Option<[f64; 4]>) -> bool {
        let Some([w, s, e, n]) = item_bbox else { return true };
        w <= self.bbox[2] && e >= self.bbox[0] && s <= self.bbox[3] && n >= self.bbox[1]
    }
}

fn extend_bbox(geometry: &serde_json::Value, bbox: &mut [f64; 4]) {
    fn walk(v: &serde_json::Value, bbox: &mut [f64; 4]) {
        match v.as_array() {
            Some(a) if a.len() >= 2 && a[0].is_number() => {
                if let (Some(x), Some(y)) = (a[0].as_f64(), a[1].as_f64()) {
                    bbox[0] = bbox[0].min(x);
                    bbox[1] = bbox[1].min(y);
                    bbox[2] = bbox[2].max(x);
                    bbox[3] = bbox[3].max(y);
                }
            }
            Some(a) => a.iter().for_each(|c| walk(c, bbox)),
            None => {}
        }
    }
    if let Some(c) = geometry.get("coordinates") {
        walk(c, bbox);
    }
    if let Some(gs) = geometry.get("geometries").and_then(|g| g.as_array()) {
        gs.iter().for_each(|g| extend_bbox(g, bbox));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_period_starts_at_midnight_utc_of_its_first_day() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc);
        // A Thursday late in the day, in a leap year.
        let at = t("2020-02-20T23:59:59Z");
        let cases = [
            (Period::Day, Some(t("2020-02-20T00:00:00Z"))),
            (Period::Week, Some(t("2020-02-17T00:00:00Z"))),
            (Period::Month, Some(t("2020-02-01T00:00:00Z"))),
            (Period::Year, Some(t("2020-01-01T00:00:00Z"))),
            (Period::All, None),
        ];
        for (period, start) in cases {
            assert_eq!(period_start(period, at), start, "{period:?}");
            // Its own start is in the same period, and the instant before is not.
            if let Some(start) = start {
                assert_eq!(period_key(period, start), period_key(period, at), "{period:?}");
                let before = start - chrono::Duration::seconds(1);
                assert_ne!(period_key(period, before), period_key(period, at), "{period:?}");
            }
        }
        // ISO weeks: 2021-01-01 is a Friday of week 2020-W53, which starts in December.
        assert_eq!(period_start(Period::Week, t("2021-01-01T12:00:00Z")), Some(t("2020-12-28T00:00:00Z")));
    }

    /// Plans a one-item config (the sample item with `updated` set) and returns its unit's
    /// fingerprint.
    async fn fingerprint_with(updated: &str, reprocess: bool) -> String {
        let dir = tempfile::tempdir().expect("tmp");
        let sample = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/data/rio-tiler-pds/S2A_29RKH_20200219_0_L2A/S2A_29RKH_20200219_0_L2A.json");
        let mut item: serde_json::Value =
            serde_json::from_slice(&std::fs::read(sample).expect("sample item")).expect("json");
        item["properties"]["updated"] = updated.into();
        std::fs::write(dir.path().join("item.json"), item.to_string()).expect("write item");
        let text = format!(
            "[source]\nitems = ['item.json']\n[run]\nreprocess_updated = {reprocess}\n[output]\ndir = 'out'\n"
        );
        let cfg = MapConfig::parse(&text, dir.path()).expect("config");
        let plan = plan(&cfg, &terrastream_ingest::bands::S2L2A).await.expect("plan");
        plan.units[0].fingerprint("settings")
    }

    #[tokio::test]
    async fn re_publishing_an_item_maps_its_unit_again_only_when_the_config_says_so() {
        let (a, b) = ("2022-11-06T09:32:34Z", "2024-01-01T00:00:00Z");
        assert_ne!(fingerprint_with(a, true).await, fingerprint_with(b, true).await);
        assert_eq!(fingerprint_with(a, false).await, fingerprint_with(b, false).await);
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    #[test]
    fn date_ranges() {
        let r = DateRange::parse("2020-02-01/2020-02-29").expect("range");
        assert!(r.contains(t("2020-02-29T23:00:00Z")) && !r.contains(t("2020-03-01T00:00:00Z")));
        let open = DateRange::parse("../2020-01-01T00:00:00Z").expect("open start");
        assert!(open.start.is_none() && open.contains(t("1999-01-01T00:00:00Z")));
        let day = DateRange::parse("2020-02-19").expect("day");
        assert!(day.contains(t("2020-02-19T11:34:25Z")) && !day.contains(t("2020-02-20T00:00:00Z")));
        assert_eq!(day.to_stac(), "2020-02-19T00:00:00.000000Z/2020-02-19T23:59:59.999999Z");
        assert!(DateRange::parse("2020-03-01/2020-02-01").is_err());
        assert!(DateRange::parse("yesterday").is_err());
    }

    fn scene(id: &str, updated: Option<&str>) -> SceneItem {
        let value = serde_json::json!({
            "type": "Feature", "stac_version": "1.0.0", "id": id, "geometry": null, "bbox": [0, 0, 1, 1],
            "properties": {"datetime": "2020-02-19T11:00:00Z", "updated": updated}, "links": [], "assets": {},
        });
        SceneItem {
            item: serde_json::from_value(value).expect("item"),
            base_dir: Default::default(),
        }
    }

    #[test]
    fn the_sentinel_1_match_is_part_of_the_fingerprint() {
        let unit = |s1: Option<SceneItem>| WorkUnit {
            id: "T_2020-02".into(),
            tile: "T".into(),
            period: "2020-02".into(),
            scenes: vec![PlannedScene {
                item: scene("S2", Some("2020-02-20T00:00:00Z")),
                datetime: t("2020-02-19T11:00:00Z"),
                cloud_cover: None,
                updated: Some("2020-02-20T00:00:00Z".into()),
                chips: None,
                s1,
            }],
            candidates: 1,
        };
        let alone = unit(None).fingerprint("{}");
        let matched = unit(Some(scene("S1", Some("2020-02-21T00:00:00Z")))).fingerprint("{}");
        let reprocessed = unit(Some(scene("S1", Some("2020-03-01T00:00:00Z")))).fingerprint("{}");
        let other = unit(Some(scene("S1-other", Some("2020-02-21T00:00:00Z")))).fingerprint("{}");
        let all = [&alone, &matched, &reprocessed, &other];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(matched, unit(Some(scene("S1", Some("2020-02-21T00:00:00Z")))).fingerprint("{}"));
    }

    #[test]
    fn period_keys() {
        let when = t("2020-12-31T11:00:00Z");
        assert_eq!(period_key(Period::Day, when), "2020-12-31");
        // ISO week 53 of 2020.
        assert_eq!(period_key(Period::Week, when), "2020-W53");
        assert_eq!(period_key(Period::Week, t("2021-01-03T00:00:00Z")), "2020-W53");
        assert_eq!(period_key(Period::Month, when), "2020-12");
        assert_eq!(period_key(Period::Year, when), "2020");
        assert_eq!(period_key(Period::All, when), "all");
        assert_eq!(unit_id("MGRS-29RKH", "2020-02"), "MGRS-29RKH_2020-02");
    }

    #[test]
    fn aoi_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("aoi.geojson");
        let fc = r#"{"type":"FeatureCollection","features":[
            {"type":"Feature","properties":{},"geometry":{"type":"Polygon","coordinates":[[[-10,27],[-9,27],[-9,28],[-10,27]]]}},
            {"type":"Feature","properties":{},"geometry":{"type":"Point","coordinates":[-8,26]}}]}"#;
        std::fs::write(&path, fc).expect("write");
        let aoi = Aoi::from_file(&path).expect("aoi");
        assert_eq!(aoi.bbox, [-10.0, 26.0, -8.0, 28.0]);
        assert!(aoi.touches(Some([-8.5, 27.5, -7.0, 29.0])));
        assert!(!aoi.touches(Some([0.0, 0.0, 1.0, 1.0])));
        std::fs::write(
            &path,
            r#"{"type":"Polygon","coordinates":[[[500000,3000000],[500100,3000000],[500000,3000100]]]}"#,
        )
        .expect("write");
        let err = format!("{:#}", Aoi::from_file(&path).expect_err("projected coordinates"));
        assert!(err.contains("aoi.geojson") && err.contains("EPSG:4326"), "{err}");
    }
}

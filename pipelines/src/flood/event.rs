//! One flood event mapped in one shot: the settings ([`EventConfig`]), the request ([`EventRequest`]), its
//! validation and [`run_event`]. Shared by `flood run` and `flood serve`.
//!
//! Stages (each timed in the summary's `timings_s`):
//! 1. **search**: the STAC API for the first Sentinel-1 pass after the event, the most recent pass of the same
//!    relative orbit and direction before it (the reference) and the least cloudy Sentinel-2 scene after it
//!    ([`super::scenes`]);
//! 2. **read**: VV/VH in dB and S2 green/NIR/SWIR1/SCL onto the output grid ([`super::inputs`] documents the grid);
//! 3. **water**: each configured method of [`terrastream_operators::water`] with its inputs, combined by the
//!    ensemble (majority vote) when more than one ran; the reference's water by the S1 method alone;
//! 4. **change**: [`terrastream_operators::water::change_detection`]: classes 0 dry, 1 permanent water, 2 flood,
//!    255 no data. **Without a reference** (none found in the window) nothing is known about water before the
//!    event: every post-event water pixel is reported as flood and permanent water is unknown (class 1 is
//!    empty, `permanent_water_km2` null); the summary says so under `scenes.reference_rule` and `warnings`, and
//!    a warning is logged;
//! 5. **write**: the class COG (colour table, nodata 255), the water-probability COG (Float32, nodata −1), flood
//!    polygons as GeoJSON and GeoParquet, the quick-look PNG, `summary.json` and a STAC item (`item.json`)
//!    describing every output, each committed atomically (temporary file, then rename).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use chrono::SecondsFormat;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use terrastream_ingest::bands::Resampling;
use terrastream_ingest::geo::{Footprint, GeoTransform, ToWgs84};
use terrastream_ingest::item::{HrefRewrite, SceneItem};
use terrastream_ingest::sar::Radiometry;
use terrastream_operators::water::{
    self, FloodClass, S1Input, S1Options, S2Input, S2Options, Split, ThresholdOptions, WaterIndex, WaterMap,
};
use terrastream_sinks::cog::{ClassColour, ColourTable};
use terrastream_sinks::stac as stac_out;

use super::aoi::Aoi;
use crate::time_span::MAX_DAYS;
use super::inputs::{self, AssetBand, GridChoice};
use super::output::{PROBABILITY_NODATA, write_classes, write_probability};
use super::raster::Grid;
use super::scenes::{self, EventScenes};

/// Settings of event mapping, shared by `flood run` (`--config`, a TOML file) and `flood serve` (its
/// `[mapping]` table of flood.toml). Every key is optional but `stac`; unknown keys are errors.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventConfig {
    /// STAC API root URL.
    pub stac: String,
    /// Sentinel-1 collection searched for post-event and reference scenes (default `sentinel-1-grd`).
    pub s1_collection: String,
    /// Optional Sentinel-2 collection for the spectral-index method.
    pub s2_collection: Option<String>,
    /// Post-event search window, days after the event time (default 12).
    pub after_days: f64,
    /// Pre-event reference window, days before the event time (default 60).
    pub reference_days: f64,
    /// Output grid resolution in metres, for the UTM grid (default 10; see [`super::inputs`]).
    pub resolution_m: f64,
    /// Water methods: "s1", "s2", "terramind" (default s1, s2); the ensemble of those that have inputs runs.
    pub methods: Vec<String>,
    /// Href rewrites (`[[rewrite]]` prefix/replace), as in the map config.
    pub rewrite: Vec<HrefRewrite>,
    /// AOI area limit, km² (default 10 000).
    pub max_area_km2: f64,
    /// Radiometry of the Sentinel-1 assets (`dn_amplitude`, `linear_power`, `db`); default: the unit the asset
    /// declares, else integer samples are GRD DN and floating-point ones linear power.
    pub s1_radiometry: Option<Radiometry>,
    /// TerraMind checkpoint (`TerraMind_v1_<variant>.pt`) for the `terramind` method: zero-shot,
    /// the water class of TiM-generated land cover from the post-event S1 scene.
    pub checkpoint: Option<PathBuf>,
    /// The LULC tokenizer (`TerraMind_Tokenizer_LULC.pt`) that decodes TiM's land-cover tokens.
    pub tokenizer: Option<PathBuf>,
    /// A fine-tuned TerraMind segmentation checkpoint (terratorch FCNDecoder + SegmentationHead on
    /// S1GRD), used instead of TiM.
    pub segmentation: Option<PathBuf>,
    /// TerraMind variant of `checkpoint` / `segmentation` (default `base`).
    pub variant: String,
    /// Class ids counted as water (default: LULC water, or class 1 of a fine-tuned head).
    pub water_classes: Vec<i64>,
    /// Run the `terramind` method with seeded random weights when no checkpoint is given. Its
    /// map is noise: for smoke tests of the path only (the summary says so).
    pub random_weights: bool,
    /// Tile size of the output COGs, pixels (a multiple of 16; default 512).
    pub cog_tile_size: u32,
}

impl Default for EventConfig {
    fn default() -> Self {
        Self {
            stac: String::new(),
            s1_collection: "sentinel-1-grd".into(),
            s2_collection: None,
            after_days: 12.0,
            reference_days: 60.0,
            resolution_m: 10.0,
            methods: vec!["s1".into(), "s2".into()],
            rewrite: Vec::new(),
            max_area_km2: 10_000.0,
            s1_radiometry: None,
            checkpoint: None,
            tokenizer: None,
            segmentation: None,
            variant: "base".into(),
            water_classes: Vec::new(),
            random_weights: false,
            cog_tile_size: 512,
        }
    }
}

/// One event: where and when.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventRequest {
    /// Optional name, used as the output item's id.
    pub name: Option<String>,
    /// GeoJSON geometry (Polygon/MultiPolygon), WGS 84.
    pub aoi: serde_json::Value,
    /// When the flood happened.
    pub event_time: chrono::DateTime<chrono::Utc>,
}

/// What one mapped event produced.
#[derive(Debug, Clone, Serialize)]
pub struct EventOutcome {
    /// Also written as summary.json.
    pub summary: serde_json::Value,
    /// Every output file, under the output directory.
    pub files: Vec<PathBuf>,
    /// Flooded area, km².
    pub flooded_km2: f64,
}

/// Output file names in the event directory.
pub mod files {
    /// Class COG: 0 dry, 1 permanent water, 2 flood, 255 no data.
    pub const CLASSES: &str = "flood_classes.tif";
    /// Water probability COG (Float32, nodata −1).
    pub const PROBABILITY: &str = "water_probability.tif";
    /// Flood polygons, GeoJSON (WGS 84).
    pub const POLYGONS_GEOJSON: &str = "flood_polygons.geojson";
    /// Flood polygons, GeoParquet 1.1 (WKB, EPSG:4326).
    pub const POLYGONS_PARQUET: &str = "flood_polygons.parquet";
    /// Quick-look PNG.
    pub const QUICKLOOK: &str = "quicklook.png";
    /// Summary JSON.
    pub const SUMMARY: &str = "summary.json";
    /// STAC item of the outputs.
    pub const ITEM: &str = "item.json";
}

/// The methods `flood run` knows.
const METHODS: [&str; 3] = ["s1", "s2", "terramind"];

/// Validates a request without reading any data (AOI geometry valid, area within limit, config
/// values in range); errors name the field. `flood serve` calls this to answer 4xx.
pub fn validate_request(cfg: &EventConfig, req: &EventRequest) -> Result<()> {
    check(cfg, req).map(|_| ())
}

/// Finest and coarsest output grids, metres: a finer grid over the largest AOI would be more
/// pixels than memory holds.
pub const RESOLUTION_RANGE_M: std::ops::RangeInclusive<f64> = 1.0..=10_000.0;

/// Checks the config values alone; errors name the key.
pub fn check_config(cfg: &EventConfig) -> Result<()> {
    ensure!(!cfg.stac.trim().is_empty(), "stac: no STAC API URL configured");
    ensure!(!cfg.s1_collection.is_empty(), "s1_collection: empty");
    ensure!(
        cfg.after_days > 0.0 && cfg.after_days <= MAX_DAYS,
        "after_days {}: must be positive, at most {MAX_DAYS}",
        cfg.after_days
    );
    ensure!(
        cfg.reference_days >= 0.0 && cfg.reference_days <= MAX_DAYS,
        "reference_days {}: must be zero or positive, at most {MAX_DAYS}",
        cfg.reference_days
    );
    ensure!(
        RESOLUTION_RANGE_M.contains(&cfg.resolution_m),
        "resolution_m {}: must be between {} and {} m",
        cfg.resolution_m,
        RESOLUTION_RANGE_M.start(),
        RESOLUTION_RANGE_M.end()
    );
    ensure!(
        cfg.max_area_km2 > 0.0 && cfg.max_area_km2.is_finite(),
        "max_area_km2 {}: must be positive",
        cfg.max_area_km2
    );
    ensure!(
        cfg.cog_tile_size > 0 && cfg.cog_tile_size % 16 == 0,
        "cog_tile_size {}: must be a positive multiple of 16",
        cfg.cog_tile_size
    );
    ensure!(!cfg.methods.is_empty(), "methods: empty (use some of {METHODS:?})");
    for m in &cfg.methods {
        ensure!(
            METHODS.contains(&m.as_str()),
            "methods: unknown method {m:?} (known: {METHODS:?})"
        );
    }
    Ok(())
}

fn check(cfg: &EventConfig, req: &EventRequest) -> Result<Aoi> {
    check_config(cfg)?;
    if let Some(name) = &req.name {
        ensure!(name.chars().count() <= 200, "name: longer than 200 characters");
    }
    let aoi = Aoi::from_geojson(&req.aoi, "aoi")?;
    let area = aoi.area_km2();
    ensure!(
        area <= cfg.max_area_km2,
        "aoi: area {area:.1} km² exceeds the limit max_area_km2 = {}",
        cfg.max_area_km2
    );
    Ok(aoi)
}

/// Seconds per stage.
#[derive(Debug, Default, Clone, Copy, Serialize)]
struct Timings {
    search: f64,
    read: f64,
    water: f64,
    change: f64,
    write: f64,
    total: f64,
}

/// Water maps of the post-event scene(s) and the reference.
struct WaterMaps {
    post: WaterMap,
    members: Vec<&'static str>,
    member_splits: Vec<(&'static str, Vec<Split>)>,
    reference: Option<WaterMap>,
}

/// The rasters read for an event.
struct EventRasters {
    grid: Grid,
    choice: GridChoice,
    post_vv: Option<Vec<f32>>,
    post_vh: Option<Vec<f32>>,
    reference: Option<(Option<Vec<f32>>, Option<Vec<f32>>)>,
    s2: Option<S2Rasters>,
    radiometry: Vec<(String, Radiometry)>,
}

struct S2Rasters {
    green: Vec<f32>,
    nir: Option<Vec<f32>>,
    swir16: Option<Vec<f32>>,
    scl: Option<Vec<f32>>,
}

/// Maps one event into `out_dir` (created; outputs committed atomically).
pub async fn run_event(cfg: &EventConfig, req: &EventRequest, out_dir: &Path) -> Result<EventOutcome> {
    let start = Instant::now();
    let aoi = check(cfg, req)?;
    let mut timings = Timings::default();
    let mut warnings: Vec<String> = Vec::new();
    let wants = |m: &str| cfg.methods.iter().any(|x| x == m);

    let t = Instant::now();
    let s2_collection = cfg.s2_collection.as_deref().filter(|_| wants("s2"));
    let scenes = scenes::find(
        &cfg.stac,
        &cfg.s1_collection,
        s2_collection,
        &aoi,
        req.event_time,
        cfg.after_days,
        cfg.reference_days,
    )
    .await?;
    timings.search = t.elapsed().as_secs_f64();
    if scenes.reference.is_empty() {
        let w = format!(
            "no pre-event reference: no scene of the post-event orbit in {}; every post-event water pixel is \
             reported as flood and permanent water is unknown",
            scenes.reference_window.interval()
        );
        tracing::warn!("{w}");
        warnings.push(w);
    }
    if s2_collection.is_some() && scenes.s2.is_none() {
        warnings.push(format!(
            "no Sentinel-2 scene in {}: the S2 method did not run",
            scenes.post_window.interval()
        ));
    }

    let t = Instant::now();
    let rasters = read_rasters(cfg, &aoi, &scenes, wants("s1")).await?;
    timings.read = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let maps = water_maps(cfg, &rasters, &scenes, &mut warnings)?;
    timings.water = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let grid = rasters.grid;
    let pre = match &maps.reference {
        Some(r) => r.mask.clone(),
        // No reference: everything dry before the event (documented above).
        None => vec![water::DRY; grid.width * grid.height],
    };
    let classes = water::change_detection(&pre, &maps.post.mask).context("change detection")?;
    timings.change = t.elapsed().as_secs_f64();

    let t = Instant::now();
    std::fs::create_dir_all(out_dir).with_context(|| format!("create {}", out_dir.display()))?;
    let mut written = Vec::new();
    let tile = cfg.cog_tile_size;
    written.push(write_classes(
        &out_dir.join(files::CLASSES),
        &grid,
        classes.clone(),
        FloodClass::NoData as u8,
        class_colours(),
        tile,
    )?);
    written.push(write_probability(
        &out_dir.join(files::PROBABILITY),
        &grid,
        &maps.post.probability,
        tile,
    )?);
    let polys = super::polygons::polygonize(&classes, grid.width, grid.height, |v| v == FloodClass::Flood as u8);
    let event_id = event_id(req);
    let fc = super::polygons::to_geojson(&polys, &grid, &json!({ "class": "flood", "event": event_id }))?;
    written.push(stac_out::write_json(&out_dir.join(files::POLYGONS_GEOJSON), &fc)?);
    let (parquet, rows) = super::vector::write_geoparquet(&out_dir.join(files::POLYGONS_PARQUET), &fc, "flood")?;
    written.push(parquet);
    let backdrop = rasters.post_vv.as_ref().or(rasters.post_vh.as_ref());
    let empty = vec![f32::NAN; classes.len()];
    let (png, png_size) = super::quicklook::write_png(
        &out_dir.join(files::QUICKLOOK),
        backdrop.unwrap_or(&empty),
        &classes,
        grid.width,
        grid.height,
    )?;
    written.push(png);
    timings.write = t.elapsed().as_secs_f64();
    timings.total = start.elapsed().as_secs_f64();

    let (mx, my) = grid.pixel_metres();
    let pixel_km2 = mx * my / 1e6;
    let count = |c: FloodClass| classes.iter().filter(|&&v| v == c as u8).count();
    let flooded_km2 = count(FloodClass::Flood) as f64 * pixel_km2;
    let summary = json!({
        "event": {
            "id": event_id,
            "name": req.name,
            "event_time": req.event_time.to_rfc3339_opts(SecondsFormat::Secs, true),
            "aoi_bbox": aoi.bbox(),
            "aoi_km2": aoi.area_km2(),
        },
        "flooded_km2": flooded_km2,
        "permanent_water_km2": if maps.reference.is_some() {
            json!(count(FloodClass::PermanentWater) as f64 * pixel_km2)
        } else {
            Value::Null
        },
        "scenes": {
            "post_event": ids(&scenes.post),
            "post_window": scenes.post_window.interval(),
            "reference": if scenes.reference.is_empty() { Value::Null } else { json!(ids(&scenes.reference)) },
            "reference_window": scenes.reference_window.interval(),
            "reference_rule": if scenes.reference.is_empty() {
                "none found: all post-event water is reported as flood, permanent water unknown"
            } else {
                "same relative orbit and orbit state, most recent pass before the event"
            },
            "s2": scenes.s2.as_ref().map(|s| s.id().to_string()),
            "s1_radiometry": rasters.radiometry.iter().map(|(id, r)| json!({"item": id, "radiometry": r})).collect::<Vec<_>>(),
        },
        "methods": maps.members,
        "thresholds": maps.member_splits.iter().map(|(m, s)| json!({"method": m, "splits": s.iter().map(split_json).collect::<Vec<_>>()})).collect::<Vec<_>>(),
        "reference_thresholds": maps.reference.as_ref().map(|r| r.splits.iter().map(split_json).collect::<Vec<_>>()),
        "grid": {
            "epsg": grid.epsg,
            "transform": grid.transform,
            "width": grid.width,
            "height": grid.height,
            "pixel_m": [mx, my],
            "choice": match &rasters.choice {
                GridChoice::Scene(href) => format!("the post-event scene's own grid ({href}), cut to the AOI"),
                GridChoice::Utm => format!("the AOI's bbox in UTM (EPSG:{}) at {} m", grid.epsg, cfg.resolution_m),
            },
        },
        "classes": FloodClass::ALL.iter().map(|(c, n)| json!({"value": *c as u8, "name": n, "pixels": count(*c)})).collect::<Vec<_>>(),
        "polygons": rows,
        "quicklook_size": png_size,
        "warnings": warnings,
        "timings_s": timings,
        "files": written.iter().map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())).collect::<Vec<_>>(),
    });
    written.push(stac_out::write_json(&out_dir.join(files::SUMMARY), &summary)?);
    let item = stac_item(&event_id, req, &scenes, &grid, out_dir, flooded_km2)?;
    written.push(stac_out::write_json(&out_dir.join(files::ITEM), &item)?);
    tracing::info!(event = %event_id, flooded_km2, seconds = timings.total, "flood map written");
    Ok(EventOutcome {
        summary,
        files: written,
        flooded_km2,
    })
}

async fn read_rasters(cfg: &EventConfig, aoi: &Aoi, scenes: &EventScenes, s1: bool) -> Result<EventRasters> {
    let mut post = Vec::new();
    for item in &scenes.post {
        post.push((item, inputs::open_s1(item, &cfg.rewrite).await?));
    }
    let Some(first) = post.first().and_then(|(_, (vv, vh))| vv.as_ref().or(vh.as_ref())) else {
        bail!("no post-event Sentinel-1 scene")
    };
    let (grid, choice) = inputs::choose_grid(aoi, first, cfg.resolution_m)?;
    let radiometry = post
        .iter()
        .flat_map(|(item, (vv, vh))| {
            vv.as_ref()
                .or(vh.as_ref())
                .map(|b| (item.id().to_string(), inputs::radiometry(item, b, cfg.s1_radiometry)))
        })
        .collect();
    let (post_vv, post_vh) = read_pol(&post, &grid, cfg.s1_radiometry).await?;
    let reference = if s1 && !scenes.reference.is_empty() {
        let mut slices = Vec::new();
        for item in &scenes.reference {
            slices.push((item, inputs::open_s1(item, &cfg.rewrite).await?));
        }
        Some(read_pol(&slices, &grid, cfg.s1_radiometry).await?)
    } else {
        None
    };
    let s2 = match &scenes.s2 {
        Some(item) => {
            let b = inputs::open_s2(item, &cfg.rewrite).await?;
            let green = inputs::read_band(item, &b.green, &grid, Resampling::Bilinear).await?;
            Some(S2Rasters {
                green,
                nir: read_optional(item, b.nir.as_ref(), &grid, Resampling::Bilinear).await?,
                swir16: read_optional(item, b.swir16.as_ref(), &grid, Resampling::Bilinear).await?,
                scl: read_optional(item, b.scl.as_ref(), &grid, Resampling::Nearest).await?,
            })
        }
        None => None,
    };
    Ok(EventRasters {
        grid,
        choice,
        post_vv,
        post_vh,
        reference,
        s2,
        radiometry,
    })
}

async fn read_optional(
    item: &SceneItem,
    band: Option<&AssetBand>,
    grid: &Grid,
    method: Resampling,
) -> Result<Option<Vec<f32>>> {
    match band {
        Some(b) => inputs::read_band(item, b, grid, method).await.map(Some),
        None => Ok(None),
    }
}

type S1Slices<'a> = [(&'a SceneItem, (Option<AssetBand>, Option<AssetBand>))];

async fn read_pol(
    slices: &S1Slices<'_>,
    grid: &Grid,
    radiometry: Option<Radiometry>,
) -> Result<(Option<Vec<f32>>, Option<Vec<f32>>)> {
    let vv: Vec<(&SceneItem, &AssetBand)> = slices
        .iter()
        .filter_map(|(i, (vv, _))| vv.as_ref().map(|b| (*i, b)))
        .collect();
    let vh: Vec<(&SceneItem, &AssetBand)> = slices
        .iter()
        .filter_map(|(i, (_, vh))| vh.as_ref().map(|b| (*i, b)))
        .collect();
    let vv = if vv.is_empty() {
        None
    } else {
        Some(inputs::s1_db(&vv, grid, radiometry).await?)
    };
    let vh = if vh.is_empty() {
        None
    } else {
        Some(inputs::s1_db(&vh, grid, radiometry).await?)
    };
    Ok((vv, vh))
}

/// The S1 method's options: those of `flood water`'s defaults (3x3 median, Otsu per scene).
fn s1_options() -> S1Options {
    S1Options::default()
}

fn water_maps(
    cfg: &EventConfig,
    r: &EventRasters,
    scenes: &EventScenes,
    warnings: &mut Vec<String>,
) -> Result<WaterMaps> {
    let (w, h) = (r.grid.width, r.grid.height);
    let wants = |m: &str| cfg.methods.iter().any(|x| x == m);
    let mut members: Vec<(&'static str, WaterMap)> = Vec::new();
    let post_ids = ids(&scenes.post).join(", ");
    if wants("s1") {
        let input = S1Input {
            width: w,
            height: h,
            vv: r.post_vv.as_deref(),
            vh: r.post_vh.as_deref(),
            slope_deg: None,
        };
        let map = water::s1_threshold(&input, &s1_options()).with_context(|| format!("S1 method on {post_ids}"))?;
        members.push(("s1", map));
    }
    if let (true, Some(s2)) = (wants("s2"), &r.s2) {
        let id = scenes.s2.as_ref().map(|s| s.id().to_string()).unwrap_or_default();
        let index = if s2.swir16.is_some() {
            WaterIndex::Mndwi
        } else {
            WaterIndex::Ndwi
        };
        let input = S2Input {
            width: w,
            height: h,
            green: &s2.green,
            nir: s2.nir.as_deref().filter(|_| index == WaterIndex::Ndwi),
            swir16: s2.swir16.as_deref(),
            scl: s2.scl.as_deref(),
        };
        let opts = S2Options {
            index,
            threshold: ThresholdOptions::otsu(Some(0.0)),
            ..S2Options::default()
        };
        members.push((
            "s2",
            water::s2_index(&input, &opts).with_context(|| format!("S2 method on {id}"))?,
        ));
    }
    if wants("terramind") {
        // The model runs for seconds on a CPU: off the async workers when the runtime allows.
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let member = if multi_thread {
            tokio::task::block_in_place(|| terramind_member(cfg, r))
        } else {
            terramind_member(cfg, r)
        };
        match member {
            Ok((map, random)) => {
                if random {
                    warnings.push("terramind ran with RANDOM weights (random_weights = true): its map is noise".into());
                }
                members.push(("terramind", map));
            }
            Err(e) => warnings.push(format!("terramind left out of the ensemble: {e:#}")),
        }
    }
    let post = match &members[..] {
        [] => bail!(
            "no water method could run: methods {:?} need their inputs (S1 scene, S2 collection)",
            cfg.methods
        ),
        [(_, one)] => one.clone(),
        many => water::ensemble(&many.iter().map(|(_, m)| m).collect::<Vec<_>>())?,
    };
    let reference = match &r.reference {
        Some((vv, vh)) => {
            let input = S1Input {
                width: w,
                height: h,
                vv: vv.as_deref(),
                vh: vh.as_deref(),
                slope_deg: None,
            };
            let ref_ids = ids(&scenes.reference).join(", ");
            Some(
                water::s1_threshold(&input, &s1_options())
                    .with_context(|| format!("S1 method on reference {ref_ids}"))?,
            )
        }
        None => None,
    };
    Ok(WaterMaps {
        post,
        members: members.iter().map(|(n, _)| *n).collect(),
        member_splits: members.iter().map(|(n, m)| (*n, m.splits.clone())).collect(),
        reference,
    })
}

/// The loaded TerraMind water model with the settings it was loaded with: `flood serve` maps
/// many events, and loading a checkpoint takes seconds.
static TERRAMIND: std::sync::Mutex<Option<(String, water::terramind::TerraMindWater)>> = std::sync::Mutex::new(None);

/// The `terramind` member on the post-event S1 scene (VV, VH dB); returns the map and whether
/// the weights were random.
fn terramind_member(cfg: &EventConfig, r: &EventRasters) -> Result<(WaterMap, bool)> {
    use water::terramind::{TerraMindInput, TerraMindWater, TerraMindWaterConfig};
    let (Some(vv), Some(vh)) = (r.post_vv.as_deref(), r.post_vh.as_deref()) else {
        bail!("it needs the post-event scene's VV and VH");
    };
    let settings = TerraMindWaterConfig {
        variant: cfg.variant.clone(),
        checkpoint: cfg.checkpoint.clone(),
        tokenizer: cfg.tokenizer.clone(),
        segmentation: cfg.segmentation.clone(),
        water_classes: cfg.water_classes.clone(),
        random_weights: cfg.random_weights,
        modalities: vec![terrastream_model::Modality::S1GRD],
        ..TerraMindWaterConfig::default()
    };
    let key = format!("{settings:?}");
    let mut cache = TERRAMIND.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if cache.as_ref().is_none_or(|(k, _)| *k != key) {
        *cache = None;
        *cache = Some((key, TerraMindWater::load(&settings)?));
    }
    let Some((_, model)) = cache.as_ref() else { bail!("terramind model not loaded") };
    let input = TerraMindInput { width: r.grid.width, height: r.grid.height, s1grd: Some([vv, vh]), s2l2a: None };
    Ok((model.water(&input)?, model.is_random()))
}

fn ids(items: &[SceneItem]) -> Vec<String> {
    items.iter().map(|i| i.id().to_string()).collect()
}

/// A file-name-safe id: the request's name, else `flood-<event time>`.
fn event_id(req: &EventRequest) -> String {
    let raw = match &req.name {
        Some(n) if !n.trim().is_empty() => n.trim().to_string(),
        _ => format!("flood-{}", req.event_time.format("%Y%m%dT%H%M%SZ")),
    };
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Legend of the class COG (values of [`FloodClass`]).
pub fn class_colours() -> ColourTable {
    let c = |value: FloodClass, rgb, name: &str| ClassColour {
        value: value as u8,
        rgb,
        name: name.into(),
    };
    ColourTable(vec![
        c(FloodClass::Dry, [230, 220, 190], "dry"),
        c(FloodClass::PermanentWater, [20, 80, 255], "permanent water"),
        c(FloodClass::Flood, [230, 30, 30], "flood"),
        c(FloodClass::NoData, [0, 0, 0], "no data"),
    ])
}

fn split_json(s: &Split) -> Value {
    let f = |v: f32| if v.is_finite() { json!(v) } else { Value::Null };
    json!({
        "feature": s.feature,
        "threshold": f(s.threshold),
        "source": format!("{:?}", s.source),
        "water_fraction": f(s.water_fraction),
        "pixels": s.pixels,
    })
}

/// The STAC item of the event's outputs: footprint of the grid, the post-event acquisition time, one asset
/// per output file with its size and checksum, `derived_from` links to the scenes' ids.
fn stac_item(
    event_id: &str,
    req: &EventRequest,
    scenes: &EventScenes,
    grid: &Grid,
    out_dir: &Path,
    flooded_km2: f64,
) -> Result<Value> {
    let footprint = Footprint::of_window(
        &GeoTransform(grid.transform),
        grid.width,
        grid.height,
        &ToWgs84::new(grid.epsg)?,
    )?;
    let ring: Vec<[f64; 2]> = footprint.ring.iter().map(|&(x, y)| [x, y]).collect();
    let datetime = scenes.post[0]
        .datetime()
        .with_context(|| format!("item {}", scenes.post[0].id()))?;
    let t = grid.transform;
    let mut assets = serde_json::Map::new();
    let entries: [(&str, &str, &str, &[&str], Option<Value>); 6] = [
        (
            "classes",
            files::CLASSES,
            stac_out::COG_MEDIA_TYPE,
            &["data"],
            Some(json!([{
                "data_type": "uint8", "nodata": FloodClass::NoData as u8,
                "classification:classes": FloodClass::ALL.iter().map(|(c, n)| json!({"value": *c as u8, "name": n})).collect::<Vec<_>>(),
            }])),
        ),
        (
            "water_probability",
            files::PROBABILITY,
            stac_out::COG_MEDIA_TYPE,
            &["data"],
            Some(json!([{
                "data_type": "float32", "nodata": PROBABILITY_NODATA,
            }])),
        ),
        (
            "flood_polygons_geojson",
            files::POLYGONS_GEOJSON,
            "application/geo+json",
            &["data"],
            None,
        ),
        (
            "flood_polygons_geoparquet",
            files::POLYGONS_PARQUET,
            stac_out::PARQUET_MEDIA_TYPE,
            &["data"],
            None,
        ),
        (
            "quicklook",
            files::QUICKLOOK,
            "image/png",
            &["overview", "visual"],
            None,
        ),
        ("summary", files::SUMMARY, "application/json", &["metadata"], None),
    ];
    for (key, name, media, roles, bands) in entries {
        let path = out_dir.join(name);
        let (size, checksum) = stac_out::file_checksum(&path)?;
        let mut a = json!({"href": format!("./{name}"), "type": media, "roles": roles, "file:size": size, "file:checksum": checksum});
        if let Some(b) = bands {
            a["raster:bands"] = b;
        }
        assets.insert(key.into(), a);
    }
    let mut links = vec![json!({"rel": "self", "href": format!("./{}", files::ITEM), "type": "application/json"})];
    for item in scenes.post.iter().chain(&scenes.reference).chain(scenes.s2.iter()) {
        let href = item
            .item
            .links
            .iter()
            .find(|l| l.rel == "self")
            .map(|l| l.href.to_string());
        if let Some(href) = href {
            links.push(json!({"rel": "derived_from", "href": href, "title": item.id()}));
        }
    }
    Ok(json!({
        "type": "Feature",
        "stac_version": stac_out::STAC_VERSION,
        "stac_extensions": [stac_out::PROJECTION_EXTENSION, stac_out::RASTER_EXTENSION, stac_out::FILE_EXTENSION],
        "id": event_id,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "bbox": footprint.bbox(),
        "properties": {
            "datetime": datetime.to_rfc3339_opts(SecondsFormat::Millis, true),
            "title": req.name,
            "proj:epsg": grid.epsg,
            "proj:shape": [grid.height, grid.width],
            "proj:transform": [t[1], t[2], t[0], t[4], t[5], t[3]],
            "terrastream:event_time": req.event_time.to_rfc3339_opts(SecondsFormat::Secs, true),
            "terrastream:flooded_km2": flooded_km2,
            "terrastream:post_event_scenes": ids(&scenes.post),
            "terrastream:reference_scenes": ids(&scenes.reference),
        },
        "assets": assets,
        "links": links,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(aoi: Value) -> EventRequest {
        EventRequest {
            name: Some("Valencia 2024".into()),
            aoi,
            event_time: "2024-10-29T00:00:00Z".parse().expect("t"),
        }
    }

    #[test]
    fn validation_names_the_field() {
        let cfg = EventConfig {
            stac: "http://127.0.0.1:1".into(),
            max_area_km2: 100.0,
            ..EventConfig::default()
        };
        let square = |d: f64| json!({"type": "Polygon", "coordinates": [[[0, 0], [d, 0], [d, d], [0, d], [0, 0]]]});
        validate_request(&cfg, &request(square(0.05))).expect("a 30 km² AOI is fine");
        let err = |c: &EventConfig, v: Value| validate_request(c, &request(v)).expect_err("invalid").to_string();
        assert!(err(&cfg, square(1.0)).contains("exceeds the limit max_area_km2"));
        assert!(err(&cfg, json!({"type": "LineString", "coordinates": []})).starts_with("aoi:"));
        let bad = EventConfig {
            methods: vec!["sar".into()],
            ..cfg.clone()
        };
        assert!(err(&bad, square(0.05)).contains("methods: unknown method \"sar\""));
        let bad = EventConfig {
            stac: " ".into(),
            ..cfg.clone()
        };
        assert!(err(&bad, square(0.05)).starts_with("stac:"));
        let bad = EventConfig {
            cog_tile_size: 100,
            ..cfg
        };
        assert!(err(&bad, square(0.05)).starts_with("cog_tile_size"));
    }

    #[test]
    fn config_defaults_and_unknown_keys() {
        let cfg: EventConfig = toml::from_str("stac = \"http://x\"\nafter_days = 6").expect("config");
        assert_eq!(
            (cfg.after_days, cfg.reference_days, cfg.resolution_m),
            (6.0, 60.0, 10.0)
        );
        assert_eq!(cfg.s1_collection, "sentinel-1-grd");
        assert_eq!(cfg.methods, ["s1", "s2"]);
        let e = toml::from_str::<EventConfig>("stac = \"http://x\"\nafterdays = 6").expect_err("unknown key");
        assert!(e.to_string().contains("afterdays"), "{e}");
        let cfg: EventConfig = toml::from_str("s1_radiometry = \"db\"").expect("radiometry");
        assert_eq!(cfg.s1_radiometry, Some(Radiometry::Db));
    }

    #[test]
    fn event_ids_are_file_names() {
        let mut req = request(json!(null));
        assert_eq!(event_id(&req), "Valencia-2024");
        req.name = None;
        assert_eq!(event_id(&req), "flood-20241029T000000Z");
    }
}

//! `terrastream flood run` end to end on the real Sen1Floods11 chip `Spain_7370579`: the real test
//! STAC server (stac-server crate) answers the searches, the real HTTP server serves the chip's
//! files with range requests. Outputs are checked by GDAL (COG validator, class counts, IoU against
//! `LabelHand.tif`), OGR (polygon areas) and DuckDB (the GeoParquet polygons), not by our code.

use std::path::Path;

use serde_json::{Value, json};

use super::chip;
use crate::common::http::DataServer;
use crate::common::stac_api::StacApi;
use crate::common::*;

pub(super) const S1_COLLECTION: &str = "sentinel-1-grd";
const S2_COLLECTION: &str = "sentinel-2-l1c";
/// The event time the test maps. The chip's acquisition date is not in its files; the items below
/// are dated a few days after this, before it for the reference.
pub(super) const EVENT_TIME: &str = "2019-09-15T00:00:00Z";

/// The chip's georeferencing and band names as GDAL reads them.
fn gdal_meta(path: &Path) -> Value {
    python_json(
        &gdal_python(),
        r#"
import json, sys
from osgeo import gdal, osr
gdal.UseExceptions()
ds = gdal.Open(sys.argv[1])
gt = ds.GetGeoTransform()
srs = osr.SpatialReference(wkt=ds.GetProjection())
w, h = ds.RasterXSize, ds.RasterYSize
print(json.dumps({"transform": gt, "width": w, "height": h, "epsg": int(srs.GetAuthorityCode(None)),
  "bbox": [gt[0], gt[3] + h * gt[5], gt[0] + w * gt[1], gt[3]],
  "bands": [ds.GetRasterBand(i + 1).GetDescription() for i in range(ds.RasterCount)],
  "dtype": gdal.GetDataTypeName(ds.GetRasterBand(1).DataType)}))
"#,
        &[path.to_str().expect("path")],
    )
}

/// A STAC item **made for the test** (Sen1Floods11 publishes none): geometry, bbox and projection
/// from GDAL's reading of the file, one asset per key pointing at the HTTP server, each naming the
/// file's bands (`bands` as GDAL describes them, or `names` where the file has no descriptions).
fn item(id: &str, collection: &str, datetime: &str, file: &Path, url: &str, keys: &[&str], names: &[String]) -> Value {
    let m = gdal_meta(file);
    let [w, s, e, n]: [f64; 4] = serde_json::from_value(m["bbox"].clone()).expect("bbox");
    let gt: [f64; 6] = serde_json::from_value(m["transform"].clone()).expect("transform");
    let rel = file
        .strip_prefix(shared_data())
        .expect("under shared data")
        .to_str()
        .expect("path")
        .to_string();
    let described: Vec<String> = serde_json::from_value(m["bands"].clone()).expect("bands");
    let band_names = if described.iter().all(|d| !d.is_empty()) {
        described
    } else {
        names.to_vec()
    };
    let bands: Vec<Value> = band_names.iter().map(|b| json!({"name": b})).collect();
    let mut assets = serde_json::Map::new();
    for k in keys {
        assets.insert(
            (*k).into(),
            json!({"href": format!("{url}/{rel}"), "type": "image/tiff; application=geotiff", "bands": bands,
                   "raster:bands": band_names.iter().map(|_| json!({"data_type": m["dtype"].as_str().map(str::to_lowercase),
                       "unit": if collection == S1_COLLECTION { Some("dB") } else { None }})).collect::<Vec<_>>()}),
        );
    }
    json!({
        "type": "Feature", "stac_version": "1.1.0", "id": id, "collection": collection,
        "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
        "bbox": [w, s, e, n],
        "properties": {"datetime": datetime, "sat:relative_orbit": 8, "sat:orbit_state": "descending",
                       "proj:code": format!("EPSG:{}", m["epsg"]), "proj:shape": [m["height"], m["width"]],
                       "proj:transform": [gt[1], gt[2], gt[0], gt[4], gt[5], gt[3]]},
        "links": [], "assets": assets,
    })
}

pub(super) fn collection(id: &str) -> stac::Collection {
    serde_json::from_value(json!({
        "type": "Collection", "stac_version": "1.1.0", "id": id, "description": "made for the flood run test",
        "license": "other", "links": [],
        "extent": {"spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]}, "temporal": {"interval": [[null, null]]}},
    }))
    .expect("collection")
}

/// The data server with the chip and a STAC API whose one S1 item `id` was acquired after the
/// event; keep both alive while they are used.
pub(super) fn chip_after_event(id: &str) -> (DataServer, StacApi) {
    let data = DataServer::start(shared_data());
    let stac = StacApi::start(
        collection(S1_COLLECTION),
        vec![s1_item(id, "2019-09-18T06:00:00Z", &data.url())],
    );
    (data, stac)
}

pub(super) fn s1_item(id: &str, datetime: &str, url: &str) -> stac::Item {
    serde_json::from_value(item(
        id,
        S1_COLLECTION,
        datetime,
        &chip("S1Hand"),
        url,
        &["vv", "vh"],
        &[],
    ))
    .expect("item")
}

/// The chip's bbox, `w,s,e,n`, as GDAL computes it.
pub(super) fn chip_bbox() -> String {
    let b: Vec<f64> = serde_json::from_value(gdal_meta(&chip("S1Hand"))["bbox"].clone()).expect("bbox");
    b.iter().map(f64::to_string).collect::<Vec<_>>().join(",")
}

fn flood_run(stac: &str, config: &Path, out: &Path, event_time: &str) -> std::process::Output {
    let bbox = chip_bbox();
    terrastream(&[
        "flood",
        "run",
        "--aoi",
        &bbox,
        "--event-time",
        event_time,
        "--stac",
        stac,
        "--config",
        config.to_str().expect("path"),
        "--name",
        "spain-7370579",
        "--out",
        out.to_str().expect("path"),
    ])
}

/// Class counts, COG validation and the IoU of water (classes 1 and 2 of a class raster, 1 of a
/// water mask) against the hand label, by GDAL and NumPy.
const SCORE: &str = r#"
import json, sys
import numpy as np
from osgeo import gdal
from osgeo_utils.samples import validate_cloud_optimized_geotiff as v
gdal.UseExceptions()
path, label, kind = sys.argv[1:4]
ds = gdal.Open(path)
m = ds.GetRasterBand(1).ReadAsArray()
lab = gdal.Open(label).ReadAsArray()
water = (m == 1) | (m == 2) if kind == "classes" else (m == 1)
valid = lab != -1
pred, truth = water & valid, (lab == 1) & valid
_, errors, _ = v.validate(ds, full_check=True)
gt = ds.GetGeoTransform()
print(json.dumps({"iou": float((pred & truth).sum()) / float((pred | truth).sum()),
  "counts": {str(int(k)): int(c) for k, c in zip(*np.unique(m, return_counts=True))},
  "water": int(water.sum()), "cog_errors": errors, "nodata": ds.GetRasterBand(1).GetNoDataValue(),
  "colours": ds.GetRasterBand(1).GetColorTable() is not None, "pixel_area": abs(gt[1] * gt[5]),
  "shape": list(m.shape)}))
"#;

pub(super) fn score(path: &Path, kind: &str) -> Value {
    let label = chip("LabelHand");
    python_json(
        &gdal_python(),
        SCORE,
        &[path.to_str().expect("path"), label.to_str().expect("path"), kind],
    )
}

/// `flood water` on the same chip with `method` (water.rs's run, with its checks), scored the
/// same way as the run's class raster.
fn flood_water(dir: &Path, method: &str) -> Value {
    super::water::run_method(dir, method, &[]);
    score(&dir.join(format!("{method}.tif")), "mask")
}

#[test]
fn flood_run_maps_the_chip_end_to_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = DataServer::start(shared_data());
    let url = data.url();
    let stac = StacApi::start(
        collection(S1_COLLECTION),
        vec![s1_item("S1_Spain_7370579", "2019-09-18T06:00:00Z", &url)],
    );
    stac.add_collection(collection(S2_COLLECTION));
    // Used only if the file had no band descriptions: the L1C order the dataset documents.
    let s2_names: Vec<String> = [
        "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
    ]
    .map(String::from)
    .to_vec();
    let s2 = item(
        "S2_Spain_7370579",
        S2_COLLECTION,
        "2019-09-18T10:50:00Z",
        &chip("S2Hand"),
        &url,
        &["data"],
        &s2_names,
    );
    stac.add_item(serde_json::from_value(s2).expect("s2 item"));
    let config = dir.path().join("event.toml");
    std::fs::write(
        &config,
        format!("s2_collection = \"{S2_COLLECTION}\"\nafter_days = 12\n"),
    )
    .expect("config");
    let out = dir.path().join("event");

    let run = flood_run(&stac.url, &config, &out, EVENT_TIME);
    assert!(run.status.success(), "flood run: {}", describe(&run));
    let summary: Value = serde_json::from_slice(&run.stdout).expect("summary on stdout");
    let on_disk: Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).expect("summary.json")).expect("json");
    assert_eq!(summary, on_disk);
    assert_eq!(summary["methods"], json!(["s1", "s2"]), "{summary}");
    assert_eq!(summary["scenes"]["post_event"], json!(["S1_Spain_7370579"]));
    assert_eq!(summary["scenes"]["s2"], "S2_Spain_7370579");
    assert_eq!(summary["scenes"]["reference"], Value::Null);
    assert!(
        summary["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("no pre-event reference")),
        "{summary}"
    );
    for stage in ["search", "read", "water", "change", "write", "total"] {
        assert!(
            summary["timings_s"][stage].as_f64().is_some_and(|s| s >= 0.0),
            "{stage}: {summary}"
        );
    }
    println!("flood run timings (s): {}", summary["timings_s"]);
    assert!(
        stac.searches() >= 3,
        "post, reference and S2 searches: {}",
        stac.searches()
    );
    assert!(
        data.requests()
            .iter()
            .any(|r| r.path.ends_with("S1Hand.tif") && r.range.is_some())
    );

    // The class COG: valid, no permanent water without a reference, water IoU as `flood water`'s.
    let classes = score(&out.join("flood_classes.tif"), "classes");
    assert_eq!(classes["cog_errors"], json!([]), "{classes}");
    assert_eq!(classes["nodata"].as_f64(), Some(255.0));
    assert_eq!(classes["colours"], true);
    assert_eq!(classes["shape"], json!([512, 512]));
    assert!(
        classes["counts"].get("1").is_none(),
        "permanent water without a reference: {classes}"
    );
    let reference = flood_water(dir.path(), "ensemble");
    let (iou_run, iou_water) = (
        classes["iou"].as_f64().expect("iou"),
        reference["iou"].as_f64().expect("iou"),
    );
    println!("water IoU vs LabelHand: flood run {iou_run:.4}, flood water --method ensemble {iou_water:.4}");
    assert!(
        (iou_run - iou_water).abs() <= 0.01,
        "flood run {iou_run} vs flood water {iou_water}"
    );
    // The same pixels up to rounding: `flood run` reads S1 through the warper (bilinear at pixel centres).
    let (a, b) = (
        classes["water"].as_f64().expect("water"),
        reference["water"].as_f64().expect("water"),
    );
    assert!(
        (a - b).abs() <= 0.001 * 512.0 * 512.0,
        "water pixels: flood run {a}, flood water {b}"
    );
    let flood_px = classes["counts"]["2"].as_u64().expect("flood pixels");
    let prob = score(&out.join("water_probability.tif"), "mask");
    assert_eq!(prob["cog_errors"], json!([]), "{prob}");

    // Polygons: OGR's area of the GeoJSON against the raster's flood pixels (degrees², the grid is
    // EPSG:4326 like the GeoJSON); DuckDB reads the GeoParquet and its `geo` metadata.
    let areas = python_json(
        &gdal_python(),
        r#"
import json, sys
from osgeo import ogr
ds = ogr.Open(sys.argv[1]); layer = ds.GetLayer(0)
area = sum(f.GetGeometryRef().GetArea() for f in layer)
print(json.dumps({"area": area, "features": layer.GetFeatureCount()}))
"#,
        &[out.join("flood_polygons.geojson").to_str().expect("path")],
    );
    let raster_area = flood_px as f64 * classes["pixel_area"].as_f64().expect("pixel area");
    let pa = areas["area"].as_f64().expect("area");
    println!(
        "flood polygons: {} features, {pa:.6e} deg² vs raster {raster_area:.6e} deg²",
        areas["features"]
    );
    assert!(
        raster_area > 0.0 && (pa / raster_area - 1.0).abs() < 0.01,
        "{areas} vs {raster_area}"
    );
    let duck = python_json(
        &venv_python(),
        r#"
import json, sys, duckdb
c = duckdb.connect()
p = sys.argv[1].replace("'", "''")
n, px = c.execute(f"select count(*), sum(pixels) from read_parquet('{p}')").fetchone()
kv = c.execute(f"select decode(value) from parquet_kv_metadata('{p}') where decode(key) = 'geo'").fetchone()
geo = json.loads(kv[0])
wkb = c.execute(f"select octet_length(geometry::BLOB) from read_parquet('{p}') limit 1").fetchone()
print(json.dumps({"rows": n, "pixels": int(px or 0), "geo": geo, "wkb_bytes": wkb[0] if wkb else None}))
"#,
        &[out.join("flood_polygons.parquet").to_str().expect("path")],
    );
    assert_eq!(duck["rows"], areas["features"], "{duck}");
    assert_eq!(duck["pixels"].as_u64(), Some(flood_px), "{duck}");
    assert_eq!(duck["geo"]["version"], "1.1.0");
    assert_eq!(duck["geo"]["columns"]["geometry"]["encoding"], "WKB");
    assert_eq!(duck["geo"]["columns"]["geometry"]["crs"]["id"]["code"], 4326);

    // The STAC item lists every output, and its files are there.
    let item: Value =
        serde_json::from_slice(&std::fs::read(out.join("item.json")).expect("item.json")).expect("item JSON");
    assert_eq!(item["type"], "Feature");
    assert_eq!(item["id"], "spain-7370579");
    let assets = item["assets"].as_object().expect("assets");
    for key in [
        "classes",
        "water_probability",
        "flood_polygons_geojson",
        "flood_polygons_geoparquet",
        "quicklook",
        "summary",
    ] {
        let href = assets[key]["href"].as_str().expect("href");
        let path = out.join(href.trim_start_matches("./"));
        assert_eq!(
            std::fs::metadata(&path).map(|m| m.len()).ok(),
            assets[key]["file:size"].as_u64(),
            "{key}"
        );
    }
    let png = std::fs::read(out.join("quicklook.png")).expect("png");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let km2 = summary["flooded_km2"].as_f64().expect("km2");
    assert!(km2 > 0.0 && item["properties"]["terrastream:flooded_km2"].as_f64() == Some(km2));
}

#[test]
fn a_reference_of_the_same_scene_gives_no_flood() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = DataServer::start(shared_data());
    let url = data.url();
    // The same acquisition twice: once after the event, once (same orbit) before it.
    let stac = StacApi::start(
        collection(S1_COLLECTION),
        vec![
            s1_item("S1_after", "2019-09-18T06:00:00Z", &url),
            s1_item("S1_before", "2019-09-06T06:00:00Z", &url),
        ],
    );
    let config = dir.path().join("event.toml");
    std::fs::write(&config, "methods = [\"s1\"]\n").expect("config");
    let out = dir.path().join("event");
    let run = flood_run(&stac.url, &config, &out, EVENT_TIME);
    assert!(run.status.success(), "flood run: {}", describe(&run));
    let summary: Value = serde_json::from_slice(&run.stdout).expect("summary");
    assert_eq!(summary["scenes"]["reference"], json!(["S1_before"]), "{summary}");
    assert_eq!(summary["flooded_km2"].as_f64(), Some(0.0), "{summary}");
    let classes = score(&out.join("flood_classes.tif"), "classes");
    let s1 = flood_water(dir.path(), "s1");
    assert!(classes["counts"].get("2").is_none(), "no flood: {classes}");
    let (a, b) = (
        classes["counts"]["1"].as_f64().expect("permanent"),
        s1["water"].as_f64().expect("water"),
    );
    assert!(
        b > 0.0 && (a - b).abs() <= 0.001 * 512.0 * 512.0,
        "all water is permanent: {classes} vs {s1}"
    );
    assert!(
        summary["permanent_water_km2"].as_f64().is_some_and(|k| k > 0.0),
        "{summary}"
    );
}

#[test]
fn no_post_event_scene_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stac = StacApi::start(
        collection(S1_COLLECTION),
        vec![s1_item("S1_after", "2019-09-18T06:00:00Z", "http://127.0.0.1:9")],
    );
    let config = dir.path().join("event.toml");
    std::fs::write(&config, "").expect("config");
    let out = dir.path().join("event");
    let run = flood_run(&stac.url, &config, &out, "2020-01-01T00:00:00Z");
    assert_eq!(run.status.code(), Some(1), "{}", describe(&run));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("no Sentinel-1 scene"), "{err}");
    assert!(
        err.contains("between 2020-01-01T00:00:00Z and 2020-01-13T00:00:00Z"),
        "names the time window: {err}"
    );
    assert!(err.contains("intersects the AOI (bbox"), "names the AOI: {err}");
    assert!(!out.join("summary.json").exists());
}

#[test]
fn terramind_joins_the_ensemble_only_with_weights() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_data, stac) = chip_after_event("S1_after");
    let config = dir.path().join("event.toml");
    // No weights: the event is still mapped, by S1 alone, and the summary says why TerraMind
    // is left out.
    std::fs::write(&config, "methods = [\"s1\", \"terramind\"]\nvariant = \"tiny\"\n").expect("config");
    let run = flood_run(&stac.url, &config, &dir.path().join("a"), EVENT_TIME);
    assert!(run.status.success(), "flood run: {}", describe(&run));
    let summary: Value = serde_json::from_slice(&run.stdout).expect("summary");
    assert_eq!(summary["methods"], json!(["s1"]), "{summary}");
    let warnings = summary["warnings"].to_string();
    assert!(warnings.contains("terramind left out") && warnings.contains("TerraMind_v1_<variant>.pt"), "{summary}");
    // Random weights, asked for: TerraMind's TiM land cover votes, and the summary says it is noise.
    std::fs::write(&config, "methods = [\"s1\", \"terramind\"]\nvariant = \"tiny\"\nrandom_weights = true\n")
        .expect("config");
    let run = flood_run(&stac.url, &config, &dir.path().join("b"), EVENT_TIME);
    assert!(run.status.success(), "flood run: {}", describe(&run));
    let summary: Value = serde_json::from_slice(&run.stdout).expect("summary");
    assert_eq!(summary["methods"], json!(["s1", "terramind"]), "{summary}");
    assert!(summary["warnings"].to_string().contains("RANDOM weights"), "{summary}");
}

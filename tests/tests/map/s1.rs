//! Sentinel-1 next to Sentinel-2: the scene source's second pixel column and the `map` job
//! with both modalities.
//!
//! The bundled data has no Sentinel-1 acquisition over the Sentinel-2 tile 29RKH, so the
//! positive path uses the Sen1Floods11 chip, whose S1 (VV, VH in dB) and S2 (13 L1C bands)
//! files share one EPSG:4326 grid:
//! - the Sentinel-2 item is S2Hand warped by GDAL (nearest neighbour, so every value is a real
//!   L1C number) onto the 10 m UTM 30N grid, one COG per band as Earth Search lays them out,
//!   B10 left out: the Sentinel-2 grid is in UTM, as in production, and Sentinel-1 has to be
//!   reprojected onto it. (L1C values stand in for L2A: the model runs with random weights.)
//! - the Sentinel-1 item is S1Hand's two bands, copied value for value into one COG each.
//! - datetimes are made up (a day apart); bboxes are the files' own.
//!
//! Every chip's Sentinel-1 column is compared with `gdal.Warp` of S1Hand onto that chip's grid.
//! The paths without a usable match use the real 29RKH scene and the real GRD files (radar
//! geometry, GCPs) of a 2018 acquisition over India.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, FixedSizeListArray, Float32Array, Float64Array, RecordBatch};
use futures::StreamExt;
use terrastream_ingest::bands::S2L2A;
use terrastream_ingest::grid::EdgePolicy;
use terrastream_ingest::item::SceneItem;
use terrastream_ingest::pairing::pair_scenes;
use terrastream_ingest::sar::{Radiometry, S1GRD};
use terrastream_ingest::{ChipLedger, S1Options, SceneOptions, SceneSource};

use super::*;

const FLOODS_S1: &str = "sen1floods11/Spain_7370579_S1Hand.tif";
const GRD_DIR: &str = "rio-tiler-pds/S1A_IW_GRDH_1SDV_20180716T004042";
const GRD_ID: &str = "S1A_IW_GRDH_1SDV_20180716T004042_20180716T004107_022812_02792A_FD5B";

/// Builds the Sen1Floods11 items (see the module docs) in argv[1]; prints their paths and the
/// Sentinel-2 grid.
const FLOODS_ITEMS: &str = r#"
import json, os, sys
from osgeo import gdal, osr
gdal.UseExceptions()
out, s2_path, s1_path = sys.argv[1:]
keys = ["coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08", "nir09",
        None, "swir16", "swir22"]  # S2Hand's bands B1..B8, B8A, B9, B10, B11, B12
warped = gdal.Warp("", s2_path, format="MEM", dstSRS="EPSG:32630", xRes=10, yRes=10, targetAlignedPixels=True,
                   resampleAlg="near", srcNodata=0, dstNodata=0, outputType=gdal.GDT_UInt16)
cog = ["BLOCKSIZE=128", "COMPRESS=DEFLATE"]
assets = {}
for i, key in enumerate(keys):
    if key is None:
        continue
    path = os.path.join(out, f"s2_{key}.tif")
    gdal.Translate(path, warped, format="COG", bandList=[i + 1], creationOptions=cog)
    assets[key] = {"href": path, "type": "image/tiff; application=geotiff; profile=cloud-optimized"}
gt, w, h = warped.GetGeoTransform(), warped.RasterXSize, warped.RasterYSize
utm, ll = osr.SpatialReference(), osr.SpatialReference()
utm.ImportFromEPSG(32630); ll.ImportFromEPSG(4326)
ll.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
to_ll = osr.CoordinateTransformation(utm, ll)
corners = [to_ll.TransformPoint(gt[0] + c * gt[1], gt[3] + r * gt[5]) for c in (0, w) for r in (0, h)]
s2_bbox = [min(p[0] for p in corners), min(p[1] for p in corners), max(p[0] for p in corners), max(p[1] for p in corners)]
def item(id, dt, bbox, assets, props):
    poly = [[bbox[0], bbox[1]], [bbox[2], bbox[1]], [bbox[2], bbox[3]], [bbox[0], bbox[3]], [bbox[0], bbox[1]]]
    return {"type": "Feature", "stac_version": "1.0.0", "id": id, "bbox": bbox,
            "geometry": {"type": "Polygon", "coordinates": [poly]},
            "properties": dict(datetime=dt, **props), "links": [], "assets": assets}
s2_item = item("S2_Spain_7370579", "2019-09-18T10:56:00Z", s2_bbox, assets, {"proj:epsg": 32630, "proj:shape": [h, w]})
s1 = gdal.Open(s1_path)
s1_assets = {}
for i, key in enumerate(["vv", "vh"]):
    path = os.path.join(out, f"s1_{key}.tif")
    gdal.Translate(path, s1, format="COG", bandList=[i + 1], creationOptions=cog)
    s1_assets[key] = {"href": path, "type": "image/tiff; application=geotiff; profile=cloud-optimized"}
g = s1.GetGeoTransform()
s1_bbox = [g[0], g[3] + s1.RasterYSize * g[5], g[0] + s1.RasterXSize * g[1], g[3]]
s1_item = item("S1_Spain_7370579", "2019-09-17T18:00:00Z", s1_bbox, s1_assets, {"sar:polarizations": ["VV", "VH"]})
paths = {}
for name, it in [("s2", s2_item), ("s1", s1_item)]:
    paths[name] = os.path.join(out, name + ".json")
    with open(paths[name], "w") as f:
        json.dump(it, f)
print(json.dumps({"s2": paths["s2"], "s1": paths["s1"], "geotransform": gt, "size": [w, h]}))
"#;

/// `gdal.Warp` of argv[1] (all bands) onto each grid of the JSON file argv[2] (`[x0, y1, res,
/// size]` in EPSG:argv[3]): bilinear, plain 4-sample kernel, exact transforms; all grids' bands
/// as little-endian Float32 into argv[4].
const GDAL_WARP_CHIPS: &str = r#"
import json, sys
from osgeo import gdal
gdal.UseExceptions()
src, grids, epsg, out = sys.argv[1:]
with open(out, "wb") as f:
    for x0, y1, res, n in json.load(open(grids)):
        ds = gdal.Warp("", src, format="MEM", dstSRS="EPSG:" + epsg, outputBounds=(x0, y1 - n * res, x0 + n * res, y1),
                       width=n, height=n, resampleAlg="bilinear", dstNodata=float("nan"), outputType=gdal.GDT_Float32,
                       errorThreshold=0, warpOptions=["XSCALE=1", "YSCALE=1"])
        f.write(ds.ReadAsArray().astype("<f4").tobytes())
print(json.dumps({"ok": True}))
"#;

/// The Sen1Floods11 items in `dir`: (S2 item, S1 item, S2 grid geotransform).
fn floods_items(dir: &Path) -> (PathBuf, PathBuf, Vec<f64>) {
    let data = shared_data().join("sen1floods11");
    let v = python_json(
        &gdal_python(),
        FLOODS_ITEMS,
        &[
            &dir.display().to_string(),
            &data.join("Spain_7370579_S2Hand.tif").display().to_string(),
            &data.join("Spain_7370579_S1Hand.tif").display().to_string(),
        ],
    );
    let gt = v["geotransform"].as_array().expect("gt").iter().map(|x| x.as_f64().expect("f64")).collect();
    let path = |k: &str| PathBuf::from(v[k].as_str().expect("path"));
    (path("s2"), path("s1"), gt)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

fn options(chip: usize) -> SceneOptions {
    SceneOptions {
        modality: S2L2A,
        chip_size: chip,
        stride: chip,
        edge: EdgePolicy::Snap,
        rewrites: vec![],
        cloud_mask: false,
        request_budget: None,
    }
}

fn f32_values(batch: &RecordBatch, column: &str) -> Vec<f32> {
    let list = batch.column_by_name(column).unwrap_or_else(|| panic!("column {column}"));
    let list = list.as_any().downcast_ref::<FixedSizeListArray>().expect("fixed-size list");
    list.values().as_any().downcast_ref::<Float32Array>().expect("f32").values().to_vec()
}

fn scalar_f32(batch: &RecordBatch, column: &str) -> Vec<f32> {
    let a = batch.column_by_name(column).unwrap_or_else(|| panic!("column {column}"));
    a.as_any().downcast_ref::<Float32Array>().expect("f32").values().to_vec()
}

fn transforms(batch: &RecordBatch) -> Vec<[f64; 6]> {
    let list = batch.column_by_name("transform").expect("transform");
    let list = list.as_any().downcast_ref::<FixedSizeListArray>().expect("list");
    let v = list.values().as_any().downcast_ref::<Float64Array>().expect("f64").values().to_vec();
    v.chunks_exact(6).map(|c| [c[0], c[1], c[2], c[3], c[4], c[5]]).collect()
}

#[test]
fn sentinel_1_column_is_gdal_warp_of_s1hand_onto_each_chip() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (s2_path, s1_path, gt) = floods_items(tmp.path());
    let s2 = SceneItem::from_path(&s2_path).expect("S2 item");
    let s1 = SceneItem::from_path(&s1_path).expect("S1 item");
    let pairs = pair_scenes(vec![s2.clone()], &[s1], 6.0).expect("pairing");
    assert_eq!(pairs[0].s1.as_ref().map(SceneItem::id), Some("S1_Spain_7370579"), "the items must pair");

    // Small chips: many chips per scene, edge chips with partial data among them.
    let chip = 96;
    let ledger = Arc::new(ChipLedger::default());
    // Exact transforms on both sides, so the only differences are arithmetic.
    let s1_options = S1Options { max_error_px: 0.0, ..S1Options::new(S1GRD, Radiometry::Db) };
    let source = SceneSource::new(options(chip), Arc::clone(&ledger)).expect("source").with_s1(s1_options);
    let schema = source.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let s2_at = names.iter().position(|n| *n == "S2L2A").expect("S2L2A");
    assert_eq!(names[s2_at + 1], "S1GRD", "the S1 column follows the S2 column: {names:?}");
    let rt = runtime();
    let batches: Vec<RecordBatch> =
        rt.block_on(async { source.stream_pairs(pairs, 2).map(|b| b.expect("batch")).collect().await });
    let snap = ledger.snapshot();
    assert!(snap.failed.is_empty(), "{:?}", snap.failed);
    // Alone, the same scene gives the same S2 column.
    let alone = SceneSource::new(options(chip), Arc::new(ChipLedger::default())).expect("source");
    let alone: Vec<RecordBatch> =
        rt.block_on(async { alone.stream(vec![s2], 2).map(|b| b.expect("batch")).collect().await });
    assert_eq!(alone.len(), batches.len());

    let mut grids = Vec::new();
    let mut ours = Vec::new();
    let mut n_chips = 0;
    for (batch, alone) in batches.iter().zip(&alone) {
        assert!(alone.schema().field_with_name("S1GRD").is_err());
        let s2_px = f32_values(batch, "S2L2A");
        let s2_alone = f32_values(alone, "S2L2A");
        assert!(s2_px.iter().zip(&s2_alone).all(|(a, b)| a.to_bits() == b.to_bits()), "S2 column changed");
        let s1_px = f32_values(batch, "S1GRD");
        let valid = scalar_f32(batch, "valid_fraction");
        let plane = chip * chip;
        for (k, t) in transforms(batch).iter().enumerate() {
            assert_eq!(t[1], 10.0, "chips on the 10 m UTM grid");
            assert!(((t[0] - gt[0]) / 10.0).fract() == 0.0 && ((t[3] - gt[3]) / 10.0).fract() == 0.0);
            grids.push(serde_json::json!([t[0], t[3], t[1], chip]));
            let s1_chip = &s1_px[k * 2 * plane..(k + 1) * 2 * plane];
            ours.extend_from_slice(s1_chip);
            // valid_fraction counts pixels with data in all 12 + 2 bands.
            let s2_chip = &s2_px[k * 12 * plane..(k + 1) * 12 * plane];
            let n_valid = (0..plane)
                .filter(|&i| (0..12).all(|b| s2_chip[b * plane + i].is_finite()))
                .filter(|&i| (0..2).all(|b| s1_chip[b * plane + i].is_finite()))
                .count();
            assert_eq!(valid[k], n_valid as f32 / plane as f32, "chip {k}: valid_fraction");
            n_chips += 1;
        }
    }
    assert!(n_chips >= 16, "{n_chips} chips");

    let grids_file = tmp.path().join("grids.json");
    std::fs::write(&grids_file, serde_json::to_vec(&grids).expect("json")).expect("write");
    let gdal_out = tmp.path().join("gdal.f32");
    python_json(
        &gdal_python(),
        GDAL_WARP_CHIPS,
        &[
            &shared_data().join(FLOODS_S1).display().to_string(),
            &grids_file.display().to_string(),
            "32630",
            &gdal_out.display().to_string(),
        ],
    );
    let gdal: Vec<f32> = std::fs::read(&gdal_out)
        .expect("GDAL output")
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(gdal.len(), ours.len());
    let (mut worst, mut both, mut mismatch, mut worst_shifted) = (0.0f32, 0usize, 0usize, 0.0f32);
    for (o, g) in ours.chunks_exact(chip * chip).zip(gdal.chunks_exact(chip * chip)) {
        for i in 0..chip * chip {
            match (o[i].is_nan(), g[i].is_nan()) {
                (false, false) => {
                    worst = worst.max((o[i] - g[i]).abs());
                    both += 1;
                }
                (true, true) => {}
                _ => mismatch += 1,
            }
            // The same comparison one pixel east must fail: the check sees misregistration.
            if i % chip + 1 < chip && !o[i].is_nan() && !g[i + 1].is_nan() {
                worst_shifted = worst_shifted.max((o[i] - g[i + 1]).abs());
            }
        }
    }
    eprintln!(
        "{n_chips} chips of {chip}x{chip}, 2 bands: max |ours - GDAL| {worst:.2e} dB over {both} pixels; \
         validity differs on {mismatch}; moved one pixel: {worst_shifted:.2} dB"
    );
    assert!(both > ours.len() / 2, "too few pixels valid in both: {both} of {}", ours.len());
    assert!(worst <= 1e-3, "max difference {worst} dB");
    assert_eq!(mismatch, 0, "no-data differs from GDAL's");
    assert!(worst_shifted > 1.0, "a one-pixel move must show: {worst_shifted}");
}

/// A run config reading the Sen1Floods11 items, with `s1` as the `[source.s1]` table (empty:
/// Sentinel-2 alone).
fn floods_config(dir: &Path, s2: &Path, s1_table: &str, out: &Path) -> PathBuf {
    let cfg = format!(
        r#"[source]
items = ["{s2}"]
cloud_mask = false
{s1_table}
[model]
variant = "tiny"
seed = 1
device = "cpu"
[output]
dir = "{out}"
"#,
        s2 = s2.display(),
        out = out.display()
    );
    let path = dir.join(format!("run-{}.toml", out.file_name().and_then(|n| n.to_str()).unwrap_or("out")));
    std::fs::write(&path, cfg).expect("write config");
    path
}

#[test]
fn map_with_sentinel_1_writes_embeddings_of_both_modalities() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (s2, s1, _) = floods_items(tmp.path());
    let table = format!("[source.s1]\nitems = [\"{}\"]\nmodality = \"S1GRD\"\nradiometry = \"db\"\n", s1.display());
    let both_out = tmp.path().join("both");
    let (status, summary) = map_json(&floods_config(tmp.path(), &s2, &table, &both_out), &[]);
    assert!(status.success(), "{summary:#}");
    let written = summary["chips_written"].as_u64().expect("written");
    assert!(written > 0, "{summary:#}");
    let (rows_both, files) = rows(&both_out);
    assert_eq!((rows_both.len() as u64, files), (written, 1), "{summary:#}");
    assert!(rows_both.iter().all(|r| r.3.len() == 192 && r.3.iter().all(|x| x.is_finite())), "tiny: 192 values");
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(both_out.join("_manifest/units/S2_Spain_7370579_2019-09.json")).expect("unit record"),
    )
    .expect("record json");
    assert_eq!(record["state"], "done", "{record:#}");

    // Sentinel-2 alone: the same chips, other embeddings (the S1 tokens take part).
    let alone_out = tmp.path().join("alone");
    let (status, summary) = map_json(&floods_config(tmp.path(), &s2, "", &alone_out), &[]);
    assert!(status.success(), "{summary:#}");
    let (rows_alone, _) = rows(&alone_out);
    let ids = |r: &[(String, i64, i64, Vec<f64>)]| r.iter().map(|x| (x.1, x.2)).collect::<Vec<_>>();
    assert_eq!(ids(&rows_both), ids(&rows_alone));
    for (a, b) in rows_both.iter().zip(&rows_alone) {
        let d = a.3.iter().zip(&b.3).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
        assert!(d > 1e-3, "chip {},{}: the embedding ignores Sentinel-1 ({d})", a.1, a.2);
    }

    // A changed Sentinel-1 setting is a changed unit: mapped again, not skipped.
    let table = table.replace("\"db\"", "\"db\"\nmax_days = 3");
    let (status, summary) = map_json(&floods_config(tmp.path(), &s2, &table, &both_out), &[]);
    assert!(status.success(), "{summary:#}");
    assert_eq!((summary["units_done"].as_u64(), summary["units_skipped"].as_u64()), (Some(1), Some(0)), "{summary:#}");
}

/// A STAC item for the real GRD files with `datetime` and `bbox` (the real ones: 2018-07-16,
/// over India, from productInfo.json's footprint, unless overridden).
fn grd_item(dir: &Path, datetime: &str, bbox: [f64; 4]) -> PathBuf {
    let grd = shared_data().join(GRD_DIR);
    let item = serde_json::json!({
        "type": "Feature", "stac_version": "1.0.0", "id": GRD_ID, "bbox": bbox, "geometry": null,
        "properties": {"datetime": datetime, "sar:polarizations": ["VV", "VH"]},
        "links": [],
        "assets": {
            "vv": {"href": grd.join("iw-vv.tiff").display().to_string()},
            "vh": {"href": grd.join("iw-vh.tiff").display().to_string()},
        },
    });
    let path = dir.join("grd.json");
    std::fs::write(&path, serde_json::to_vec(&item).expect("json")).expect("write");
    path
}

fn grd_table(item: &Path, required: bool) -> String {
    format!(
        "[source.s1]\nitems = [\"{}\"]\nmodality = \"S1GRD\"\nradiometry = \"dn_amplitude\"\nrequired = {required}\n",
        item.display()
    )
}

#[test]
fn a_scene_without_a_sentinel_1_match_is_skipped_or_fails() {
    let tmp = tempfile::tempdir().expect("tmp");
    let items = revisits(tmp.path(), &[(2, 19, 4.05)]);
    // The real GRD acquisition: two years earlier, half a world away.
    let grd = grd_item(tmp.path(), "2018-07-16T00:40:42Z", [75.605247, 9.225784, 78.203903, 11.190425]);

    let out = tmp.path().join("optional");
    let (status, summary) = map_json(&run_config(tmp.path(), &items, &out, &grd_table(&grd, false)), &[]);
    assert!(status.success(), "{summary:#}");
    // stride 448: 9 chips of the scene's grid, none read.
    assert_eq!(summary["chips_skipped"]["no Sentinel-1 match"], 9, "{summary:#}");
    assert_eq!((summary["chips_read"].as_u64(), summary["chips_written"].as_u64()), (Some(0), Some(0)));
    assert_eq!(rows(&out).0.len(), 0);

    let out = tmp.path().join("required");
    let (status, summary) = map_json(&run_config(tmp.path(), &items, &out, &grd_table(&grd, true)), &[]);
    assert_eq!(status.code(), Some(1), "{summary:#}");
    assert_eq!(summary["units_failed"], 1, "{summary:#}");
    let failures = summary["failures"].to_string();
    assert!(failures.contains("S2A_29RKH_20200219_0_L2A") && failures.contains("Sentinel-1"), "{failures}");
}

#[test]
fn a_sentinel_1_item_without_data_over_the_scene_leaves_no_valid_chip() {
    // The GRD files dated and boxed to match the 29RKH scene: the pairing takes them, the warp
    // (GCP geocoding, radar geometry; iw-vh.tiff is not a valid COG) finds no pixel over the
    // tile, so every chip's S1 column is no data and no chip is valid.
    let tmp = tempfile::tempdir().expect("tmp");
    let items = revisits(tmp.path(), &[(2, 19, 4.05)]);
    let grd = grd_item(tmp.path(), "2020-02-18T18:00:00Z", [-12.5, 24.0, -11.5, 25.0]);
    let out = tmp.path().join("out");
    let (status, summary) = map_json(&run_config(tmp.path(), &items, &out, &grd_table(&grd, true)), &[]);
    assert!(status.success(), "{summary:#}");
    assert_eq!(summary["chips_read"], 9, "{summary:#}");
    assert_eq!(summary["chips_written"], 0, "{summary:#}");
    assert_eq!(summary["chips_skipped"]["valid_fraction < 0.5"], 9, "{summary:#}");
}

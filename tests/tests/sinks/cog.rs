//! Mask COGs from the real scene, read back with GDAL: COG validity, georeferencing, nodata,
//! colour table, pixels and overviews; their STAC items and collection against the schemas.

use std::path::PathBuf;

use super::support::*;
use crate::common::*;

/// Compares the COG's pixels with the reference band read by GDAL, and its first overview with
/// the base image: `classes` (reference = the scene's SCL: every covered pixel must equal it,
/// its nodata 0 must be the mask's nodata 255; each overview pixel must be one of the four
/// base pixels it covers) or `probabilities` (reference = B08: clamp(DN * 1e-4, 0, 1), nodata
/// -1; each overview pixel the mean of the valid base pixels it covers).
const COMPARE: &str = r#"
import json, sys
import numpy as np
from osgeo import gdal
cog, ref, kind = sys.argv[1], sys.argv[2], sys.argv[3]
ds = gdal.Open(cog)
band = ds.GetRasterBand(1)
a = band.ReadAsArray()
r = gdal.Open(ref).ReadAsArray()
nodata = band.GetNoDataValue()
out = {"shape": list(a.shape), "ref_shape": list(r.shape), "dtype": str(a.dtype), "nodata": nodata}
if kind == "classes":
    expected = np.where(r == 0, 255, r).astype(np.uint8)
    out["mismatched"] = int((a != expected).sum())
    out["nodata_pixels"] = int((a == 255).sum())
    out["classes"] = sorted(int(v) for v in np.unique(a))
else:
    rf = r.astype(np.float32)
    expected = np.where(r == 0, np.float32(-1), np.clip(rf * np.float32(1e-4), 0, 1)).astype(np.float32)
    out["max_abs_diff"] = float(np.abs(a - expected).max())
    out["nodata_pixels"] = int((a == -1).sum())
ov = band.GetOverview(0)
o = ov.ReadAsArray()
out["overview_shape"] = list(o.shape)
h, w = a.shape
bad = 0
worst = 0.0
for i in range(o.shape[0]):
    for j in range(o.shape[1]):
        block = a[2*i:2*i+2, 2*j:2*j+2].ravel()
        if kind == "classes":
            bad += int(o[i, j] not in block)
        else:
            valid = block[block != -1]
            want = -1.0 if valid.size == 0 else float(valid.astype(np.float64).mean())
            worst = max(worst, abs(float(o[i, j]) - want))
out["overview_bad"] = bad
out["overview_max_abs_diff"] = worst
print(json.dumps(out))
"#;

/// Writes a mask with the example and checks the COG, returning the report.
fn write_and_check(kind: &str, compression: &str) -> (tempfile::TempDir, serde_json::Value) {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = write_masks(tmp.path(), kind, 128, 96, compression);
    assert!(out.status.success(), "{}", describe(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report json");
    (tmp, report)
}

fn checked_paths(report: &serde_json::Value) -> (PathBuf, PathBuf, PathBuf) {
    let one = |k: &str| PathBuf::from(report[k][0].as_str().unwrap_or_else(|| panic!("{k} in {report}")));
    (one("files"), one("stac_items"), PathBuf::from(report["collection"].as_str().expect("collection")))
}

/// The expected georeferencing: the reference band's, as GDAL reads it.
fn assert_georeferenced_like(cog: &serde_json::Value, reference: &serde_json::Value) {
    assert_eq!(cog["stac"]["proj:epsg"], 32629, "EPSG");
    assert_eq!(cog["stac"]["proj:epsg"], reference["stac"]["proj:epsg"]);
    assert_eq!(cog["geoTransform"], reference["geoTransform"], "the chips cover the whole scene (snap edges)");
    assert_eq!(cog["size"], reference["size"]);
    let wkt = cog["coordinateSystem"]["wkt"].as_str().expect("wkt");
    assert!(wkt.trim_end().ends_with("ID[\"EPSG\",32629]]"), "{wkt}");
}

#[test]
fn class_mask_cog_is_valid_georeferenced_and_equals_the_scl_layer() {
    let (_tmp, report) = write_and_check("classes", "deflate");
    let (cog, item, collection) = checked_paths(&report);
    assert_eq!(cog.file_name().and_then(|n| n.to_str()), Some(&*format!("{SCENE_ID}.tif")));
    // 549 px scene, 128 px chips every 96 px, last one snapped: 6 x 6 overlapping chips.
    assert_eq!(report["rows"], 36);

    let (valid, text) = validate_cog(&cog);
    assert!(valid && text.contains("is a valid cloud optimized GeoTIFF"), "{text}");

    let scl = s2_scene_dir().join("SCL.tif");
    let info = gdalinfo(&cog);
    assert_georeferenced_like(&info, &gdalinfo(&scl));
    let band = &info["bands"][0];
    assert_eq!(band["type"], "Byte");
    assert_eq!(band["noDataValue"], 255.0);
    assert_eq!(band["colorInterpretation"], "Palette");
    assert_eq!(info["metadata"]["IMAGE_STRUCTURE"]["COMPRESSION"], "DEFLATE");
    assert_eq!(info["metadata"]["IMAGE_STRUCTURE"]["PREDICTOR"], "2");
    let entries = band["colorTable"]["entries"].as_array().expect("colour table");
    assert_eq!(entries.len(), 256);
    assert_eq!(entries[4], serde_json::json!([0, 160, 0, 255]), "vegetation");
    assert_eq!(entries[6], serde_json::json!([0, 0, 255, 255]), "water");
    assert_eq!(band["overviews"].as_array().map(Vec::len), Some(1), "one overview: 275 px fits a 512 px tile");

    let px = python_json(&gdal_python(), COMPARE, &[&cog.display().to_string(), &scl.display().to_string(), "classes"]);
    assert_eq!(px["shape"], px["ref_shape"]);
    assert_eq!(px["mismatched"], 0, "mask pixels differ from SCL: {px}");
    assert!(px["classes"].as_array().map_or(0, Vec::len) >= 3, "a real scene has several classes: {px}");
    assert_eq!(px["overview_bad"], 0, "overview pixels not taken from their block: {px}");

    assert_stac_valid(&[item.clone(), collection.clone()]);
    let item_json: serde_json::Value = serde_json::from_slice(&std::fs::read(&item).expect("item")).expect("json");
    assert_eq!(item_json["properties"]["proj:epsg"], 32629);
    assert_eq!(item_json["properties"]["proj:shape"], serde_json::json!([549, 549]));
    assert_eq!(item_json["assets"]["data"]["raster:bands"][0]["nodata"], 255);
    // The item's footprint lies within the scene item's bbox (5e-5 degrees: see the demo test).
    let scene: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s2_scene_dir().join(format!("{SCENE_ID}.json"))).expect("scene item")).expect("json");
    let (b, s) = (&item_json["bbox"], &scene["bbox"]);
    let f = |v: &serde_json::Value, i: usize| v[i].as_f64().expect("number");
    assert!(f(b, 0) >= f(s, 0) - 5e-5 && f(b, 1) >= f(s, 1) - 5e-5 && f(b, 2) <= f(s, 2) + 5e-5 && f(b, 3) <= f(s, 3) + 5e-5, "{b} vs {s}");
    assert!(f(b, 2) - f(b, 0) > 1.0, "footprint spans the scene: {b}");
}

#[test]
fn probability_cog_is_valid_and_averages_into_overviews() {
    let (_tmp, report) = write_and_check("probabilities", "zstd");
    let (cog, item, collection) = checked_paths(&report);
    assert_eq!(report["rows"], 144, "1098 px scene, 128 px chips every 96 px, last one snapped: 12 x 12");
    let (valid, text) = validate_cog(&cog);
    assert!(valid && text.contains("is a valid cloud optimized GeoTIFF"), "{text}");

    let b08 = s2_scene_dir().join("B08.tif");
    let info = gdalinfo(&cog);
    assert_georeferenced_like(&info, &gdalinfo(&b08));
    let band = &info["bands"][0];
    assert_eq!(band["type"], "Float32");
    assert_eq!(band["noDataValue"], -1.0);
    assert_eq!(info["metadata"]["IMAGE_STRUCTURE"]["COMPRESSION"], "ZSTD");
    assert_eq!(info["metadata"]["IMAGE_STRUCTURE"]["PREDICTOR"], "3");
    assert_eq!(band["overviews"].as_array().map(Vec::len), Some(2), "1098 -> 549 -> 275");

    let px = python_json(&gdal_python(), COMPARE, &[&cog.display().to_string(), &b08.display().to_string(), "probabilities"]);
    assert_eq!(px["shape"], px["ref_shape"]);
    assert!(px["max_abs_diff"].as_f64().expect("diff") < 1e-6, "{px}");
    assert!(px["overview_max_abs_diff"].as_f64().expect("diff") < 1e-5, "{px}");
    assert_stac_valid(&[item, collection]);
}

#[test]
fn rerunning_replaces_the_output_and_keeps_one_item() {
    let tmp = tempfile::tempdir().expect("tmp");
    for _ in 0..2 {
        let out = write_masks(tmp.path(), "classes", 128, 128, "deflate");
        assert!(out.status.success(), "{}", describe(&out));
    }
    let mut names: Vec<String> = std::fs::read_dir(tmp.path().join("masks"))
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["S2A_29RKH_20200219_0_L2A.json", "S2A_29RKH_20200219_0_L2A.tif", "collection.json"]);
    let c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("masks/collection.json")).expect("collection")).expect("json");
    let items = c["links"].as_array().expect("links").iter().filter(|l| l["rel"] == "item").count();
    assert_eq!(items, 1);
}

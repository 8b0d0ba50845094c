//! `terrastream flood water` on `sen1floods11/Spain_7370579_*`: the IoU of the water class
//! against `LabelHand.tif` (1 water, 0 not water, -1 no data) is computed independently in
//! Python with GDAL and NumPy from the written COG, for each method; the COGs must pass GDAL's
//! validator and carry the input's CRS, transform and a nodata value.

use std::path::Path;

use super::chip;
use crate::common::*;

/// IoU of the water class over labelled pixels, the mask's georeferencing against the S1
/// input's, and GDAL's full COG validation.
const SCORE: &str = r#"
import json, sys
import numpy as np
from osgeo import gdal, osr
from osgeo_utils.samples import validate_cloud_optimized_geotiff as v
gdal.UseExceptions()
mask_path, label_path, ref_path = sys.argv[1:4]
ds = gdal.Open(mask_path)
band = ds.GetRasterBand(1)
m = band.ReadAsArray()
lab = gdal.Open(label_path).ReadAsArray()
ref = gdal.Open(ref_path)
valid = lab != -1
pred = (m == 1) & valid
truth = (lab == 1) & valid
union = int((pred | truth).sum())
a, b = osr.SpatialReference(wkt=ds.GetProjection()), osr.SpatialReference(wkt=ref.GetProjection())
warnings, errors, _ = v.validate(ds, full_check=True)
print(json.dumps({
    "iou": float((pred & truth).sum()) / union if union else None,
    "values": sorted(int(x) for x in np.unique(m)),
    "shape": list(m.shape), "ref_shape": [ref.RasterYSize, ref.RasterXSize],
    "same_crs": bool(a.IsSame(b)),
    "epsg": a.GetAuthorityCode(None),
    "gt_max_diff": max(abs(x - y) for x, y in zip(ds.GetGeoTransform(), ref.GetGeoTransform())),
    "nodata": band.GetNoDataValue(),
    "has_colour_table": band.GetColorTable() is not None,
    "cog_errors": errors, "cog_warnings": warnings,
}))
"#;

/// Runs `flood water --method METHOD` on the chip, writing `dir/METHOD.tif`, checks the mask's
/// georeferencing and COG validity, and returns its score and the command's JSON summary.
pub(super) fn run_method(dir: &Path, method: &str, extra: &[&str]) -> (serde_json::Value, serde_json::Value) {
    let out = dir.join(format!("{method}.tif"));
    let (s1, s2) = (chip("S1Hand"), chip("S2Hand"));
    let mut args = vec![
        "flood",
        "water",
        "--s1",
        s1.to_str().expect("path"),
        "--s2",
        s2.to_str().expect("path"),
    ];
    args.extend(["--method", method, "--out", out.to_str().expect("path")]);
    args.extend(extra);
    let run = terrastream(&args);
    assert!(
        run.status.success(),
        "flood water --method {method}: {}",
        describe(&run)
    );
    let summary: serde_json::Value = serde_json::from_slice(&run.stdout).expect("summary JSON");
    let score = python_json(
        &gdal_python(),
        SCORE,
        &[
            out.to_str().expect("path"),
            chip("LabelHand").to_str().expect("path"),
            s1.to_str().expect("path"),
        ],
    );
    assert_eq!(score["shape"], score["ref_shape"], "{method}: {score}");
    assert_eq!(score["same_crs"], true, "{method}: {score}");
    assert_eq!(score["epsg"], "4326", "{method}: {score}");
    assert!(
        score["gt_max_diff"].as_f64().expect("gt diff") < 1e-12,
        "{method}: transform differs: {score}"
    );
    assert_eq!(score["nodata"].as_f64(), Some(255.0), "{method}: {score}");
    assert_eq!(score["has_colour_table"], true, "{method}: {score}");
    assert_eq!(
        score["cog_errors"].as_array().map(Vec::len),
        Some(0),
        "{method}: not a valid COG: {score}"
    );
    (score, summary)
}

#[test]
fn water_masks_score_against_the_hand_label() {
    let dir = tempfile::tempdir().expect("tempdir");
    let iou = |score: &serde_json::Value| score["iou"].as_f64().expect("iou");
    let (s1, s1_summary) = run_method(dir.path(), "s1", &[]);
    let (s2, s2_summary) = run_method(dir.path(), "s2", &[]);
    // 256-pixel tiles give the 512-pixel chip one overview, which the validator checks too.
    let prob = dir.path().join("ensemble_probability.tif");
    let polygons = dir.path().join("ensemble_water.geojson");
    let (ens, ens_summary) = run_method(
        dir.path(),
        "ensemble",
        &[
            "--cog-tile-size",
            "256",
            "--probability",
            prob.to_str().expect("path"),
            "--polygons",
            polygons.to_str().expect("path"),
        ],
    );
    let (ndwi, _) = run_method(dir.path(), "s2", &["--index", "ndwi", "--s2-threshold", "0"]);
    println!(
        "Sen1Floods11 Spain_7370579 water IoU: s1 {:.4}, s2 (MNDWI, Otsu) {:.4}, ensemble {:.4}; s2 NDWI at 0 {:.4}",
        iou(&s1),
        iou(&s2),
        iou(&ens),
        iou(&ndwi)
    );
    println!("splits: s1 {} s2 {}", s1_summary["splits"], s2_summary["splits"]);
    assert!(iou(&s1) >= 0.55, "S1 threshold IoU {} < 0.55", iou(&s1));
    assert!(iou(&s2) >= 0.65, "S2 index IoU {} < 0.65", iou(&s2));
    assert!(iou(&ndwi) >= 0.65, "S2 NDWI IoU {} < 0.65", iou(&ndwi));
    assert!(
        iou(&ens) >= iou(&s1).max(iou(&s2)),
        "ensemble {} below the best single method",
        iou(&ens)
    );
    assert_eq!(ens_summary["members"], serde_json::json!(["s1", "s2"]));
    let areas = python_json(
        &gdal_python(),
        POLYGON_AREA,
        &[
            dir.path().join("ensemble.tif").to_str().expect("path"),
            polygons.to_str().expect("path"),
        ],
    );
    let (pa, ra) = (
        areas["polygon_area"].as_f64().expect("area"),
        areas["raster_area"].as_f64().expect("area"),
    );
    println!(
        "water polygons: {} features ({} invalid by GEOS), area {pa:.6e} deg² vs raster {ra:.6e} deg² ({:+.4}%)",
        areas["features"],
        areas["invalid"],
        (pa / ra - 1.0) * 100.0
    );
    assert!(
        ra > 0.0 && (pa / ra - 1.0).abs() < 0.01,
        "polygon area off by more than 1%: {areas}"
    );
    assert_eq!(areas["features"], ens_summary["polygons"]["features"], "{areas}");
    for s in [&s1, &s2, &ens] {
        assert_eq!(
            s["values"],
            serde_json::json!([0, 1]),
            "a labelled flood chip has water and dry land: {s}"
        );
    }

    // The probability COG: valid, in 0..=1 where there is data, and > 0.5 exactly where the
    // ensemble's mask is water (with two members every disagreement is a tie, which the mean
    // probability decides).
    let check = python_json(
        &gdal_python(),
        r#"
import json, sys
import numpy as np
from osgeo import gdal
from osgeo_utils.samples import validate_cloud_optimized_geotiff as v
gdal.UseExceptions()
p = gdal.Open(sys.argv[1]); m = gdal.Open(sys.argv[2]).ReadAsArray()
a = p.GetRasterBand(1).ReadAsArray()
_, errors, _ = v.validate(p, full_check=True)
data = a != -1
print(json.dumps({"errors": errors, "nodata": p.GetRasterBand(1).GetNoDataValue(),
  "in_range": bool(((a[data] >= 0) & (a[data] <= 1)).all()),
  "disagree": int(((a > 0.5) != (m == 1))[data].sum()), "overviews": p.GetRasterBand(1).GetOverviewCount()}))
"#,
        &[
            prob.to_str().expect("path"),
            dir.path().join("ensemble.tif").to_str().expect("path"),
        ],
    );
    assert_eq!(check["errors"].as_array().map(Vec::len), Some(0), "{check}");
    assert_eq!(check["nodata"].as_f64(), Some(-1.0));
    assert_eq!(check["in_range"], true, "{check}");
    assert_eq!(check["disagree"], 0, "{check}");
    assert_eq!(check["overviews"], 1, "{check}");
}

#[test]
fn terramind_without_a_checkpoint_says_it_needs_real_weights() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("tm.tif");
    let s1 = chip("S1Hand");
    let run = terrastream(&[
        "flood",
        "water",
        "--s1",
        s1.to_str().expect("path"),
        "--method",
        "terramind",
        "--out",
        out.to_str().expect("path"),
    ]);
    assert!(!run.status.success(), "{}", describe(&run));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("TerraMind_v1_<variant>.pt") && err.contains("--segmentation"),
        "{}",
        describe(&run)
    );
    assert!(!out.exists(), "no output on failure");
}

/// The mask's pixel counts add up to the chip and it holds only water, dry and no data.
fn check_counts(summary: &serde_json::Value, score: &serde_json::Value) {
    let px = &summary["pixels"];
    let total: u64 = ["water", "dry", "nodata"].iter().map(|k| px[k].as_u64().expect("count")).sum();
    assert_eq!(total, 512 * 512, "{summary}");
    let values: Vec<u64> = score["values"].as_array().expect("values").iter().filter_map(|v| v.as_u64()).collect();
    assert!(values.iter().all(|v| [0, 1, 255].contains(v)), "{score}");
}

#[test]
fn terramind_zero_shot_runs_tim_lulc_through_the_tokenizer_decoder() {
    // Random weights (stated): the path runs end to end (S1 -> TiM LULC tokens -> LULC
    // decoder -> water class), the map itself is noise, so no IoU is asserted.
    let dir = tempfile::tempdir().expect("tempdir");
    let (score, summary) = run_method(dir.path(), "terramind", &["--variant", "tiny", "--random-weights"]);
    check_counts(&summary, &score);
    assert_eq!(summary["terramind"]["random_weights"], true, "{summary}");
    assert_eq!(summary["members"], serde_json::json!(["terramind"]), "{summary}");
    println!(
        "flood water terramind (TiM LULC, RANDOM weights): IoU {} in {:.2} s",
        score["iou"],
        summary["terramind"]["seconds"].as_f64().unwrap_or(f64::NAN)
    );
}

#[test]
fn terramind_fine_tuned_head_loads_from_a_checkpoint() {
    use terrastream_model::{Config, Modality, SegmentationConfig, Segmenter};
    let dir = tempfile::tempdir().expect("tempdir");
    // A fine-tuned model as `torch.save(task.model.state_dict())` would hold it, random weights.
    let ckpt = dir.path().join("finetuned_tiny.safetensors");
    let head = SegmentationConfig { channels: 16, num_convs: 4, head_channels: vec![], classes: 2 };
    Segmenter::random(&Config::tiny(), &[Modality::S1GRD], &head, 5, tch::Device::Cpu)
        .expect("random segmenter")
        .save_safetensors(&ckpt)
        .expect("save");
    let ckpt = ckpt.to_str().expect("path");
    let (score, summary) = run_method(dir.path(), "terramind", &["--variant", "tiny", "--segmentation", ckpt]);
    check_counts(&summary, &score);
    assert_eq!(summary["terramind"]["random_weights"], false, "{summary}");
    // In the ensemble, the fine-tuned head votes with S1 and S2.
    let (score, summary) = run_method(dir.path(), "ensemble", &["--variant", "tiny", "--segmentation", ckpt]);
    check_counts(&summary, &score);
    assert_eq!(summary["members"], serde_json::json!(["s1", "s2", "terramind"]), "{summary}");
    // A checkpoint of another size is refused naming the keys.
    let run = terrastream(&[
        "flood", "water", "--s1", chip("S1Hand").to_str().expect("path"), "--method", "terramind", "--variant",
        "small", "--segmentation", ckpt, "--out", dir.path().join("x.tif").to_str().expect("path"),
    ]);
    assert!(!run.status.success(), "{}", describe(&run));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("finetuned_tiny.safetensors") && err.contains("mis-shaped"), "{}", describe(&run));
}

#[test]
fn inputs_on_different_grids_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("m.tif");
    let s1 = chip("S1Hand");
    let other = s2_scene_dir().join("B03.tif");
    let run = terrastream(&[
        "flood",
        "water",
        "--s1",
        s1.to_str().expect("path"),
        "--dem",
        other.to_str().expect("path"),
        "--method",
        "s1",
        "--out",
        out.to_str().expect("path"),
    ]);
    assert!(!run.status.success(), "{}", describe(&run));
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("not co-registered"),
        "{}",
        describe(&run)
    );
    assert!(!out.exists());
}

/// The water polygons' total area, measured by OGR on the GeoJSON, against the mask's water
/// pixels times the pixel area measured by GDAL (both in the grid's degrees: the chip is
/// EPSG:4326, which the GeoJSON shares).
const POLYGON_AREA: &str = r#"
import json, sys
import numpy as np
from osgeo import gdal, ogr
gdal.UseExceptions()
mask = gdal.Open(sys.argv[1])
m = mask.GetRasterBand(1).ReadAsArray()
gt = mask.GetGeoTransform()
ds = ogr.Open(sys.argv[2])
layer = ds.GetLayer(0)
area, n, invalid = 0.0, 0, 0
for f in layer:
    g = f.GetGeometryRef()
    area += g.GetArea()
    n += 1
    invalid += 0 if g.IsValid() else 1
print(json.dumps({"polygon_area": area, "raster_area": float((m == 1).sum()) * abs(gt[1] * gt[5]), "features": n, "invalid": invalid}))
"#;

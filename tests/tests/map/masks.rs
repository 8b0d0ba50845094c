//! `[output] masks`: the map job writes per-scene mask COGs (TerraMind's generated land cover
//! and its water class) beside the embeddings, records them in the unit manifest, and replaces
//! or removes them when the unit is mapped again.

use super::*;
use crate::sinks::support::assert_stac_valid;

/// Reads both masks with GDAL and compares them with each other and with the scene's grid:
/// the water mask must be the LULC water class (clouds and no data = 255), pixels between the
/// chips (stride 448, chips 224) must be no data in both, and the COG's pixel grid must be the
/// scene's pixel grid.
const READ_MASKS: &str = r#"
import json, sys
import numpy as np
from osgeo import gdal
lulc_ds, water_ds, ref_ds = (gdal.Open(p) for p in sys.argv[1:4])
lulc, water = lulc_ds.ReadAsArray(), water_ds.ReadAsArray()
gl, gw, gr = lulc_ds.GetGeoTransform(), water_ds.GetGeoTransform(), ref_ds.GetGeoTransform()
# The mask's origin in scene pixels.
col0, row0 = (gl[0] - gr[0]) / gr[1], (gl[3] - gr[3]) / gr[5]
expected = np.where(lulc == 1, 1, np.where((lulc == 0) | (lulc == 8), 255, 0))
r, c = int(round(row0)), int(round(col0))
gap_lulc = lulc[230 - r:440 - r, 230 - c:440 - c]
gap_water = water[230 - r:440 - r, 230 - c:440 - c]
print(json.dumps({
    "shape": [list(lulc.shape), list(water.shape)],
    "same_grid": gl == gw,
    "pixel_size": [gl[1], gl[5], gr[1], gr[5]],
    "origin_in_scene_pixels": [row0, col0],
    "water_mismatched": int((water != expected).sum()),
    "gap_pixels": int(gap_lulc.size),
    "gap_not_nodata": [int((gap_lulc != 0).sum()), int((gap_water != 255).sum())],
    "lulc_classes": sorted(int(v) for v in np.unique(lulc)),
    "water_values": sorted(int(v) for v in np.unique(water)),
    "nodata": [lulc_ds.GetRasterBand(1).GetNoDataValue(), water_ds.GetRasterBand(1).GetNoDataValue()],
    "colours": lulc_ds.GetRasterBand(1).GetColorTable().GetCount(),
}))
"#;

fn unit_record(out: &Path) -> serde_json::Value {
    let path = out.join("_manifest/units/MGRS-29RKH_2020-02.json");
    serde_json::from_slice(&std::fs::read(&path).expect("unit record")).expect("json")
}

#[test]
fn lulc_and_water_masks_are_valid_cogs_on_the_scene_grid_and_follow_the_unit() {
    let tmp = tempfile::tempdir().expect("tmp");
    let items = revisits(tmp.path(), &[(2, 19, 4.05)]);
    let out = tmp.path().join("out");
    let config = run_config(tmp.path(), &items, &out, "");
    let text = std::fs::read_to_string(&config).expect("config");
    let text = text.replacen("seed = 1\n", "seed = 1\ntim = [\"LULC\"]\n", 1);
    std::fs::write(&config, format!("{text}masks = [\"lulc\", \"water\"]\nmask_compression = \"zstd\"\n")).expect("config");
    let (status, summary) = map_json(&config, &[]);
    assert!(status.success(), "{summary:#}");
    assert_eq!(summary["chips_written"], 9, "{summary:#}");

    let id = "S2A_29RKH_20200219_0_L2A";
    let lulc = out.join(format!("masks/lulc/{id}.tif"));
    let water = out.join(format!("masks/water/{id}.tif"));
    for cog in [&lulc, &water] {
        let (valid, report) = validate_cog(cog);
        assert!(valid && report.contains("is a valid cloud optimized GeoTIFF"), "{}: {report}", cog.display());
        let info = gdalinfo(cog);
        assert_eq!(info["stac"]["proj:epsg"], 32629, "{}", cog.display());
        assert_eq!(info["metadata"]["IMAGE_STRUCTURE"]["COMPRESSION"], "ZSTD");
        assert_eq!(info["bands"][0]["type"], "Byte");
    }
    let px = python_json(
        &gdal_python(),
        READ_MASKS,
        &[&lulc.display().to_string(), &water.display().to_string(), &s2_scene_dir().join("B04.tif").display().to_string()],
    );
    assert_eq!(px["shape"][0], px["shape"][1], "{px}");
    assert_eq!(px["same_grid"], true, "{px}");
    let size = &px["pixel_size"];
    assert_eq!((&size[0], &size[1]), (&size[2], &size[3]), "the mask's pixels are the scene's finest band's: {px}");
    for v in px["origin_in_scene_pixels"].as_array().expect("origin") {
        let v = v.as_f64().expect("f64");
        assert_eq!(v, v.round(), "the mask is not on the scene's pixel grid: {px}");
    }
    assert_eq!(px["water_mismatched"], 0, "water is not the LULC water class: {px}");
    assert_eq!(px["gap_pixels"], 210 * 210, "{px}");
    assert_eq!(px["gap_not_nodata"], serde_json::json!([0, 0]), "pixels no chip covered must be no data: {px}");
    assert!(px["lulc_classes"].as_array().is_some_and(|c| c.len() >= 2 && c.iter().all(|v| v.as_u64().is_some_and(|v| v < 10))), "{px}");
    assert!(px["water_values"].as_array().is_some_and(|v| v.iter().all(|v| [0, 1, 255].contains(&v.as_u64().unwrap_or(7)))), "{px}");
    assert_eq!(px["nodata"], serde_json::json!([0.0, 255.0]), "{px}");
    assert!(px["colours"].as_u64().is_some_and(|n| n >= 10), "{px}");

    // Each head is its own STAC collection; its item counts the scene's chips.
    let (lulc_item, lulc_collection) = (out.join(format!("masks/lulc/{id}.json")), out.join("masks/lulc/collection.json"));
    assert_stac_valid(&[lulc_item.clone(), lulc_collection.clone()]);
    let item: serde_json::Value = serde_json::from_slice(&std::fs::read(&lulc_item).expect("item")).expect("json");
    assert_eq!(item["properties"]["terrastream:chips"], 9);
    let collection: serde_json::Value = serde_json::from_slice(&std::fs::read(&lulc_collection).expect("c")).expect("json");
    assert_eq!(collection["id"], "terrastream-lulc");
    // The mask sink reads the chips beside the GeoParquet sink: they are counted once.
    let (embeddings, _) = rows(&out);
    assert_eq!(embeddings.len(), 9);

    // The unit's record lists the masks, so a redo replaces them and a crash never loses them.
    let record = unit_record(&out);
    let files: Vec<&str> = record["files"].as_array().expect("files").iter().filter_map(|f| f.as_str()).collect();
    for f in [format!("masks/lulc/{id}.tif"), format!("masks/water/{id}.tif"), format!("masks/water/{id}.json")] {
        assert!(files.contains(&f.as_str()), "{f} not in {files:?}");
    }

    // Dropping the water head changes the unit's fingerprint: it is mapped again and its water
    // files, no longer written, are deleted.
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, text.replace("masks = [\"lulc\", \"water\"]", "masks = [\"lulc\"]")).expect("config");
    let (status, again) = map_json(&config, &[]);
    assert!(status.success(), "{again:#}");
    assert_eq!((again["units_done"].as_u64(), again["units_skipped"].as_u64()), (Some(1), Some(0)), "{again:#}");
    assert!(lulc.is_file());
    assert!(!water.exists() && !out.join(format!("masks/water/{id}.json")).exists(), "stale water mask left behind");
    let files = unit_record(&out)["files"].to_string();
    assert!(!files.contains("masks/water/"), "{files}");

    // Unchanged: nothing is mapped.
    let (status, third) = map_json(&config, &[]);
    assert!(status.success(), "{third:#}");
    assert_eq!(third["units_skipped"], 1, "{third:#}");
}

//! `terrastream map examples/demo.toml` end to end, read back with DuckDB.

use crate::common::*;

/// Counts the chips the scene must yield, independently of terrastream: GDAL reads all 12
/// S2L2A bands at their native resolution, repeats 20 m / 60 m pixels onto the 10 m grid
/// (every band's size divides the 10 m size), marks a pixel valid when no band is 0 (the
/// assets' nodata), lays the demo's grid over the 10 m raster (224 px chips, stride 224, the
/// last chip of a row/column moved to end at the scene edge) and counts chips whose valid
/// fraction is at least `min_valid_fraction` (0.5).
const EXPECTED_CHIPS: &str = r#"
import json, sys
import numpy as np
from osgeo import gdal
scene, chip, stride, min_valid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
bands = ["B01","B02","B03","B04","B05","B06","B07","B08","B8A","B09","B11","B12"]
ref = gdal.Open(f"{scene}/B02.tif")
H, W = ref.RasterYSize, ref.RasterXSize
valid = np.ones((H, W), bool)
for b in bands:
    a = gdal.Open(f"{scene}/{b}.tif").ReadAsArray()
    f = H // a.shape[0]
    assert a.shape[0] * f == H
    valid &= np.repeat(np.repeat(a, f, 0), f, 1) != 0
def offsets(size):
    out = list(range(0, size - chip + 1, stride))
    if out[-1] + chip < size:
        out.append(size - chip)
    return out
n = sum(1 for r in offsets(H) for c in offsets(W) if valid[r:r+chip, c:c+chip].mean() >= min_valid)
print(json.dumps({"expected": n, "grid": len(offsets(H)) * len(offsets(W))}))
"#;

/// Reads every row back with DuckDB: ids, footprint rings (parsed from WKB), embeddings, and
/// the `geo` key-value metadata.
const READ_BACK: &str = r#"
import json, struct, sys
import duckdb
path = sys.argv[1]
con = duckdb.connect()
rows = con.execute(
    "SELECT scene_id, chip_row, chip_col, crs, geometry, embedding, valid_fraction "
    "FROM read_parquet(?) ORDER BY chip_row, chip_col", [path]).fetchall()
geo = [v for k, v in con.execute("SELECT key, value FROM parquet_kv_metadata(?)", [path]).fetchall() if k == b"geo"]
def ring(wkb):
    wkb = bytes(wkb)
    order, kind, nrings, npts = struct.unpack_from("<BIII", wkb, 0)
    assert order == 1 and kind == 3 and nrings == 1, (order, kind, nrings)
    return [list(struct.unpack_from("<dd", wkb, 13 + 16 * i)) for i in range(npts)]
print(json.dumps({
    "geo": geo[0].decode() if geo else None,
    "rows": [{"scene_id": s, "row": r, "col": c, "crs": crs, "ring": ring(g), "embedding": e, "valid": v}
             for s, r, c, crs, g, e, v in rows],
}))
"#;

#[test]
fn demo_writes_one_geoparquet_row_per_chip() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = terrastream(&["map", "examples/demo.toml", "--out", &tmp.path().display().to_string()]);
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("chips:"), "no summary: {stdout}");

    let item_id = "S2A_29RKH_20200219_0_L2A";
    // One file per work unit: the tile in the month of the scene.
    let file = tmp.path().join("embeddings/MGRS-29RKH_2020-02.parquet");
    assert!(file.exists(), "{} missing; {}", file.display(), describe(&out));
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path().join("embeddings"))
        .expect("ls")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    let scene = s2_scene_dir();
    let expected = python_json(&gdal_python(), EXPECTED_CHIPS, &[&scene.display().to_string(), "224", "224", "0.5"]);
    let expected_rows = expected["expected"].as_u64().expect("expected count");
    assert!(expected_rows > 0);

    let back = python_json(&venv_python(), READ_BACK, &[&file.display().to_string()]);
    let rows = back["rows"].as_array().expect("rows");
    assert_eq!(rows.len() as u64, expected_rows, "row count vs chips computed with GDAL");

    // GeoParquet metadata with a PROJJSON CRS.
    let geo: serde_json::Value = serde_json::from_str(back["geo"].as_str().expect("geo metadata")).expect("geo json");
    assert_eq!(geo["version"], "1.1.0");
    assert_eq!(geo["primary_column"], "geometry");
    assert_eq!(geo["columns"]["geometry"]["encoding"], "WKB");
    assert_eq!(geo["columns"]["geometry"]["crs"]["id"]["code"], 4326);

    // Every footprint inside the item's bbox (degrees), to within 5e-5 degrees (about 5 m, a
    // twentieth of the sample's 100 m pixels): Earth Search computed the bbox from a footprint
    // that lies about 1 m inside the tile's edge, where the edge chips end.
    let item: serde_json::Value =
        serde_json::from_slice(&std::fs::read(scene.join(format!("{item_id}.json"))).expect("item")).expect("item json");
    let bbox: Vec<f64> = item["bbox"].as_array().expect("bbox").iter().map(|v| v.as_f64().expect("f64")).collect();
    let eps = 5e-5;
    for r in rows {
        assert_eq!(r["scene_id"], item_id);
        assert_eq!(r["crs"], 32629);
        for p in r["ring"].as_array().expect("ring") {
            let (x, y) = (p[0].as_f64().expect("x"), p[1].as_f64().expect("y"));
            assert!(
                x >= bbox[0] - eps && x <= bbox[2] + eps && y >= bbox[1] - eps && y <= bbox[3] + eps,
                "chip ({}, {}) vertex ({x}, {y}) outside item bbox {bbox:?}",
                r["row"],
                r["col"]
            );
        }
    }

    // Embeddings: the model's width, finite, and not all equal.
    let embeddings: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| r["embedding"].as_array().expect("embedding").iter().map(|v| v.as_f64().expect("finite number")).collect())
        .collect();
    assert!(embeddings.iter().all(|e| e.len() == 192), "tiny embeds to 192 values");
    assert!(embeddings.iter().flatten().all(|v| v.is_finite()));
    let distinct = embeddings.iter().filter(|e| *e != &embeddings[0]).count();
    assert!(distinct > 0, "all embeddings equal");
    let spread: f64 = (0..192)
        .map(|k| {
            let col: Vec<f64> = embeddings.iter().map(|e| e[k]).collect();
            col.iter().cloned().fold(f64::MIN, f64::max) - col.iter().cloned().fold(f64::MAX, f64::min)
        })
        .sum();
    assert!(spread > 1e-3, "embeddings barely differ: {spread}");
}

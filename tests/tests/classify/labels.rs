//! `classify` with prototypes and k-NN, scored on held-out chips; its outputs read back by
//! DuckDB and GDAL; bad examples.

use std::path::Path;

use super::*;

/// Checks a class map with GDAL: COG validity (full check), CRS, and the pixel counts per
/// class value.
const CHECK_MAP: &str = r#"
import json, sys
import numpy as np
from osgeo import gdal, osr
from osgeo_utils.samples import validate_cloud_optimized_geotiff as v
gdal.UseExceptions()
ds = gdal.Open(sys.argv[1])
a = ds.GetRasterBand(1).ReadAsArray()
warnings, errors, _ = v.validate(ds, full_check=True)
srs = osr.SpatialReference(wkt=ds.GetProjection())
values, counts = np.unique(a, return_counts=True)
print(json.dumps({"errors": errors, "epsg": srs.GetAuthorityCode(None), "nodata": ds.GetRasterBand(1).GetNoDataValue(),
  "counts": {str(int(k)): int(n) for k, n in zip(values, counts)}}))
"#;

/// (id, label) of every row of labels.parquet, by DuckDB.
fn labels_by_duckdb(file: &Path) -> Vec<(String, String)> {
    let script = r#"
import json, sys, duckdb
rows = duckdb.connect().execute(f"SELECT scene_id || '/' || chip_row || '/' || chip_col, label FROM read_parquet('{sys.argv[1]}') ORDER BY 1").fetchall()
print(json.dumps(rows))
"#;
    let v = python_json(&venv_python(), script, &[&file.display().to_string()]);
    v.as_array()
        .expect("rows")
        .iter()
        .map(|r| (r[0].as_str().expect("id").to_string(), r[1].as_str().expect("label").to_string()))
        .collect()
}

fn run_classify(dir: &Path, method: &str, extra: &[&str]) -> serde_json::Value {
    let chips = labelled();
    let train: Vec<_> = chips.iter().step_by(2).collect();
    let holdout: Vec<_> = chips.iter().skip(1).step_by(2).collect();
    let examples = write_json(dir, "examples.geojson", &points(&train));
    let holdout_file = write_json(dir, "holdout.geojson", &points(&holdout));
    let out = dir.join(format!("out-{method}"));
    let store = store().1.display().to_string();
    let mut args = vec![
        "classify",
        "--embeddings",
        &store,
        "--examples",
        examples.to_str().expect("path"),
        "--evaluate",
        holdout_file.to_str().expect("path"),
        "--method",
        method,
        "--out",
        out.to_str().expect("path"),
    ];
    args.extend_from_slice(extra);
    let run = terrastream(&args);
    assert!(run.status.success(), "classify failed: {}", describe(&run));
    let summary: serde_json::Value = serde_json::from_slice(&run.stdout).expect("summary json");

    // The accuracy again, from the written labels (DuckDB) and the held-out truth.
    let written = labels_by_duckdb(&out.join("labels.parquet"));
    let truth: std::collections::HashMap<&str, &str> = holdout.iter().map(|c| (c.0.as_str(), c.3.as_str())).collect();
    let correct = written.iter().filter(|(id, l)| truth.get(id.as_str()) == Some(&l.as_str())).count();
    let accuracy = correct as f64 / holdout.len() as f64;
    let reported = summary["evaluation"]["accuracy"].as_f64().expect("accuracy");
    assert!((accuracy - reported).abs() < 1e-12, "{method}: DuckDB accuracy {accuracy} vs reported {reported}");
    eprintln!(
        "classify {method} (RANDOM weights unless TERRASTREAM_CHECKPOINT): held-out accuracy {accuracy:.3} on {} chips, {} examples",
        holdout.len(),
        train.len()
    );

    // Every chip of the store labelled once, with the store's ids.
    let store_ids = python_json(
        &venv_python(),
        "import json, sys, duckdb; print(json.dumps([r[0] for r in duckdb.connect().execute(f\"SELECT scene_id || '/' || chip_row || '/' || chip_col FROM read_parquet('{sys.argv[1]}/embeddings/**/*.parquet') ORDER BY 1\").fetchall()]))",
        &[&store],
    );
    let ids: Vec<&str> = written.iter().map(|(id, _)| id.as_str()).collect();
    let want: Vec<&str> = store_ids.as_array().expect("ids").iter().map(|v| v.as_str().expect("id")).collect();
    assert_eq!(ids, want, "labels.parquet has the store's chips, once each");
    assert_eq!(summary["chips"].as_u64(), Some(want.len() as u64));

    // The class map: a valid COG in the scene's CRS whose pixels count the labels.
    let maps = summary["outputs"]["class_maps"].as_array().expect("class maps");
    assert_eq!(maps.len(), 1, "one grid tile");
    let cog = maps[0]["cog"].as_str().expect("cog path");
    let info = python_json(&gdal_python(), CHECK_MAP, &[cog]);
    assert_eq!(info["errors"].as_array().map(Vec::len), Some(0), "COG validator: {info}");
    assert_eq!(info["epsg"], "32629");
    assert_eq!(info["nodata"].as_f64(), Some(255.0));
    let per_label = &summary["chips_per_label"];
    let labels = summary["labels"].as_array().expect("labels");
    for (i, l) in labels.iter().enumerate() {
        let chips = per_label[l.as_str().expect("label")].as_u64().unwrap_or(0);
        let pixels = info["counts"][(i + 1).to_string()].as_u64().unwrap_or(0);
        assert_eq!(chips > 0, pixels > 0, "label {l}: {chips} chips, {pixels} pixels");
    }
    assert!(Path::new(maps[0]["png"].as_str().expect("png")).is_file());
    summary
}

#[test]
fn prototypes_label_held_out_chips() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = run_classify(tmp.path(), "prototype", &[]);
    let acc = s["evaluation"]["accuracy"].as_f64().expect("accuracy");
    // Chance is 1/3 (three tercile classes of equal size). With random weights the embedding is a
    // random projection of the pixels, where one mean per class separates the terciles less well
    // than k-NN does (0.76 here at the time of writing, k-NN 0.97), so the bar is well above
    // chance rather than at k-NN's level.
    assert!(acc >= 0.6, "prototype accuracy {acc}: {s:#}");
}

#[test]
fn knn_labels_held_out_chips() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = run_classify(tmp.path(), "knn", &["--k", "3"]);
    let acc = s["evaluation"]["accuracy"].as_f64().expect("accuracy");
    assert!(acc >= 0.75, "knn accuracy {acc}: {s:#}");
}

#[test]
fn rejection_leaves_chips_unknown() {
    let tmp = tempfile::tempdir().expect("tmp");
    // A threshold no cosine similarity reaches: every chip is unknown.
    let s = run_classify(tmp.path(), "prototype", &["--reject-below", "1.01"]);
    assert_eq!(s["chips_per_label"]["unknown"].as_u64(), s["chips"].as_u64(), "{s:#}");
}

#[test]
fn bad_examples_name_the_feature() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = store().1.display().to_string();
    let run = |examples: &Path, extra: &[&str]| {
        let out = tmp.path().join("bad-out");
        let mut args = vec!["classify", "--embeddings", &store, "--examples", examples.to_str().expect("p"), "--out", out.to_str().expect("p")];
        args.extend_from_slice(extra);
        let r = terrastream(&args);
        assert_eq!(r.status.code(), Some(1), "{}", describe(&r));
        String::from_utf8_lossy(&r.stderr).to_string()
    };
    let chips = labelled();
    let mut outside = points(&[&chips[0], &chips[chips.len() - 1]]);
    outside["features"][1]["id"] = "far-away".into();
    outside["features"][1]["geometry"]["coordinates"] = serde_json::json!([100.0, 10.0]);
    let e = run(&write_json(tmp.path(), "outside.geojson", &outside), &[]);
    assert!(e.contains("feature 1 (id \"far-away\")") && e.contains("outside every chip"), "{e}");

    let e = run(&write_json(tmp.path(), "column.geojson", &points(&[&chips[0]])), &["--label-property", "class"]);
    assert!(e.contains("feature 0") && e.contains("\"class\"") && e.contains("label"), "{e}");

    let empty = tmp.path().join("empty.geojson");
    std::fs::write(&empty, "").expect("write");
    let e = run(&empty, &[]);
    assert!(e.contains("empty.geojson") && e.contains("empty"), "{e}");
}

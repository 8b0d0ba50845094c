//! GeoParquet embeddings from the real scene, read back by DuckDB: Float16 and Int8 embeddings
//! (per-patch too) within their error bounds and keeping cosine similarities, GeoArrow
//! footprints equal to the WKB ones, hive partitions by grid and date that DuckDB prunes,
//! sorted rows, re-runs that replace, and a STAC item per file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

use super::support::*;
use crate::common::*;

/// Runs the `write_embeddings` example with sink config `config` on `items`.
fn write_embeddings(config: &Value, flags: &[&str], items: &[PathBuf]) -> Value {
    let scene = s2_scene_dir().canonicalize().expect("scene dir");
    let out: Output = Command::new(sinks_example("write_embeddings"))
        .arg(config.to_string())
        .arg(ASSET_PREFIX)
        .arg(&scene)
        .arg("128")
        .args(flags)
        .args(items)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run write_embeddings");
    assert!(out.status.success(), "{}", describe(&out));
    serde_json::from_slice(&out.stdout).expect("report json")
}

fn scene_item() -> PathBuf {
    s2_scene_dir().canonicalize().expect("scene dir").join(format!("{SCENE_ID}.json"))
}

/// Dequantises in DuckDB SQL and compares with the Float32 file: per-value errors against
/// their bounds (Int8: `scale / 2`; Float16: `|x| * 2^-11`), for `embedding` and
/// `patch_embeddings`, and the cosine similarity of every pair of chips.
const QUANTISED: &str = r#"
import duckdb, json, sys
d = sys.argv[1]
c = duckdb.connect()
t = lambda e: f"read_parquet('{d}/{e}/embeddings/*.parquet')"
c.sql(f"create view f32 as select chip_row r, chip_col c, embedding e, patch_embeddings p from {t('float32')}")
c.sql(f"create view f16 as select chip_row r, chip_col c, embedding::DOUBLE[] e, patch_embeddings::DOUBLE[][] p from {t('float16')}")
c.sql(f"""create view i8 as select chip_row r, chip_col c,
    list_transform(embedding, lambda q: q::DOUBLE * embedding_scale) e, embedding_scale s,
    list_transform(patch_embeddings, lambda v, i: list_transform(v, lambda q: q::DOUBLE * patch_embeddings_scale[i])) p,
    patch_embeddings_scale ps from {t('int8')}""")
one = lambda q: c.sql(q).fetchall()[0][0]
out = {"rows": {e: one(f"select count(*) from {t(e)}") for e in ["float32", "float16", "int8"]}}
out["types"] = {e: {r[0]: r[1] for r in c.sql(f"describe select * from {t(e)}").fetchall() if "embedding" in r[0]} for e in ["float16", "int8"]}
out["encoding"] = {e: one(f"select decode(value) from parquet_kv_metadata('{d}/{e}/embeddings/*.parquet') where decode(key) = 'terrastream:embedding_encoding'") for e in ["float32", "float16", "int8"]}
# Largest error in units of its bound (must be <= 1).
out["int8_embedding_error_over_half_scale"] = one("select max(list_max(list_transform(generate_series(1, len(f.e)), lambda k: abs(i.e[k] - f.e[k]) / (i.s / 2)))) from f32 f join i8 i using (r, c)")
out["int8_patch_error_over_half_scale"] = one("""select max(list_max(list_transform(generate_series(1, len(f.p)), lambda j:
    list_max(list_transform(generate_series(1, len(f.p[j])), lambda k: abs(i.p[j][k] - f.p[j][k]) / (i.ps[j] / 2))))))
    from f32 f join i8 i using (r, c)""")
out["float16_embedding_error_over_bound"] = one("select max(list_max(list_transform(generate_series(1, len(f.e)), lambda k: abs(h.e[k] - f.e[k]) / greatest(abs(f.e[k]) * pow(2, -11), pow(2, -25))))) from f32 f join f16 h using (r, c)")
out["float16_patch_error_over_bound"] = one("""select max(list_max(list_transform(generate_series(1, len(f.p)), lambda j:
    list_max(list_transform(generate_series(1, len(f.p[j])), lambda k: abs(h.p[j][k] - f.p[j][k]) / greatest(abs(f.p[j][k]) * pow(2, -11), pow(2, -25)))))))
    from f32 f join f16 h using (r, c)""")
for name, v in [("int8", "i8"), ("float16", "f16")]:
    out[f"{name}_cosine_max_abs_diff"], out["pairs"], out["cosine_spread"] = c.sql(f"""select
        max(abs(list_cosine_similarity(x.e, y.e) - list_cosine_similarity(a.e::DOUBLE[], b.e::DOUBLE[]))), count(*),
        max(list_cosine_similarity(a.e, b.e)) - min(list_cosine_similarity(a.e, b.e))
        from f32 a join f32 b on (a.r, a.c) < (b.r, b.c)
        join {v} x on x.r = a.r and x.c = a.c join {v} y on y.r = b.r and y.c = b.c""").fetchall()[0]
print(json.dumps(out))
"#;

#[test]
fn quantised_embeddings_stay_within_their_bounds_and_keep_similarities() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut sizes = serde_json::Map::new();
    for enc in ["float32", "float16", "int8"] {
        let cfg = json!({"dir": tmp.path().join(enc), "embedding_encoding": enc});
        let report = write_embeddings(&cfg, &["--patches"], &[scene_item()]);
        assert_eq!(report["rows"], 81, "1098 px scene, 128 px chips, edges snapped: 9 x 9");
        let file = PathBuf::from(report["files"][0].as_str().expect("file"));
        sizes.insert(enc.into(), json!(std::fs::metadata(&file).expect("size").len()));
    }
    let r = python_json(&venv_python(), QUANTISED, &[&tmp.path().display().to_string()]);
    eprintln!("quantisation vs float32 (read back by DuckDB): {r}; file bytes: {sizes:?}");
    assert_eq!(r["rows"], json!({"float32": 81, "float16": 81, "int8": 81}));
    assert_eq!(r["encoding"], json!({"float32": "float32", "float16": "float16", "int8": "int8"}));
    assert_eq!(r["types"]["int8"]["embedding"], "TINYINT[]");
    assert_eq!(r["types"]["int8"]["embedding_scale"], "FLOAT");
    assert_eq!(r["types"]["int8"]["patch_embeddings"], "TINYINT[][]");
    assert_eq!(r["types"]["int8"]["patch_embeddings_scale"], "FLOAT[]");
    assert_eq!(r["types"]["float16"]["embedding"], "FLOAT[]", "DuckDB reads Parquet FLOAT16 as FLOAT");
    let f = |k: &str| r[k].as_f64().unwrap_or_else(|| panic!("{k} in {r}"));
    // Bounds in exact arithmetic; 1e-5 of slack for the Float32 scale and DuckDB's doubles.
    for k in [
        "int8_embedding_error_over_half_scale",
        "int8_patch_error_over_half_scale",
        "float16_embedding_error_over_bound",
        "float16_patch_error_over_bound",
    ] {
        assert!(f(k) <= 1.0 + 1e-5, "{k}: {r}");
        assert!(f(k) > 0.1, "{k}: suspiciously exact, is the file really quantised? {r}");
    }
    assert_eq!(r["pairs"], 81 * 80 / 2);
    assert!(f("cosine_spread") > 0.1, "chips must differ for the similarity check to mean anything: {r}");
    assert!(f("int8_cosine_max_abs_diff") < 0.01, "{r}");
    assert!(f("float16_cosine_max_abs_diff") < 0.001, "{r}");
    let size = |k: &str| sizes[k].as_u64().expect("size") as f64;
    assert!(size("int8") < size("float16") && size("float16") < size("float32"), "{sizes:?}");
}

/// Reads the footprints of both files: WKB parsed here (Python `struct`), GeoArrow as the
/// nested structs DuckDB returns, ordered by chip; and the `geo` metadata of the GeoArrow file.
const GEOARROW: &str = r#"
import duckdb, json, struct, sys
wkb_file, ga_file = sys.argv[1], sys.argv[2]
c = duckdb.connect()
def parse(b):
    b = bytes(b)
    e = "<" if b[0] == 1 else ">"
    kind, nrings = struct.unpack_from(e + "II", b, 1)
    assert kind == 3, kind
    at, rings = 9, []
    for _ in range(nrings):
        (n,) = struct.unpack_from(e + "I", b, at); at += 4
        rings.append([list(struct.unpack_from(e + "dd", b, at + 16 * i)) for i in range(n)]); at += 16 * n
    return rings
wkb = [parse(g) for (g,) in c.sql(f"select ST_AsWKB(geometry) from '{wkb_file}' order by chip_row, chip_col").fetchall()]
ga = [[[[p["x"], p["y"]] for p in ring] for ring in g] for (g,) in c.sql(f"select geometry from '{ga_file}' order by chip_row, chip_col").fetchall()]
types = {r[0]: r[1] for r in c.sql(f"describe select * from '{ga_file}'").fetchall()}
geo = json.loads(c.sql(f"select decode(value) from parquet_kv_metadata('{ga_file}') where decode(key) = 'geo'").fetchall()[0][0])
try:
    c.sql(f"select geometry::GEOMETRY from '{ga_file}'").fetchall()
    as_geometry = "ok"
except Exception as e:
    as_geometry = str(e).splitlines()[0]
print(json.dumps({"rows": len(wkb), "equal": wkb == ga, "vertices": sum(len(r) for g in wkb for r in g),
                  "type": types["geometry"], "geo": geo["columns"]["geometry"], "cast_to_geometry": as_geometry}))
"#;

#[test]
fn geoarrow_footprints_equal_the_wkb_ones() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut files = Vec::new();
    for enc in ["wkb", "geoarrow"] {
        let report =
            write_embeddings(&json!({"dir": tmp.path().join(enc), "geometry_encoding": enc}), &[], &[scene_item()]);
        files.push(report["files"][0].as_str().expect("file").to_string());
    }
    let r = python_json(&venv_python(), GEOARROW, &[&files[0], &files[1]]);
    eprintln!(
        "GeoArrow vs WKB (DuckDB): rows {}, equal {}, type {}, cast to GEOMETRY: {}",
        r["rows"], r["equal"], r["type"], r["cast_to_geometry"]
    );
    assert_eq!(r["rows"], 81);
    assert!(r["vertices"].as_u64().expect("vertices") >= 81 * 5);
    assert_eq!(r["equal"], true, "GeoArrow coordinates differ from the WKB ones: {r}");
    assert_eq!(r["type"], "STRUCT(x DOUBLE, y DOUBLE)[][]");
    assert_eq!(r["geo"]["encoding"], "polygon");
    assert_eq!(r["geo"]["geometry_types"], json!(["Polygon"]));
    assert_eq!(r["geo"]["crs"]["id"], json!({"authority": "EPSG", "code": 4326}));
    assert_eq!(r["geo"]["covering"]["bbox"]["xmin"], json!(["bbox", "xmin"]));
}

/// Over the hive layout: columns, rows per date, the files a date filter scans, rows out of
/// order within a file, and per file its row count and footprint bbox.
const PARTITIONED: &str = r#"
import duckdb, json, re, sys
root = sys.argv[1]
c = duckdb.connect()
src = f"read_parquet('{root}/**/*.parquet', hive_partitioning=true, filename=true, file_row_number=true)"
types = {r[0]: r[1] for r in c.sql(f"describe select * from {src}").fetchall()}
per_date = {str(d): n for d, n in c.sql(f"select date, count(*) from {src} group by date order by date").fetchall()}
grids = [g for (g,) in c.sql(f"select distinct grid_id from {src}").fetchall()]
plan = c.sql(f"explain analyze select count(*) from {src} where date = DATE '2020-02-22'").fetchall()[0][1]
m = re.search(r"Scanning Files:\s*(\d+)\s*/\s*(\d+)", plan)
unsorted = c.sql(f"""select count(*) from (
    select (datetime, chip_row, chip_col) < lag((datetime, chip_row, chip_col)) over (partition by filename order by file_row_number) bad
    from {src}) where bad""").fetchall()[0][0]
files = {f: {"rows": n, "bbox": [a, b, x, y]} for f, n, a, b, x, y in c.sql(
    f"select filename, count(*), min(bbox.xmin), min(bbox.ymin), max(bbox.xmax), max(bbox.ymax) from {src} group by filename").fetchall()}
print(json.dumps({"types": types, "per_date": per_date, "grids": grids, "scanned": [int(m[1]), int(m[2])] if m else plan,
                  "unsorted": unsorted, "files": files}))
"#;

/// Every file under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("ls").map(|e| e.expect("entry")) {
            if e.file_type().expect("type").is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().strip_prefix(dir).expect("relative").display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn partitions_by_grid_and_date_prune_sort_and_rerun_in_place() {
    let tmp = tempfile::tempdir().expect("tmp");
    // A second acquisition of the tile: the same item three days later.
    let mut later: Value = serde_json::from_slice(&std::fs::read(scene_item()).expect("item")).expect("json");
    later["id"] = json!("S2A_29RKH_20200222_0_L2A");
    later["properties"]["datetime"] = json!("2020-02-22T11:13:47.123Z");
    let later_path = tmp.path().join("later.json");
    std::fs::write(&later_path, later.to_string()).expect("write item");
    let out = tmp.path().join("out");
    let cfg = json!({"dir": out, "partitioning": "grid_date", "work_unit": "29RKH_2020-02", "embedding_encoding": "int8", "row_group_rows": 32});
    let items = [scene_item(), later_path];
    let first = write_embeddings(&cfg, &["--shuffle"], &items);
    let layout = tree(&out.join("embeddings"));
    let rerun = write_embeddings(&cfg, &["--shuffle"], &items);
    assert_eq!(first["files"], rerun["files"]);
    assert_eq!(tree(&out.join("embeddings")), layout, "a re-run replaces its files, never adds");
    assert_eq!(
        layout,
        vec![
            "collection.json",
            "grid_id=MGRS-29RKH/date=2020-02-19/29RKH_2020-02.json",
            "grid_id=MGRS-29RKH/date=2020-02-19/29RKH_2020-02.parquet",
            "grid_id=MGRS-29RKH/date=2020-02-22/29RKH_2020-02.json",
            "grid_id=MGRS-29RKH/date=2020-02-22/29RKH_2020-02.parquet",
        ]
    );

    let r = python_json(&venv_python(), PARTITIONED, &[&out.join("embeddings").display().to_string()]);
    assert_eq!(r["types"]["date"], "DATE", "{r}");
    assert_eq!(r["types"]["grid_id"], "VARCHAR", "{r}");
    assert_eq!(r["grids"], json!(["MGRS-29RKH"]));
    assert_eq!(r["per_date"], json!({"2020-02-19": 81, "2020-02-22": 81}));
    assert_eq!(r["scanned"], json!([1, 2]), "the date filter must prune the other file: {r}");
    assert_eq!(r["unsorted"], 0, "rows out of (datetime, chip_row, chip_col) order: {r}");

    // One STAC item per file: its table row count and bbox match what DuckDB reads.
    let items: Vec<PathBuf> = rerun["stac_items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| PathBuf::from(p.as_str().expect("path")))
        .collect();
    assert_eq!(items.len(), 2);
    let collection = PathBuf::from(rerun["collection"].as_str().expect("collection"));
    let mut all = items.clone();
    all.push(collection.clone());
    assert_stac_valid(&all);
    for item in &items {
        let doc: Value = serde_json::from_slice(&std::fs::read(item).expect("item")).expect("json");
        let file = item.with_extension("parquet");
        let seen = &r["files"][file.display().to_string()];
        assert_eq!(doc["properties"]["table:row_count"], seen["rows"], "{}", item.display());
        let (b, s) = (doc["bbox"].as_array().expect("bbox"), seen["bbox"].as_array().expect("bbox"));
        for k in 0..4 {
            assert!((b[k].as_f64().expect("f") - s[k].as_f64().expect("f")).abs() < 1e-9, "{b:?} vs {s:?}");
        }
        assert_eq!(doc["properties"]["terrastream:grid_id"], "MGRS-29RKH");
        assert_eq!(doc["links"][0]["href"], "../../collection.json");
        assert_eq!(doc["assets"]["data"]["type"], "application/vnd.apache.parquet");
        let columns: Vec<&str> = doc["properties"]["table:columns"]
            .as_array()
            .expect("columns")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert!(columns.contains(&"embedding_scale") && columns.contains(&"geometry"), "{columns:?}");
    }
    let c: Value = serde_json::from_slice(&std::fs::read(&collection).expect("collection")).expect("json");
    let hrefs: Vec<&str> = c["links"]
        .as_array()
        .expect("links")
        .iter()
        .filter(|l| l["rel"] == "item")
        .filter_map(|l| l["href"].as_str())
        .collect();
    assert_eq!(
        hrefs,
        vec![
            "./grid_id=MGRS-29RKH/date=2020-02-19/29RKH_2020-02.json",
            "./grid_id=MGRS-29RKH/date=2020-02-22/29RKH_2020-02.json"
        ]
    );
}

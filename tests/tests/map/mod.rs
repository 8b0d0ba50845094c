//! `terrastream map` as a scheduled job: work units, sharding, resume after crashes.
//!
//! The runs read the real sample scene through several STAC items that differ in id, date and
//! cloud cover (the same tile revisited), so a run has several work units (tile x month) while
//! every pixel is real.

mod crash;
mod masks;
mod s1;
mod shards;
mod tim;
mod watch;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::common::*;

/// The original item's id and file.
pub const ITEM_ID: &str = "S2A_29RKH_20200219_0_L2A";

/// Writes `months.len()` items into `dir`, one per (month, day, cloud cover): copies of the
/// real item with their own id, datetime and `eo:cloud_cover`. Returns their paths.
pub fn revisits(dir: &Path, visits: &[(u32, u32, f64)]) -> Vec<PathBuf> {
    let original = s2_scene_dir().join(format!("{ITEM_ID}.json"));
    let text = std::fs::read_to_string(&original).expect("read item");
    visits
        .iter()
        .map(|&(month, day, cloud)| {
            let mut item: serde_json::Value = serde_json::from_str(&text).expect("item json");
            let id = format!("S2A_29RKH_2020{month:02}{day:02}_0_L2A");
            item["id"] = id.clone().into();
            item["properties"]["datetime"] = format!("2020-{month:02}-{day:02}T11:34:25.405000Z").into();
            item["properties"]["eo:cloud_cover"] = cloud.into();
            let path = dir.join(format!("{id}.json"));
            std::fs::write(&path, serde_json::to_vec(&item).expect("ser")).expect("write item");
            path
        })
        .collect()
}

/// A run config over `items` (assets read from the local sample scene) into `out`.
pub fn run_config(dir: &Path, items: &[PathBuf], out: &Path, extra: &str) -> PathBuf {
    let items: Vec<String> = items.iter().map(|p| format!("{:?}", p.display().to_string())).collect();
    let cfg = format!(
        r#"[source]
items = [{items}]
[[source.rewrite]]
prefix = "https://sentinel-cogs.s3.us-west-2.amazonaws.com/sentinel-s2-l2a-cogs/29/R/KH/2020/2/{ITEM_ID}/"
replace = "{assets}/"
[run]
period = "month"
concurrency = 2
{extra}
[grid]
# Every other chip: 9 of the scene's 25, to keep the runs short.
chip_size = 224
stride = 448
[model]
variant = "tiny"
seed = 1
device = "cpu"
[output]
dir = "{out}"
"#,
        items = items.join(", "),
        assets = s2_scene_dir().display(),
        out = out.display()
    );
    let path = dir.join("run.toml");
    std::fs::write(&path, cfg).expect("write config");
    path
}

/// Six monthly revisits: six work units.
pub const SIX_MONTHS: [(u32, u32, f64); 6] = [
    (1, 20, 12.0),
    (2, 19, 4.05),
    (3, 10, 30.0),
    (4, 9, 0.5),
    (5, 29, 8.0),
    (6, 18, 51.0),
];

/// Runs `terrastream map CONFIG ARGS... --json` and returns its exit status and JSON summary.
pub fn map_json(config: &Path, args: &[&str]) -> (std::process::ExitStatus, serde_json::Value) {
    let out = Command::new(terrastream_bin())
        .arg("map")
        .arg(config)
        .args(args)
        .arg("--json")
        .current_dir(repo_root())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run terrastream map");
    let summary =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("summary is not JSON ({e}): {}", describe(&out)));
    (out.status, summary)
}

/// Starts `terrastream map CONFIG ARGS...` without waiting.
pub fn spawn_map(config: &Path, args: &[&str]) -> std::process::Child {
    Command::new(terrastream_bin())
        .arg("map")
        .arg(config)
        .args(args)
        .arg("--json")
        .current_dir(repo_root())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn terrastream map")
}

/// Every embedding row under `out`, read with DuckDB: `[scene_id, chip_row, chip_col, embedding]`
/// sorted by id, plus the number of Parquet files.
pub fn rows(out: &Path) -> (Vec<(String, i64, i64, Vec<f64>)>, usize) {
    const READ: &str = r#"
import glob, json, sys
import duckdb
files = sorted(glob.glob(sys.argv[1] + "/embeddings/**/*.parquet", recursive=True))
rows = duckdb.connect().execute(
    "SELECT scene_id, chip_row, chip_col, embedding FROM read_parquet(?) ORDER BY scene_id, chip_row, chip_col",
    [files]).fetchall() if files else []
print(json.dumps({"files": len(files), "rows": rows}))
"#;
    let v = python_json(&venv_python(), READ, &[&out.display().to_string()]);
    let rows = v["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            let e = r[3]
                .as_array()
                .expect("embedding")
                .iter()
                .map(|x| x.as_f64().expect("f64"))
                .collect();
            (
                r[0].as_str().expect("id").to_string(),
                r[1].as_i64().expect("row"),
                r[2].as_i64().expect("col"),
                e,
            )
        })
        .collect();
    (rows, v["files"].as_u64().expect("files") as usize)
}

/// The uninterrupted single-process run of [`SIX_MONTHS`], shared by the tests that compare
/// against it: (its temp dir, the output dir, its summary).
pub fn reference_run() -> &'static (tempfile::TempDir, PathBuf, serde_json::Value) {
    static RUN: OnceLock<(tempfile::TempDir, PathBuf, serde_json::Value)> = OnceLock::new();
    RUN.get_or_init(|| {
        let tmp = tempfile::tempdir().expect("tmp");
        let items = revisits(tmp.path(), &SIX_MONTHS);
        let out = tmp.path().join("out");
        let config = run_config(tmp.path(), &items, &out, "");
        let (status, summary) = map_json(&config, &[]);
        assert!(status.success(), "reference run failed: {summary:#}");
        (tmp, out, summary)
    })
}

/// Asserts two row sets are the same chips with the same embeddings (to 1e-5) and no chip
/// appears twice.
pub fn assert_same_rows(got: &[(String, i64, i64, Vec<f64>)], want: &[(String, i64, i64, Vec<f64>)], what: &str) {
    let ids = |r: &[(String, i64, i64, Vec<f64>)]| r.iter().map(|(s, a, b, _)| (s.clone(), *a, *b)).collect::<Vec<_>>();
    let (g, w) = (ids(got), ids(want));
    let mut dedup = g.clone();
    dedup.dedup();
    assert_eq!(dedup.len(), g.len(), "{what}: duplicated chips");
    assert_eq!(g, w, "{what}: chip ids differ from the uninterrupted run");
    let worst = got
        .iter()
        .zip(want)
        .flat_map(|(a, b)| a.3.iter().zip(&b.3).map(|(x, y)| (x - y).abs()))
        .fold(0.0_f64, f64::max);
    assert!(worst <= 1e-5, "{what}: embeddings differ by up to {worst}");
}

//! `terrastream sql` on outputs of `terrastream map` over the real sample scene, every answer
//! checked against DuckDB (or, for geometry, a Python computation from the WKB) on the same
//! files.

mod errors;
mod queries;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::common::*;
use crate::map::{ITEM_ID, revisits};

/// Three monthly revisits of the sample scene (25 chips each), hive-partitioned by grid and
/// date, in 4-row row groups (so that statistics can skip some): (temp dir, output dir).
pub fn store() -> &'static (tempfile::TempDir, PathBuf) {
    static STORE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    STORE.get_or_init(|| {
        let tmp = tempfile::tempdir().expect("tmp");
        let items = revisits(tmp.path(), &[(1, 20, 12.0), (2, 19, 4.0), (3, 10, 30.0)]);
        let out = tmp.path().join("out");
        let items: Vec<String> = items.iter().map(|p| format!("{:?}", p.display().to_string())).collect();
        let cfg = format!(
            r#"[source]
items = [{items}]
[[source.rewrite]]
prefix = "https://sentinel-cogs.s3.us-west-2.amazonaws.com/sentinel-s2-l2a-cogs/29/R/KH/2020/2/{ITEM_ID}/"
replace = "{assets}/"
[run]
period = "month"
[grid]
chip_size = 224
stride = 224
[model]
variant = "tiny"
seed = 1
device = "cpu"
[output]
dir = "{out}"
partitioning = "grid_date"
row_group_rows = 4
"#,
            items = items.join(", "),
            assets = s2_scene_dir().display(),
            out = out.display()
        );
        run_map(tmp.path(), &cfg);
        (tmp, out)
    })
}

/// The output directory of [`store`].
pub fn out() -> &'static Path {
    &store().1
}

/// Runs `terrastream sql QUERY --tables OUT ARGS...`.
pub fn sql(query: &str, args: &[&str]) -> Output {
    Command::new(terrastream_bin())
        .arg("sql")
        .arg(query)
        .arg("--tables")
        .arg(out())
        .args(args)
        .current_dir(repo_root())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run terrastream sql")
}

/// The rows of `query` as JSON objects (`--format json`).
pub fn sql_json(query: &str) -> Vec<serde_json::Value> {
    let run = sql(query, &["--format", "json"]);
    assert!(run.status.success(), "{query}: {}", describe(&run));
    String::from_utf8_lossy(&run.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The rows of a DuckDB query over the store's embeddings (view `e`, hive partitions read as
/// `grid_id`/`date` columns), as JSON arrays.
pub fn duckdb(query: &str) -> Vec<serde_json::Value> {
    const SCRIPT: &str = r#"
import json, sys
import duckdb
con = duckdb.connect()
con.execute(f"CREATE VIEW e AS SELECT * FROM read_parquet('{sys.argv[1]}/embeddings/**/*.parquet', hive_partitioning=true)")
rows = con.execute(sys.argv[2]).fetchall()
print(json.dumps([list(r) for r in rows], default=str))
"#;
    let v = python_json(&venv_python(), SCRIPT, &[&out().display().to_string(), query]);
    v.as_array().expect("rows").clone()
}

/// A deterministic pseudo-random vector of `dim` values in [-1, 1), as an SQL array literal.
pub fn vector_literal(dim: usize, seed: u64) -> String {
    let mut state = seed;
    let values: Vec<String> = (0..dim)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            format!("{:.6}", (state >> 40) as f64 / (1u64 << 23) as f64 - 1.0)
        })
        .collect();
    format!("[{}]", values.join(", "))
}

/// The embedding dimension of the store.
pub fn dim() -> usize {
    duckdb("SELECT len(embedding) FROM e LIMIT 1")[0][0]
        .as_u64()
        .expect("dim") as usize
}

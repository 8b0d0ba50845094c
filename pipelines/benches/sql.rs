//! `terrastream sql` against DuckDB on the same Parquet files with the same thread count:
//! a top-10 cosine query over 1,000,000 random 768-d embeddings, and the same query restricted
//! to a bounding box. Prints DuckDB's time divided by ours (≥ 1: we are at least as fast).
//!
//!   cargo bench -p terrastream --bench sql
//!
//! Environment: `TERRASTREAM_SQL_BENCH_ROWS` (1000000), `TERRASTREAM_SQL_BENCH_THREADS` (all
//! CPUs), `TERRASTREAM_SQL_BENCH_REPEAT` (5), `TERRASTREAM_SQL_BENCH_DIR` (where the files
//! are generated once and kept; by default they go to /dev/shm and are removed at the end).
//!
//! The files look like the sink's (8192-row groups, rows sorted by place so that row groups
//! cover compact areas) but hold random vectors: no compression, no dictionaries, since
//! random floats gain nothing from either. DuckDB runs in the venv's Python
//! (`.venv/bin/python`), one long-lived session; rounds alternate ours and DuckDB's runs of a
//! query (the first round discarded), and the ratio is the median of per-round ratios, so that
//! load from other processes on a shared machine falls on both alike.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{
    ArrayRef, FixedSizeListArray, Float32Array, Float64Array, Int32Array, RecordBatch, StringArray, StructArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use rand::{Rng, SeedableRng};

const DIM: usize = 768;
const FILES: usize = 8;
const ROW_GROUP: usize = 8192;
/// The bbox of the second query: 1/10 of the longitudes, half the latitudes.
const BOX: [f64; 4] = [0.0, -30.0, 36.0, 30.0];

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn bbox_fields() -> Fields {
    ["xmin", "ymin", "xmax", "ymax"]
        .iter()
        .map(|n| Field::new(*n, DataType::Float64, false))
        .collect()
}

/// Writes `rows` random rows into `FILES` files under `dir` (once: kept for later runs).
fn generate(dir: &Path, rows: usize) {
    let done = dir.join("_complete");
    if done.exists() {
        return;
    }
    std::fs::create_dir_all(dir).expect("bench dir");
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let schema = Arc::new(Schema::new(vec![
        Field::new("scene_id", DataType::Utf8, false),
        Field::new("chip_row", DataType::Int32, false),
        Field::new("chip_col", DataType::Int32, false),
        Field::new("bbox", DataType::Struct(bbox_fields()), false),
        Field::new(
            "embedding",
            DataType::FixedSizeList(Arc::clone(&item), DIM as i32),
            false,
        ),
    ]));
    let props = WriterProperties::builder()
        .set_compression(Compression::UNCOMPRESSED)
        .set_dictionary_enabled(false)
        .set_max_row_group_row_count(Some(ROW_GROUP))
        .build();
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let per_file = rows.div_ceil(FILES);
    let started = Instant::now();
    for f in 0..FILES {
        let path = dir.join(format!("part-{f}.parquet"));
        let file = std::fs::File::create(&path).expect("create bench file");
        let mut writer = ArrowWriter::try_new(file, Arc::clone(&schema), Some(props.clone())).expect("writer");
        let first = f * per_file;
        let last = rows.min(first + per_file);
        for start in (first..last).step_by(ROW_GROUP) {
            let n = ROW_GROUP.min(last - start);
            // Longitude grows with the row number (rows sorted by place), latitude is random.
            let xmin: Vec<f64> = (start..start + n)
                .map(|i| -180.0 + 360.0 * i as f64 / rows as f64 + rng.random_range(0.0..0.01))
                .collect();
            let ymin: Vec<f64> = (0..n).map(|_| rng.random_range(-60.0..60.0)).collect();
            let bbox = StructArray::new(
                bbox_fields(),
                vec![
                    Arc::new(Float64Array::from(xmin.clone())) as ArrayRef,
                    Arc::new(Float64Array::from(ymin.clone())),
                    Arc::new(Float64Array::from_iter_values(xmin.iter().map(|x| x + 0.02))),
                    Arc::new(Float64Array::from_iter_values(ymin.iter().map(|y| y + 0.02))),
                ],
                None,
            );
            let values: Vec<f32> = (0..n * DIM).map(|_| rng.random_range(-1.0..1.0)).collect();
            let embedding = FixedSizeListArray::new(
                Arc::clone(&item),
                DIM as i32,
                Arc::new(Float32Array::from(values)),
                None,
            );
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from_iter_values(
                    (start..start + n).map(|i| format!("scene_{}", i / 1000)),
                )),
                Arc::new(Int32Array::from_iter_values(
                    (start..start + n).map(|i| (i % 1000 / 32) as i32),
                )),
                Arc::new(Int32Array::from_iter_values(
                    (start..start + n).map(|i| (i % 32) as i32),
                )),
                Arc::new(bbox),
                Arc::new(embedding),
            ];
            writer
                .write(&RecordBatch::try_new(Arc::clone(&schema), columns).expect("batch"))
                .expect("write");
        }
        writer.close().expect("close");
    }
    std::fs::write(&done, "").expect("marker");
    eprintln!(
        "generated {rows} rows in {FILES} files in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

fn query_vector() -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    (0..DIM).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn literal(q: &[f32]) -> String {
    format!(
        "[{}]",
        q.iter().map(|x| format!("{x:?}")).collect::<Vec<_>>().join(", ")
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The two queries for `table`, with the similarity function `cosine` (ours or DuckDB's).
fn queries(table: &str, cosine: &str) -> [(String, &'static str); 2] {
    let [x0, y0, x1, y1] = BOX;
    let top = format!("SELECT scene_id, chip_row, chip_col, {cosine} AS score FROM {table}");
    let tail = "ORDER BY score DESC LIMIT 10";
    [
        (format!("{top} {tail}"), "top-10 cosine"),
        (
            format!(
                "{top} WHERE bbox.xmin <= {x1} AND bbox.xmax >= {x0} AND bbox.ymin <= {y1} AND bbox.ymax >= {y0} {tail}"
            ),
            "bbox + top-10 cosine",
        ),
    ]
}

/// A DuckDB session that runs one query per input line (JSON: the SQL) and answers with one
/// line (JSON: seconds, rows), so that its runs interleave with ours.
const DUCKDB: &str = r#"
import json, sys, time
import duckdb
glob, threads = sys.argv[1], int(sys.argv[2])
con = duckdb.connect()
con.execute(f"SET threads = {threads}")
con.execute("SET enable_progress_bar = false")
con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet('{glob}')")
for line in sys.stdin:
    sql = json.loads(line)
    t = time.perf_counter()
    rows = con.execute(sql).fetchall()
    seconds = time.perf_counter() - t
    print(json.dumps({"seconds": seconds, "rows": [[r[0], r[1], r[2]] for r in rows]}), flush=True)
"#;

/// The DuckDB process of [`DUCKDB`].
struct DuckDb {
    child: std::process::Child,
    out: std::io::BufReader<std::process::ChildStdout>,
}

impl DuckDb {
    fn start(python: &Path, glob: &str, threads: usize) -> Self {
        let mut child = Command::new(python)
            .arg("-c")
            .arg(DUCKDB)
            .arg(glob)
            .arg(threads.to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run the venv's python (scripts/setup.sh)");
        let out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        Self { child, out }
    }

    /// Seconds and `(scene_id, chip_row, chip_col)` of the rows.
    fn run(&mut self, sql: &str) -> (f64, Vec<(String, i64, i64)>) {
        use std::io::{BufRead, Write};
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{}", serde_json::to_string(sql).expect("json")).expect("send to duckdb");
        let mut line = String::new();
        self.out.read_line(&mut line).expect("duckdb answer");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("duckdb: {e}: {line}"));
        let rows = v["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| {
                (
                    r[0].as_str().unwrap_or_default().to_string(),
                    r[1].as_i64().unwrap_or(-2),
                    r[2].as_i64().unwrap_or(-2),
                )
            })
            .collect();
        (v["seconds"].as_f64().expect("seconds"), rows)
    }
}

/// `(scene_id, chip_row, chip_col)` of our rows.
fn ids(batches: &[RecordBatch]) -> Vec<(String, i64, i64)> {
    let mut buf = Vec::new();
    for b in batches {
        terrastream::sql::format::write(
            terrastream::sql::format::Format::Json,
            &b.schema(),
            std::slice::from_ref(b),
            &mut buf,
            "bench",
        )
        .expect("json");
    }
    String::from_utf8(buf)
        .expect("utf8")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("row");
            (
                v["scene_id"].as_str().unwrap_or_default().to_string(),
                v["chip_row"].as_i64().unwrap_or(-1),
                v["chip_col"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

/// Removes the generated files on the way out (also after a panic).
struct Cleanup(Option<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let rows: usize = env_or("TERRASTREAM_SQL_BENCH_ROWS", 1_000_000);
    let threads: usize = env_or(
        "TERRASTREAM_SQL_BENCH_THREADS",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    let repeat: usize = env_or("TERRASTREAM_SQL_BENCH_REPEAT", 5).max(1);
    // 3 GB of files: in memory (tmpfs) and removed afterwards unless a directory is given.
    let kept = std::env::var("TERRASTREAM_SQL_BENCH_DIR").ok().map(PathBuf::from);
    let base = kept.clone().unwrap_or_else(|| {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            shm.join("terrastream-sql-bench")
        } else {
            std::env::temp_dir().join("terrastream-sql-bench")
        }
    });
    let dir = base.join(format!("rows-{rows}"));
    let _cleanup = Cleanup(kept.is_none().then(|| base.clone()));
    generate(&dir, rows);
    let q = query_vector();
    let lit = literal(&q);

    let python = root.join(".venv/bin/python");
    let mut duck = DuckDb::start(&python, &format!("{}/*.parquet", dir.display()), threads);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let ctx = terrastream::sql::session(Some(threads));
        let arg = format!("t={}/", dir.display());
        terrastream::sql::tables::register(&ctx, &[arg]).await.expect("register");
        println!(
            "sql bench: {rows} rows x {DIM} floats, {FILES} files, {threads} threads; per query {repeat} rounds \
             of (ours, DuckDB array_cosine_similarity, DuckDB list_cosine_similarity), first round discarded"
        );
        let ours_q = queries("t", &format!("cosine_similarity(embedding, {lit})"));
        let array_q = queries("t", &format!("array_cosine_similarity(embedding::FLOAT[{DIM}], {lit}::FLOAT[{DIM}])"));
        let list_q = queries("t", &format!("list_cosine_similarity(embedding, {lit}::FLOAT[])"));
        for ((ours_sql, name), ((array_sql, _), (list_sql, _))) in ours_q.iter().zip(array_q.iter().zip(&list_q)) {
            let (mut ours, mut array, mut list) = (Vec::new(), Vec::new(), Vec::new());
            let mut same = true;
            // Rounds alternate engines so that both see the same load on a shared machine.
            for round in 0..=repeat {
                let t = Instant::now();
                let batches = terrastream::sql::query(&ctx, ours_sql).await.expect("query").1;
                let o = t.elapsed().as_secs_f64();
                let (a, a_rows) = duck.run(array_sql);
                let (l, l_rows) = duck.run(list_sql);
                let mine = ids(&batches);
                same &= mine == a_rows && mine == l_rows && mine.len() == 10;
                if round > 0 {
                    ours.push(o);
                    array.push(a);
                    list.push(l);
                }
            }
            let ratio = |theirs: &[f64]| median(theirs.iter().zip(&ours).map(|(t, o)| t / o).collect());
            println!(
                "{name:<22} ours {:>7.3}s  duckdb array {:>7.3}s  list {:>7.3}s  ratio duckdb/ours (median of per-round ratios): \
                 array {:>5.2}, list {:>5.2}  ({})",
                median(ours.clone()),
                median(array.clone()),
                median(list.clone()),
                ratio(&array),
                ratio(&list),
                if same { "same top-10" } else { "DIFFERENT top-10" }
            );
        }
    });
    drop(duck.child.stdin.take());
    let _ = duck.child.wait();
}

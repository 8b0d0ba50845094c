//! `terrastream sql` against DuckDB on the same Parquet files with the same thread count:
//! a top-10 cosine query over 1,000,000 random 768-d embeddings, and the same query restricted
//! to a bounding box. Prints DuckDB's time divided by ours (≥ 1: we are at least as fast), and
//! our time with embeddings read by DataFusion's scan divided by ours with them read late
//! (`sql::late`).
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

use std::path::Path;
use std::time::Instant;

use datafusion::arrow::array::RecordBatch;
use rand::{Rng, SeedableRng};

#[path = "support/duckdb.rs"]
mod duckdb;
#[path = "support/embeddings.rs"]
mod embeddings;
use duckdb::DuckDb;
use embeddings::{DIM, FILES, bench_dir, env_or, generate};

/// The bbox of the second query: 1/10 of the longitudes, half the latitudes.
const BOX: [f64; 4] = [0.0, -30.0, 36.0, 30.0];

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

/// `(scene_id, chip_row, chip_col)` of DuckDB's rows.
fn triples(rows: &[Vec<serde_json::Value>]) -> Vec<(String, i64, i64)> {
    rows.iter()
        .map(|r| {
            let at = |i: usize| r.get(i).cloned().unwrap_or_default();
            (at(0).as_str().unwrap_or_default().to_string(), at(1).as_i64().unwrap_or(-2), at(2).as_i64().unwrap_or(-2))
        })
        .collect()
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

fn main() {
    // Measure what `terrastream sql` runs with: the binary sets one malloc arena first thing.
    terrastream_ingest::memory::bound_heap_growth(terrastream_ingest::memory::HeapBound::SingleArena);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let rows: usize = env_or("TERRASTREAM_SQL_BENCH_ROWS", 1_000_000);
    let threads: usize = env_or(
        "TERRASTREAM_SQL_BENCH_THREADS",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    let repeat: usize = env_or("TERRASTREAM_SQL_BENCH_REPEAT", 5).max(1);
    let (dir, _cleanup) = bench_dir("TERRASTREAM_SQL_BENCH_DIR", "terrastream-sql-bench", rows);
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
        let ctx = terrastream::sql::session_with(Some(threads), true);
        let eager = terrastream::sql::session_with(Some(threads), false);
        let arg = format!("t={}/", dir.display());
        terrastream::sql::tables::register(&ctx, std::slice::from_ref(&arg)).await.expect("register");
        terrastream::sql::tables::register(&eager, &[arg]).await.expect("register");
        println!(
            "sql bench: {rows} rows x {DIM} floats, {FILES} files, {threads} threads; per query {repeat} rounds \
             of (ours, ours without late lists, DuckDB array_cosine_similarity, DuckDB list_cosine_similarity), \
             first round discarded"
        );
        let ours_q = queries("t", &format!("cosine_similarity(embedding, {lit})"));
        let array_q = queries("t", &format!("array_cosine_similarity(embedding::FLOAT[{DIM}], {lit}::FLOAT[{DIM}])"));
        let list_q = queries("t", &format!("list_cosine_similarity(embedding, {lit}::FLOAT[])"));
        for ((ours_sql, name), ((array_sql, _), (list_sql, _))) in ours_q.iter().zip(array_q.iter().zip(&list_q)) {
            let (mut ours, mut array, mut list, mut eagers) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let mut same = true;
            // Rounds alternate engines so that both see the same load on a shared machine.
            for round in 0..=repeat {
                let t = Instant::now();
                let batches = terrastream::sql::query(&ctx, ours_sql).await.expect("query").1;
                let o = t.elapsed().as_secs_f64();
                let t = Instant::now();
                let eager_batches = terrastream::sql::query(&eager, ours_sql).await.expect("query").1;
                let e = t.elapsed().as_secs_f64();
                let (a, a_rows) = duck.run(array_sql);
                let (l, l_rows) = duck.run(list_sql);
                let (a_rows, l_rows) = (triples(&a_rows), triples(&l_rows));
                let mine = ids(&batches);
                same &= mine == a_rows && mine == l_rows && mine == ids(&eager_batches) && mine.len() == 10;
                if round > 0 {
                    ours.push(o);
                    eagers.push(e);
                    array.push(a);
                    list.push(l);
                }
            }
            let ratio = |theirs: &[f64]| median(theirs.iter().zip(&ours).map(|(t, o)| t / o).collect());
            println!(
                "{name:<22} ours {:>7.3}s  duckdb array {:>7.3}s  list {:>7.3}s  ratio duckdb/ours (median of per-round ratios): \
                 array {:>5.2}, list {:>5.2}; without late lists {:>7.3}s, ratio {:>5.2}  ({})",
                median(ours.clone()),
                median(array.clone()),
                median(list.clone()),
                ratio(&array),
                ratio(&list),
                median(eagers.clone()),
                ratio(&eagers),
                if same { "same top-10" } else { "DIFFERENT top-10" }
            );
        }
    });
}

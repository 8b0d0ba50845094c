//! `terrastream classify`'s labelling against DuckDB SQL on the same Parquet files and thread
//! count: 1,000,000 random 768-d embeddings, 10 class prototypes, each row labelled with its
//! most similar prototype (cosine). Both sides read the files and count rows per label; the
//! counts must agree. Prints chips/s and DuckDB's time divided by ours (≥ 1: we are faster).
//!
//!   cargo bench -p terrastream --bench classify
//!
//! Environment: `TERRASTREAM_CLASSIFY_BENCH_ROWS` (1000000), `..._THREADS` (all CPUs),
//! `..._REPEAT` (3), `..._DIR` (where the files are generated once and kept; by default in
//! /dev/shm, removed at the end). Rounds alternate ours and DuckDB's (the first discarded);
//! the ratio is the median of per-round ratios.

use std::collections::BTreeMap;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use terrastream::classify::chips;
use terrastream::classify::classifier::{Classifier, Method, classify_all};

#[path = "support/duckdb.rs"]
mod duckdb;
#[path = "support/embeddings.rs"]
mod embeddings;
use duckdb::DuckDb;
use embeddings::{DIM, bench_dir, env_or, generate};

const CLASSES: usize = 10;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let rows: usize = env_or("TERRASTREAM_CLASSIFY_BENCH_ROWS", 1_000_000);
    let threads: usize =
        env_or("TERRASTREAM_CLASSIFY_BENCH_THREADS", std::thread::available_parallelism().map_or(1, |n| n.get()));
    let repeat: usize = env_or("TERRASTREAM_CLASSIFY_BENCH_REPEAT", 3).max(1);
    let (dir, _cleanup) = bench_dir("TERRASTREAM_CLASSIFY_BENCH_DIR", "terrastream-classify-bench", rows);
    generate(&dir, rows);

    // Ten prototypes as a classifier trained on one random example each.
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let protos: Vec<Vec<f32>> = (0..CLASSES).map(|_| (0..DIM).map(|_| rng.random_range(-1.0..1.0)).collect()).collect();
    let examples: Vec<(Option<String>, Vec<f32>)> =
        protos.iter().enumerate().map(|(i, p)| (Some(format!("c{i}")), p.clone())).collect();
    let classifier = Classifier::train(Method::Prototype, &examples, 1, None).expect("train");
    let unit: Vec<Vec<f32>> = protos.iter().map(|p| terrastream::classify::classifier::unit(p)).collect();

    // DuckDB: the index (1-based) of the largest of the ten cosine similarities, counted.
    let sims: Vec<String> = unit
        .iter()
        .map(|p| {
            let lit = p.iter().map(|x| format!("{x:?}")).collect::<Vec<_>>().join(",");
            format!("array_cosine_similarity(embedding::FLOAT[{DIM}], [{lit}]::FLOAT[{DIM}])")
        })
        .collect();
    let duck_sql = format!(
        "SELECT list_position(s, list_max(s)) - 1 AS label, count(*) FROM (SELECT [{}] AS s FROM t) GROUP BY 1 ORDER BY 1",
        sims.join(", ")
    );
    let mut duck = DuckDb::start(&root.join(".venv/bin/python"), &format!("{}/*.parquet", dir.display()), threads);
    let mut run_duck = || {
        let (seconds, rows) = duck.run(&duck_sql);
        let counts: BTreeMap<usize, u64> = rows
            .iter()
            .map(|r| (r[0].as_u64().expect("label") as usize, r[1].as_u64().expect("count")))
            .collect();
        (seconds, counts)
    };

    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build().expect("runtime");
    let ours = || {
        runtime.block_on(async {
            let ctx = terrastream::sql::session(Some(threads));
            terrastream::sql::tables::register(&ctx, &[format!("embeddings={}/", dir.display())]).await.expect("register");
            let mut counts: BTreeMap<usize, u64> = BTreeMap::new();
            let t = Instant::now();
            chips::scan(&ctx, "SELECT scene_id, chip_row, chip_col, embedding FROM embeddings", |batch| {
                for d in classify_all(&classifier, &batch.vectors, threads) {
                    *counts.entry(d.label.expect("no rejection")).or_default() += 1;
                }
                Ok(())
            })
            .await
            .expect("scan");
            (t.elapsed().as_secs_f64(), counts)
        })
    };
    println!("classify bench: {rows} rows x {DIM} floats, {CLASSES} prototypes, {threads} threads, {repeat} rounds (first discarded)");
    let (mut mine, mut theirs) = (vec![], vec![]);
    let mut same = true;
    for round in 0..=repeat {
        let (o, oc) = ours();
        let (d, dc) = run_duck();
        same &= oc == dc && oc.values().sum::<u64>() == rows as u64;
        if round > 0 {
            mine.push(o);
            theirs.push(d);
        }
    }
    let ratio = median(theirs.iter().zip(&mine).map(|(d, o)| d / o).collect());
    println!(
        "prototype labelling: ours {:.3}s ({:.0} chips/s), DuckDB {:.3}s; ratio DuckDB/ours {ratio:.2} (median of per-round ratios); label counts {}",
        median(mine.clone()),
        rows as f64 / median(mine),
        median(theirs),
        if same { "identical" } else { "DIFFER" }
    );
}

//! Pipeline efficiency: end-to-end chips/s of `terrastream map` divided by model-only chips/s
//! (the same model on the same chips, pre-loaded in memory), and peak memory of a 1-scene run
//! against a 10-scene run.
//!
//!   cargo bench -p terrastream --bench efficiency
//!
//! Environment: `TERRASTREAM_BENCH_SCENES` (default 10), `TERRASTREAM_BENCH_VARIANT` (base),
//! `TERRASTREAM_BENCH_ROUNDS` (3; 0 = memory only), `TERRASTREAM_BENCH_DEVICE` (cpu; `cuda` on a GPU machine, see scripts/bench_gpu.sh),
//! `TERRASTREAM_BENCH_BATCH` (8), `TERRASTREAM_BENCH_CHIP` (224).
//!
//! Scenes are revisits of the bundled sample scene (the same real files under distinct item
//! ids and months), so every run reads and decodes real COGs. Ratios, not absolute times, are
//! the result: the machines are shared.
//!
//! The default model is base, the smallest that users map with. On a CPU the pipeline's reading
//! and the model share the cores, so the ratio measures how much of the CPU decoding takes from
//! the model: with `tiny` (a test model, about 12 times faster than base) decoding is a third of
//! the work on 2 cores and the ratio drops to about 0.6. On a GPU the decode does not compete
//! (scripts/bench_gpu.sh).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use terrastream::map::{self, MapConfig, RunOptions};
use terrastream_ingest::item::SceneItem;
use terrastream_ingest::{ChipLedger, ChipStreamAdapter};
use terrastream_operators::{BandStats, Embed, Normalize, Operator, QualityFilter};

const ITEM_ID: &str = "S2A_29RKH_20200219_0_L2A";

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn scene_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/rio-tiler-pds")
        .join(ITEM_ID)
}

/// `n` revisits of the sample scene as item files in `dir`.
fn revisits(dir: &Path, n: usize) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(scene_dir().join(format!("{ITEM_ID}.json"))).expect("sample item");
    (0..n)
        .map(|k| {
            let mut item: serde_json::Value = serde_json::from_str(&text).expect("item json");
            let (year, month) = (2020 + k / 12, k % 12 + 1);
            let id = format!("S2A_29RKH_{year}{month:02}19_0_L2A");
            item["id"] = id.clone().into();
            item["properties"]["datetime"] = format!("{year}-{month:02}-19T11:34:25Z").into();
            let path = dir.join(format!("{id}.json"));
            std::fs::write(&path, serde_json::to_vec(&item).expect("ser")).expect("write item");
            path
        })
        .collect()
}

fn config(dir: &Path, items: &[PathBuf], out: &Path) -> PathBuf {
    config_with(dir, items, out, 2)
}

/// [`config`] with `concurrency` units in flight.
fn config_with(dir: &Path, items: &[PathBuf], out: &Path, concurrency: usize) -> PathBuf {
    let items: Vec<String> = items.iter().map(|p| format!("{:?}", p.display().to_string())).collect();
    let text = format!(
        r#"[source]
items = [{items}]
[[source.rewrite]]
prefix = "https://sentinel-cogs.s3.us-west-2.amazonaws.com/sentinel-s2-l2a-cogs/29/R/KH/2020/2/{ITEM_ID}/"
replace = "{assets}/"
[run]
concurrency = {concurrency}
[grid]
chip_size = {chip}
[model]
variant = "{variant}"
device = "{device}"
batch_size = {batch}
seed = 7
[output]
dir = "{out}"
"#,
        items = items.join(", "),
        assets = scene_dir().display(),
        chip = env_or("TERRASTREAM_BENCH_CHIP", 224usize),
        variant = env_or("TERRASTREAM_BENCH_VARIANT", "base".to_string()),
        device = env_or("TERRASTREAM_BENCH_DEVICE", "cpu".to_string()),
        batch = env_or("TERRASTREAM_BENCH_BATCH", 8usize),
        out = out.display(),
    );
    let path = dir.join(format!("run-{}.toml", items.len()));
    std::fs::write(&path, text).expect("write config");
    path
}

/// Chips/s of the model alone on the chips of `cfg`, read and normalised beforehand.
async fn model_only(cfg: &MapConfig) -> (u64, f64) {
    let modality = map::modality(cfg).expect("modality");
    let ledger = Arc::new(ChipLedger::default());
    let source = cfg.scene_source(modality, Arc::clone(&ledger)).expect("source");
    let items = cfg
        .source
        .items
        .iter()
        .map(|p| SceneItem::from_path(p).expect("item"))
        .collect::<Vec<_>>();
    let filter = QualityFilter::new(
        cfg.filter.min_valid_fraction,
        cfg.filter.max_cloud_fraction,
        Arc::clone(&ledger),
    )
    .expect("filter");
    let normalize =
        Normalize::new(modality.name, BandStats::terramind_v1(modality.name).expect("stats")).expect("normalize");
    let stream = normalize
        .apply(filter.apply(source.stream(items, 2)).expect("filter"))
        .expect("normalize");
    let schema = stream.schema();
    let batches: Vec<_> = stream.map(|b| b.expect("batch")).collect().await;
    let chips: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    let embed = Embed::new(&cfg.embed_config(modality.name).expect("model.device"))
    .expect("model");
    // One warm-up pass (allocator, kernels), as the pipeline's first unit gets.
    let first: Vec<_> = batches.iter().take(1).cloned().collect();
    let warm = futures::stream::iter(first.into_iter().map(Ok)).boxed();
    let _ = embed
        .apply(ChipStreamAdapter::new(Arc::clone(&schema), warm).boxed())
        .expect("apply")
        .count()
        .await;
    let input = futures::stream::iter(batches.into_iter().map(Ok)).boxed();
    let started = Instant::now();
    let out = embed
        .apply(ChipStreamAdapter::new(schema, input).boxed())
        .expect("apply");
    let done: usize = out
        .map(|b| b.expect("embedded").num_rows())
        .fold(0, |a, n| async move { a + n })
        .await;
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(done as u64, chips);
    (chips, chips as f64 / secs)
}

fn peak_rss_of_run(config: &Path) -> f64 {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_terrastream"))
        .arg("map")
        .arg(config)
        .arg("--json")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run terrastream");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("summary");
    summary["peak_rss_mib"].as_f64().expect("peak_rss_mib")
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs this too: keep that short.
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let scenes = env_or("TERRASTREAM_BENCH_SCENES", 10usize);
    let rounds = env_or("TERRASTREAM_BENCH_ROUNDS", 3usize);
    let tmp = tempfile::tempdir().expect("tmp");
    let items = revisits(tmp.path(), scenes);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    println!("pipeline efficiency: {scenes} scenes, {rounds} rounds (median)");
    let mut ratios = Vec::new();
    for round in 0..rounds {
        let out = tmp.path().join(format!("out-{round}"));
        let cfg = MapConfig::from_path(&config(tmp.path(), &items, &out)).expect("config");
        let (chips, model_cps) = rt.block_on(model_only(&cfg));
        let summary = rt
            .block_on(map::run(
                &cfg,
                RunOptions {
                    quiet: true,
                    ..Default::default()
                },
            ))
            .expect("run");
        assert!(summary.ok(), "{summary}");
        assert_eq!(
            summary.chips_written, chips,
            "the pipeline wrote other chips than the model-only pass"
        );
        let e2e_cps = summary.chips_written as f64 / summary.seconds;
        let ratio = e2e_cps / model_cps;
        println!(
            "  round {round}: {chips} chips; model only {model_cps:.2} chips/s; end to end {e2e_cps:.2} chips/s \
             (model busy {:.0} %); efficiency {ratio:.3}",
            summary.device_busy * 100.0
        );
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    if let Some(median) = ratios.get(ratios.len() / 2) {
        println!("efficiency (end-to-end / model-only chips/s), median: {median:.3}  (goal >= 0.9)");
    }

    // Each run in its own `terrastream` process (the binary's malloc settings apply). A run
    // holds at most `run.concurrency` units (here: one scene each) at once, so one scene is
    // compared with many at concurrency 1; at concurrency 2, with the two scenes that first
    // fill it as well.
    let peak = |concurrency: usize, n: usize| {
        let dir = tmp.path().join(format!("rss-c{concurrency}-{n}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        peak_rss_of_run(&config_with(&dir, &items[..n], &dir.join("out"), concurrency))
    };
    let (one, many) = (peak(1, 1), peak(1, scenes));
    println!(
        "peak RSS, concurrency 1: 1 scene {one:.0} MiB, {scenes} scenes {many:.0} MiB, ratio {:.3}  (goal <= 1.10)",
        many / one
    );
    let (one, two, many) = (peak(2, 1), peak(2, 2.min(scenes)), peak(2, scenes));
    println!(
        "peak RSS, concurrency 2: 1 scene {one:.0} MiB, 2 scenes {two:.0} MiB, {scenes} scenes {many:.0} MiB; \
         ratio to 1 scene {:.3}, to 2 scenes {:.3}",
        many / one,
        many / two
    );
}

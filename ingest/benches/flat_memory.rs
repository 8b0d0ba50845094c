//! Memory of the whole-scene chip pass as the scene count grows: `SceneSource::stream` over N
//! copies of the sample Sentinel-2 item (ids `<id>-<i>`, same files), every batch consumed and
//! dropped, as the map pipeline's source sees it. Each N runs in a child process of this bench,
//! so each peak RSS (`VmHWM`) is that run's alone.
//!
//! ```text
//! cargo bench -p terrastream-ingest --bench flat_memory -- --scenes 1,4,16,64
//! ```
//!
//! (or `scripts/bench_cog.sh`). Prints per N the chips read, the RSS before streaming, the
//! peak RSS, and the ratio of each peak to the N = 1 peak (goal: flat, within ~10%). No memory
//! figure is asserted.
//!
//! It runs every N three times: with glibc malloc's defaults, with a fixed mmap threshold
//! ([`HeapBound::MmapThreshold`]) and with one malloc arena ([`HeapBound::SingleArena`], what
//! the `terrastream` binary applies first thing; see `terrastream_ingest::memory`). With the
//! defaults the peak grows with N although nothing is kept. Items are made as the source takes
//! them (a lazy iterator), so they do not add to the peak; the table also shows the peak less
//! the RSS before streaming.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use terrastream_ingest::bands::S2L2A;
use terrastream_ingest::grid::EdgePolicy;
use terrastream_ingest::item::{HrefRewrite, SceneItem};
use terrastream_ingest::memory::HeapBound;
use terrastream_ingest::{ChipLedger, SceneOptions, SceneSource};

/// The prefix of the sample item's asset hrefs (the public bucket), mapped to the local copy.
const BUCKET: &str =
    "https://sentinel-cogs.s3.us-west-2.amazonaws.com/sentinel-s2-l2a-cogs/29/R/KH/2020/2/S2A_29RKH_20200219_0_L2A/";

/// `VmRSS` or `VmHWM` of this process in MiB (Linux).
fn status_mib(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(key)).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// One run: streams `n` copies of the item, prints `chips= rss_before_mib= peak_mib= seconds=`.
fn child(n: usize, data: &Path, prefetch: usize, blocking: usize, bound: Option<HeapBound>) -> Result<(), String> {
    if let Some(bound) = bound
        && !terrastream_ingest::memory::bound_heap_growth(bound)
    {
        return Err(format!("{bound:?} did not apply (not glibc, or set in the environment)"));
    }
    let dir = data.join("rio-tiler-pds/S2A_29RKH_20200219_0_L2A");
    let item = SceneItem::from_path(&dir.join("S2A_29RKH_20200219_0_L2A.json")).map_err(|e| e.to_string())?;
    // Made one at a time as the source takes them, so that the items do not add to the peak.
    let items = (0..n).map(move |i| {
        let mut copy = item.clone();
        copy.item.id = format!("{}-{i}", item.id());
        copy
    });
    let options = SceneOptions {
        modality: S2L2A,
        chip_size: 224,
        stride: 224,
        edge: EdgePolicy::Snap,
        rewrites: vec![HrefRewrite { prefix: BUCKET.into(), replace: format!("{}/", dir.display()) }],
        cloud_mask: true,
        request_budget: None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(blocking)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let ledger = Arc::new(ChipLedger::default());
    let source = SceneSource::new(options, Arc::clone(&ledger)).map_err(|e| e.to_string())?;
    let before = status_mib("VmRSS:");
    let t0 = Instant::now();
    let chips = rt.block_on(async {
        let mut stream = source.stream(items, prefetch);
        let mut chips = 0usize;
        while let Some(batch) = stream.next().await {
            chips += batch.map_err(|e| e.to_string())?.num_rows();
        }
        Ok::<_, String>(chips)
    })?;
    let failed = ledger.snapshot().failed;
    if !failed.is_empty() {
        return Err(format!("scenes failed: {failed:?}"));
    }
    println!(
        "chips={chips} rss_before_mib={before:.1} peak_mib={:.1} seconds={:.2}",
        status_mib("VmHWM:"),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn field(line: &str, key: &str) -> Result<f64, String> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no {key} in {line:?}"))
}

fn main() -> Result<(), String> {
    let mut scenes = vec![1, 4, 16, 64];
    let mut data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
    let mut prefetch = 2;
    let mut blocking = 512;
    let mut child_n = None;
    let mut bound = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: &str| v.parse::<usize>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--scenes" => scenes = value()?.split(',').map(num).collect::<Result<_, _>>()?,
            "--data" => data = PathBuf::from(value()?),
            "--prefetch" => prefetch = num(&value()?)?,
            "--blocking" => blocking = num(&value()?)?.max(1),
            "--child" => child_n = Some(num(&value()?)?),
            "--heap" => {
                bound = match value()?.as_str() {
                    "arena" => Some(HeapBound::SingleArena),
                    "mmap" => Some(HeapBound::MmapThreshold),
                    other => return Err(format!("--heap {other}: arena or mmap")),
                }
            }
            // `cargo bench` passes `--bench`; ignore flags of the default harness.
            _ => {}
        }
    }
    if let Some(n) = child_n {
        return child(n, &data, prefetch, blocking, bound);
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    println!("whole-scene chip pass (S2L2A 12 bands + SCL, 224 px chips, prefetch {prefetch}), one process per N");
    for bound in [None, Some(HeapBound::MmapThreshold), Some(HeapBound::SingleArena)] {
        println!(
            "malloc: {}",
            match bound {
                None => "glibc defaults (dynamic mmap threshold, an arena per thread)",
                Some(HeapBound::MmapThreshold) => "fixed mmap threshold (128 KiB)",
                Some(HeapBound::SingleArena) => "one arena (the terrastream binary's setting)",
            }
        );
        table(&exe, &scenes, prefetch, blocking, &data, bound)?;
    }
    Ok(())
}

/// One child per N; prints a row each.
fn table(
    exe: &Path,
    scenes: &[usize],
    prefetch: usize,
    blocking: usize,
    data: &Path,
    bound: Option<HeapBound>,
) -> Result<(), String> {
    println!(
        "{:>6} {:>7} {:>10} {:>15} {:>14} {:>13} {:>16} {:>11}",
        "scenes", "chips", "seconds", "RSS before MiB", "peak RSS MiB", "peak / N=1", "peak-before MiB", "/ N=1"
    );
    let (mut first, mut first_net) = (None, None);
    for &n in scenes {
        let mut cmd = Command::new(exe);
        for var in ["MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_"] {
            cmd.env_remove(var);
        }
        match bound {
            Some(HeapBound::SingleArena) => cmd.args(["--heap", "arena"]),
            Some(HeapBound::MmapThreshold) => cmd.args(["--heap", "mmap"]),
            None => &mut cmd,
        };
        let args =
            ["--child", &n.to_string(), "--prefetch", &prefetch.to_string(), "--blocking", &blocking.to_string()]
                .map(|a| a.to_string());
        let out = cmd.args(args).arg("--data").arg(data).output().map_err(|e| e.to_string())?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!("N={n}: {stdout}{}", String::from_utf8_lossy(&out.stderr)));
        }
        let line = stdout.lines().last().unwrap_or_default();
        let peak = field(line, "peak_mib")?;
        let before = field(line, "rss_before_mib")?;
        let base = *first.get_or_insert(peak);
        let base_net = *first_net.get_or_insert(peak - before);
        println!(
            "{n:>6} {:>7} {:>10.2} {before:>15.1} {peak:>14.1} {:>13.3} {:>16.1} {:>11.3}",
            field(line, "chips")?,
            field(line, "seconds")?,
            peak / base,
            peak - before,
            (peak - before) / base_net
        );
    }
    Ok(())
}

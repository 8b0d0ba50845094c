//! Forward-pass throughput of our TerraMind (tch, CPU, float32 unless `--precision bf16|f16`):
//! the per-chip embedding the
//! pipeline stores (`embed_pooled`: encoder, mean over modalities and tokens) on random weights
//! and random standardized inputs. One configuration per process, so the reported peak RSS is
//! that configuration's.
//!
//! ```text
//! cargo bench -p terrastream-model --bench throughput -- \
//!     --variant tiny --modalities S2L2A,S1GRD --batch 8 --threads 2 --warmup 1 --reps 5
//! ```
//!
//! Prints one line `ours variant=.. modalities=.. batch=.. threads=.. median_s=..
//! images_per_s=.. max_rss_mb=..`; `scripts/bench_model.sh` runs it next to the reference
//! (`scripts/bench_model_reference.py`) and prints ratios.

use std::time::Instant;

use tch::{Device, Kind, Tensor};
use terrastream_model::{Config, Modality, Precision, TerraMind};

struct Args {
    variant: String,
    modalities: Vec<String>,
    batch: i64,
    threads: i32,
    size: i64,
    warmup: usize,
    reps: usize,
    precision: Precision,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        variant: "tiny".into(),
        modalities: vec!["S2L2A".into()],
        batch: 1,
        threads: 2,
        size: 224,
        warmup: 1,
        reps: 5,
        precision: Precision::F32,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| v.parse::<i64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--variant" => a.variant = value()?,
            "--modalities" => a.modalities = value()?.split(',').map(str::to_string).collect(),
            "--batch" => a.batch = num(value()?)?,
            "--threads" => a.threads = num(value()?)? as i32,
            "--size" => a.size = num(value()?)?,
            "--warmup" => a.warmup = num(value()?)? as usize,
            "--reps" => a.reps = num(value()?)?.max(1) as usize,
            "--precision" => {
                let v = value()?;
                a.precision = Precision::from_name(&v).ok_or(format!("--precision {v}: f32, bf16 or f16"))?;
            }
            // `cargo bench` passes `--bench`; ignore flags of the default harness.
            _ => {}
        }
    }
    Ok(a)
}

/// Peak resident set size of this process in MiB (`VmHWM`), Linux only.
fn max_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = parse()?;
    tch::set_num_threads(a.threads);
    tch::manual_seed(0);
    let cfg = Config::variant(&a.variant)?;
    let modalities = a
        .modalities
        .iter()
        .map(|m| Modality::from_name(m))
        .collect::<Result<Vec<_>, _>>()?;
    let model = TerraMind::random(&cfg, &modalities, 0, Device::Cpu)?.with_precision(a.precision);
    let inputs: Vec<(Modality, Tensor)> = modalities
        .iter()
        .map(|&m| {
            let c = model.channels(m).unwrap_or(1);
            (m, Tensor::randn([a.batch, c, a.size, a.size], (Kind::Float, Device::Cpu)))
        })
        .collect();
    for _ in 0..a.warmup {
        let _ = model.embed_pooled(&inputs)?;
    }
    let mut times = Vec::with_capacity(a.reps);
    for _ in 0..a.reps {
        let start = Instant::now();
        let out = model.embed_pooled(&inputs)?;
        let _ = std::hint::black_box(out);
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "ours variant={} modalities={} batch={} threads={} precision={:?} median_s={:.4} images_per_s={:.3} max_rss_mb={:.0}",
        a.variant,
        a.modalities.join(","),
        a.batch,
        a.threads,
        a.precision,
        median,
        a.batch as f64 / median,
        max_rss_mb()
    );
    Ok(())
}

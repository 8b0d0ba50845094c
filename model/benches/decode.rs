//! Time of the generation tail, token ids -> map, per 224 x 224 chip, ours (tch, CPU, float32)
//! against the reference (terratorch 1.2.11) on the same machine and thread count, both on the
//! full-size v1 tokenizers with random weights and random ids. A manual check: no test runs it
//! and no timing is asserted.
//!
//! - `--modality LULC` (default): ids -> class map (`Tokenizer::decode_classes`: FSQ codes,
//!   `post_quant_proj`, the ViT-B decoder, argmax; the reference's `decode_tokens(ids).argmax(1)`).
//! - `--modality S2L2A|S1GRD|S1RTC|DEM|NDVI`: ids -> image by the diffusion decoder in `--steps`
//!   DDIM steps (default 10; `Tokenizer::decode_image`; the reference's `decode_tokens(ids,
//!   timesteps=steps)`).
//!
//! ```text
//! cargo bench -p terrastream-model --bench decode -- --modality S2L2A --steps 10 --batch 1 --threads 2 --warmup 1 --reps 5
//! ```
//!
//! Both sides compute in float32. Importing terratorch sets
//! `torch.set_float32_matmul_precision("medium")` process-wide, which on CPUs with AMX or
//! AVX512-BF16 makes oneDNN run float32 matmuls and convolutions in bfloat16; the reference script
//! sets it back to "highest" unless `--reference-precision medium` asks for terratorch's own
//! setting (printed, so the figure is never mistaken for a float32 one).
//!
//! The reference runs `benches/decode_reference.py` with the venv `TERRASTREAM_REF_VENV`
//! (default: `ref-venv` next to the workspace) as a child process; our runs and its runs
//! alternate, so load from other work hits both alike. Without the venv only our time is
//! printed. Prints `ours ...`, `reference ...` (median seconds per chip) and `ratio
//! reference/ours = ..`, the median of the paired ratios (goal >= 1.0: we are at least as fast).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Instant;

use tch::{Device, Kind, Tensor};
use terrastream_model::{Modality, Tokenizer, TokenizerConfig, TokenizerParts};

struct Args {
    modality: Modality,
    steps: usize,
    reference_precision: String,
    batch: i64,
    threads: i32,
    warmup: usize,
    reps: usize,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        modality: Modality::LULC,
        steps: 10,
        reference_precision: "highest".into(),
        batch: 1,
        threads: 2,
        warmup: 2,
        reps: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| v.parse::<i64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--modality" => {
                a.modality = Modality::from_name(&value()?).map_err(|e| e.to_string())?
            }
            "--steps" => a.steps = num(value()?)?.max(1) as usize,
            "--reference-precision" => a.reference_precision = value()?,
            "--batch" => a.batch = num(value()?)?.max(1),
            "--threads" => a.threads = num(value()?)?.max(1) as i32,
            "--warmup" => a.warmup = num(value()?)? as usize,
            "--reps" => a.reps = num(value()?)?.max(1) as usize,
            // `cargo bench` passes `--bench`; ignore flags of the default harness.
            _ => {}
        }
    }
    Ok(a)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Our decoder and its input, built once.
fn setup(a: &Args) -> Result<(Tokenizer, Tensor), terrastream_model::Error> {
    tch::set_num_threads(a.threads);
    let cfg = TokenizerConfig::v1(a.modality)?;
    let tok = Tokenizer::random(&cfg, TokenizerParts::Decoder, 0, Device::Cpu)?;
    tch::manual_seed(0);
    let ids = Tensor::randint(
        cfg.vocab_size(),
        [a.batch, 14, 14],
        (Kind::Int64, Device::Cpu),
    );
    Ok((tok, ids))
}

fn ours_once(tok: &Tokenizer, ids: &Tensor, steps: usize) -> Result<f64, terrastream_model::Error> {
    let t = Instant::now();
    let map = if tok.config().modality == Modality::LULC {
        tok.decode_classes(ids)?
    } else {
        tok.decode_image(ids, steps, 0)?
    };
    let s = t.elapsed().as_secs_f64();
    assert_eq!(map.size()[map.dim() - 2..], [224, 224]);
    Ok(s)
}

/// The reference as a child process that times one decode per line it reads.
struct Reference {
    child: Child,
    lines: std::io::Lines<BufReader<ChildStdout>>,
}

impl Reference {
    fn spawn(a: &Args) -> Option<Reference> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let venv = std::env::var_os("TERRASTREAM_REF_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("../../ref-venv"));
        let python = venv.join("bin/python");
        if !python.exists() {
            eprintln!(
                "no reference venv at {} (set TERRASTREAM_REF_VENV)",
                venv.display()
            );
            return None;
        }
        let mut child = Command::new(python)
            .arg(root.join("benches/decode_reference.py"))
            .args([
                "--serve",
                "--modality",
                a.modality.name(),
                "--steps",
                &a.steps.to_string(),
                "--precision",
                &a.reference_precision,
                "--batch",
                &a.batch.to_string(),
                "--threads",
                &a.threads.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .ok()?;
        let mut lines = BufReader::new(child.stdout.take()?).lines();
        match lines.next() {
            Some(Ok(l)) if l == "ready" => Some(Reference { child, lines }),
            _ => {
                eprintln!("the reference did not start");
                None
            }
        }
    }

    fn once(&mut self) -> Option<f64> {
        let stdin = self.child.stdin.as_mut()?;
        writeln!(stdin, "go").ok()?;
        stdin.flush().ok()?;
        self.lines.next()?.ok()?.trim().parse().ok()
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        // Closing stdin ends the reference's loop.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

fn main() {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let (tok, ids) = match setup(&a) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("building our decoder failed: {e}");
            std::process::exit(1);
        }
    };
    let mut reference = Reference::spawn(&a);
    // Interleaved, one of ours then one of the reference's, so load from other work on the
    // machine hits both alike; the paired ratios' median is the figure to read.
    let (mut ours, mut refs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..a.warmup + a.reps {
        let s = match ours_once(&tok, &ids, a.steps) {
            Ok(s) => s / a.batch as f64,
            Err(e) => {
                eprintln!("ours failed: {e}");
                std::process::exit(1);
            }
        };
        let r = reference
            .as_mut()
            .and_then(Reference::once)
            .map(|r| r / a.batch as f64);
        if i < a.warmup {
            continue;
        }
        ours.push(s);
        if let Some(r) = r {
            refs.push(r);
            ratios.push(r / s);
        }
    }
    let (b, t, n) = (a.batch, a.threads, a.reps);
    let what = match a.modality {
        Modality::LULC => "LULC map".to_string(),
        m => format!("{} image, {} steps", m.name(), a.steps),
    };
    println!(
        "ours      decode {what} batch={b} threads={t} reps={n} s_per_chip={:.4}",
        median(ours)
    );
    if !ratios.is_empty() {
        println!(
            "reference decode {what} batch={b} threads={t} reps={n} s_per_chip={:.4} (float32 matmul precision: {})",
            median(refs),
            a.reference_precision
        );
        println!(
            "ratio reference/ours = {:.3} (median of {} interleaved pairs)",
            median(ratios.clone()),
            ratios.len()
        );
    }
}

//! Time of the LULC generation tail, token ids -> class map (`Tokenizer::decode_classes`: FSQ
//! codes, `post_quant_proj`, the full-size ViT-B decoder, argmax), per 224 x 224 chip, ours (tch,
//! CPU, float32) against the reference (terratorch 1.2.11 `decode_tokens(ids).argmax(1)`) on the
//! same machine and thread count, both on random weights and random ids. A manual check: no test
//! runs it and no timing is asserted.
//!
//! ```text
//! cargo bench -p terrastream-model --bench lulc_decode -- --batch 1 --threads 2 --warmup 2 --reps 10
//! ```
//!
//! The reference runs `benches/lulc_decode_reference.py` with the venv `TERRASTREAM_REF_VENV`
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
    batch: i64,
    threads: i32,
    warmup: usize,
    reps: usize,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
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
    let cfg = TokenizerConfig::v1(Modality::LULC)?;
    let lulc = Tokenizer::random(&cfg, TokenizerParts::Decoder, 0, Device::Cpu)?;
    tch::manual_seed(0);
    let ids = Tensor::randint(cfg.vocab_size(), [a.batch, 14, 14], (Kind::Int64, Device::Cpu));
    Ok((lulc, ids))
}

fn ours_once(lulc: &Tokenizer, ids: &Tensor) -> Result<f64, terrastream_model::Error> {
    let t = Instant::now();
    let map = lulc.decode_classes(ids)?;
    let s = t.elapsed().as_secs_f64();
    assert_eq!(map.size()[1..], [224, 224]);
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
            eprintln!("no reference venv at {} (set TERRASTREAM_REF_VENV)", venv.display());
            return None;
        }
        let mut child = Command::new(python)
            .arg(root.join("benches/lulc_decode_reference.py"))
            .args([
                "--serve",
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
    let (lulc, ids) = match setup(&a) {
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
        let s = match ours_once(&lulc, &ids) {
            Ok(s) => s / a.batch as f64,
            Err(e) => {
                eprintln!("ours failed: {e}");
                std::process::exit(1);
            }
        };
        let r = reference.as_mut().and_then(Reference::once).map(|r| r / a.batch as f64);
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
    println!(
        "ours      lulc_decode batch={b} threads={t} reps={n} s_per_chip={:.4}",
        median(ours)
    );
    if !ratios.is_empty() {
        println!(
            "reference lulc_decode batch={b} threads={t} reps={n} s_per_chip={:.4}",
            median(refs)
        );
        println!(
            "ratio reference/ours = {:.3} (median of {} interleaved pairs)",
            median(ratios.clone()),
            ratios.len()
        );
    }
}

//! COG decode throughput: our reader against GDAL reading the same windows, in the same command.
//!
//! ```text
//! cargo bench -p terrastream-ingest --bench cog_decode -- --rounds 15 --window 512 --threads 1,2
//! ```
//!
//! (or `scripts/bench_cog.sh`). The window set is every `window` x `window` window (clipped at the
//! image edges) of every real GeoTIFF of the Sentinel-2 sample scene and of the Sentinel-1 GRD
//! sample, all bands, in the file's own data type. With a window that is a multiple of the tile
//! sizes (512: tiles are 128, 256 and 512) every tile is decoded exactly once per round by both
//! readers, so neither profits from a tile cache.
//!
//! - ours: `Cog::read_window_raw` on a tokio runtime with `T` worker threads and `T` blocking
//!   threads (file reads and decodes run there), the windows in flight concurrently.
//! - GDAL: `/usr/bin/python3` with `osgeo.gdal`, `ReadAsArray` on the same windows from `T`
//!   Python threads (GDAL releases the GIL), each with its own dataset handles.
//!
//! Both open their files afresh each round (untimed), so no decoded block survives from one
//! round to the next; the OS page cache is warm for both (one untimed round each first). Rounds
//! alternate ours/GDAL; the table shows the median MB/s of decoded pixels (10^6 bytes) of each
//! and the median of the per-round ratios ours/GDAL (goal: >= 1.0). No timing is asserted.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use terrastream_ingest::cog::Cog;

/// Reads the windows on `go`, prints `<seconds> <cpu seconds> <bytes>` per round.
const GDAL_READER: &str = r#"
import itertools, sys, threading, time
from osgeo import gdal
gdal.UseExceptions()
threads, window, files = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
windows = []
for i, f in enumerate(files):
    ds = gdal.Open(f)
    W, H = ds.RasterXSize, ds.RasterYSize
    windows += [(i, c, r, min(window, W - c), min(window, H - r))
                for r in range(0, H, window) for c in range(0, W, window)]
    ds = None

def round_():
    handles = [[gdal.Open(f) for f in files] for _ in range(threads)]
    counter = itertools.count()
    done = [0] * threads
    def work(k):
        mine = handles[k]
        while True:
            i = next(counter)
            if i >= len(windows):
                return
            f, c, r, w, h = windows[i]
            done[k] += mine[f].ReadAsArray(c, r, w, h).nbytes
    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    t0, c0 = time.perf_counter(), time.process_time()
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return time.perf_counter() - t0, time.process_time() - c0, sum(done)

print("ready", flush=True)
for line in sys.stdin:
    s, cpu, n = round_()
    print(f"{s} {cpu} {n}", flush=True)
"#;

struct Args {
    rounds: usize,
    window: usize,
    threads: Vec<usize>,
    data: PathBuf,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        rounds: 15,
        window: 512,
        threads: vec![1, 2],
        data: Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| v.parse::<usize>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--rounds" => a.rounds = num(value()?)?.max(1),
            "--window" => a.window = num(value()?)?.max(1),
            "--threads" => {
                a.threads = value()?.split(',').map(|t| num(t.to_string())).collect::<Result<_, _>>()?;
            }
            "--data" => a.data = PathBuf::from(value()?),
            // `cargo bench` passes `--bench`; ignore flags of the default harness.
            _ => {}
        }
    }
    Ok(a)
}

/// The sample GeoTIFFs: every `.tif` of the S2 scene but the strip-organised preview
/// (`L2A_PVI.tif`, not a COG) and the S1 GRD `.tiff`s.
fn files(data: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for (dir, ext) in
        [("rio-tiler-pds/S2A_29RKH_20200219_0_L2A", "tif"), ("rio-tiler-pds/S1A_IW_GRDH_1SDV_20180716T004042", "tiff")]
    {
        let dir = data.join(dir);
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == ext) && !p.ends_with("L2A_PVI.tif"))
            .collect();
        found.sort();
        out.extend(found);
    }
    if out.is_empty() {
        return Err(format!("no GeoTIFFs under {}", data.display()));
    }
    Ok(out)
}

/// One window: file index, column, row, width, height.
type Window = (usize, usize, usize, usize, usize);

async fn open_all(files: &[PathBuf]) -> Result<Vec<Arc<Cog>>, String> {
    let mut cogs = Vec::with_capacity(files.len());
    for f in files {
        let href = f.display().to_string();
        let location = terrastream_ingest::store::open(&href, Path::new("/")).map_err(|e| format!("{href}: {e}"))?;
        cogs.push(Arc::new(Cog::open(&location).await.map_err(|e| format!("{href}: {e}"))?));
    }
    Ok(cogs)
}

fn windows(cogs: &[Arc<Cog>], size: usize) -> Vec<Window> {
    let mut out = Vec::new();
    for (i, cog) in cogs.iter().enumerate() {
        let (w, h) = (cog.info().width, cog.info().height);
        for r in (0..h).step_by(size) {
            for c in (0..w).step_by(size) {
                out.push((i, c, r, size.min(w - c), size.min(h - r)));
            }
        }
    }
    out
}

/// CPU time of this process so far, all threads, in seconds (Linux: the threads' schedstat,
/// nanoseconds on CPU; exited threads' time is not counted, and the runtime's threads live on).
fn cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return f64::NAN;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .sum::<f64>()
        / 1e9
}

/// One round: seconds, CPU seconds, decoded bytes.
type Round = (f64, f64, usize);

/// One round of ours: fresh handles (untimed), then every window.
fn round_ours(rt: &tokio::runtime::Runtime, files: &[PathBuf], size: usize, threads: usize) -> Result<Round, String> {
    rt.block_on(async {
        let cogs = open_all(files).await?;
        let windows = windows(&cogs, size);
        let (t0, c0) = (Instant::now(), cpu_seconds());
        // Enough windows in flight to keep every thread busy while others wait on reads.
        let bytes = tokio::spawn(async move {
            let mut reads = futures::stream::iter(windows)
                .map(|(i, c, r, w, h)| {
                    let cog = Arc::clone(&cogs[i]);
                    tokio::spawn(async move { cog.read_window_raw(c, r, w, h).await.map(|raw| raw.bytes.len()) })
                })
                .buffer_unordered(4 * threads);
            let mut total = 0usize;
            while let Some(n) = reads.next().await {
                total += n.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(total)
        })
        .await
        .map_err(|e| e.to_string())??;
        Ok((t0.elapsed().as_secs_f64(), cpu_seconds() - c0, bytes))
    })
}

struct Gdal {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Gdal {
    fn start(files: &[PathBuf], size: usize, threads: usize) -> Result<Self, String> {
        let mut child = Command::new("/usr/bin/python3")
            .arg("-c")
            .arg(GDAL_READER)
            .arg(threads.to_string())
            .arg(size.to_string())
            .args(files)
            .env_remove("GDAL_CACHEMAX")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("/usr/bin/python3: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut g = Self { child, stdin, stdout };
        let ready = g.line()?;
        if ready.trim() != "ready" {
            return Err(format!("GDAL reader: {ready}"));
        }
        Ok(g)
    }

    fn line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        self.stdout.read_line(&mut line).map_err(|e| e.to_string())?;
        if line.is_empty() {
            return Err("GDAL reader exited (python3-gdal installed?)".into());
        }
        Ok(line)
    }

    fn round(&mut self) -> Result<Round, String> {
        writeln!(self.stdin, "go").map_err(|e| e.to_string())?;
        let line = self.line()?;
        let mut parts = line.split_whitespace();
        let mut next = || parts.next().ok_or(format!("bad line {line:?}"));
        let s = next()?.parse().map_err(|e| format!("{e}"))?;
        let cpu = next()?.parse().map_err(|e| format!("{e}"))?;
        let n = next()?.parse().map_err(|e| format!("{e}"))?;
        Ok((s, cpu, n))
    }
}

impl Drop for Gdal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), String> {
    let args = parse()?;
    let files = files(&args.data)?;
    println!(
        "COG decode: {} files, {}x{} windows, all bands, file data type; median of {} rounds",
        files.len(),
        args.window,
        args.window,
        args.rounds
    );
    println!(
        "{:>7} {:>9} {:>10} {:>10} {:>10} {:>13} {:>13}",
        "threads", "MB/round", "ours MB/s", "GDAL MB/s", "ours/GDAL", "ours CPU ms", "GDAL CPU ms"
    );
    for &threads in &args.threads {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .max_blocking_threads(threads)
            .build()
            .map_err(|e| e.to_string())?;
        let mut gdal = Gdal::start(&files, args.window, threads)?;
        // Warm the page cache and both readers' code paths.
        round_ours(&rt, &files, args.window, threads)?;
        gdal.round()?;
        let (mut ours, mut theirs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        let (mut ours_cpu, mut gdal_cpu) = (Vec::new(), Vec::new());
        let mut bytes = 0;
        for _ in 0..args.rounds {
            let (so, co, no) = round_ours(&rt, &files, args.window, threads)?;
            let (sg, cg, ng) = gdal.round()?;
            ours_cpu.push(co * 1e3);
            gdal_cpu.push(cg * 1e3);
            if no != ng {
                return Err(format!("decoded bytes differ: ours {no}, GDAL {ng}"));
            }
            bytes = no;
            ours.push(no as f64 / 1e6 / so);
            theirs.push(ng as f64 / 1e6 / sg);
            ratios.push(sg / so);
        }
        println!(
            "{threads:>7} {:>9.1} {:>10.1} {:>10.1} {:>10.2} {:>13.1} {:>13.1}",
            bytes as f64 / 1e6,
            median(&mut ours),
            median(&mut theirs),
            median(&mut ratios),
            median(&mut ours_cpu),
            median(&mut gdal_cpu)
        );
    }
    Ok(())
}

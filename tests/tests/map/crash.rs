//! A run killed with SIGKILL at random points, then run again, ends with exactly the rows of
//! an uninterrupted run.

use std::time::{Duration, Instant};

use super::*;

#[test]
fn killed_runs_resume_to_exactly_the_uninterrupted_rows() {
    let (_ref_tmp, ref_out, ref_summary) = reference_run();
    let (want, _) = rows(ref_out);
    let full = ref_summary["seconds"].as_f64().expect("seconds");

    let tmp = tempfile::tempdir().expect("tmp");
    let items = revisits(tmp.path(), &SIX_MONTHS);
    let out = tmp.path().join("out");
    let config = run_config(tmp.path(), &items, &out, "");
    // Kill points drawn from a seeded generator over the reference run's duration, so a
    // failure can be replayed; the seed is printed.
    let seed = std::env::var("TERRASTREAM_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20201219_u64);
    let mut state = seed;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as f64 / (1u64 << 31) as f64
    };
    let mut killed = 0;
    for attempt in 0..4 {
        let at = Duration::from_secs_f64(0.3 + next() * full * 0.8);
        let mut child = spawn_map(&config, &[]);
        let started = Instant::now();
        while started.elapsed() < at {
            if child.try_wait().expect("poll").is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if child.try_wait().expect("poll").is_none() {
            child.kill().expect("SIGKILL");
            killed += 1;
        }
        let _ = child.wait();
        let done = std::fs::read_dir(out.join("_manifest/units"))
            .map(|d| d.count())
            .unwrap_or(0);
        eprintln!(
            "seed {seed}: attempt {attempt} killed after {:.2} s; {done} unit records",
            at.as_secs_f64()
        );
        // What a reader sees between crashes is whole files only.
        let (partial, _) = rows(&out);
        let mut ids: Vec<_> = partial.iter().map(|(s, r, c, _)| (s.clone(), *r, *c)).collect();
        let n = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), n, "duplicated chips after attempt {attempt}");
    }
    assert!(
        killed >= 2,
        "seed {seed}: only {killed} kills landed before the run ended"
    );
    let (status, summary) = map_json(&config, &[]);
    assert!(status.success(), "{summary:#}");
    let (got, _) = rows(&out);
    assert_same_rows(&got, &want, &format!("after {killed} SIGKILLs (seed {seed})"));
    let leftovers: Vec<_> = walk(&out)
        .into_iter()
        .filter(|p| {
            p.extension().is_some_and(|e| e == "parquet")
                && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    assert!(leftovers.is_empty(), "partial files visible as .parquet: {leftovers:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

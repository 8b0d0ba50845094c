//! A writer killed (SIGKILL) mid-file leaves no visible partial output: only a hidden
//! temporary name, which readers' globs do not match; a re-run then commits normally.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::support::sinks_example;
use crate::common::*;

/// Names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Starts `kill_writer MODE DIR`, waits until a temporary file of at least 4 MB is in
/// `watch`, kills the writer with SIGKILL and returns the bytes the temporary file had.
fn kill_mid_file(mode: &str, dir: &Path, watch: &Path) -> u64 {
    let mut child = Command::new(sinks_example("kill_writer"))
        .args([mode, &dir.display().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn kill_writer");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read");
    assert_eq!(line.trim(), "writing", "writer did not start");
    let started = Instant::now();
    let partial = loop {
        let size: u64 = std::fs::read_dir(watch)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
                    .filter_map(|e| e.metadata().ok().map(|m| m.len()))
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        if size >= 4 << 20 {
            break size;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no temporary file grew in {}", watch.display());
        assert!(child.try_wait().expect("poll").is_none(), "writer finished before it could be killed");
        std::thread::sleep(Duration::from_millis(10));
    };
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("wait");
    assert!(!status.success(), "the writer must have died, not finished: {status:?}");
    partial
}

fn assert_only_hidden_temporaries(dir: &Path, final_name: &str) {
    let left = names(dir);
    assert!(!left.iter().any(|n| n == final_name), "partial output visible as {final_name}: {left:?}");
    assert!(!left.is_empty(), "the killed writer's temporary file should still be there (it was killed, not cleaned up)");
    for n in &left {
        assert!(n.starts_with('.') && n.contains(".tmp"), "unexpected visible file {n} in {left:?}");
    }
}

#[test]
fn killed_geoparquet_sink_leaves_no_visible_partial_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("embeddings");
    let partial = kill_mid_file("geoparquet", tmp.path(), &dir);
    assert_only_hidden_temporaries(&dir, "S2A_KILL_TEST.parquet");
    // It really was cut mid-file: megabytes written, but no Parquet footer.
    let tmp_file = dir.join(&names(&dir)[0]);
    let bytes = std::fs::read(&tmp_file).expect("read tmp");
    assert!(partial >= 4 << 20 && bytes.len() as u64 >= partial);
    assert_ne!(&bytes[bytes.len() - 4..], b"PAR1", "the temporary file is complete; the kill came too late");
    // A reader globbing the outputs sees no file at all.
    let glob = format!("{}/*.parquet", dir.display());
    let seen = python_json(
        &venv_python(),
        "import duckdb, json, sys\nprint(json.dumps(duckdb.connect().execute('SELECT count(*) FROM glob(?)', [sys.argv[1]]).fetchall()[0][0]))",
        &[&glob],
    );
    assert_eq!(seen, 0, "readers see a file under {glob}");
}

#[test]
fn killed_object_store_upload_leaves_no_visible_object() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("masks");
    kill_mid_file("object", tmp.path(), &dir);
    assert_only_hidden_temporaries(&dir, "S2A_KILL_TEST.tif");
    // Re-running the unit commits the whole object under its final key.
    let out = Command::new(sinks_example("kill_writer")).args(["object", &tmp.path().display().to_string()]).output().expect("rerun");
    assert!(out.status.success(), "{}", describe(&out));
    let size = std::fs::metadata(dir.join("S2A_KILL_TEST.tif")).expect("committed").len();
    assert_eq!(size, 256 << 20);
}

//! Reliability under network faults: the mapping run reads the demo scene from a real server on
//! 127.0.0.1 that misbehaves on purpose ([`FaultServer`]); every fault either is recovered by
//! retries (output identical to an uninterrupted run, checked by DuckDB) or ends in the run's
//! failure log naming the asset, with a non-zero exit; no chip is lost or written twice, and a
//! re-run without faults completes the output. The test prints the reliability report.

mod bad_input;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::common::faults::{Fault, FaultServer};
use crate::common::*;

/// Chip ids and embeddings of a run's output, read by DuckDB.
const ROWS: &str = r#"
import json, sys
import duckdb
rows = duckdb.connect().execute(
    "SELECT scene_id || '/' || chip_row || '/' || chip_col AS id, embedding FROM read_parquet(?) ORDER BY id",
    [sys.argv[1] + "/embeddings/**/*.parquet"]).fetchall()
print(json.dumps([[i, e] for i, e in rows]))
"#;

/// The asset the faults hit: one band of the scene, read with range requests.
const TARGET: &str = "B04.tif";

/// The demo run config over `server` (common's), in its own folder next to `out`, with short
/// network timeouts and backoffs so that stalls and retries take seconds.
fn config(server: &FaultServer, out: &Path) -> std::path::PathBuf {
    let dir = out.with_extension("config");
    std::fs::create_dir_all(&dir).expect("config dir");
    let item = s2_scene_dir().join("S2A_29RKH_20200219_0_L2A.json");
    let assets = format!("{}/rio-tiler-pds/S2A_29RKH_20200219_0_L2A", server.url());
    let path = write_config_href(&dir, &item, &assets, out);
    let network = "[source.network]\nmax_retries = 4\ninit_backoff_ms = 50\nmax_backoff_s = 2\ntimeout_s = 1.5\n";
    let mut text = std::fs::read_to_string(&path).expect("read config");
    text.push_str(network);
    std::fs::write(&path, text).expect("write config");
    path
}

fn rows(out: &Path) -> Vec<(String, Value)> {
    let v = python_json(&venv_python(), ROWS, &[out.to_str().expect("path")]);
    v.as_array()
        .expect("rows")
        .iter()
        .map(|r| (r[0].as_str().expect("id").to_string(), r[1].clone()))
        .collect()
}

fn map(config: &Path) -> (std::process::Output, Value) {
    let run = terrastream(&["map", config.to_str().expect("path"), "--json"]);
    let summary = serde_json::from_slice(&run.stdout).unwrap_or(Value::Null);
    (run, summary)
}

#[test]
fn network_faults_are_retried_or_logged_and_nothing_is_lost() {
    let server = FaultServer::start(shared_data());
    let tmp = tempfile::tempdir().expect("tmp");

    let base_out = tmp.path().join("baseline");
    let (run, _) = map(&config(&server, &base_out));
    assert!(run.status.success(), "baseline: {}", describe(&run));
    let baseline = rows(&base_out);
    assert!(!baseline.is_empty());
    server.take_injected();

    // (fault, requests of the target asset answered normally first, how many then get the fault,
    // whether retries must recover it). Skipping one request spares the header read, so the
    // fault hits a tile.
    let cases = [
        (Fault::TooManyRequests, 0, 2, true),
        (Fault::Unavailable, 1, 3, true),
        (Fault::ResetMidBody, 1, 2, true),
        (Fault::Stall(Duration::from_secs(4)), 1, 1, true),
        (Fault::ShortBody, 1, 2, true),
        (Fault::IgnoreRange, 0, 1, false),
        (Fault::Corrupt, 1, 1, false),
    ];
    let mut report = vec![format!(
        "{:<34} {:>8} {:>10} {:>12} {:>8} {:>5} {:>10} {:>9} {:>14}",
        "fault", "injected", "recovered", "failure log", "written", "lost", "duplicated", "re-run ok", "retried after"
    )];
    for (i, (fault, skip, times, recoverable)) in cases.into_iter().enumerate() {
        let out = tmp.path().join(format!("case{i}"));
        let cfg = config(&server, &out);
        server.inject(fault, TARGET, skip, times);
        let (run, summary) = map(&cfg);
        let injected = server.take_injected().get(&fault).copied().unwrap_or(0);
        let gaps = server.take_retry_gaps();
        let name = format!("{}{}", fault.name(), if skip > 0 { " (tile)" } else { "" });
        assert!(injected > 0, "{name}: the run never hit the fault: {}", describe(&run));
        let written = if out.join("embeddings").exists() { rows(&out) } else { vec![] };
        let mut ids: Vec<&str> = written.iter().map(|(id, _)| id.as_str()).collect();
        ids.dedup();
        let duplicated = written.len() - ids.len();
        let failures: Vec<String> = summary["failures"]
            .as_array()
            .map(|a| a.iter().filter_map(|f| f.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        // Chips of units that failed are accounted for by the failure log; the rest must be written.
        let failed_units = summary["units_failed"].as_u64().unwrap_or(0);
        let accounted = if failed_units > 0 { baseline.len() } else { written.len() };
        let lost = baseline.len() - accounted.min(baseline.len());
        if recoverable {
            assert!(run.status.success(), "{}: not recovered: {}", name, describe(&run));
            assert_eq!(written, baseline, "{}: output differs from the uninterrupted run", name);
        } else {
            assert!(!run.status.success(), "{}: a fault retries cannot fix must fail the run", name);
            assert!(
                failures.iter().any(|f| f.contains(TARGET)),
                "{}: the failure log names the asset: {failures:?}\n{}",
                name,
                describe(&run)
            );
            assert!(written.iter().all(|w| baseline.contains(w)), "{}: a written chip is wrong", name);
            // The run's record in the output store (`_manifest/runs/`) is the failure log.
            let logged: Vec<String> = std::fs::read_dir(out.join("_manifest/runs"))
                .expect("_manifest/runs")
                .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("run record"))
                .collect();
            assert!(logged.iter().any(|r| r.contains(TARGET)), "{name}: failure log in the store: {logged:?}");
        }
        // The server said `Retry-After: 1`: no retry may come sooner (object_store alone waits
        // its 50 ms backoff here).
        let waited = gaps.iter().min().copied();
        if matches!(fault, Fault::TooManyRequests | Fault::Unavailable) {
            assert_eq!(gaps.len(), injected, "{name}: every Retry-After answer was retried: {gaps:?}");
            assert!(gaps.iter().all(|g| *g >= Duration::from_millis(990)), "{name}: retried before Retry-After: {gaps:?}");
        }
        assert_eq!(duplicated, 0, "{}: duplicated chips", name);
        assert_eq!(lost, 0, "{}: lost chips", name);
        // The same run again without faults completes (or keeps) the output.
        let (again, _) = map(&cfg);
        assert!(again.status.success(), "{}: re-run: {}", name, describe(&again));
        assert_eq!(rows(&out), baseline, "{}: re-run output", name);
        report.push(format!(
            "{:<34} {:>8} {:>10} {:>12} {:>8} {:>5} {:>10} {:>9} {:>14}",
            name,
            injected,
            if run.status.success() { injected } else { 0 },
            failures.len(),
            written.len(),
            lost,
            duplicated,
            "yes",
            waited.map_or("-".to_string(), |g| format!(">= {:.2} s", g.as_secs_f64()))
        ));
        if !recoverable {
            report.push(format!("    {}", failures.first().map(String::as_str).unwrap_or("")));
        }
    }
    println!("reliability report (demo scene over HTTP, {} chips, faults on {TARGET}):", baseline.len());
    for line in report {
        println!("{line}");
    }
}

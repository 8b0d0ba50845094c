//! `terrastream map --watch`: the job follows a real STAC API (stac-server) that gains a scene
//! while it runs. It maps the first scene, maps the new one in a later cycle without redoing the
//! first, and stops cleanly on SIGTERM; the output then holds each chip of both scenes once.

use std::io::BufRead;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::*;
use crate::common::stac_api::StacApi;

fn item(path: &Path) -> stac::Item {
    serde_json::from_slice(&std::fs::read(path).expect("item")).expect("STAC item")
}

/// The next cycle summary from the job's stdout (one JSON object per line).
fn next_cycle(lines: &mpsc::Receiver<serde_json::Value>, what: &str) -> serde_json::Value {
    lines.recv_timeout(Duration::from_secs(180)).unwrap_or_else(|e| panic!("no cycle summary ({what}): {e}"))
}

#[test]
fn watch_maps_new_scenes_as_they_appear_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().expect("tmp");
    // Two monthly revisits: two work units, the second published while the job runs.
    let items = revisits(tmp.path(), &[(2, 19, 4.05), (3, 10, 30.0)]);
    let api = StacApi::start(stac::Collection::new("sentinel-2-l2a", "Sentinel-2 L2A (test)"), vec![item(&items[0])]);
    let out = tmp.path().join("out");
    let config = run_config(tmp.path(), &[], &out, "");
    let text = std::fs::read_to_string(&config).expect("config");
    let source = format!("stac = \"{}\"\ncollections = [\"sentinel-2-l2a\"]", api.url);
    std::fs::write(&config, text.replacen("items = []", &source, 1)).expect("config");

    let mut child = spawn_map(&config, &["--watch", "0.5"]);
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let log = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());

    let first = next_cycle(&lines, "first scene");
    assert_eq!((first["units_done"].as_u64(), first["chips_written"].as_u64()), (Some(1), Some(9)), "{first:#}");
    // Quiet cycles while nothing is new: the finished unit is skipped.
    let quiet = next_cycle(&lines, "nothing new");
    assert_eq!((quiet["units_done"].as_u64(), quiet["units_skipped"].as_u64()), (Some(0), Some(1)), "{quiet:#}");

    api.add_item(item(&items[1]));
    let started = Instant::now();
    let new = loop {
        let c = next_cycle(&lines, "the published scene");
        if c["units_done"].as_u64() != Some(0) {
            break c;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the new scene was never mapped");
    };
    assert_eq!(
        (new["units_done"].as_u64(), new["units_skipped"].as_u64(), new["chips_written"].as_u64()),
        (Some(1), Some(1), Some(9)),
        "the new unit only: {new:#}"
    );

    let pid = child.id().to_string();
    let term = Command::new("kill").args(["-TERM", &pid]).status().expect("kill -TERM");
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "the job did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = log.join().unwrap_or_default();
    assert!(status.success(), "exit after SIGTERM: {status:?}\n{log}");

    let (got, _) = rows(&out);
    let mut ids: Vec<(String, i64, i64)> = got.iter().map(|(s, r, c, _)| (s.clone(), *r, *c)).collect();
    let n = ids.len();
    ids.dedup();
    assert_eq!((n, ids.len()), (18, 18), "each chip of both scenes once: {ids:?}");
}

//! `terrastream map --watch`: the job follows a real STAC API (stac-server) that gains scenes
//! while it runs. It maps the first scene, maps a new one in a later cycle without redoing the
//! first, searches only from its watermark (the latest acquisition less the lookback, from the
//! start of that month), maps a scene published late within the lookback again with its unit,
//! and stops cleanly on SIGTERM; the output then holds each chip of every scene once.

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

/// The next cycle that maps a unit, skipping quiet ones (a search may run before a publication).
fn next_mapping_cycle(lines: &mpsc::Receiver<serde_json::Value>, what: &str) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let c = next_cycle(lines, what);
        if c["units_done"].as_u64() != Some(0) {
            return c;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{what} was never mapped");
    }
}

#[test]
fn watch_maps_new_scenes_as_they_appear_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().expect("tmp");
    // Two monthly revisits: two work units, the second published while the job runs; then a
    // scene acquired before the second but published after it (within the 3-day lookback).
    let items = revisits(tmp.path(), &[(2, 19, 4.05), (3, 10, 30.0), (3, 8, 12.0)]);
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
    assert!(first["searched_from"].is_null(), "the first cycle searches the whole range: {first:#}");
    // Quiet cycles while nothing is new: the finished unit is skipped. They search from the
    // watermark (02-19 less 3 days) widened to its month.
    let quiet = next_cycle(&lines, "nothing new");
    assert_eq!((quiet["units_done"].as_u64(), quiet["units_skipped"].as_u64()), (Some(0), Some(1)), "{quiet:#}");
    assert_eq!(quiet["searched_from"], "2020-02-01T00:00:00Z", "{quiet:#}");

    api.add_item(item(&items[1]));
    let new = next_mapping_cycle(&lines, "the published scene");
    assert_eq!(
        (new["units_done"].as_u64(), new["units_skipped"].as_u64(), new["chips_written"].as_u64()),
        (Some(1), Some(1), Some(9)),
        "the new unit only: {new:#}"
    );
    // The watermark moves to 03-10: February is no longer searched nor planned.
    let narrowed = next_cycle(&lines, "after the new scene");
    assert_eq!(
        (narrowed["searched_from"].as_str(), narrowed["units_planned"].as_u64(), narrowed["units_skipped"].as_u64()),
        (Some("2020-03-01T00:00:00Z"), Some(1), Some(1)),
        "{narrowed:#}"
    );

    // Published late: acquired 03-08, before the watermark but within the lookback. Its unit
    // (March) is mapped again with both of its scenes.
    api.add_item(item(&items[2]));
    let late = next_mapping_cycle(&lines, "the late scene");
    assert_eq!(
        (late["units_done"].as_u64(), late["units_planned"].as_u64(), late["chips_written"].as_u64()),
        (Some(1), Some(1), Some(18)),
        "March again, with both scenes: {late:#}"
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
    assert_eq!((n, ids.len()), (27, 27), "each chip of the three scenes once: {ids:?}");
}

//! `flood serve` killed with SIGKILL at seeded random points N times while it maps events, and
//! restarted each time on the same state: every event is mapped exactly once in the end, and its
//! outputs are identical (byte for byte) to those of an uninterrupted service.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::run::{EVENT_TIME, chip_after_event};
use super::serve::{Server, chip_polygon, records, webhook_receiver, write_config};

/// Kills.
const KILLS: usize = 5;
/// Events posted before the first kill.
const EVENTS: i64 = 3;
/// The files of an event compared between the runs (the summary and the STAC item carry times).
const COMPARED: [&str; 4] = [
    "flood_classes.tif",
    "water_probability.tif",
    "flood_polygons.geojson",
    "flood_polygons.parquet",
];

/// A small deterministic generator (xorshift), so the kill points are the same on every run.
struct Seeded(u64);

impl Seeded {
    fn millis(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        lo + self.0 % (hi - lo)
    }
}

/// Posts the events, returns their ids in order.
fn post_events(server: &Server, aoi: &serde_json::Value) -> Vec<String> {
    let start: chrono::DateTime<chrono::Utc> = EVENT_TIME.parse().expect("event time");
    (0..EVENTS)
        .map(|i| {
            let t = start + chrono::Duration::hours(i);
            let r = server.post(&json!({"aoi": aoi, "event_time": t.to_rfc3339(), "name": format!("restart-{i}")}));
            assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
            r.json()["id"].as_str().expect("id").to_string()
        })
        .collect()
}

fn outputs(out: &Path, id: &str) -> Vec<Vec<u8>> {
    COMPARED
        .iter()
        .map(|f| {
            let p = out.join("maps").join(id).join(f);
            std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        })
        .collect()
}

#[test]
fn flood_serve_survives_repeated_sigkills_with_identical_outputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, stac) = chip_after_event("S1_Spain_7370579");
    let (hook_url, _hooks) = webhook_receiver();
    let aoi = chip_polygon(0.0);
    let start = |name: &str| {
        let out = dir.path().join(name);
        let config = write_config(&dir.path().join(format!("{name}.toml")), &out, &stac.url, &data.addr.to_string(), &hook_url, "");
        (out, config)
    };

    // The uninterrupted service.
    let (calm_out, calm_config) = start("calm");
    let calm = Server::start(&calm_config, &calm_out, &dir.path().join("calm.log"));
    let calm_ids = post_events(&calm, &aoi);
    for id in &calm_ids {
        assert_eq!(calm.wait(id, Duration::from_secs(600))["status"], "done");
    }
    drop(calm);

    // The same events, with the service killed and restarted KILLS times.
    let (out, config) = start("killed");
    let log = dir.path().join("killed.log");
    let mut server = Server::start(&config, &out, &log);
    let ids = post_events(&server, &aoi);
    assert_eq!(ids, calm_ids, "event ids depend on the request only");
    let mut rng = Seeded(0x7370579);
    let mut mid_event = 0;
    for _ in 0..KILLS {
        std::thread::sleep(Duration::from_millis(rng.millis(20, 400)));
        server.sigkill();
        // What the state on disk says was interrupted.
        if records(&out).iter().any(|r| r["status"] == "running") {
            mid_event += 1;
        }
        server = Server::start(&config, &out, &log);
    }
    for id in &ids {
        let v = server.wait(id, Duration::from_secs(600));
        assert_eq!(v["status"], "done", "{v:#}");
    }
    println!(
        "flood serve: {KILLS} SIGKILLs at seeded random points, {mid_event} of them with an event running; \
         {EVENTS} events done once each, outputs identical to the uninterrupted run"
    );
    assert!(mid_event >= 1, "no kill landed while an event was running: the test proves nothing");
    assert_eq!(records(&out).len(), ids.len(), "one record per event: {:?}", records(&out));
    for id in &ids {
        let (a, b) = (outputs(&calm_out, id), outputs(&out, id));
        for ((x, y), name) in a.iter().zip(&b).zip(COMPARED) {
            assert!(x == y, "{id}/{name} differs from the uninterrupted run");
        }
    }
}

//! `flood serve` under a bounded concurrent load from a second process on 127.0.0.1 (Python's
//! `http.client`, one keep-alive connection per client thread) while it maps events: requests/s
//! held, p50/p99 latency per request kind, and no errors beyond the intended 4xx. The events
//! posted during the load must all be mapped, each once.
//!
//! Prints a table; latency and throughput are reported, not asserted (shared, noisy machines).

use std::time::Duration;

use serde_json::{Value, json};

use super::run::{EVENT_TIME, chip_after_event};
use super::serve::{Server, TOKEN, chip_polygon, records, webhook_receiver, write_config};
use crate::common::*;

/// The load generator: `clients` threads for `seconds`, each cycling through the request mix on
/// its own keep-alive connection. Prints one JSON object: per kind the count, statuses and
/// latencies (ms), and the total.
const LOAD: &str = r#"
import http.client, json, sys, threading, time
addr, token, clients, seconds, ids = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), json.loads(sys.argv[5])
host, port = addr.rsplit(":", 1)
aoi = json.loads(sys.argv[6])
auth = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
dup = json.dumps({"aoi": aoi, "event_time": sys.argv[7]}).encode()
# kind -> (method, path, headers, body, statuses that are the intended answer)
mix = [
    ("healthz", "GET", "/healthz", {}, None, {200}),
    ("event status", "GET", None, auth, None, {200}),
    ("event list", "GET", "/events", auth, None, {200}),
    ("duplicate post", "POST", "/events", auth, dup, {200}),
    ("no token (401)", "POST", "/events", {"Content-Type": "application/json"}, dup, {401}),
    ("malformed (400)", "POST", "/events", auth, b'{"aoi": ', {400}),
    ("metrics", "GET", "/metrics", auth, None, {200}),
]
lock = threading.Lock()
results = {k[0]: {"lat": [], "status": {}, "unexpected": 0} for k in mix}
stop = time.perf_counter() + seconds
def client(n):
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    i = n
    while time.perf_counter() < stop:
        kind, method, path, headers, body, ok = mix[i % len(mix)]
        if path is None:
            path = "/events/" + ids[i % len(ids)]
        i += 1
        t = time.perf_counter()
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            r.read()
            status = r.status
            if r.getheader("connection", "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=60)
        except Exception as e:
            status = "error: " + type(e).__name__
            conn.close()
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
        ms = (time.perf_counter() - t) * 1000
        with lock:
            res = results[kind]
            res["lat"].append(ms)
            res["status"][str(status)] = res["status"].get(str(status), 0) + 1
            if status not in ok:
                res["unexpected"] += 1
threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
t0 = time.perf_counter()
for t in threads: t.start()
for t in threads: t.join()
elapsed = time.perf_counter() - t0
def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))] if v else None
out = {"elapsed_s": elapsed, "clients": clients, "kinds": {}}
for kind, res in results.items():
    out["kinds"][kind] = {"n": len(res["lat"]), "status": res["status"], "unexpected": res["unexpected"],
                          "p50_ms": pct(res["lat"], 0.50), "p99_ms": pct(res["lat"], 0.99)}
every = [x for r in results.values() for x in r["lat"]]
out["total"] = {"n": len(every), "rps": len(every) / elapsed, "p50_ms": pct(every, 0.50), "p99_ms": pct(every, 0.99),
                "unexpected": sum(r["unexpected"] for r in results.values())}
print(json.dumps(out))
"#;

const CLIENTS: usize = 8;
const SECONDS: f64 = 6.0;
const EVENTS: usize = 4;

#[test]
fn flood_serve_holds_a_concurrent_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, stac) = chip_after_event("S1_Spain_7370579");
    let (hook_url, _hooks) = webhook_receiver();
    let out = dir.path().join("out");
    let config = write_config(&dir.path().join("flood.toml"), &out, &stac.url, &data.addr.to_string(), &hook_url, "");
    let server = Server::start(&config, &out, &dir.path().join("serve.log"));
    let aoi = chip_polygon(0.0);

    // Distinct events (one hour apart), mapped while the load runs.
    let start: chrono::DateTime<chrono::Utc> = EVENT_TIME.parse().expect("event time");
    let ids: Vec<String> = (0..EVENTS)
        .map(|i| {
            let t = start + chrono::Duration::hours(i as i64);
            let r = server.post(&json!({"aoi": aoi, "event_time": t.to_rfc3339(), "name": format!("load-{i}")}));
            assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
            r.json()["id"].as_str().expect("id").to_string()
        })
        .collect();

    let report = python_json(
        &venv_python(),
        LOAD,
        &[
            &server.addr,
            TOKEN,
            &CLIENTS.to_string(),
            &SECONDS.to_string(),
            &serde_json::to_string(&ids).expect("ids"),
            &aoi.to_string(),
            start.to_rfc3339().as_str(),
        ],
    );
    println!(
        "flood serve under load: {CLIENTS} clients (keep-alive, one per thread) for {:.1} s from a second process, \
         {EVENTS} events mapped meanwhile",
        report["elapsed_s"].as_f64().unwrap_or(f64::NAN)
    );
    println!("| request | n | statuses | p50 ms | p99 ms | unexpected |");
    println!("|---|---|---|---|---|---|");
    let kinds = report["kinds"].as_object().expect("kinds");
    for (kind, k) in kinds {
        println!(
            "| {kind} | {} | {} | {:.1} | {:.1} | {} |",
            k["n"],
            k["status"],
            k["p50_ms"].as_f64().unwrap_or(f64::NAN),
            k["p99_ms"].as_f64().unwrap_or(f64::NAN),
            k["unexpected"]
        );
    }
    let total = &report["total"];
    println!(
        "| all | {} | | {:.1} | {:.1} | {} |  ({:.0} requests/s)",
        total["n"],
        total["p50_ms"].as_f64().unwrap_or(f64::NAN),
        total["p99_ms"].as_f64().unwrap_or(f64::NAN),
        total["unexpected"],
        total["rps"].as_f64().unwrap_or(f64::NAN)
    );
    assert_eq!(total["unexpected"], 0, "answers beyond the intended ones: {report}");
    assert!(kinds.values().all(|k| k["n"].as_u64().unwrap_or(0) > 0), "every kind was sent: {report}");

    // Every event posted during the load is mapped, and the duplicates made no new event.
    for id in &ids {
        let done: Value = server.wait(id, Duration::from_secs(600));
        assert_eq!(done["status"], "done", "{done:#}");
    }
    assert_eq!(records(&out).len(), EVENTS, "one record per distinct event");
}

//! `terrastream flood serve` end to end: the built binary on 127.0.0.1 with the real test STAC
//! server (stac-server crate) and the real HTTP server serving the Sen1Floods11 chip (items from
//! `run.rs`'s builders), a webhook receiver (axum) whose signatures are checked by Python's `hmac`
//! module, not by our code. Events are posted over plain HTTP/1.1 from `std::net`.
//!
//! Covered: auth (401 without / with a wrong token, /healthz open), 400/413/422 naming the field
//! with nothing stored, duplicate events, the map and its outputs served under /outputs, the
//! webhook (first delivery refused, retried, signed), an asset host that is not allowed, SIGKILL
//! while events are queued/running and a restart that finishes them, a watched AOI that turns a
//! new scene into an event, /metrics, and SIGTERM.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::run::{EVENT_TIME, S1_COLLECTION, chip_after_event, chip_bbox, s1_item, score};
use crate::common::*;

pub(super) const TOKEN: &str = "test-token-7370579";
const SECRET: &str = "webhook-secret";

/// A response: status, headers (lowercase names) and body.
pub(super) struct Resp {
    pub(super) status: u16,
    headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
}

impl Resp {
    pub(super) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request (`Connection: close`), the body read to the end.
fn http(addr: &str, method: &str, path: &str, token: Option<&str>, body: Option<&[u8]>) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = body.unwrap_or_default();
    req.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    ));
    s.write_all(req.as_bytes()).expect("send");
    // The server may answer (413) before reading a large body; a reset while sending is fine.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Resp { status, headers, body }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).expect("chunk size");
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 4 + n..];
    }
    out
}

/// One received webhook: signature header and body.
#[derive(Clone)]
pub(super) struct Hook {
    signature: Option<String>,
    body: Vec<u8>,
}

/// A webhook receiver: answers 503 to the first delivery (so the service must retry), 200 after.
pub(super) fn webhook_receiver() -> (String, Arc<Mutex<Vec<Hook>>>) {
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    let got: Arc<Mutex<Vec<Hook>>> = Arc::default();
    let state = Arc::clone(&got);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(async move {
            let app = axum::Router::new()
                .route(
                    "/hook",
                    axum::routing::post(
                        |State(got): State<Arc<Mutex<Vec<Hook>>>>, headers: HeaderMap, body: axum::body::Bytes| async move {
                            let signature =
                                headers.get("x-terrastream-signature").and_then(|v| v.to_str().ok()).map(String::from);
                            let mut g = got.lock().expect("hooks");
                            g.push(Hook { signature, body: body.to_vec() });
                            if g.len() == 1 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK }
                        },
                    ),
                )
                .with_state(state);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            tx.send(listener.local_addr().expect("addr")).expect("send");
            axum::serve(listener, app).await.expect("serve");
        });
    });
    let addr = rx.recv().expect("addr");
    (format!("http://{addr}/hook"), got)
}

/// HMAC-SHA256 of `body` under the secret, hex, by Python's standard library.
fn python_hmac(dir: &Path, body: &[u8]) -> String {
    let f = dir.join("hook-body.json");
    std::fs::write(&f, body).expect("body");
    let v = python_json(
        &gdal_python(),
        "import hmac, hashlib, json, sys\nprint(json.dumps(hmac.new(sys.argv[1].encode(), open(sys.argv[2], 'rb').read(), hashlib.sha256).hexdigest()))",
        &[SECRET, f.to_str().expect("path")],
    );
    v.as_str().expect("hex").to_string()
}

/// A running `flood serve`.
pub(super) struct Server {
    child: Child,
    pub(super) addr: String,
}

impl Server {
    pub(super) fn start(config: &Path, out: &Path, log: &Path) -> Self {
        let listen = out.join("_state/listen");
        let _ = std::fs::remove_file(&listen);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log");
        let mut child = Command::new(terrastream_bin())
            .args(["flood", "serve", config.to_str().expect("path")])
            .current_dir(repo_root())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn flood serve");
        let t = Instant::now();
        loop {
            if let Ok(a) = std::fs::read_to_string(&listen) {
                return Self {
                    child,
                    addr: a.trim().to_string(),
                };
            }
            if let Some(status) = child.try_wait().expect("poll") {
                panic!("flood serve exited at start: {status}");
            }
            assert!(t.elapsed() < Duration::from_secs(60), "flood serve did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn get(&self, path: &str) -> Resp {
        http(&self.addr, "GET", path, Some(TOKEN), None)
    }

    pub(super) fn post(&self, body: &Value) -> Resp {
        http(
            &self.addr,
            "POST",
            "/events",
            Some(TOKEN),
            Some(&serde_json::to_vec(body).expect("json")),
        )
    }

    /// Polls `GET /events/{id}` until the event is done or failed.
    pub(super) fn wait(&self, id: &str, limit: Duration) -> Value {
        let t = Instant::now();
        loop {
            let r = self.get(&format!("/events/{id}"));
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            let v = r.json();
            if matches!(v["status"].as_str(), Some("done" | "failed")) {
                return v;
            }
            assert!(t.elapsed() < limit, "event {id} not finished after {limit:?}: {v:#}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(super) fn sigkill(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The chip's footprint as a GeoJSON polygon (from GDAL's bbox), shrunk by `inset` degrees.
pub(super) fn chip_polygon(inset: f64) -> Value {
    let b: Vec<f64> = chip_bbox()
        .split(',')
        .map(|x| x.parse().expect("bbox number"))
        .collect();
    let (w, s, e, n) = (b[0] + inset, b[1] + inset, b[2] - inset, b[3] - inset);
    json!({"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]})
}

pub(super) fn records(out: &Path) -> Vec<Value> {
    let Ok(dir) = std::fs::read_dir(out.join("_events")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .map(|e| serde_json::from_slice(&std::fs::read(e.path()).expect("record")).expect("record JSON"))
        .collect()
}

pub(super) fn write_config(path: &Path, out: &Path, stac: &str, data_host: &str, hook: &str, watch: &str) -> PathBuf {
    std::fs::write(
        path,
        format!(
            r#"listen = "127.0.0.1:0"
out = "{out}"
tokens = ["{TOKEN}"]
concurrency = 1
[limits]
max_body_bytes = 8192
max_area_km2 = 200
[assets]
allowed_hosts = ["{data_host}"]
[webhooks]
urls = ["{hook}"]
secret = "{SECRET}"
initial_backoff_ms = 200
[mapping]
stac = "{stac}"
s1_collection = "{S1_COLLECTION}"
methods = ["s1"]
{watch}
"#,
            out = out.display()
        ),
    )
    .expect("config");
    path.to_path_buf()
}

#[test]
fn flood_serve_end_to_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, stac) = chip_after_event("S1_Spain_7370579");
    let (hook_url, hooks) = webhook_receiver();
    let out = dir.path().join("out");
    let log = dir.path().join("serve.log");
    let config = write_config(
        &dir.path().join("flood.toml"),
        &out,
        &stac.url,
        &data.addr.to_string(),
        &hook_url,
        "",
    );
    let server = Server::start(&config, &out, &log);
    let aoi = chip_polygon(0.0);
    let event = json!({"aoi": aoi, "event_time": EVENT_TIME, "name": "spain-7370579"});

    // Health is open; everything else needs the token.
    assert_eq!(http(&server.addr, "GET", "/healthz", None, None).status, 200);
    let body = serde_json::to_vec(&event).expect("json");
    let r = http(&server.addr, "POST", "/events", None, Some(&body));
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(
        http(&server.addr, "POST", "/events", Some("wrong"), Some(&body)).status,
        401
    );
    assert_eq!(http(&server.addr, "GET", "/events", None, None).status, 401);
    assert_eq!(http(&server.addr, "GET", "/metrics", Some("wrong"), None).status, 401);

    // Refused requests name the field and store nothing.
    let one_degree = json!({"type": "Polygon", "coordinates": [[[-1.0, 38.0], [0.0, 38.0], [0.0, 39.0], [-1.0, 39.0], [-1.0, 38.0]]]});
    let r = server.post(&json!({"aoi": one_degree, "event_time": EVENT_TIME}));
    assert!(matches!(r.status, 413 | 422), "oversized AOI: {}", r.status);
    assert_eq!(r.json()["error"]["field"], "aoi", "{}", r.json());
    let r = server.post(&json!({"aoi": {"type": "Polygon", "coordinates": [[[-0.78, 38.08], [-0.73, 38.08]]]}, "event_time": EVENT_TIME}));
    assert_eq!(r.status, 400, "malformed GeoJSON");
    assert!(
        r.json()["error"]["field"]
            .as_str()
            .is_some_and(|f| f.starts_with("aoi.coordinates")),
        "{}",
        r.json()
    );
    let r = http(&server.addr, "POST", "/events", Some(TOKEN), Some(b"{\"aoi\": "));
    assert_eq!((r.status, r.json()["error"]["field"].as_str()), (400, Some("body")));
    let r = server.post(&json!({"aoi": aoi, "event_time": "last tuesday"}));
    assert_eq!(
        (r.status, r.json()["error"]["field"].as_str()),
        (400, Some("event_time"))
    );
    let big = json!({"aoi": aoi, "event_time": EVENT_TIME, "name": "x".repeat(9000)});
    assert_eq!(server.post(&big).status, 413, "body over max_body_bytes");
    assert!(
        records(&out).is_empty(),
        "refused requests stored something: {:?}",
        records(&out)
    );

    // The event, posted twice: one id.
    let posted = Instant::now();
    let r = server.post(&event);
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let id = r.json()["id"].as_str().expect("id").to_string();
    assert_eq!(r.header("location"), Some(format!("/events/{id}").as_str()));
    let again = server.post(&json!({"event_time": "2019-09-15T02:00:00+02:00", "aoi": aoi}));
    assert_eq!(again.status, 200);
    assert_eq!(
        again.json()["id"],
        id.as_str(),
        "same AOI and instant, other spelling: same event"
    );
    let done = server.wait(&id, Duration::from_secs(600));
    let latency = posted.elapsed().as_secs_f64();
    assert_eq!(done["status"], "done", "{done:#}");
    let list = server.get("/events").json();
    assert_eq!(list["events"].as_array().map(Vec::len), Some(1), "{list}");

    // Outputs: listed, served with the token (bytes as on disk), not without.
    let links: Vec<String> = serde_json::from_value(done["links"]["outputs"].clone()).expect("links");
    assert!(links.iter().any(|l| l.ends_with("/flood_classes.tif")), "{links:?}");
    for link in &links {
        let file = out.join("maps").join(link.trim_start_matches("/outputs/"));
        let r = server.get(link);
        assert_eq!(r.status, 200, "{link}");
        assert_eq!(
            r.body,
            std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display())),
            "{link}"
        );
    }
    assert_eq!(http(&server.addr, "GET", &links[0], None, None).status, 401);
    let classes = score(&out.join("maps").join(&id).join("flood_classes.tif"), "classes");
    assert_eq!(classes["cog_errors"], json!([]), "{classes}");
    let timings = &done["summary"]["timings_s"];
    println!(
        "flood serve latency on the chip: POST to done seen {latency:.2} s; queued {:.3} s; mapping stages (s) {timings}; \
         water IoU vs LabelHand {:.4}",
        seconds_between(&done["created"], &done["started"]),
        classes["iou"].as_f64().unwrap_or(f64::NAN)
    );

    // The webhook: refused once, retried, signed; Python's HMAC agrees.
    let t = Instant::now();
    let delivered = loop {
        let got = hooks.lock().expect("hooks").clone();
        if got.len() >= 2 {
            break got;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "webhook not retried: {} deliveries",
            got.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    for h in &delivered {
        let want = format!("sha256={}", python_hmac(dir.path(), &h.body));
        assert_eq!(h.signature.as_deref(), Some(want.as_str()));
        let v: Value = serde_json::from_slice(&h.body).expect("hook JSON");
        assert_eq!(
            (v["id"].as_str(), v["status"].as_str()),
            (Some(id.as_str()), Some("done"))
        );
    }
    assert_eq!(
        delivered[0].body, delivered[1].body,
        "a retry sends the same notification"
    );

    // An item whose asset is on a host that is not allowed: the event fails, naming the host.
    let mut foreign: Value = serde_json::to_value(s1_item(
        "S1_elsewhere",
        "2019-09-18T06:00:00Z",
        "http://assets.example.invalid",
    ))
    .expect("item");
    let shift = |v: &mut Value| {
        for p in v.as_array_mut().expect("ring") {
            p[1] = json!(p[1].as_f64().expect("lat") + 1.0);
        }
    };
    shift(&mut foreign["geometry"]["coordinates"][0]);
    foreign["bbox"][1] = json!(foreign["bbox"][1].as_f64().expect("s") + 1.0);
    foreign["bbox"][3] = json!(foreign["bbox"][3].as_f64().expect("n") + 1.0);
    stac.add_item(serde_json::from_value(foreign.clone()).expect("item"));
    let r = server.post(&json!({"aoi": foreign["geometry"], "event_time": EVENT_TIME}));
    assert_eq!(r.status, 202);
    let bad = server.wait(r.json()["id"].as_str().expect("id"), Duration::from_secs(120));
    assert_eq!(bad["status"], "failed", "{bad:#}");
    assert!(
        bad["error"]
            .as_str()
            .is_some_and(|e| e.contains("assets.example.invalid")),
        "{bad:#}"
    );
    assert!(!data.requests().iter().any(|r| r.path.contains("invalid")));

    // SIGKILL with events queued or running; a restart (now also watching the chip) finishes them.
    let queued: Vec<String> = ["2019-09-14T00:00:00Z", "2019-09-13T00:00:00Z", "2019-09-12T00:00:00Z"]
        .iter()
        .map(|t| {
            let r = server.post(&json!({"aoi": aoi, "event_time": t}));
            assert_eq!(r.status, 202);
            r.json()["id"].as_str().expect("id").to_string()
        })
        .collect();
    server.sigkill();
    let unfinished = records(&out)
        .iter()
        .filter(|r| {
            queued.iter().any(|q| r["id"] == q.as_str()) && matches!(r["status"].as_str(), Some("queued" | "running"))
        })
        .count();
    assert!(
        unfinished >= 1,
        "nothing was left queued or running at the kill: {:?}",
        records(&out)
    );
    println!("killed with {unfinished} of 3 events queued or running");
    let watch = format!(
        "[[watch]]\nname = \"chip\"\naoi = {}\ninterval_s = 0.5\nsince = \"2019-09-01T00:00:00Z\"\n",
        toml_inline(&chip_polygon(0.001))
    );
    write_config(&config, &out, &stac.url, &data.addr.to_string(), &hook_url, &watch);
    let server = Server::start(&config, &out, &log);
    for q in &queued {
        let v = server.wait(q, Duration::from_secs(600));
        assert_eq!(v["status"], "done", "{v:#}");
    }

    // The watcher turned the existing scene into an event, and turns a new one into another.
    let by_watch = |server: &Server| -> Vec<Value> {
        let all = server.get("/events").json();
        all["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter(|e| e["source"] == "watch:chip")
            .cloned()
            .collect()
    };
    let t = Instant::now();
    while by_watch(&server).is_empty() {
        assert!(t.elapsed() < Duration::from_secs(60), "the watcher made no event");
        std::thread::sleep(Duration::from_millis(100));
    }
    stac.add_item(s1_item("S1_Spain_7370579_later", "2019-09-20T06:00:00Z", &data.url()));
    let t = Instant::now();
    let watched = loop {
        let w = by_watch(&server);
        if w.len() >= 2 {
            break w;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the new scene made no event: {w:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut times: Vec<&str> = watched.iter().filter_map(|e| e["event_time"].as_str()).collect();
    times.sort();
    assert_eq!(times, ["2019-09-18T06:00:00Z", "2019-09-20T06:00:00Z"], "{watched:?}");
    for e in &watched {
        let v = server.wait(e["id"].as_str().expect("id"), Duration::from_secs(600));
        assert_eq!(v["status"], "done", "{v:#}");
    }
    assert!(out.join("_watch/chip/_state/watermark.json").exists());

    // Metrics after the restart: events by state, the mapping histogram, responses by code.
    let m = String::from_utf8(server.get("/metrics").body).expect("text");
    assert!(m.contains("terrastream_flood_events{status=\"done\"} 6\n"), "{m}");
    assert!(m.contains("terrastream_flood_events{status=\"failed\"} 1\n"), "{m}");
    let mapped_here = format!(
        "terrastream_flood_mapping_seconds_count{{outcome=\"done\"}} {}\n",
        unfinished + 2
    );
    assert!(m.contains(&mapped_here), "{unfinished} re-queued + 2 watched: {m}");
    assert!(
        m.contains("terrastream_flood_http_responses_total{code=\"200\"}"),
        "{m}"
    );

    // SIGTERM: a graceful exit.
    let mut server = server;
    let term = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(term.success());
    let t = Instant::now();
    let status = loop {
        if let Some(s) = server.child.try_wait().expect("poll") {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(log.contains("re-queueing events left unfinished"), "{log}");
    assert!(log.contains("SIGTERM"), "{log}");
}

/// Seconds from one RFC 3339 stamp to another.
fn seconds_between(a: &Value, b: &Value) -> f64 {
    let t =
        |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_default()).map(|t| t.timestamp_micros());
    match (t(a), t(b)) {
        (Ok(a), Ok(b)) => (b - a) as f64 / 1e6,
        _ => f64::NAN,
    }
}

/// A JSON value as a TOML inline value.
fn toml_inline(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let fields: Vec<String> = m.iter().map(|(k, v)| format!("{k} = {}", toml_inline(v))).collect();
            format!("{{ {} }}", fields.join(", "))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(toml_inline).collect::<Vec<_>>().join(", ")),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 => format!("{f:.1}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

//! A real HTTP server on 127.0.0.1 that serves `../shared/data` with Range support and misbehaves
//! on purpose, per a script: the first N requests whose path contains a pattern get a fault.
//! Faults that a well-behaved server never produces (a body cut short, a Range ignored) can only
//! be provoked this way.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

/// One kind of misbehaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// `429 Too Many Requests` with `Retry-After: 1`.
    TooManyRequests,
    /// `503 Service Unavailable` with `Retry-After: 1`.
    Unavailable,
    /// The right status and `Content-Length`, half the body, then the connection is dropped.
    ResetMidBody,
    /// Waits this long before answering (longer than the client's timeout).
    Stall(Duration),
    /// Answers a range request with `200` and the whole file.
    IgnoreRange,
    /// The right headers and length, with every byte of the body's second half inverted.
    Corrupt,
    /// `206` whose `Content-Range` announces the whole range requested, with a `Content-Length`
    /// (and a body) of half of it: the body ends cleanly, short.
    ShortBody,
}

impl Fault {
    /// A short name for reports.
    pub fn name(&self) -> &'static str {
        match self {
            Fault::TooManyRequests => "429 + Retry-After",
            Fault::Unavailable => "503 + Retry-After",
            Fault::ResetMidBody => "reset mid-body",
            Fault::Stall(_) => "stall past timeout",
            Fault::IgnoreRange => "Range ignored (200)",
            Fault::Corrupt => "corrupted bytes",
            Fault::ShortBody => "short body (Content-Length)",
        }
    }
}

#[derive(Debug)]
struct Rule {
    fault: Fault,
    pattern: String,
    /// Matching requests still to pass untouched before the fault starts.
    skip: usize,
    remaining: usize,
}

#[derive(Debug, Default)]
struct Script {
    rules: Vec<Rule>,
    injected: BTreeMap<Fault, usize>,
    requests: usize,
    /// When a `Retry-After` answer went out, by path and Range (a retry asks for the same).
    asked_to_wait: BTreeMap<String, Instant>,
    /// How long after such an answer its retry came.
    retry_gaps: Vec<Duration>,
}

/// A running server; it stops with the test process.
pub struct FaultServer {
    /// Where it listens.
    pub addr: SocketAddr,
    script: Arc<Mutex<Script>>,
}

impl FaultServer {
    /// Serves `dir` on an ephemeral port, with no faults until [`FaultServer::inject`].
    pub fn start(dir: PathBuf) -> Self {
        let script: Arc<Mutex<Script>> = Arc::default();
        let state = (Arc::new(dir), Arc::clone(&script));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
            rt.block_on(async move {
                let app = Router::new().fallback(serve).with_state(state);
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                tx.send(listener.local_addr().expect("addr")).expect("send addr");
                axum::serve(listener, app).await.expect("serve");
            });
        });
        Self { addr: rx.recv().expect("server address"), script }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next `times` requests whose path contains `pattern` get `fault`, after `skip` such
    /// requests are answered normally (e.g. 1 to spare a file's header read and hit a tile).
    pub fn inject(&self, fault: Fault, pattern: &str, skip: usize, times: usize) {
        let rule = Rule { fault, pattern: pattern.into(), skip, remaining: times };
        self.script.lock().expect("script").rules.push(rule);
    }

    /// Faults injected so far, by kind; then the counters start again from zero.
    pub fn take_injected(&self) -> BTreeMap<Fault, usize> {
        let mut s = self.script.lock().expect("script");
        s.rules.clear();
        s.asked_to_wait.clear();
        std::mem::take(&mut s.injected)
    }

    /// For each `Retry-After` answer so far whose request came again: how long after; then the
    /// list starts again from empty.
    pub fn take_retry_gaps(&self) -> Vec<Duration> {
        std::mem::take(&mut self.script.lock().expect("script").retry_gaps)
    }

    /// Requests answered so far.
    pub fn requests(&self) -> usize {
        self.script.lock().expect("script").requests
    }
}

type AppState = (Arc<PathBuf>, Arc<Mutex<Script>>);

async fn serve(State((dir, script)): State<AppState>, req: Request) -> Response {
    let path = req.uri().path().trim_start_matches('/').to_string();
    let range_header = req.headers().get(header::RANGE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let request_key = format!("{path} {range_header}");
    let fault = {
        let mut s = script.lock().expect("script");
        s.requests += 1;
        if let Some(at) = s.asked_to_wait.remove(&request_key) {
            s.retry_gaps.push(at.elapsed());
        }
        let hit = s.rules.iter_mut().find(|r| r.remaining > 0 && path.contains(&r.pattern)).and_then(|r| {
            if r.skip > 0 {
                r.skip -= 1;
                return None;
            }
            r.remaining -= 1;
            Some(r.fault)
        });
        if let Some(f) = hit {
            *s.injected.entry(f).or_default() += 1;
            if matches!(f, Fault::TooManyRequests | Fault::Unavailable) {
                s.asked_to_wait.insert(request_key, Instant::now());
            }
        }
        hit
    };
    if path.split('/').any(|c| c == "..") {
        return status(StatusCode::BAD_REQUEST);
    }
    let Ok(data) = tokio::fs::read(dir.join(&path)).await else {
        return status(StatusCode::NOT_FOUND);
    };
    let range = parse_range(&range_header, data.len());
    match fault {
        Some(Fault::TooManyRequests) => return retry_after(StatusCode::TOO_MANY_REQUESTS),
        Some(Fault::Unavailable) => return retry_after(StatusCode::SERVICE_UNAVAILABLE),
        Some(Fault::Stall(d)) => tokio::time::sleep(d).await,
        _ => {}
    }
    let (code, start, end) = match range {
        Some((a, b)) if fault != Some(Fault::IgnoreRange) => (StatusCode::PARTIAL_CONTENT, a, b),
        _ => (StatusCode::OK, 0, data.len()),
    };
    let mut body = data[start..end].to_vec();
    if fault == Some(Fault::ShortBody) {
        body.truncate(body.len() / 2);
    }
    let len = body.len();
    if fault == Some(Fault::Corrupt) {
        for b in &mut body[len / 2..] {
            *b = !*b;
        }
    }
    let mut builder = Response::builder()
        .status(code)
        .header(header::CONTENT_LENGTH, len)
        .header(header::ACCEPT_RANGES, "bytes");
    if code == StatusCode::PARTIAL_CONTENT {
        builder = builder.header(header::CONTENT_RANGE, format!("bytes {start}-{}/{}", end - 1, data.len()));
    }
    let body = if fault == Some(Fault::ResetMidBody) {
        // Half the promised bytes, then an error: hyper drops the connection mid-body.
        let half = Bytes::from(body[..len / 2].to_vec());
        let parts: Vec<Result<Bytes, std::io::Error>> =
            vec![Ok(half), Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected reset"))];
        Body::from_stream(futures::stream::iter(parts))
    } else {
        Body::from(body)
    };
    builder.body(body).expect("response")
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` as a half-open byte range within `len`.
fn parse_range(value: &str, len: usize) -> Option<(usize, usize)> {
    let spec = value.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => (len.saturating_sub(n.parse().ok()?), len),
        (a, "") => (a.parse().ok()?, len),
        (a, b) => (a.parse().ok()?, b.parse::<usize>().ok()?.saturating_add(1).min(len)),
    };
    (start < end).then_some((start, end))
}

fn status(code: StatusCode) -> Response {
    Response::builder().status(code).body(Body::empty()).expect("response")
}

fn retry_after(code: StatusCode) -> Response {
    let mut r = status(code);
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

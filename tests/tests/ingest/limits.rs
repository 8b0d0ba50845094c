//! Request limits against a real HTTP server (tower-http `ServeDir` on 127.0.0.1 serving the
//! sample scene, each request held 40 ms) that tracks how many requests are in flight: the
//! per-host bound holds however many reads are started, and a scene over its request budget
//! fails with an error naming the scene and the budget.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use object_store::ObjectStoreExt;
use terrastream_ingest::cog::Cog;
use terrastream_ingest::limit::RequestBudget;
use terrastream_ingest::store::{RemoteOptions, Stores};
use tower_http::services::ServeDir;

use crate::common::*;

#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
    total: AtomicUsize,
}

impl Gauge {
    fn reset(&self) {
        self.max.store(0, Ordering::SeqCst);
        self.total.store(0, Ordering::SeqCst);
    }
}

fn start() -> (String, Arc<Gauge>) {
    let gauge = Arc::new(Gauge::default());
    let state = Arc::clone(&gauge);
    let dir = s2_scene_dir();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        rt.block_on(async move {
            let app =
                Router::new().fallback_service(ServeDir::new(dir)).layer(middleware::from_fn_with_state(state, track));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            tx.send(format!("http://{}", listener.local_addr().expect("addr"))).expect("send");
            axum::serve(listener, app).await.expect("serve");
        });
    });
    (rx.recv().expect("url"), gauge)
}

async fn track(State(g): State<Arc<Gauge>>, req: Request, next: Next) -> Response {
    let now = g.now.fetch_add(1, Ordering::SeqCst) + 1;
    g.max.fetch_max(now, Ordering::SeqCst);
    g.total.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(40)).await;
    let resp = next.run(req).await;
    g.now.fetch_sub(1, Ordering::SeqCst);
    resp
}

const FILES: [&str; 6] = ["B02.tif", "B03.tif", "B04.tif", "B08.tif", "B11.tif", "SCL.tif"];

#[test]
fn requests_in_flight_to_one_host_never_exceed_the_limit() {
    let (url, gauge) = start();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut report = Vec::new();
    for limit in [3, 64] {
        gauge.reset();
        let stores = Stores::new(RemoteOptions { max_concurrency_per_host: limit, ..RemoteOptions::default() });
        // 48 range reads at once, over six files (and six stores' worth of paths on one host).
        let reads = (0..48).map(|i| {
            let loc =
                stores.open(&format!("{url}/{}", FILES[i % FILES.len()]), std::path::Path::new("/")).expect("open");
            async move { loc.store.get_range(&loc.path, (i as u64 * 64)..(i as u64 * 64 + 64)).await.map(|b| b.len()) }
        });
        let lens = rt.block_on(futures::future::join_all(reads));
        assert!(lens.iter().all(|l| matches!(l, Ok(64))), "{lens:?}");
        let (max, total) = (gauge.max.load(Ordering::SeqCst), gauge.total.load(Ordering::SeqCst));
        assert_eq!(total, 48);
        report.push(format!("limit {limit}: max in flight {max}"));
        if limit < 48 {
            assert!(max <= limit, "{max} requests in flight, limit {limit}");
            assert_eq!(max, limit, "48 queued reads of 40 ms each should fill the limit");
        } else {
            // Without a binding limit the server does see more at once: the gauge can tell.
            assert!(max > 3, "max in flight {max} without a binding limit");
        }
    }
    println!("{}", report.join("; "));
}

#[test]
fn a_scene_over_its_request_budget_fails_naming_the_scene_and_the_budget() {
    let (url, gauge) = start();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let href = format!("{url}/B02.tif");
    let read = |budget: &Arc<RequestBudget>| {
        let stores = Stores::default();
        let loc = stores.open_budgeted(&href, std::path::Path::new("/"), budget).expect("open");
        rt.block_on(async { Cog::open(&loc).await?.read_window_raw(0, 0, 1098, 600).await })
    };
    // What a read takes, counted by the budget and by the server.
    gauge.reset();
    let ample = RequestBudget::new("S2A_29RKH_20200219_0_L2A", 1_000);
    read(&ample).expect("within budget");
    let needed = ample.used();
    assert_eq!(needed, gauge.total.load(Ordering::SeqCst) as u64, "budget and server count the same requests");
    assert!(needed >= 3, "{needed} requests");

    let exact = RequestBudget::new("S2A_29RKH_20200219_0_L2A", needed);
    read(&exact).expect("a budget of exactly what the read needs");

    gauge.reset();
    let short = RequestBudget::new("S2A_29RKH_20200219_0_L2A", needed - 1);
    let err = read(&short).expect_err("over budget");
    let msg = terrastream_ingest::scene::error_chain(&err);
    assert!(
        msg.contains(&format!("scene S2A_29RKH_20200219_0_L2A exceeded its request budget of {} requests", needed - 1)),
        "{msg}"
    );
    assert!(gauge.total.load(Ordering::SeqCst) as u64 <= needed - 1, "requests over budget reached the server");
}

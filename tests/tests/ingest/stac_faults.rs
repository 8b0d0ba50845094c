//! `stac search` against a STAC API on 127.0.0.1 that misbehaves on purpose (no real API can be
//! made to): items repeated across pages, empty pages, a page of malformed JSON, a `next` link
//! to nowhere, a `next` link back to the same page, a page whose body is cut off once. The
//! items are the real ones of tile 13TDE.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::stac::{ids, load};
use crate::common::*;

/// What a page of the script holds: items (by index into the real items), or a fault.
#[derive(Clone, Debug)]
enum Page {
    /// These items, then a `next` link to the page of this number (none: the last page).
    Items(Vec<usize>, Option<usize>),
    /// `200` with a body that is not JSON.
    Malformed,
    /// Items and next as [`Page::Items`], but the first answer drops the connection mid-body.
    CutOnce(Vec<usize>, Option<usize>),
}

struct Api {
    url: String,
    requests: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct ApiState {
    pages: Arc<Vec<Page>>,
    items: Arc<Vec<Value>>,
    base: Arc<Mutex<String>>,
    requests: Arc<AtomicUsize>,
    cut: Arc<AtomicUsize>,
}

/// Page 0 answers `POST /search`; page n answers `GET /page/n`; other pages are 404.
fn start(pages: Vec<Page>) -> Api {
    let (_, _, raw) = load();
    let state = ApiState {
        pages: Arc::new(pages),
        items: Arc::new(raw),
        base: Arc::default(),
        requests: Arc::default(),
        cut: Arc::default(),
    };
    let requests = Arc::clone(&state.requests);
    let base = Arc::clone(&state.base);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let app = Router::new()
                .route("/search", post(|s: State<ApiState>| async move { page(s, 0).await }))
                .route("/page/{n}", get(|s: State<ApiState>, Path(n): Path<usize>| async move { page(s, n).await }))
                .with_state(state);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            tx.send(listener.local_addr().expect("addr")).expect("send addr");
            axum::serve(listener, app).await.expect("serve");
        });
    });
    let url = format!("http://{}", rx.recv().expect("address"));
    *base.lock().expect("base") = url.clone();
    Api { url, requests }
}

async fn page(State(s): State<ApiState>, n: usize) -> Response {
    s.requests.fetch_add(1, Ordering::SeqCst);
    let base = s.base.lock().expect("base").clone();
    let collection = |ix: &[usize], next: &Option<usize>| {
        let features: Vec<Value> = ix.iter().map(|&i| s.items[i].clone()).collect();
        let links: Vec<Value> =
            next.iter().map(|k| json!({"rel": "next", "href": format!("{base}/page/{k}"), "method": "GET"})).collect();
        json!({"type": "FeatureCollection", "features": features, "links": links}).to_string()
    };
    let ok = |body: Body, len: usize| {
        Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/geo+json")
            .header(header::CONTENT_LENGTH, len)
            .body(body)
            .expect("response")
    };
    match s.pages.get(n) {
        None => Response::builder().status(StatusCode::NOT_FOUND).body(Body::from("no such page")).expect("404"),
        Some(Page::Items(ix, next)) => {
            let body = collection(ix, next);
            ok(Body::from(body.clone()), body.len())
        }
        Some(Page::Malformed) => {
            let body = r#"{"type": "FeatureCollection", "features": [{"type": "Feat"#.to_string();
            ok(Body::from(body.clone()), body.len())
        }
        Some(Page::CutOnce(ix, next)) => {
            let body = collection(ix, next);
            if s.cut.fetch_add(1, Ordering::SeqCst) > 0 {
                return ok(Body::from(body.clone()), body.len());
            }
            let half = Bytes::from(body.as_bytes()[..body.len() / 2].to_vec());
            let parts: Vec<Result<Bytes, std::io::Error>> =
                vec![Ok(half), Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected reset"))];
            ok(Body::from_stream(futures::stream::iter(parts)), body.len())
        }
    }
}

fn search(api: &Api) -> std::process::Output {
    terrastream(&["stac", "search", &api.url, "--collections", "sentinel-2-c1-l2a"])
}

fn all_ids(pick: &[usize]) -> BTreeSet<String> {
    let (_, _, raw) = load();
    pick.iter().map(|&i| raw[i]["id"].as_str().expect("id").to_string()).collect()
}

#[test]
fn repeated_items_and_empty_pages_give_each_item_once() {
    let api = start(vec![
        Page::Items(vec![0, 1, 2], Some(1)),
        Page::Items(vec![2, 3], Some(2)),
        Page::Items(vec![], Some(3)),
        Page::Items(vec![], Some(4)),
        Page::Items(vec![4, 0], None),
    ]);
    let out = search(&api);
    assert!(out.status.success(), "{}", describe(&out));
    let got = ids(&out.stdout);
    assert_eq!(got.len(), 5, "each item once: {got:?}");
    assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), all_ids(&[0, 1, 2, 3, 4]));
    assert_eq!(api.requests.load(Ordering::SeqCst), 5, "every page read once, empty ones included");
}

#[test]
fn a_body_cut_off_once_is_retried() {
    let api = start(vec![Page::Items(vec![0, 1], Some(1)), Page::CutOnce(vec![2, 3], None)]);
    let out = search(&api);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(ids(&out.stdout).into_iter().collect::<BTreeSet<_>>(), all_ids(&[0, 1, 2, 3]));
    assert_eq!(api.requests.load(Ordering::SeqCst), 3, "page 1 read twice");
}

#[test]
fn broken_pages_and_links_are_errors_naming_the_url() {
    let cases: [(Vec<Page>, &str, &str); 3] = [
        (vec![Page::Items(vec![0], Some(1)), Page::Malformed], "/page/1", "not JSON"),
        (vec![Page::Items(vec![0], Some(7))], "/page/7", "404"),
        (vec![Page::Items(vec![0], Some(1)), Page::Items(vec![1], Some(1))], "/page/1", "leads back to a page already read"),
    ];
    for (pages, url, why) in cases {
        let api = start(pages);
        let out = search(&api);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{why}: must fail: {}", describe(&out));
        assert!(err.contains(&format!("{}{url}", api.url)) && err.contains(why), "{why}: {err}");
        // The items before the fault were printed, none twice.
        let got = ids(&out.stdout);
        assert_eq!(got.iter().collect::<BTreeSet<_>>().len(), got.len(), "{why}: {got:?}");
    }
}

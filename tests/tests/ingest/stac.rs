//! `terrastream stac search` against a real STAC API server (stac-server, memory backend)
//! holding the 10 real Earth Search `sentinel-2-c1-l2a` items of tile 13TDE (April 2024).

use std::collections::BTreeSet;

use crate::common::stac_api::StacApi;
use crate::common::*;

/// The collection and items of tile 13TDE, and the items as JSON.
pub(super) fn load() -> (stac::Collection, Vec<stac::Item>, Vec<serde_json::Value>) {
    let dir = shared_data().join("stac");
    let collection: stac::Collection = serde_json::from_slice(
        &std::fs::read(dir.join("rustac__crates_server_data_sentinel-2_collection.json")).expect("collection"),
    )
    .expect("collection json");
    let fc: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("rustac__crates_server_data_sentinel-2_item-collection.json")).expect("items"),
    )
    .expect("items json");
    let raw = fc["features"].as_array().expect("features").clone();
    let items = raw.iter().map(|f| serde_json::from_value(f.clone()).expect("item")).collect();
    (collection, items, raw)
}

/// The ids of NDJSON items.
pub(super) fn ids(stdout: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("ndjson line")["id"].as_str().expect("id").to_string()
        })
        .collect()
}

#[test]
fn search_pages_through_every_item() {
    let (collection, items, raw) = load();
    let cid = collection.id.clone();
    let api = StacApi::start(collection, items);
    let out = terrastream(&["stac", "search", &api.url, "--collections", &cid, "--limit", "3"]);
    assert!(out.status.success(), "{}", describe(&out));
    let got = ids(&out.stdout);
    let want: BTreeSet<String> = raw.iter().map(|f| f["id"].as_str().expect("id").to_string()).collect();
    assert_eq!(got.len(), want.len(), "duplicates or missing items: {got:?}");
    assert_eq!(got.iter().cloned().collect::<BTreeSet<_>>(), want);
    // 10 items in pages of 3: 4 pages, each one request.
    assert_eq!(api.searches(), want.len().div_ceil(3), "search requests");

    let out = terrastream(&["stac", "search", &api.url, "--collections", &cid, "--limit", "3", "--max-items", "5"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(ids(&out.stdout).len(), 5);
}

#[test]
fn search_filters_by_datetime_and_bbox() {
    let (collection, items, raw) = load();
    let cid = collection.id.clone();
    let api = StacApi::start(collection, items);
    // The expected set, from the item files: datetimes in the first half of the range.
    let mut times: Vec<String> =
        raw.iter().map(|f| f["properties"]["datetime"].as_str().expect("datetime").to_string()).collect();
    times.sort();
    let cut = &times[times.len() / 2];
    let want: BTreeSet<String> = raw
        .iter()
        .filter(|f| f["properties"]["datetime"].as_str().is_some_and(|t| t <= cut.as_str()))
        .map(|f| f["id"].as_str().expect("id").to_string())
        .collect();
    assert!(!want.is_empty() && want.len() < raw.len());
    let interval = format!("../{cut}");
    let out =
        terrastream(&["stac", "search", &api.url, "--collections", &cid, "--datetime", &interval, "--limit", "2"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(ids(&out.stdout).into_iter().collect::<BTreeSet<_>>(), want);

    // A bbox away from tile 13TDE (Colorado) finds nothing; one inside it finds everything.
    let out = terrastream(&["stac", "search", &api.url, "--bbox", "10,40,11,41"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(ids(&out.stdout).is_empty());
    let b = &raw[0]["bbox"];
    let (x, y) = (
        (b[0].as_f64().expect("x0") + b[2].as_f64().expect("x1")) / 2.0,
        (b[1].as_f64().expect("y0") + b[3].as_f64().expect("y1")) / 2.0,
    );
    let bbox = format!("{},{},{},{}", x - 0.01, y - 0.01, x + 0.01, y + 0.01);
    let out = terrastream(&["stac", "search", &api.url, "--bbox", &bbox, "--limit", "4"]);
    assert!(out.status.success(), "{}", describe(&out));
    let within: BTreeSet<String> = raw
        .iter()
        .filter(|f| {
            let b = &f["bbox"];
            b[0].as_f64() <= Some(x + 0.01)
                && b[2].as_f64() >= Some(x - 0.01)
                && b[1].as_f64() <= Some(y + 0.01)
                && b[3].as_f64() >= Some(y - 0.01)
        })
        .map(|f| f["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(ids(&out.stdout).into_iter().collect::<BTreeSet<_>>(), within);
}

#[test]
fn unreachable_api_is_an_error_naming_the_url() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let url = format!("http://127.0.0.1:{port}");
    let out = terrastream(&["stac", "search", &url]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("{url}/search")), "{}", describe(&out));
}

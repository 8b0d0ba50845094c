//! Providers on the real items: asset keys onto TerraMind's band order, and Planetary Computer
//! SAS signing against a real token server and a blob server that refuses requests without a
//! valid token (both axum on 127.0.0.1): one token request for many hrefs, a new token when the
//! old one is about to expire, and COG range reads that carry the token.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use terrastream_ingest::cog::Cog;
use terrastream_ingest::item::{HrefRewrite, SceneItem, rewrite};
use terrastream_ingest::provider::sas::blob_container;
use terrastream_ingest::provider::{Provider, SasOptions, SasSigner};
use terrastream_ingest::store::Stores;
use tower_http::services::ServeDir;

use super::stac::ids;
use crate::common::stac_api::StacApi;
use crate::common::*;

fn items(file: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(shared_data().join("stac").join(file)).expect("items")).expect("json");
    match v {
        serde_json::Value::Array(a) => a,
        v => v["features"].as_array().expect("features").clone(),
    }
}

fn scene(v: &serde_json::Value) -> SceneItem {
    SceneItem { item: serde_json::from_value(v.clone()).expect("item"), base_dir: PathBuf::new() }
}

/// The file name of an href, lower-cased.
fn file_name(href: &str) -> String {
    href.split('?').next().and_then(|h| h.rsplit('/').next()).expect("file name").to_lowercase()
}

#[test]
fn asset_keys_map_onto_terramind_band_order() {
    let s2_order = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"];
    let cases = [
        (Provider::EarthSearch, "eodm__stac_items.json", &s2_order[..]),
        (Provider::EarthSearch, "rustac__crates_server_data_sentinel-2_item-collection.json", &s2_order[..]),
        (Provider::PlanetaryComputer, "stac-geoparquet__sentinel-2-l2a-pc.json", &s2_order[..]),
        (Provider::PlanetaryComputer, "rustac__crates_core_data_two-sentinel-2-items.json", &s2_order[..]),
        (Provider::PlanetaryComputer, "stac-geoparquet__sentinel-1-rtc-pc.json", &["VV", "VH"][..]),
    ];
    for (provider, file, order) in cases {
        for v in items(file) {
            let item = scene(&v);
            let bands = provider.band_hrefs(&item, &[]).unwrap_or_else(|e| panic!("{provider} {file}: {e}"));
            assert_eq!(bands.iter().map(|b| b.band).collect::<Vec<_>>(), order, "{file}");
            for b in &bands {
                // Each provider names its files after the band (B8A.tif, ..._B8A_20m.tif, iw-vv.rtc.tiff):
                // an independent check that the asset key carries that band.
                let name = file_name(&b.href);
                assert!(name.contains(&b.band.to_lowercase()), "{file} {}: band {} from {}", item.id(), b.band, b.href);
            }
        }
    }
    // The other provider's keys do not fit, and the error names the item and band.
    let pc = scene(&items("stac-geoparquet__sentinel-2-l2a-pc.json")[0]);
    let err = Provider::EarthSearch.band_hrefs(&pc, &[]).expect_err("ES keys on a PC item").to_string();
    assert!(err.contains(pc.id()) && err.contains("B01") && err.contains("coastal"), "{err}");
    let err = Provider::Generic.band_hrefs(&pc, &[]).expect_err("no table").to_string();
    assert!(err.contains(pc.id()) && err.contains("sentinel-2-l2a"), "{err}");
}

/// Tokens issued by the token server: value -> expiry.
#[derive(Default)]
struct Sas {
    ttl: Duration,
    issued: Mutex<HashMap<String, Instant>>,
    token_requests: AtomicUsize,
    keys: Mutex<Vec<Option<String>>>,
    /// Blob requests: path and whether it was let through.
    blob_log: Mutex<Vec<(String, bool)>>,
}

/// The token server (`/token/{account}/{container}`) and the blob server (files of `dir`, 403
/// without a current token) on one port.
fn start(dir: PathBuf, ttl: Duration) -> (String, Arc<Sas>) {
    let sas = Arc::new(Sas { ttl, ..Default::default() });
    let state = Arc::clone(&sas);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        rt.block_on(async move {
            let blobs = Router::new()
                .fallback_service(ServeDir::new(dir))
                .layer(middleware::from_fn_with_state(Arc::clone(&state), require_token));
            let app = Router::new()
                .route("/api/sas/v1/token/{account}/{container}", get(issue))
                .with_state(Arc::clone(&state))
                .nest_service("/blob", blobs);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            tx.send(format!("http://{}", listener.local_addr().expect("addr"))).expect("send");
            axum::serve(listener, app).await.expect("serve");
        });
    });
    (rx.recv().expect("url"), sas)
}

async fn issue(
    State(sas): State<Arc<Sas>>,
    UrlPath((account, container)): UrlPath<(String, String)>,
    req: Request,
) -> Response {
    let n = sas.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
    let key = req.headers().get("ocp-apim-subscription-key").and_then(|v| v.to_str().ok()).map(str::to_string);
    sas.keys.lock().expect("keys").push(key);
    let token = format!("sv=2021-06-08&sr=c&sp=rl&sig=tok{n}-{account}-{container}");
    sas.issued.lock().expect("issued").insert(token.clone(), Instant::now() + sas.ttl);
    let expiry = chrono::Utc::now() + chrono::Duration::from_std(sas.ttl).expect("ttl");
    let body = serde_json::json!({"msft:expiry": expiry.to_rfc3339(), "token": token}).to_string();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn require_token(State(sas): State<Arc<Sas>>, req: Request, next: Next) -> Response {
    let query = req.uri().query().unwrap_or("").to_string();
    let valid = sas.issued.lock().expect("issued").get(&query).is_some_and(|exp| Instant::now() < *exp);
    sas.blob_log.lock().expect("log").push((req.uri().path().to_string(), valid));
    if valid { next.run(req).await } else { StatusCode::FORBIDDEN.into_response() }
}

#[test]
fn planetary_computer_hrefs_are_signed_once_per_container_and_refreshed_before_expiry() {
    let raw = items("stac-geoparquet__sentinel-2-l2a-pc.json");
    let first = scene(&raw[0]);
    let b02 = Provider::PlanetaryComputer
        .band_hrefs(&first, &[])
        .expect("bands")
        .into_iter()
        .find(|b| b.band == "B02")
        .expect("B02")
        .href;
    // The blob server holds the sample scene's B02 under this item's B02 blob path.
    let tmp = tempfile::tempdir().expect("tmp");
    let blob_path = b02.strip_prefix("https://sentinel2l2a01.blob.core.windows.net/").expect("PC blob href");
    let local = tmp.path().join(blob_path);
    std::fs::create_dir_all(local.parent().expect("dir")).expect("mkdir");
    std::fs::copy(s2_scene_dir().join("B02.tif"), &local).expect("copy");
    let (url, sas) = start(tmp.path().to_path_buf(), Duration::from_secs(3));
    let containers: BTreeSet<(String, String)> = raw
        .iter()
        .flat_map(|v| v["assets"].as_object().expect("assets").values())
        .filter_map(|a| blob_container(a["href"].as_str().expect("href")).map(|(a, c)| (a.to_string(), c.to_string())))
        .collect();
    assert_eq!(containers.len(), 1, "the four items share one container: {containers:?}");

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let options = SasOptions {
        endpoint: format!("{url}/api/sas/v1"),
        refresh_margin: Duration::from_secs(1),
        subscription_key: Some("test-key".into()),
        ..SasOptions::default()
    };
    let signer = SasSigner::new(options).expect("signer");
    let t0 = Instant::now();
    let mut signed: Vec<stac::Item> = raw.iter().map(|v| serde_json::from_value(v.clone()).expect("item")).collect();
    let mut hrefs = 0;
    for item in &mut signed {
        rt.block_on(signer.sign_item(item)).expect("sign");
        hrefs += item.assets.values().filter(|a| a.href.contains(".blob.core.windows.net/")).count();
    }
    assert!(hrefs > 50, "{hrefs} blob hrefs");
    assert_eq!(sas.token_requests.load(Ordering::SeqCst), 1, "one token for {hrefs} hrefs of one container");
    assert_eq!(*sas.keys.lock().expect("keys"), vec![Some("test-key".to_string())]);
    let token1 = sas.issued.lock().expect("issued").keys().next().expect("token").clone();
    for (item, v) in signed.iter().zip(&raw) {
        for (key, asset) in &item.assets {
            let original = v["assets"][key.as_str()]["href"].as_str().expect("href");
            match blob_container(original) {
                Some(_) => assert_eq!(asset.href, format!("{original}?{token1}")),
                None => assert_eq!(asset.href, original, "{key} is not a blob href"),
            }
        }
    }

    // A COG read through object_store's HTTP store carries the token on every range request.
    let to_server = [HrefRewrite {
        prefix: "https://sentinel2l2a01.blob.core.windows.net/".into(),
        replace: format!("{url}/blob/"),
    }];
    let read = |href: &str| {
        let stores = Stores::default();
        let loc = stores.open(&rewrite(href, &to_server), std::path::Path::new("/")).expect("open");
        rt.block_on(async {
            let cog = Cog::open(&loc).await?;
            cog.read_window_raw(500, 500, 100, 100).await
        })
    };
    let signed_b02 = signed[0].assets["B02"].href.clone();
    let remote = read(&signed_b02).expect("signed read");
    let stores = Stores::default();
    let loc =
        stores.open(&s2_scene_dir().join("B02.tif").display().to_string(), std::path::Path::new("/")).expect("local");
    let local =
        rt.block_on(async { Cog::open(&loc).await?.read_window_raw(500, 500, 100, 100).await }).expect("local read");
    assert_eq!(remote, local, "the same window over signed HTTP and from disk");
    let log = sas.blob_log.lock().expect("log").clone();
    assert!(!log.is_empty() && log.iter().all(|(_, ok)| *ok), "{log:?}");
    let err = read(&b02).expect_err("unsigned read");
    assert!(err.to_string().contains("403"), "{err}");

    // Within a second of expiry, the next signature fetches a new token.
    std::thread::sleep((t0 + Duration::from_millis(2300)).saturating_duration_since(Instant::now()));
    let resigned = rt.block_on(signer.sign_href(&signed_b02)).expect("re-sign");
    assert_eq!(sas.token_requests.load(Ordering::SeqCst), 2);
    assert!(!resigned.contains(&token1) && resigned.matches('?').count() == 1, "{resigned}");
    std::thread::sleep((t0 + Duration::from_millis(3300)).saturating_duration_since(Instant::now()));
    let err = read(&signed_b02).expect_err("expired token");
    assert!(err.to_string().contains("403"), "{err}");
    assert_eq!(read(&resigned).expect("fresh token"), local);
    assert_eq!(sas.token_requests.load(Ordering::SeqCst), 2);
}

#[test]
fn stac_search_signs_printed_hrefs() {
    let raw = items("stac-geoparquet__sentinel-2-l2a-pc.json");
    let collection = stac::Collection::new("sentinel-2-l2a", "Planetary Computer Sentinel-2 L2A");
    let api =
        StacApi::start(collection, raw.iter().map(|v| serde_json::from_value(v.clone()).expect("item")).collect());
    let tmp = tempfile::tempdir().expect("tmp");
    let (url, sas) = start(tmp.path().to_path_buf(), Duration::from_secs(3600));
    let sas_url = format!("{url}/api/sas/v1");
    let args = [
        "stac",
        "search",
        &api.url,
        "--provider",
        "planetary-computer",
        "--sign",
        "--sas-url",
        &sas_url,
        "--limit",
        "2",
    ];
    let out = terrastream(&args);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(ids(&out.stdout).len(), raw.len());
    assert_eq!(sas.token_requests.load(Ordering::SeqCst), 1);
    let token = sas.issued.lock().expect("issued").keys().next().expect("token").clone();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        let b02 = v["assets"]["B02"]["href"].as_str().expect("href");
        assert!(b02.ends_with(&format!("_B02_10m.tif?{token}")), "{b02}");
    }
    // Without --sign the hrefs are printed as the API has them.
    let out = terrastream(&["stac", "search", &api.url, "--provider", "planetary-computer"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("sig="));
    let out = terrastream(&["stac", "search", &api.url, "--sign"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--provider planetary-computer"), "{}", describe(&out));
}

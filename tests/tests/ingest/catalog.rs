//! Static catalogs built in a temporary directory from the real items (a catalog with a
//! collection of the 10 Earth Search items, a sub-catalog of the 4 Planetary Computer items
//! that links back to the root, and the sample scene's item with relative asset hrefs), walked
//! from disk and over HTTP (tower-http `ServeDir` on 127.0.0.1).

use std::collections::BTreeSet;
use std::path::Path;

use futures::StreamExt;
use serde_json::{Value, json};
use terrastream_ingest::catalog;
use terrastream_ingest::cog::Cog;
use terrastream_ingest::item::SceneItem;

use super::stac::ids;
use crate::common::http::DataServer;
use crate::common::*;

fn read(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json")
}

fn write(path: &Path, v: &Value) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, serde_json::to_vec_pretty(v).expect("json")).expect("write");
}

/// Builds the catalog under `dir`; returns the ids it holds.
fn build(dir: &Path) -> BTreeSet<String> {
    let stac = shared_data().join("stac");
    let mut ids = BTreeSet::new();
    let es = read(&stac.join("rustac__crates_server_data_sentinel-2_item-collection.json"));
    let mut collection = read(&stac.join("rustac__crates_server_data_sentinel-2_collection.json"));
    let mut links = vec![json!({"rel": "parent", "href": "../catalog.json"})];
    for f in es["features"].as_array().expect("features") {
        let id = f["id"].as_str().expect("id");
        write(&dir.join(format!("es/items/{id}.json")), f);
        links.push(json!({"rel": "item", "href": format!("./items/{id}.json")}));
        ids.insert(id.to_string());
    }
    collection["links"] = links.into();
    write(&dir.join("es/collection.json"), &collection);

    let pc = read(&stac.join("stac-geoparquet__sentinel-2-l2a-pc.json"));
    let mut links = vec![json!({"rel": "child", "href": "../catalog.json"})];
    for f in pc.as_array().expect("items") {
        let id = f["id"].as_str().expect("id");
        write(&dir.join(format!("pc/{id}.json")), f);
        links.push(json!({"rel": "item", "href": format!("{id}.json")}));
        ids.insert(id.to_string());
    }
    write(
        &dir.join("pc/catalog.json"),
        &json!({"type": "Catalog", "stac_version": "1.0.0", "id": "pc", "description": "PC", "links": links}),
    );

    // The sample scene with its B02 next to the item, by a relative href.
    let mut scene = read(&s2_scene_dir().join("S2A_29RKH_20200219_0_L2A.json"));
    scene["assets"]["blue"]["href"] = "./B02.tif".into();
    write(&dir.join("scene/item.json"), &scene);
    std::fs::copy(s2_scene_dir().join("B02.tif"), dir.join("scene/B02.tif")).expect("copy");
    ids.insert(scene["id"].as_str().expect("id").to_string());

    let root = json!({"type": "Catalog", "stac_version": "1.0.0", "id": "root", "description": "test", "links": [
        {"rel": "self", "href": "./catalog.json"},
        {"rel": "child", "href": "./es/collection.json"},
        {"rel": "child", "href": "pc/catalog.json"},
        {"rel": "item", "href": "./scene/item.json"},
    ]});
    write(&dir.join("catalog.json"), &root);
    ids
}

fn walk(rt: &tokio::runtime::Runtime, href: &str) -> Vec<SceneItem> {
    rt.block_on(catalog::walk(href).collect::<Vec<_>>()).into_iter().map(|r| r.expect("item")).collect()
}

#[test]
fn static_catalogs_are_walked_from_disk_and_over_http() {
    let tmp = tempfile::tempdir().expect("tmp");
    let want = build(tmp.path());
    let server = DataServer::start(tmp.path().to_path_buf());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let scene_id = "S2A_29RKH_20200219_0_L2A";
    let local = terrastream_ingest::store::open(&s2_scene_dir().join("B02.tif").display().to_string(), Path::new("/"))
        .expect("open");
    let size = rt.block_on(Cog::open(&local)).map(|c| (c.info().width, c.info().height)).expect("local B02");

    for (root, base) in [
        (tmp.path().join("catalog.json").display().to_string(), tmp.path().display().to_string()),
        (format!("{}/catalog.json", server.url()), server.url()),
    ] {
        let items = walk(&rt, &root);
        let got: Vec<String> = items.iter().map(|i| i.id().to_string()).collect();
        assert_eq!(got.len(), want.len(), "{root}: duplicates or missing: {got:?}");
        assert_eq!(got.iter().cloned().collect::<BTreeSet<_>>(), want, "{root}");
        let scene = items.iter().find(|i| i.id() == scene_id).expect("scene");
        let (_, blue) = scene.asset_href(&["blue"], &[]).expect("blue");
        assert_eq!(blue, format!("{base}/scene/B02.tif"), "{root}");
        // The resolved href reads.
        let loc = terrastream_ingest::store::Stores::default().open(&blue, Path::new("/")).expect("open");
        let cog = rt.block_on(Cog::open(&loc)).expect("cog");
        assert_eq!((cog.info().width, cog.info().height), size);
    }
    // Every document once, though pc/catalog.json links back to the root.
    let requests = server.requests();
    let json: Vec<&str> = requests.iter().map(|r| r.path.as_str()).filter(|p| p.ends_with(".json")).collect();
    assert_eq!(json.len(), json.iter().collect::<BTreeSet<_>>().len(), "{json:?}");
    assert_eq!(json.len(), want.len() + 3, "{json:?}");

    let out = terrastream(&["stac", "catalog", &format!("{}/catalog.json", server.url())]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(ids(&out.stdout).into_iter().collect::<BTreeSet<_>>(), want);
    let out = terrastream(&["stac", "catalog", &tmp.path().join("missing.json").display().to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.json"), "{}", describe(&out));
}

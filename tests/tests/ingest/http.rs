//! The demo scene read over HTTP with range requests from a real server on 127.0.0.1: same
//! embeddings as from local files, only range requests, each tile fetched once.

use crate::common::http::DataServer;
use crate::common::*;

/// Embeddings by chip, read back with DuckDB.
const EMBEDDINGS: &str = r#"
import json, sys
import duckdb
rows = duckdb.connect().execute(
    "SELECT chip_row, chip_col, embedding FROM read_parquet(?) ORDER BY chip_row, chip_col", [sys.argv[1]]).fetchall()
print(json.dumps([[r, c, e] for r, c, e in rows]))
"#;

/// Tiles per asset, from GDAL's block layout: what a reader that fetches each tile once needs.
const TILES: &str = r#"
import json, sys
from osgeo import gdal
out = {}
for f in sys.argv[2:]:
    ds = gdal.Open(f"{sys.argv[1]}/{f}")
    bw, bh = ds.GetRasterBand(1).GetBlockSize()
    out[f] = (-(-ds.RasterXSize // bw)) * (-(-ds.RasterYSize // bh))
print(json.dumps(out))
"#;

const ASSETS: [&str; 13] = [
    "B01.tif", "B02.tif", "B03.tif", "B04.tif", "B05.tif", "B06.tif", "B07.tif", "B08.tif", "B8A.tif", "B09.tif",
    "B11.tif", "B12.tif", "SCL.tif",
];

#[test]
fn demo_over_http_reads_only_the_tiles_it_needs() {
    let server = DataServer::start(shared_data());
    let tmp = tempfile::tempdir().expect("tmp");
    let item = s2_scene_dir().join("S2A_29RKH_20200219_0_L2A.json");

    // Local files, then the same assets over HTTP.
    let local_cfg_dir = tmp.path().join("local");
    std::fs::create_dir_all(&local_cfg_dir).expect("mkdir");
    let local_cfg = write_config(&local_cfg_dir, &item, &s2_scene_dir(), &tmp.path().join("out-local"));
    let out = terrastream(&["map", &local_cfg.display().to_string()]);
    assert!(out.status.success(), "local: {}", describe(&out));

    let http_cfg_dir = tmp.path().join("http");
    std::fs::create_dir_all(&http_cfg_dir).expect("mkdir");
    let remote = format!("{}/rio-tiler-pds/S2A_29RKH_20200219_0_L2A", server.url());
    let http_cfg = write_config_href(&http_cfg_dir, &item, &remote, &tmp.path().join("out-http"));
    let out = terrastream(&["map", &http_cfg.display().to_string()]);
    assert!(out.status.success(), "http: {}", describe(&out));

    let file = |d: &str| tmp.path().join(format!("{d}/embeddings/MGRS-29RKH_2020-02.parquet")).display().to_string();
    let local = python_json(&venv_python(), EMBEDDINGS, &[&file("out-local")]);
    let http = python_json(&venv_python(), EMBEDDINGS, &[&file("out-http")]);
    assert!(local.as_array().is_some_and(|a| !a.is_empty()));
    assert_eq!(local, http, "embeddings differ between local and HTTP reads");

    let requests = server.requests();
    let scene_requests: Vec<_> = requests.iter().filter(|r| r.path.contains("S2A_29RKH_20200219_0_L2A/")).collect();
    let full_gets: Vec<_> = scene_requests.iter().filter(|r| r.range.is_none()).collect();
    assert!(full_gets.is_empty(), "requests without Range: {full_gets:?}");

    let mut args = vec![s2_scene_dir().display().to_string()];
    args.extend(ASSETS.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let tiles = python_json(&gdal_python(), TILES, &args);
    let mut report = Vec::new();
    for asset in ASSETS {
        let n = scene_requests.iter().filter(|r| r.path.ends_with(asset)).count() as u64;
        let t = tiles[asset].as_u64().expect("tile count");
        // Each tile once, plus the header and IFDs (one or two reads with readahead).
        assert!(n >= t && n <= t + 2, "{asset}: {n} range requests for {t} tiles");
        report.push(format!("{asset} {n}/{t}"));
    }
    let total_tiles: u64 = ASSETS.iter().filter_map(|a| tiles[*a].as_u64()).sum();
    println!("range requests {} for {total_tiles} tiles: {}", scene_requests.len(), report.join(", "));
}

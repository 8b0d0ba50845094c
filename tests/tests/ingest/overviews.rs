//! Overview reads: windows of an overview equal GDAL's `GetOverview(i).ReadAsArray` byte for
//! byte, and a chip grid coarser than the data is read from the overview GDAL would pick,
//! fetching none of the full-resolution tiles (counted on a real HTTP server).

use std::path::Path;

use terrastream_ingest::bands::Resampling;
use terrastream_ingest::cog::Cog;
use terrastream_ingest::geo::GeoTransform;

use crate::common::http::DataServer;
use crate::common::*;

/// Compares our bytes (a raw file) with GDAL's read of the same overview window.
const COMPARE: &str = r#"
import json, sys
import numpy as np
from osgeo import gdal
gdal.UseExceptions()
path, raw, level, c, r, w, h = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:8])
ds = gdal.Open(path)
bands = [ds.GetRasterBand(b + 1).GetOverview(level - 1) for b in range(ds.RasterCount)]
ref = np.stack([b.ReadAsArray(c, r, w, h) for b in bands])
ours = np.fromfile(raw, dtype=ref.dtype)
print(json.dumps({
    "overview": [bands[0].XSize, bands[0].YSize],
    "equal": ours.size == ref.size and ours.tobytes() == ref.tobytes(),
    "differing": int((ours != ref.ravel()).sum()) if ours.size == ref.size else -1,
}))
"#;

/// Byte ranges of the tiles of the full-resolution image and of each overview, and the values
/// of a whole overview as Float32 with no-data as NaN.
const LAYOUT: &str = r#"
import json, sys
import numpy as np
from osgeo import gdal
gdal.UseExceptions()
path, level = sys.argv[1], int(sys.argv[2])
ds = gdal.Open(path)  # kept: a band outlives its dataset only as a dangling pointer
band = ds.GetRasterBand(1)
def ranges(b):
    bw, bh = b.GetBlockSize()
    out = []
    for y in range(-(-b.YSize // bh)):
        for x in range(-(-b.XSize // bw)):
            o = int(b.GetMetadataItem(f"BLOCK_OFFSET_{x}_{y}", "TIFF"))
            n = int(b.GetMetadataItem(f"BLOCK_SIZE_{x}_{y}", "TIFF"))
            out.append([o, o + n])
    return out
ovr = band.GetOverview(level - 1)
values = ovr.ReadAsArray().astype(np.float32)
values[values == band.GetNoDataValue()] = np.nan
print(json.dumps({
    "full": ranges(band),
    "overviews": [ranges(band.GetOverview(i)) for i in range(band.GetOverviewCount())],
    "values": [None if np.isnan(v) else float(v) for v in values.ravel()],
}))
"#;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

fn open(rt: &tokio::runtime::Runtime, href: &str) -> Cog {
    let location = terrastream_ingest::store::open(href, Path::new("/")).expect("location");
    rt.block_on(Cog::open(&location)).unwrap_or_else(|e| panic!("{href}: {e}"))
}

/// `(file, level, [col, row, width, height])`: windows inside tiles, across tile boundaries
/// and ending at the overview's edges; UInt16 S2 bands at 10/20/60 m and the S1 GRD whose IFDs
/// are not in COG order.
const CASES: &[(&str, usize, [usize; 4])] = &[
    ("rio-tiler-pds/S2A_29RKH_20200219_0_L2A/B02.tif", 1, [0, 0, 549, 549]),
    ("rio-tiler-pds/S2A_29RKH_20200219_0_L2A/B02.tif", 1, [500, 480, 49, 69]),
    ("rio-tiler-pds/S2A_29RKH_20200219_0_L2A/B02.tif", 2, [10, 20, 265, 255]),
    ("rio-tiler-pds/S2A_29RKH_20200219_0_L2A/B05.tif", 1, [0, 0, 275, 275]),
    ("rio-tiler-pds/S2A_29RKH_20200219_0_L2A/B01.tif", 1, [30, 0, 62, 92]),
    ("rio-tiler-pds/S2A_29RKH_20200219_0_L2A/TCI.tif", 1, [200, 200, 349, 349]),
    ("rio-tiler-pds/S1A_IW_GRDH_1SDV_20180716T004042/iw-vv.tiff", 1, [100, 150, 540, 269]),
    ("rio-tiler-pds/S1A_IW_GRDH_1SDV_20180716T004042/iw-vh.tiff", 3, [0, 0, 160, 105]),
];

#[test]
fn overview_windows_equal_gdal_byte_for_byte() {
    let rt = runtime();
    let tmp = tempfile::tempdir().expect("tmp");
    let mut failures = Vec::new();
    for (i, (file, level, [c, r, w, h])) in CASES.iter().enumerate() {
        let path = shared_data().join(file).display().to_string();
        let cog = open(&rt, &path);
        let raw = rt.block_on(cog.read_window_raw_at(*level, *c, *r, *w, *h)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let out = tmp.path().join(format!("{i}.bin"));
        std::fs::write(&out, &raw.bytes).expect("write");
        let args = [path.clone(), out.display().to_string(), level.to_string()]
            .into_iter()
            .chain([c, r, w, h].map(ToString::to_string))
            .collect::<Vec<_>>();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let v = python_json(&gdal_python(), COMPARE, &args);
        let ours = cog.info().overviews.get(level - 1).map(|&(w, h)| serde_json::json!([w, h]));
        if v["equal"] != true || ours.as_ref() != Some(&v["overview"]) {
            failures.push(format!("{file} overview {level} {c},{r},{w},{h}: ours {ours:?}, {v}"));
        }
    }
    assert!(failures.is_empty(), "differs from GDAL:\n{}", failures.join("\n"));
}

/// Requested byte ranges (`bytes=a-b`, inclusive) as half-open ranges.
fn requested(server: &DataServer, from: usize, file: &str) -> Vec<(u64, u64)> {
    server.requests()[from..]
        .iter()
        .filter(|r| r.path.ends_with(file))
        .map(|r| {
            let range = r.range.as_deref().unwrap_or_else(|| panic!("request without Range: {r:?}"));
            let (a, b) = range.trim_start_matches("bytes=").split_once('-').expect("a-b range");
            (a.parse().expect("start"), b.parse::<u64>().expect("end") + 1)
        })
        .collect()
}

fn overlaps(a: (u64, u64), tiles: &serde_json::Value) -> bool {
    tiles.as_array().expect("ranges").iter().any(|t| {
        let (s, e) = (t[0].as_u64().expect("start"), t[1].as_u64().expect("end"));
        a.0 < e && s < a.1
    })
}

#[test]
fn coarser_grid_reads_only_overview_tiles() {
    let server = DataServer::start(shared_data());
    let rt = runtime();
    let file = "rio-tiler-pds/S2A_29RKH_20200219_0_L2A/B02.tif";
    let local = shared_data().join(file).display().to_string();
    let layout = python_json(&gdal_python(), LAYOUT, &[&local, "1"]);
    let cog = open(&rt, &format!("{}/{file}", server.url()));
    let t = cog.info().geo_transform().expect("transform");
    let (x0, y0) = (t.0[0], t.0[3]);

    // 2x the native 100 m: overview 1 (549 x 549 at 200 m), read as it is, equal to GDAL's.
    let before = server.requests().len();
    let grid = GeoTransform::north_up(x0, y0, 200.0, 200.0);
    assert_eq!(cog.level_for(200.0, 200.0, Resampling::Average), 1);
    let raster = rt.block_on(cog.read_onto(0, &grid, 549, 549, Resampling::Average)).expect("read 200 m");
    let ours: Vec<serde_json::Value> = raster
        .data
        .iter()
        .map(|v| if v.is_nan() { serde_json::Value::Null } else { serde_json::json!(*v as f64) })
        .collect();
    assert_eq!(ours.len(), layout["values"].as_array().map_or(0, Vec::len));
    assert!(serde_json::Value::Array(ours) == layout["values"], "200 m grid differs from GDAL's overview 1");
    let got = requested(&server, before, "B02.tif");
    assert!(!got.is_empty(), "no tile requests");
    assert!(got.iter().all(|&r| !overlaps(r, &layout["full"])), "full-resolution tiles fetched: {got:?}");
    assert!(got.iter().all(|&r| overlaps(r, &layout["overviews"][0])), "not overview 1 tiles: {got:?}");

    // 4x: overview 2 (275 x 275, 399.3 m pixels, finer than 400 m), resampled by area.
    let before = server.requests().len();
    let grid = GeoTransform::north_up(x0 + 800.0, y0 - 400.0, 400.0, 400.0);
    assert_eq!(cog.level_for(400.0, 400.0, Resampling::Average), 2);
    let raster = rt.block_on(cog.read_onto(0, &grid, 224, 224, Resampling::Average)).expect("read 400 m");
    assert!(raster.data.iter().filter(|v| v.is_finite()).count() > 224 * 224 / 2, "mostly no-data");
    let got = requested(&server, before, "B02.tif");
    assert!(!got.is_empty(), "no tile requests");
    assert!(got.iter().all(|&r| !overlaps(r, &layout["full"])), "full-resolution tiles fetched: {got:?}");
    assert!(got.iter().all(|&r| overlaps(r, &layout["overviews"][1])), "not overview 2 tiles: {got:?}");

    // The native grid still reads full-resolution tiles only.
    let before = server.requests().len();
    let grid = GeoTransform::north_up(x0, y0, 100.0, 100.0);
    assert_eq!(cog.level_for(100.0, 100.0, Resampling::Average), 0);
    rt.block_on(cog.read_onto(0, &grid, 224, 224, Resampling::Average)).expect("read 100 m");
    let got = requested(&server, before, "B02.tif");
    assert!(!got.is_empty() && got.iter().all(|&r| overlaps(r, &layout["full"])), "{got:?}");
}

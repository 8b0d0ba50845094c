//! `terrastream cog read` windows equal GDAL's `ReadAsArray` byte for byte, on every real
//! GeoTIFF of the sample data: UInt8/UInt16/Int16/Float32, DEFLATE with and without
//! predictor 2, chunky and band-interleaved, 128/256/512 tiles, windows that cross tile
//! boundaries and end at image edges (partial edge tiles), and a file whose IFDs are not in COG
//! order; and the same files re-encoded by GDAL with LZW and ZSTD, predictors 2 and 3.

use std::path::{Path, PathBuf};

use crate::common::*;

const COMPARE: &str = r#"
import json, sys
import numpy as np
from osgeo import gdal
path, npy, c, r, w, h = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7])
ours = np.load(npy)
ds = gdal.Open(path)
ref = ds.ReadAsArray(c, r, w, h)
if ref.ndim == 2:
    ref = ref[None]
print(json.dumps({
    "shape": list(ours.shape), "ref_shape": list(ref.shape),
    "dtype": str(ours.dtype), "ref_dtype": str(ref.dtype),
    "equal": ours.shape == ref.shape and ours.dtype == ref.dtype and ours.tobytes() == ref.tobytes(),
    "differing": int((ours != ref).sum()) if ours.shape == ref.shape else -1,
}))
"#;

const CASES: &[(&str, [usize; 4])] = &[
    ("rio-tiler-pds/S2A_29RKH_20200219_0_L2A/B02.tif", [500, 500, 30, 30]),
    ("rio-tiler-pds/S2A_29RKH_20200219_0_L2A/B02.tif", [1000, 1000, 98, 98]),
    ("rio-tiler-pds/S2A_29RKH_20200219_0_L2A/B02.tif", [0, 0, 1098, 1098]),
    ("rio-tiler-pds/S2A_29RKH_20200219_0_L2A/B01.tif", [120, 120, 63, 63]),
    ("rio-tiler-pds/S2A_29RKH_20200219_0_L2A/B8A.tif", [200, 500, 349, 49]),
    ("rio-tiler-pds/S2A_29RKH_20200219_0_L2A/SCL.tif", [250, 500, 299, 49]),
    ("rio-tiler-pds/S2A_29RKH_20200219_0_L2A/TCI.tif", [400, 400, 300, 300]),
    ("rio-tiler-pds/S1A_IW_GRDH_1SDV_20180716T004042/iw-vv.tiff", [200, 200, 400, 300]),
    ("rio-tiler-pds/S1A_IW_GRDH_1SDV_20180716T004042/iw-vv.tiff", [1200, 800, 80, 37]),
    ("rio-tiler-pds/S1A_IW_GRDH_1SDV_20180716T004042/iw-vh.tiff", [0, 0, 1280, 837]),
    ("sen1floods11/Spain_7370579_S1Hand.tif", [100, 100, 200, 200]),
    ("sen1floods11/Spain_7370579_S2Hand.tif", [0, 0, 512, 512]),
    ("sen1floods11/Spain_7370579_LabelHand.tif", [10, 10, 500, 500]),
];

#[test]
fn windows_equal_gdal_byte_for_byte() {
    let cases: Vec<(PathBuf, [usize; 4])> = CASES.iter().map(|(f, w)| (shared_data().join(f), *w)).collect();
    assert_windows_equal_gdal(&cases);
}

/// Re-encodes real sample files with GDAL's COG driver: `(source, target, creation options)`.
/// LZW and ZSTD, with no predictor, horizontal differencing (2) and the floating-point
/// predictor (3), on UInt16, Int16 and Float32 rasters.
const RECODE: &str = r#"
import json, sys
from osgeo import gdal
gdal.UseExceptions()
out = []
for src, dst, opts in json.loads(sys.argv[1]):
    gdal.Translate(dst, src, format="COG", creationOptions=opts)
    md = gdal.Open(dst).GetMetadata("IMAGE_STRUCTURE")
    out.append([md.get("COMPRESSION"), md.get("PREDICTOR", "1")])
print(json.dumps(out))
"#;

#[test]
fn lzw_zstd_and_predictors_2_and_3_equal_gdal_byte_for_byte() {
    let tmp = tempfile::tempdir().expect("tmp");
    let b02 = shared_data().join("rio-tiler-pds/S2A_29RKH_20200219_0_L2A/B02.tif");
    let s1 = shared_data().join("sen1floods11/Spain_7370579_S1Hand.tif");
    let s2 = shared_data().join("sen1floods11/Spain_7370579_S2Hand.tif");
    // (source, name, creation options, expected COMPRESSION and PREDICTOR, window)
    let recodes: [(&Path, &str, &[&str], [&str; 2], [usize; 4]); 5] = [
        (&b02, "b02-lzw-p2.tif", &["COMPRESS=LZW", "PREDICTOR=2", "BLOCKSIZE=256"], ["LZW", "2"], [200, 230, 300, 100]),
        (&b02, "b02-zstd-p2.tif", &["COMPRESS=ZSTD", "PREDICTOR=2"], ["ZSTD", "2"], [500, 480, 598, 618]),
        (&s1, "s1-zstd-p3.tif", &["COMPRESS=ZSTD", "PREDICTOR=FLOATING_POINT", "BLOCKSIZE=256"], ["ZSTD", "3"], [100, 200, 300, 250]),
        (&s1, "s1-lzw-p3.tif", &["COMPRESS=LZW", "PREDICTOR=FLOATING_POINT", "BLOCKSIZE=128"], ["LZW", "3"], [0, 0, 512, 512]),
        (&s2, "s2-zstd.tif", &["COMPRESS=ZSTD", "BLOCKSIZE=256"], ["ZSTD", "1"], [250, 250, 262, 262]),
    ];
    let jobs: Vec<serde_json::Value> = recodes
        .iter()
        .map(|(src, name, opts, ..)| serde_json::json!([src, tmp.path().join(name), opts]))
        .collect();
    let made = python_json(&gdal_python(), RECODE, &[&serde_json::Value::from(jobs).to_string()]);
    let expected: Vec<[&str; 2]> = recodes.iter().map(|r| r.3).collect();
    assert_eq!(made, serde_json::json!(expected), "GDAL wrote other codecs than asked");
    let cases: Vec<(PathBuf, [usize; 4])> = recodes.iter().map(|r| (tmp.path().join(r.1), r.4)).collect();
    assert_windows_equal_gdal(&cases);
}

/// Each window read by `terrastream cog read` equals GDAL's `ReadAsArray`, bytes and dtype.
fn assert_windows_equal_gdal(cases: &[(PathBuf, [usize; 4])]) {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut failures = Vec::new();
    for (i, (file, [c, r, w, h])) in cases.iter().enumerate() {
        let file = file.display();
        let path = file.to_string();
        let npy = tmp.path().join(format!("{i}.npy")).display().to_string();
        let window = format!("{c},{r},{w},{h}");
        let out = terrastream(&["cog", "read", &path, "--window", &window, "--out", &npy]);
        assert!(out.status.success(), "{file} {window}: {}", describe(&out));
        let args = [path.clone(), npy, c.to_string(), r.to_string(), w.to_string(), h.to_string()];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let v = python_json(&gdal_python(), COMPARE, &args);
        if v["equal"] != true {
            failures.push(format!("{file} {window}: {v}"));
        }
    }
    assert!(failures.is_empty(), "differs from GDAL:\n{}", failures.join("\n"));
}

#[test]
fn info_reports_grid_and_overviews() {
    let path = shared_data().join("rio-tiler-pds/S2A_29RKH_20200219_0_L2A/B02.tif").display().to_string();
    let out = terrastream(&["cog", "info", &path]);
    assert!(out.status.success(), "{}", describe(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["width"], 1098);
    assert_eq!(v["tile_width"], 512);
    assert_eq!(v["epsg"], 32629);
    assert_eq!(v["transform"], serde_json::json!([199980.0, 100.0, 0.0, 2800020.0, 0.0, -100.0]));
    assert_eq!(v["nodata"], 0.0);
    assert_eq!(v["overviews"].as_array().map(Vec::len), Some(2), "gdalinfo lists 2 overviews");
}

#[test]
fn window_outside_the_image_is_an_error_naming_the_href() {
    let tmp = tempfile::tempdir().expect("tmp");
    let path = shared_data().join("sen1floods11/Spain_7370579_LabelHand.tif").display().to_string();
    let npy = tmp.path().join("x.npy").display().to_string();
    let out = terrastream(&["cog", "read", &path, "--window", "500,0,20,20", "--out", &npy]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("LabelHand.tif") && stderr.contains("not inside the 512x512 image"), "{stderr}");
}

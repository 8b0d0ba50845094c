//! `terrastream classify` and `similar` on embeddings of the real sample scene, with labels
//! computed independently from the pixels by GDAL: each 112 px chip's mean NDWI
//! ((B03 - B08) / (B03 + B08)); the top third of chips is "wet", the bottom third "dry".
//! Half of those chips (their centres, as points) are the examples, the other half the
//! held-out set. The model has RANDOM weights (no checkpoint is bundled); with
//! TERRASTREAM_CHECKPOINT set to a TerraMind_v1_tiny.pt the same test runs on real weights.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::common::*;
use crate::map::ITEM_ID;

/// Chip size and stride of the store, pixels (100 chips on the decimated scene).
const CHIP: usize = 112;

/// Per chip of the 112 px grid (snapped last row/column, as the mapping run cuts it): id,
/// centre lon/lat, mean NDWI. From the COGs with GDAL, not from terrastream.
const NDWI_CHIPS: &str = r#"
import json, sys
import numpy as np
from osgeo import gdal, osr
scene, chip, item = sys.argv[1], int(sys.argv[2]), sys.argv[3]
g = gdal.Open(f"{scene}/B03.tif"); n = gdal.Open(f"{scene}/B08.tif")
green = g.ReadAsArray().astype(np.float64); nir = n.ReadAsArray().astype(np.float64)
t = g.GetGeoTransform()
srs = osr.SpatialReference(); srs.ImportFromWkt(g.GetProjection())
wgs = osr.SpatialReference(); wgs.ImportFromEPSG(4326); wgs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
to_wgs = osr.CoordinateTransformation(srs, wgs)
h, w = green.shape
def starts(size):
    s = list(range(0, size - chip + 1, chip))
    if s[-1] != size - chip: s.append(size - chip)
    return s
out = []
for i, r in enumerate(starts(h)):
    for j, c in enumerate(starts(w)):
        gg = green[r:r+chip, c:c+chip]; nn = nir[r:r+chip, c:c+chip]
        ok = (gg > 0) & (nn > 0)
        ndwi = float(((gg - nn) / (gg + nn))[ok].mean())
        x = t[0] + (c + chip / 2) * t[1]; y = t[3] + (r + chip / 2) * t[5]
        lon, lat, _ = to_wgs.TransformPoint(x, y)
        out.append({"id": f"{item}/{i}/{j}", "lon": lon, "lat": lat, "ndwi": ndwi})
print(json.dumps(out))
"#;

/// The labelled chips: (id, lon, lat, label), sorted by id.
pub fn labelled() -> &'static Vec<(String, f64, f64, String)> {
    static L: OnceLock<Vec<(String, f64, f64, String)>> = OnceLock::new();
    L.get_or_init(|| {
        let scene = s2_scene_dir().display().to_string();
        let chips = python_json(&gdal_python(), NDWI_CHIPS, &[&scene, &CHIP.to_string(), ITEM_ID]);
        let mut chips: Vec<(String, f64, f64, f64)> = chips
            .as_array()
            .expect("chips")
            .iter()
            .map(|c| {
                let f = |k: &str| c[k].as_f64().expect("number");
                (c["id"].as_str().expect("id").to_string(), f("lon"), f("lat"), f("ndwi"))
            })
            .collect();
        assert_eq!(chips.len(), 100, "the 112 px grid of the 1098 px scene");
        chips.sort_by(|a, b| a.3.total_cmp(&b.3));
        let third = chips.len() / 3;
        let mut out: Vec<_> = chips[..third]
            .iter()
            .map(|c| (c.0.clone(), c.1, c.2, "dry".to_string()))
            .chain(chips[chips.len() - third..].iter().map(|c| (c.0.clone(), c.1, c.2, "wet".to_string())))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    })
}

/// Embeddings of the sample scene on the 112 px grid: (temp dir, store).
pub fn store() -> &'static (tempfile::TempDir, PathBuf) {
    static STORE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    STORE.get_or_init(|| {
        let tmp = tempfile::tempdir().expect("tmp");
        let item = s2_scene_dir().join(format!("{ITEM_ID}.json"));
        let out = tmp.path().join("store");
        let checkpoint = std::env::var("TERRASTREAM_CHECKPOINT")
            .map(|c| format!("checkpoint = {c:?}\n"))
            .unwrap_or_default();
        let cfg = format!(
            r#"[source]
items = ["{item}"]
[[source.rewrite]]
prefix = "https://sentinel-cogs.s3.us-west-2.amazonaws.com/sentinel-s2-l2a-cogs/29/R/KH/2020/2/{ITEM_ID}/"
replace = "{assets}/"
[grid]
chip_size = {CHIP}
stride = {CHIP}
[model]
variant = "tiny"
seed = 1
device = "cpu"
{checkpoint}[output]
dir = "{out}"
"#,
            item = item.display(),
            assets = s2_scene_dir().display(),
            out = out.display()
        );
        run_map(tmp.path(), &cfg);
        (tmp, out)
    })
}

/// Points of `chips` as a labelled FeatureCollection.
pub fn points(chips: &[&(String, f64, f64, String)]) -> serde_json::Value {
    let features: Vec<_> = chips
        .iter()
        .map(|(id, lon, lat, label)| {
            serde_json::json!({"type": "Feature", "id": id, "properties": {"label": label},
                "geometry": {"type": "Point", "coordinates": [lon, lat]}})
        })
        .collect();
    serde_json::json!({"type": "FeatureCollection", "features": features})
}

/// Writes `value` as `name` under `dir`.
pub fn write_json(dir: &Path, name: &str, value: &serde_json::Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, value.to_string()).expect("write json");
    p
}

mod labels;
mod similar;

//! STAC metadata for outputs: one item per output file, next to it, and a static collection
//! (`collection.json`) in the same directory that links every item there.
//!
//! Items are STAC 1.0.0 with the projection (v1.1.0), raster (v1.1.0, rasters only), table
//! (v1.2.0, tables only) and file (v2.1.0) extensions; `file:checksum` is a sha2-256 multihash
//! of the committed file. The collection is rebuilt from the item files on disk (in its
//! directory and the partition directories below it), so re-running a work unit (which
//! replaces its item) or adding shards keeps it exact. Hrefs are relative: the directory can
//! be moved or uploaded as is.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use terrastream_ingest::geo::Footprint;

use crate::commit::PendingFile;
use crate::{Error, Result};

/// STAC version of items and collections.
pub const STAC_VERSION: &str = "1.0.0";
/// Projection extension schema.
pub const PROJECTION_EXTENSION: &str = "https://stac-extensions.github.io/projection/v1.1.0/schema.json";
/// Raster extension schema.
pub const RASTER_EXTENSION: &str = "https://stac-extensions.github.io/raster/v1.1.0/schema.json";
/// Table extension schema.
pub const TABLE_EXTENSION: &str = "https://stac-extensions.github.io/table/v1.2.0/schema.json";
/// File extension schema.
pub const FILE_EXTENSION: &str = "https://stac-extensions.github.io/file/v2.1.0/schema.json";
/// Media type of Cloud-Optimized GeoTIFFs.
pub const COG_MEDIA_TYPE: &str = "image/tiff; application=geotiff; profile=cloud-optimized";
/// Media type of (Geo)Parquet files.
pub const PARQUET_MEDIA_TYPE: &str = "application/vnd.apache.parquet";
/// File name of the collection in an output directory.
pub const COLLECTION_FILE: &str = "collection.json";

/// The collection an output directory forms.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StacOptions {
    /// Collection id (letters, digits, `-`, `_`, `.`).
    pub collection_id: String,
    /// What the collection holds.
    pub description: String,
    /// SPDX license id of the outputs, or `other`.
    #[serde(default = "default_license")]
    pub license: String,
}

fn default_license() -> String {
    "other".into()
}

impl StacOptions {
    /// Defaults for mask COGs.
    pub fn masks() -> Self {
        Self {
            collection_id: "terrastream-masks".into(),
            description: "Masks predicted by terrastream, one Cloud-Optimized GeoTIFF per scene.".into(),
            license: default_license(),
        }
    }

    /// Defaults for GeoParquet embeddings.
    pub fn embeddings() -> Self {
        Self {
            collection_id: "terrastream-embeddings".into(),
            description: "Chip embeddings computed by terrastream, one GeoParquet file per scene.".into(),
            license: default_license(),
        }
    }

    /// Checks the id.
    pub fn validate(&self) -> Result<()> {
        let ok = !self.collection_id.is_empty()
            && self.collection_id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            return Err(Error::Option { key: "stac.collection_id", reason: format!("{:?}: use letters, digits, - _ .", self.collection_id) });
        }
        Ok(())
    }
}

/// The projection of an output, for the projection extension.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    /// EPSG code.
    pub epsg: u32,
    /// Raster `[height, width]` in pixels; `None` for vector outputs.
    pub shape: Option<[usize; 2]>,
    /// Raster transform in GDAL order (CRS units); `None` for vector outputs.
    pub transform: Option<[f64; 6]>,
}

/// The columns of a tabular output, for the table extension.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// `(name, type)` of each column, in order; types as Arrow writes them.
    pub columns: Vec<(String, String)>,
    /// The primary geometry column.
    pub primary_geometry: String,
    /// Rows in the file.
    pub row_count: u64,
}

/// What is known about one committed output file.
#[derive(Debug, Clone)]
pub struct OutputFile {
    /// The committed file.
    pub path: PathBuf,
    /// The directory of the collection: the file's own directory or one above it (hive
    /// partitions); item links point there.
    pub collection_dir: PathBuf,
    /// Item id (unique in the collection): the file stem.
    pub id: String,
    /// Acquisition time of what the file describes (UTC).
    pub datetime: DateTime<Utc>,
    /// Footprint in longitude/latitude degrees.
    pub footprint: Footprint,
    /// Media type of the file ([`COG_MEDIA_TYPE`], [`PARQUET_MEDIA_TYPE`]).
    pub media_type: &'static str,
    /// Projection of the file's data.
    pub projection: Projection,
    /// `raster:bands` of a raster file (STAC raster extension objects).
    pub raster_bands: Option<Vec<Value>>,
    /// Columns and rows of a table file.
    pub table: Option<Table>,
    /// Further item properties (e.g. `terrastream:scene_id`).
    pub properties: Map<String, Value>,
}

/// Size in bytes and sha2-256 multihash (`1220` + hex digest) of a file.
pub fn file_checksum(path: &Path) -> Result<(u64, String)> {
    let io = |op, source| Error::Io { op, path: path.into(), source };
    let mut file = std::fs::File::open(path).map_err(|e| io("open", e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| io("read", e))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    let hex: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((size, format!("1220{hex}")))
}

/// The item of `out` in collection `opts`: geometry, bbox, datetime, projection, raster bands,
/// and one asset `data` with the file's size and checksum.
pub fn item(out: &OutputFile, opts: &StacOptions) -> Result<Value> {
    let (size, checksum) = file_checksum(&out.path)?;
    let name = out.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut asset = json!({
        "href": format!("./{name}"),
        "type": out.media_type,
        "roles": ["data"],
        "file:size": size,
        "file:checksum": checksum,
    });
    let mut extensions = vec![PROJECTION_EXTENSION, FILE_EXTENSION];
    if let Some(bands) = &out.raster_bands {
        asset["raster:bands"] = Value::Array(bands.clone());
        extensions.insert(1, RASTER_EXTENSION);
    }
    let mut properties = out.properties.clone();
    if let Some(t) = &out.table {
        let columns: Vec<Value> = t.columns.iter().map(|(name, ty)| json!({"name": name, "type": ty})).collect();
        properties.insert("table:columns".into(), Value::Array(columns));
        properties.insert("table:primary_geometry".into(), json!(t.primary_geometry));
        properties.insert("table:row_count".into(), json!(t.row_count));
        extensions.insert(1, TABLE_EXTENSION);
    }
    properties.insert("datetime".into(), json!(out.datetime.to_rfc3339_opts(SecondsFormat::Millis, true)));
    let p = &out.projection;
    properties.insert("proj:epsg".into(), json!(p.epsg));
    if let Some(shape) = p.shape {
        properties.insert("proj:shape".into(), json!(shape));
    }
    if let Some(t) = p.transform {
        // STAC (rasterio's Affine) order: a, b, c, d, e, f.
        properties.insert("proj:transform".into(), json!([t[1], t[2], t[0], t[4], t[5], t[3]]));
    }
    let ring: Vec<[f64; 2]> = out.footprint.ring.iter().map(|&(x, y)| [x, y]).collect();
    // From the item's directory up to the collection's.
    let depth = out.path.parent().and_then(|d| d.strip_prefix(&out.collection_dir).ok()).map_or(0, |r| r.components().count());
    let collection = format!("{}{COLLECTION_FILE}", if depth == 0 { "./".to_string() } else { "../".repeat(depth) });
    Ok(json!({
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": extensions,
        "id": out.id,
        "collection": opts.collection_id,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "bbox": out.footprint.bbox(),
        "properties": properties,
        "assets": {"data": asset},
        "links": [
            {"rel": "collection", "href": collection, "type": "application/json"},
            {"rel": "parent", "href": collection, "type": "application/json"},
            {"rel": "root", "href": collection, "type": "application/json"},
        ],
    }))
}

/// The path of the item of output `file`: same directory and stem, `.json`.
pub fn item_path(file: &Path) -> PathBuf {
    file.with_extension("json")
}

/// Writes `value` to `path` atomically (pretty-printed).
pub fn write_json(path: &Path, value: &Value) -> Result<PathBuf> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| Error::Json { path: path.into(), source })?;
    let (pending, mut file) = PendingFile::create(path)?;
    if let Err(source) = std::io::Write::write_all(&mut file, &bytes) {
        pending.abort();
        return Err(Error::Io { op: "write", path: path.into(), source });
    }
    pending.commit(file)
}

/// Writes the item of `out` next to it and returns the item's path.
pub fn write_item(out: &OutputFile, opts: &StacOptions) -> Result<PathBuf> {
    write_json(&item_path(&out.path), &item(out, opts)?)
}

/// The STAC items under `dir` (every `*.json` but the collection, in `dir` and its
/// non-hidden subdirectories), keyed by their path relative to `dir` with `/` separators.
fn find_items(dir: &Path, prefix: &str, items: &mut BTreeMap<String, Value>) -> Result<()> {
    let io = |op, path: &Path, source| Error::Io { op, path: path.into(), source };
    for entry in std::fs::read_dir(dir).map_err(|e| io("list", dir, e))? {
        let entry = entry.map_err(|e| io("list", dir, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if entry.file_type().map_err(|e| io("stat", &path, e))?.is_dir() {
            find_items(&path, &format!("{prefix}{name}/"), items)?;
            continue;
        }
        if !name.ends_with(".json") || (prefix.is_empty() && name == COLLECTION_FILE) {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|e| io("read", &path, e))?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|source| Error::Json { path: path.clone(), source })?;
        if value.get("type").and_then(Value::as_str) == Some("Feature") {
            items.insert(format!("{prefix}{name}"), value);
        }
    }
    Ok(())
}

/// Rebuilds `<dir>/collection.json` from the items in `dir` and its partition directories
/// (sorted by relative path) and returns its path.
pub fn write_collection(dir: &Path, opts: &StacOptions) -> Result<PathBuf> {
    let mut items = BTreeMap::new();
    find_items(dir, "", &mut items)?;
    let mut bbox = [f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY];
    let (mut start, mut end): (Option<String>, Option<String>) = (None, None);
    let mut links = vec![
        json!({"rel": "root", "href": format!("./{COLLECTION_FILE}"), "type": "application/json"}),
    ];
    for (name, item) in &items {
        if let Some(b) = item.get("bbox").and_then(Value::as_array) {
            let b: Vec<f64> = b.iter().filter_map(Value::as_f64).collect();
            if b.len() == 4 {
                bbox = [bbox[0].min(b[0]), bbox[1].min(b[1]), bbox[2].max(b[2]), bbox[3].max(b[3])];
            }
        }
        if let Some(dt) = item.pointer("/properties/datetime").and_then(Value::as_str) {
            // RFC 3339 UTC strings of one format sort chronologically.
            if start.as_deref().is_none_or(|s| dt < s) {
                start = Some(dt.to_string());
            }
            if end.as_deref().is_none_or(|e| dt > e) {
                end = Some(dt.to_string());
            }
        }
        links.push(json!({"rel": "item", "href": format!("./{name}"), "type": "application/geo+json"}));
    }
    let spatial = if bbox[0].is_finite() { vec![bbox.to_vec()] } else { vec![vec![-180.0, -90.0, 180.0, 90.0]] };
    let collection = json!({
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "stac_extensions": [],
        "id": opts.collection_id,
        "description": opts.description,
        "license": opts.license,
        "extent": {
            "spatial": {"bbox": spatial},
            "temporal": {"interval": [[start, end]]},
        },
        "links": links,
    });
    write_json(&dir.join(COLLECTION_FILE), &collection)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_a_sha256_multihash() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").expect("write");
        let (size, sum) = file_checksum(&p).expect("sum");
        assert_eq!(size, 3);
        // sha256("abc") from FIPS 180-2, appendix B.1.
        assert_eq!(sum, "1220ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn collection_lists_items_and_their_extent() {
        let dir = tempfile::tempdir().expect("tmp");
        let opts = StacOptions::masks();
        for (id, x, day) in [("b", 10.0, 2), ("a", 0.0, 1)] {
            let path = dir.path().join(format!("{id}.tif"));
            std::fs::write(&path, id).expect("write");
            let out = OutputFile {
                path,
                collection_dir: dir.path().to_path_buf(),
                id: id.into(),
                datetime: DateTime::parse_from_rfc3339(&format!("2020-02-0{day}T10:00:00Z")).expect("dt").to_utc(),
                footprint: Footprint { ring: vec![(x, 0.0), (x + 1.0, 0.0), (x + 1.0, 1.0), (x, 1.0), (x, 0.0)] },
                media_type: COG_MEDIA_TYPE,
                projection: Projection { epsg: 32629, shape: Some([2, 3]), transform: Some([100.0, 10.0, 0.0, 200.0, 0.0, -10.0]) },
                raster_bands: Some(vec![json!({"data_type": "uint8", "nodata": 255})]),
                table: None,
                properties: Map::new(),
            };
            let item_file = write_item(&out, &opts).expect("item");
            let item: Value = serde_json::from_slice(&std::fs::read(item_file).expect("read")).expect("json");
            assert_eq!(item["properties"]["proj:transform"], json!([10.0, 0.0, 100.0, 0.0, -10.0, 200.0]));
            assert_eq!(item["assets"]["data"]["file:size"], 1);
        }
        let c: Value = serde_json::from_slice(&std::fs::read(write_collection(dir.path(), &opts).expect("c")).expect("read")).expect("json");
        let hrefs: Vec<&str> = c["links"].as_array().expect("links").iter().filter(|l| l["rel"] == "item").filter_map(|l| l["href"].as_str()).collect();
        assert_eq!(hrefs, vec!["./a.json", "./b.json"]);
        assert_eq!(c["extent"]["spatial"]["bbox"][0], json!([0.0, 0.0, 11.0, 1.0]));
        assert_eq!(c["extent"]["temporal"]["interval"][0], json!(["2020-02-01T10:00:00.000Z", "2020-02-02T10:00:00.000Z"]));
    }

    #[test]
    fn items_in_partition_directories_link_up_to_the_collection() {
        let dir = tempfile::tempdir().expect("tmp");
        let opts = StacOptions::embeddings();
        let path = dir.path().join("grid_id=X/date=2020-02-19/u.parquet");
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, b"PAR1").expect("write");
        let out = OutputFile {
            path,
            collection_dir: dir.path().to_path_buf(),
            id: "X_2020-02-19_u".into(),
            datetime: DateTime::parse_from_rfc3339("2020-02-19T10:00:00Z").expect("dt").to_utc(),
            footprint: Footprint { ring: vec![(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 0.0)] },
            media_type: PARQUET_MEDIA_TYPE,
            projection: Projection { epsg: 4326, shape: None, transform: None },
            raster_bands: None,
            table: Some(Table { columns: vec![("geometry".into(), "Binary".into())], primary_geometry: "geometry".into(), row_count: 3 }),
            properties: Map::new(),
        };
        let item: Value = serde_json::from_slice(&std::fs::read(write_item(&out, &opts).expect("item")).expect("read")).expect("json");
        assert_eq!(item["links"][0]["href"], "../../collection.json");
        assert_eq!(item["properties"]["table:row_count"], 3);
        assert!(item["stac_extensions"].as_array().expect("ext").contains(&json!(TABLE_EXTENSION)));
        let c: Value = serde_json::from_slice(&std::fs::read(write_collection(dir.path(), &opts).expect("c")).expect("read")).expect("json");
        let hrefs: Vec<&str> = c["links"].as_array().expect("links").iter().filter(|l| l["rel"] == "item").filter_map(|l| l["href"].as_str()).collect();
        assert_eq!(hrefs, vec!["./grid_id=X/date=2020-02-19/u.json"]);
    }
}

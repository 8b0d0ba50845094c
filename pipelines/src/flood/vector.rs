//! Flood polygons as GeoParquet 1.1: one row per polygon (`id`, `pixels`, `area_m2`, `class`),
//! the geometry as WKB in EPSG:4326 with a `bbox` covering column, and the `geo` file metadata
//! of the sinks crate ([`terrastream_sinks::geoparquet::geo_metadata`]). Committed atomically.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use datafusion::arrow::array::{
    ArrayRef, BinaryArray, Float64Array, RecordBatch, StringArray, StructArray, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::metadata::KeyValue;
use datafusion::parquet::file::properties::WriterProperties;
use serde_json::Value;
use terrastream_ingest::schema::{BBOX, GEOMETRY};
use terrastream_sinks::commit::PendingFile;
use terrastream_sinks::geoparquet::{GeometryEncoding, geo_metadata};

/// WKB of a polygon from GeoJSON `coordinates` (rings of `[lon, lat]`), little-endian ISO WKB,
/// with its `[xmin, ymin, xmax, ymax]`.
pub fn polygon_wkb(coordinates: &Value) -> Option<(Vec<u8>, [f64; 4])> {
    let rings = coordinates.as_array()?;
    let mut wkb = Vec::with_capacity(9 + rings.len() * 64);
    wkb.push(1u8);
    wkb.extend_from_slice(&3u32.to_le_bytes());
    wkb.extend_from_slice(&(rings.len() as u32).to_le_bytes());
    let mut b = [f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY];
    for ring in rings {
        let points = ring.as_array()?;
        wkb.extend_from_slice(&(points.len() as u32).to_le_bytes());
        for p in points {
            let (x, y) = (p.get(0)?.as_f64()?, p.get(1)?.as_f64()?);
            b = [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)];
            wkb.extend_from_slice(&x.to_le_bytes());
            wkb.extend_from_slice(&y.to_le_bytes());
        }
    }
    Some((wkb, b))
}

/// Writes the polygon features of a GeoJSON FeatureCollection (from
/// [`super::polygons::to_geojson`]) to `path` as GeoParquet; returns the path and row count.
pub fn write_geoparquet(path: &Path, collection: &Value, class: &str) -> Result<(PathBuf, usize)> {
    let features = collection
        .get("features")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let (mut ids, mut pixels, mut areas, mut wkbs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut bboxes: [Vec<f64>; 4] = Default::default();
    let mut total = [f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY];
    for (i, f) in features.iter().enumerate() {
        let Some((wkb, b)) = f.pointer("/geometry/coordinates").and_then(polygon_wkb) else {
            bail!("{}: feature {i} is not a polygon", path.display())
        };
        let p = &f["properties"];
        ids.push(p["id"].as_u64().unwrap_or(i as u64));
        pixels.push(p["pixels"].as_u64().unwrap_or(0));
        areas.push(p["area_m2"].as_f64().unwrap_or(f64::NAN));
        wkbs.push(wkb);
        for k in 0..4 {
            bboxes[k].push(b[k]);
        }
        total = [
            total[0].min(b[0]),
            total[1].min(b[1]),
            total[2].max(b[2]),
            total[3].max(b[3]),
        ];
    }
    if features.is_empty() {
        total = [0.0; 4];
    }
    let bbox_fields: Fields = ["xmin", "ymin", "xmax", "ymax"]
        .iter()
        .map(|n| Arc::new(Field::new(*n, DataType::Float64, false)))
        .collect::<Vec<_>>()
        .into();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::UInt64, false),
        Field::new("class", DataType::Utf8, false),
        Field::new("pixels", DataType::UInt64, false),
        Field::new("area_m2", DataType::Float64, false),
        Field::new(GEOMETRY, DataType::Binary, false),
        Field::new(BBOX, DataType::Struct(bbox_fields.clone()), false),
    ]));
    let n = ids.len();
    let bbox_columns: Vec<ArrayRef> = bboxes
        .into_iter()
        .map(|v| Arc::new(Float64Array::from(v)) as ArrayRef)
        .collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from(ids)),
        Arc::new(StringArray::from(vec![class; n])),
        Arc::new(UInt64Array::from(pixels)),
        Arc::new(Float64Array::from(areas)),
        Arc::new(BinaryArray::from_iter_values(wkbs.iter())),
        Arc::new(StructArray::new(bbox_fields, bbox_columns, None)),
    ];
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns).with_context(|| format!("{}", path.display()))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let (pending, file) = PendingFile::create(path)?;
    let written = (|| -> Result<std::fs::File> {
        let mut writer = ArrowWriter::try_new(file, schema, Some(props))?;
        let geo = geo_metadata(total, GeometryEncoding::Wkb);
        writer.append_key_value_metadata(KeyValue::new("geo".to_string(), geo.to_string()));
        writer.write(&batch)?;
        Ok(writer.into_inner()?)
    })();
    match written {
        Ok(file) => Ok((pending.commit(file)?, n)),
        Err(e) => {
            pending.abort();
            Err(e.context(format!("write {}", path.display())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wkb_of_a_square() {
        let (wkb, b) = polygon_wkb(&json!([[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]])).expect("wkb");
        assert_eq!(wkb.len(), 1 + 4 + 4 + 4 + 5 * 16);
        assert_eq!(&wkb[..9], &[1, 3, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(b, [0.0, 0.0, 1.0, 1.0]);
        assert!(polygon_wkb(&json!([[[0, "x"]]])).is_none());
    }
}

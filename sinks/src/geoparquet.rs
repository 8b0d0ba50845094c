//! GeoParquet 1.1 embeddings sink: chip ids, footprints and embeddings, one file per scene.
//!
//! Pixel (tensor) columns are dropped; everything else is written as is, with zstd, row groups
//! sized for scans, the `geo` metadata (WKB footprint, PROJJSON CRS, bbox covering column) and
//! a deterministic file name per scene, so re-running a scene replaces its file. Files are
//! committed atomically; a scene that failed upstream leaves no file, and its chips are counted
//! as skipped in the ledger.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::{Array, Float64Array, RecordBatch, StringArray, StructArray};
use arrow_schema::{Schema, SchemaRef};
use futures::StreamExt;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use serde_json::json;
use terrastream_ingest::ChipLedger;
use terrastream_ingest::ChipStream;
use terrastream_ingest::schema::{BBOX, GEOMETRY, SCENE_ID, TENSOR_EXTENSION};
use tracing::{debug, info};

use crate::commit::PendingFile;
pub use crate::report::SinkReport;
use crate::{Error, Result};

/// Where and how to write embeddings.
#[derive(Debug, Clone)]
pub struct GeoParquetConfig {
    /// Output directory; files go to `<dir>/embeddings/<scene_id>.parquet`.
    pub dir: PathBuf,
    /// Rows per row group.
    pub row_group_rows: usize,
    /// Zstd level (1..=22).
    pub zstd_level: i32,
}

impl GeoParquetConfig {
    /// Defaults for `dir`: 8192-row groups (about 6 MB of 768-d embeddings), zstd level 3.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir, row_group_rows: 8192, zstd_level: 3 }
    }

    /// Validates the config and builds the sink.
    pub fn build(&self, ledger: Arc<ChipLedger>) -> Result<GeoParquetSink> {
        let level = ZstdLevel::try_new(self.zstd_level).map_err(|e| Error::Column {
            sink: "geoparquet",
            column: "-".into(),
            reason: format!("output.zstd_level: {e}"),
        })?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_max_row_group_row_count(Some(self.row_group_rows.max(1)))
            .build();
        Ok(GeoParquetSink { dir: self.dir.clone(), props, ledger })
    }
}

/// Writes chip batches to GeoParquet.
#[derive(Debug)]
pub struct GeoParquetSink {
    dir: PathBuf,
    props: WriterProperties,
    ledger: Arc<ChipLedger>,
}

/// The file of the scene being written.
struct SceneFile {
    scene: String,
    pending: PendingFile,
    writer: ArrowWriter<File>,
    bbox: [f64; 4],
    rows: u64,
}

impl GeoParquetSink {
    /// The path of a scene's file.
    pub fn path_for(&self, scene_id: &str) -> PathBuf {
        self.dir.join("embeddings").join(format!("{}.parquet", crate::commit::safe_file_stem(scene_id)))
    }

    /// Consumes `input` until it ends, committing one file per scene.
    pub async fn run(self, mut input: ChipStream) -> Result<SinkReport> {
        let in_schema = input.schema();
        let (schema, keep) = output_schema(&in_schema)?;
        let mut report = SinkReport::default();
        let mut current: Option<SceneFile> = None;
        while let Some(batch) = input.next().await {
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    if let Some(f) = current.take() {
                        f.pending.abort();
                    }
                    return Err(e.into());
                }
            };
            let batch = batch.project(&keep)?;
            let batch = RecordBatch::try_new(Arc::clone(&schema), batch.columns().to_vec())?;
            let scene = scene_of(&batch)?;
            if current.as_ref().is_some_and(|f| f.scene != scene) {
                if let Some(f) = current.take() {
                    self.finish(f, &mut report).await?;
                }
            }
            let file = match current.take() {
                Some(f) => f,
                None => self.start(&scene, &schema)?,
            };
            current = Some(write(file, batch).await?);
        }
        if let Some(f) = current.take() {
            self.finish(f, &mut report).await?;
        }
        Ok(report)
    }

    fn start(&self, scene: &str, schema: &SchemaRef) -> Result<SceneFile> {
        let target = self.path_for(scene);
        let (pending, file) = PendingFile::create(&target)?;
        let writer = ArrowWriter::try_new(file, Arc::clone(schema), Some(self.props.clone()))
            .map_err(|source| Error::Parquet { path: target.clone(), source })?;
        debug!(scene, path = %target.display(), "writing");
        Ok(SceneFile {
            scene: scene.to_string(),
            pending,
            writer,
            bbox: [f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY],
            rows: 0,
        })
    }

    async fn finish(&self, f: SceneFile, report: &mut SinkReport) -> Result<()> {
        if self.ledger.scene_failed(&f.scene) {
            // The scene failed after some chips were read: its partial file must not appear.
            self.ledger.add_skipped("scene failed after a partial read", f.rows);
            f.pending.abort();
            return Ok(());
        }
        let (scene, rows) = (f.scene.clone(), f.rows);
        let path = tokio::task::spawn_blocking(move || -> Result<PathBuf> {
            let SceneFile { pending, mut writer, bbox, .. } = f;
            let target = pending.target().to_path_buf();
            let perr = |source| Error::Parquet { path: target.clone(), source };
            writer.append_key_value_metadata(KeyValue::new("geo".to_string(), geo_metadata(bbox).to_string()));
            let file = writer.into_inner().map_err(perr)?;
            pending.commit(file)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))??;
        info!(scene, rows, path = %path.display(), "committed");
        self.ledger.add_written(rows);
        report.rows += rows;
        report.files.push(path);
        Ok(())
    }
}

async fn write(mut f: SceneFile, batch: RecordBatch) -> Result<SceneFile> {
    extend_bbox(&mut f.bbox, &batch)?;
    f.rows += batch.num_rows() as u64;
    tokio::task::spawn_blocking(move || {
        let target = f.pending.target().to_path_buf();
        f.writer.write(&batch).map_err(|source| Error::Parquet { path: target, source })?;
        Ok(f)
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))?
}

/// The input schema without tensor columns, and the indices of the kept columns.
fn output_schema(input: &Schema) -> Result<(SchemaRef, Vec<usize>)> {
    for column in [SCENE_ID, GEOMETRY, BBOX] {
        if input.field_with_name(column).is_err() {
            return Err(Error::Column { sink: "geoparquet", column: column.into(), reason: "missing".into() });
        }
    }
    let keep: Vec<usize> = input
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| f.metadata().get("ARROW:extension:name").map(String::as_str) != Some(TENSOR_EXTENSION))
        .map(|(i, _)| i)
        .collect();
    let fields: Vec<_> = keep.iter().map(|&i| input.field(i).clone()).collect();
    Ok((Arc::new(Schema::new_with_metadata(fields, input.metadata().clone())), keep))
}

fn scene_of(batch: &RecordBatch) -> Result<String> {
    let col = batch
        .column_by_name(SCENE_ID)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| Error::Column { sink: "geoparquet", column: SCENE_ID.into(), reason: "not Utf8".into() })?;
    let first = col.value(0);
    if col.iter().any(|v| v != Some(first)) {
        return Err(Error::Column { sink: "geoparquet", column: SCENE_ID.into(), reason: "a batch mixes scenes".into() });
    }
    Ok(first.to_string())
}

fn extend_bbox(b: &mut [f64; 4], batch: &RecordBatch) -> Result<()> {
    let err = || Error::Column { sink: "geoparquet", column: BBOX.into(), reason: "not a struct of four Float64".into() };
    let s = batch.column_by_name(BBOX).and_then(|c| c.as_any().downcast_ref::<StructArray>()).ok_or_else(err)?;
    let col = |i: usize| s.column(i).as_any().downcast_ref::<Float64Array>().cloned().ok_or_else(err);
    let (xmin, ymin, xmax, ymax) = (col(0)?, col(1)?, col(2)?, col(3)?);
    for i in 0..s.len() {
        b[0] = b[0].min(xmin.value(i));
        b[1] = b[1].min(ymin.value(i));
        b[2] = b[2].max(xmax.value(i));
        b[3] = b[3].max(ymax.value(i));
    }
    Ok(())
}

/// The GeoParquet 1.1 `geo` file metadata.
pub fn geo_metadata(bbox: [f64; 4]) -> serde_json::Value {
    json!({
        "version": "1.1.0",
        "primary_column": GEOMETRY,
        "columns": {
            GEOMETRY: {
                "encoding": "WKB",
                "geometry_types": ["Polygon"],
                "crs": crate::crs::epsg_4326(),
                "orientation": "counterclockwise",
                "edges": "planar",
                "bbox": bbox,
                "covering": {"bbox": {
                    "xmin": [BBOX, "xmin"], "ymin": [BBOX, "ymin"],
                    "xmax": [BBOX, "xmax"], "ymax": [BBOX, "ymax"]
                }}
            }
        }
    })
}

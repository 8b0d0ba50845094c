//! The GeoParquet sink at run time: chip batches in, one committed file per work unit and
//! partition out, each with a STAC item.
//!
//! Rows are sorted by `(grid_id, datetime, chip_row, chip_col)` within a file. Batches are
//! sorted as they arrive and streamed to the file while they stay in order (the source emits
//! chips in that order, so memory stays flat); a file that received rows out of order is
//! read back and rewritten sorted before its commit (in memory: one work unit's rows).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BinaryArray, Float64Array, RecordBatch, StringArray, StructArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use chrono::{DateTime, SecondsFormat};
use futures::StreamExt;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use serde_json::{Map, json};
use terrastream_ingest::geo::Footprint;
use terrastream_ingest::schema::{BBOX, DATETIME, EMBEDDING, GEOMETRY, GRID_ID, SCENE_ID, TENSOR_EXTENSION};
use terrastream_ingest::{ChipLedger, ChipStream};
use tracing::{debug, info, warn};

use super::config::{EmbeddingEncoding, GeoParquetConfig, GeometryEncoding, Partitioning};
use super::geometry::{Rings, convex_hull, geoarrow_column, geoarrow_field, parse_column};
use super::metadata::geo_metadata;
use super::partition::{self, SortKey};
use super::quantize::{self, ENCODING_KEY, PATCH_EMBEDDINGS};
use crate::commit::{PendingFile, safe_file_stem};
use crate::report::SinkReport;
use crate::stac::{self, OutputFile, PARQUET_MEDIA_TYPE, Projection, Table};
use crate::{Error, Result};

/// Writes chip batches to GeoParquet.
#[derive(Debug)]
pub struct GeoParquetSink {
    cfg: GeoParquetConfig,
    props: WriterProperties,
    ledger: Arc<ChipLedger>,
}

/// How input columns become output columns.
#[derive(Debug)]
struct Plan {
    /// Input columns kept (all but pixel tensors).
    keep: Vec<usize>,
    /// The kept input columns' schema.
    kept: SchemaRef,
    /// The output schema.
    schema: SchemaRef,
    embedding_encoding: EmbeddingEncoding,
    geometry_encoding: GeometryEncoding,
}

/// A file being written.
struct OpenFile {
    /// Its partition directory, relative to `<dir>/embeddings`.
    partition: PathBuf,
    pending: PendingFile,
    writer: ArrowWriter<File>,
    bbox: [f64; 4],
    /// Convex hull (or, while degenerate, all vertices) of the footprints written.
    hull: Vec<(f64, f64)>,
    rows: u64,
    last_key: Option<SortKey>,
    sorted: bool,
    scenes: BTreeSet<String>,
    grid_ids: BTreeSet<String>,
    /// First and last acquisition time, µs since the epoch (UTC).
    time: Option<(i64, i64)>,
}

fn task_err(e: tokio::task::JoinError) -> Error {
    Error::Task(e.to_string())
}

impl GeoParquetSink {
    pub(super) fn new(cfg: GeoParquetConfig, props: WriterProperties, ledger: Arc<ChipLedger>) -> Self {
        Self { cfg, props, ledger }
    }

    /// The directory of the files, their items and the collection: `<dir>/embeddings`.
    pub fn out_dir(&self) -> PathBuf {
        self.cfg.dir.join("embeddings")
    }

    /// The path of an unpartitioned scene's file: `<dir>/embeddings/<scene_id>.parquet`
    /// (characters other than letters, digits, `-`, `_`, `.` replaced by `_`).
    pub fn path_for(&self, scene_id: &str) -> PathBuf {
        self.out_dir().join(format!("{}.parquet", safe_file_stem(scene_id)))
    }

    /// Consumes `input` until it ends, committing one file per work unit and partition (a
    /// scene's chips must be consecutive), then rebuilds the STAC collection. A work unit with
    /// a scene that failed upstream (in the ledger) leaves no file and its chips are counted
    /// as skipped; an upstream error stops the run and leaves no partial file.
    pub async fn run(self, mut input: ChipStream) -> Result<SinkReport> {
        let plan = Arc::new(plan(&input.schema(), &self.cfg)?);
        let mut report = SinkReport::default();
        let mut open: BTreeMap<PathBuf, OpenFile> = BTreeMap::new();
        let mut unit_scenes: BTreeSet<String> = BTreeSet::new();
        let mut current_scene: Option<String> = None;
        while let Some(batch) = input.next().await {
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    open.into_values().for_each(|f| f.pending.abort());
                    return Err(e.into());
                }
            };
            if batch.num_rows() == 0 {
                continue;
            }
            let batch = RecordBatch::try_new(Arc::clone(&plan.kept), batch.project(&plan.keep)?.columns().to_vec())?;
            let scene = scene_of(&batch)?;
            if self.cfg.work_unit.is_none() && current_scene.as_ref().is_some_and(|s| *s != scene) {
                self.finish_unit(
                    std::mem::take(&mut open),
                    &std::mem::take(&mut unit_scenes),
                    &plan.schema,
                    &mut report,
                )
                .await?;
            }
            current_scene = Some(scene.clone());
            unit_scenes.insert(scene.clone());
            let parts = match self.cfg.partitioning {
                Partitioning::None => vec![(PathBuf::new(), batch)],
                Partitioning::GridDate => partition::split(&batch)?,
            };
            for (dir, part) in parts {
                let file = match open.remove(&dir) {
                    Some(f) => f,
                    None => self.start(&dir, &scene, &plan.schema)?,
                };
                let plan = Arc::clone(&plan);
                let file = tokio::task::spawn_blocking(move || append(file, part, &plan)).await.map_err(task_err)??;
                open.insert(dir, file);
            }
        }
        self.finish_unit(open, &unit_scenes, &plan.schema, &mut report).await?;
        if !report.files.is_empty() {
            let (dir, opts) = (self.out_dir(), self.cfg.stac.clone());
            let collection =
                tokio::task::spawn_blocking(move || stac::write_collection(&dir, &opts)).await.map_err(task_err)??;
            report.collection = Some(collection);
        }
        Ok(report)
    }

    fn start(&self, partition: &Path, scene: &str, schema: &SchemaRef) -> Result<OpenFile> {
        let stem = safe_file_stem(self.cfg.work_unit.as_deref().unwrap_or(scene));
        let target = self.out_dir().join(partition).join(format!("{stem}.parquet"));
        let (pending, file) = PendingFile::create(&target)?;
        let writer = ArrowWriter::try_new(file, Arc::clone(schema), Some(props_for(&self.props, schema)))
            .map_err(|source| Error::Parquet { path: target.clone(), source })?;
        debug!(scene, path = %target.display(), "writing");
        Ok(OpenFile {
            partition: partition.to_path_buf(),
            pending,
            writer,
            bbox: [f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY],
            hull: Vec::new(),
            rows: 0,
            last_key: None,
            sorted: true,
            scenes: BTreeSet::new(),
            grid_ids: BTreeSet::new(),
            time: None,
        })
    }

    /// Commits the files of one work unit, or drops them all if one of its scenes failed.
    async fn finish_unit(
        &self,
        files: BTreeMap<PathBuf, OpenFile>,
        scenes: &BTreeSet<String>,
        schema: &SchemaRef,
        report: &mut SinkReport,
    ) -> Result<()> {
        if let Some(failed) = scenes.iter().find(|s| self.ledger.scene_failed(s)) {
            // A scene failed after some chips were read: none of its work unit may appear.
            let rows: u64 = files.values().map(|f| f.rows).sum();
            warn!(scene = failed, rows, "scene failed upstream: its work unit is not written");
            self.ledger.add_skipped("scene failed after a partial read", rows);
            files.into_values().for_each(|f| f.pending.abort());
            return Ok(());
        }
        let mut files = files.into_values();
        while let Some(f) = files.next() {
            let rows = f.rows;
            let (props, schema) = (self.props.clone(), Arc::clone(schema));
            let ctx = CommitContext {
                collection_dir: self.out_dir(),
                work_unit: self.cfg.work_unit.clone(),
                encoding: self.cfg.embedding_encoding,
                geometry: self.cfg.geometry_encoding,
                stac: self.cfg.stac.clone(),
            };
            let done = tokio::task::spawn_blocking(move || commit(f, &schema, props, &ctx)).await.map_err(task_err)?;
            let (path, item) = match done {
                Ok(d) => d,
                Err(e) => {
                    files.for_each(|f| f.pending.abort());
                    return Err(e);
                }
            };
            info!(rows, path = %path.display(), "committed");
            self.ledger.add_written(rows);
            report.rows += rows;
            report.files.push(path);
            report.stac_items.push(item);
        }
        Ok(())
    }
}

/// The output schema of `input` and which input columns it keeps.
fn plan(input: &Schema, cfg: &GeoParquetConfig) -> Result<Plan> {
    let (embedding_encoding, geometry_encoding) = (cfg.embedding_encoding, cfg.geometry_encoding);
    let missing = |column: &str| Error::Column { sink: "geoparquet", column: column.into(), reason: "missing".into() };
    for column in [SCENE_ID, GEOMETRY, BBOX, DATETIME] {
        input.field_with_name(column).map_err(|_| missing(column))?;
    }
    let geometry = input.field_with_name(GEOMETRY).map_err(|_| missing(GEOMETRY))?;
    if geometry.data_type() != &DataType::Binary {
        return Err(Error::Column {
            sink: "geoparquet",
            column: GEOMETRY.into(),
            reason: format!("expected WKB (Binary), found {}", geometry.data_type()),
        });
    }
    let keep: Vec<usize> = input
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| {
            f.metadata().get("ARROW:extension:name").map(String::as_str) != Some(TENSOR_EXTENSION)
                || cfg.keep_tensors.contains(f.name())
        })
        .map(|(i, _)| i)
        .collect();
    let kept: Vec<Field> = keep.iter().map(|&i| input.field(i).clone()).collect();
    let mut fields = Vec::with_capacity(kept.len() + 2);
    for f in &kept {
        match f.name().as_str() {
            EMBEDDING | PATCH_EMBEDDINGS => fields.extend(quantize::encoded_fields(f, embedding_encoding)?),
            GEOMETRY if geometry_encoding == GeometryEncoding::Geoarrow => {
                fields.push(geoarrow_field(GEOMETRY, f.is_nullable(), &crate::crs::epsg_4326()));
            }
            _ => fields.push(f.clone()),
        }
    }
    let mut metadata = input.metadata().clone();
    metadata.insert(ENCODING_KEY.into(), embedding_encoding.name().into());
    Ok(Plan {
        keep,
        kept: Arc::new(Schema::new_with_metadata(kept, input.metadata().clone())),
        schema: Arc::new(Schema::new_with_metadata(fields, metadata)),
        embedding_encoding,
        geometry_encoding,
    })
}

impl Plan {
    /// The output columns of (kept) input batch `batch`, whose footprints are `polygons`.
    fn encode(&self, batch: &RecordBatch, polygons: &[Option<Rings>]) -> Result<RecordBatch> {
        let schema = batch.schema();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for (f, column) in schema.fields().iter().zip(batch.columns()) {
            match f.name().as_str() {
                EMBEDDING | PATCH_EMBEDDINGS => columns.extend(quantize::encode(f, column, self.embedding_encoding)?),
                GEOMETRY if self.geometry_encoding == GeometryEncoding::Geoarrow => {
                    columns.push(geoarrow_column(polygons, self.schema.field_with_name(GEOMETRY)?)?);
                }
                _ => columns.push(Arc::clone(column)),
            }
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

/// Sorts `part`, records what the file's metadata and STAC item need, encodes and writes it.
fn append(mut f: OpenFile, part: RecordBatch, plan: &Plan) -> Result<OpenFile> {
    let (part, range) = partition::sort(part)?;
    let Some((first, last)) = range else { return Ok(f) };
    if f.last_key.as_ref().is_some_and(|k| *k > first) {
        f.sorted = false;
    }
    if f.last_key.as_ref().is_none_or(|k| *k < last) {
        f.last_key = Some(last);
    }
    extend_bbox(&mut f.bbox, &part)?;
    let wkb = part
        .column_by_name(GEOMETRY)
        .and_then(|c| c.as_any().downcast_ref::<BinaryArray>())
        .ok_or_else(|| Error::Column { sink: "geoparquet", column: GEOMETRY.into(), reason: "not Binary".into() })?;
    let polygons = parse_column(wkb)?;
    let mut points = std::mem::take(&mut f.hull);
    points.extend(polygons.iter().flatten().filter_map(|rings| rings.first()).flatten());
    f.hull = convex_hull(&points).unwrap_or(points);
    if let Some(t) = part.column_by_name(DATETIME).and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
    {
        for v in t.iter().flatten() {
            f.time = Some(f.time.map_or((v, v), |(a, b)| (a.min(v), b.max(v))));
        }
    }
    if let Some(g) = part.column_by_name(GRID_ID).and_then(|c| c.as_any().downcast_ref::<StringArray>()) {
        // Sorted rows: one comparison per run of equal ids.
        let mut last: Option<&str> = None;
        for v in g.iter().flatten() {
            if last != Some(v) {
                f.grid_ids.insert(v.to_string());
                last = Some(v);
            }
        }
    }
    f.scenes.insert(scene_of(&part)?);
    let out = plan.encode(&part, &polygons)?;
    f.rows += out.num_rows() as u64;
    f.writer.write(&out).map_err(|source| Error::Parquet { path: f.pending.target().to_path_buf(), source })?;
    Ok(f)
}

/// What committing a file needs besides the file.
struct CommitContext {
    collection_dir: PathBuf,
    work_unit: Option<String>,
    encoding: EmbeddingEncoding,
    geometry: GeometryEncoding,
    stac: stac::StacOptions,
}

/// Finishes `f` (re-sorting it if rows came out of order), commits it and writes its STAC
/// item; returns both paths.
fn commit(f: OpenFile, schema: &SchemaRef, props: WriterProperties, ctx: &CommitContext) -> Result<(PathBuf, PathBuf)> {
    let OpenFile { partition, pending, writer, bbox, hull, rows, sorted, scenes, grid_ids, time, .. } = f;
    let target = pending.target().to_path_buf();
    let perr = |source| Error::Parquet { path: target.clone(), source };
    let mut writer = if sorted {
        writer
    } else {
        debug!(path = %target.display(), "rows arrived out of order: rewriting sorted");
        let file = writer.into_inner().map_err(perr)?;
        resort(file, pending.tmp(), schema, props).map_err(perr)?
    };
    writer.append_key_value_metadata(KeyValue::new("geo".to_string(), geo_metadata(bbox, ctx.geometry).to_string()));
    writer.append_key_value_metadata(KeyValue::new(ENCODING_KEY.to_string(), ctx.encoding.name().to_string()));
    let file = match writer.into_inner() {
        Ok(file) => file,
        Err(source) => {
            pending.abort();
            return Err(perr(source));
        }
    };
    let path = pending.commit(file)?;

    let id_parts: Vec<String> = partition
        .components()
        .map(|c| c.as_os_str().to_string_lossy().split_once('=').map_or_else(String::new, |(_, v)| v.to_string()))
        .collect();
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let id = id_parts.into_iter().chain([stem]).collect::<Vec<_>>().join("_");
    let (start, end) = time.unwrap_or((0, 0));
    let when = |us: i64| DateTime::from_timestamp_micros(us).unwrap_or_default();
    let mut properties = Map::new();
    if start != end {
        properties.insert("start_datetime".into(), json!(when(start).to_rfc3339_opts(SecondsFormat::Millis, true)));
        properties.insert("end_datetime".into(), json!(when(end).to_rfc3339_opts(SecondsFormat::Millis, true)));
    }
    if let Some(unit) = &ctx.work_unit {
        properties.insert("terrastream:work_unit".into(), json!(unit));
    }
    properties.insert("terrastream:scene_ids".into(), json!(scenes));
    if grid_ids.len() == 1 {
        properties.insert("terrastream:grid_id".into(), json!(grid_ids.first()));
    }
    properties.insert("terrastream:embedding_encoding".into(), json!(ctx.encoding.name()));
    let ring = if hull.len() >= 4 {
        hull
    } else {
        vec![(bbox[0], bbox[1]), (bbox[2], bbox[1]), (bbox[2], bbox[3]), (bbox[0], bbox[3]), (bbox[0], bbox[1])]
    };
    let out = OutputFile {
        path: path.clone(),
        collection_dir: ctx.collection_dir.clone(),
        id,
        datetime: when(start),
        footprint: Footprint { ring },
        media_type: PARQUET_MEDIA_TYPE,
        projection: Projection { epsg: 4326, shape: None, transform: None },
        raster_bands: None,
        table: Some(Table {
            columns: schema.fields().iter().map(|f| (f.name().clone(), f.data_type().to_string())).collect(),
            primary_geometry: GEOMETRY.into(),
            row_count: rows,
        }),
        properties,
    };
    let item = stac::write_item(&out, &ctx.stac)?;
    Ok((path, item))
}

/// `props` for files of `schema`: float embeddings without dictionaries. Their values rarely
/// repeat, so a dictionary only fills up and falls back to PLAIN a page later, and PLAIN pages
/// are what `terrastream sql` reads embeddings from directly (`sql::late`).
fn props_for(props: &WriterProperties, schema: &SchemaRef) -> WriterProperties {
    let mut builder = props.clone().into_builder();
    for field in schema.fields() {
        if let DataType::FixedSizeList(item, _) = field.data_type()
            && matches!(item.data_type(), DataType::Float32 | DataType::Float64)
        {
            let path = vec![field.name().clone(), "list".to_string(), item.name().clone()];
            builder = builder.set_column_dictionary_enabled(parquet::schema::types::ColumnPath::new(path), false);
        }
    }
    builder.build()
}

/// Reads the finished temporary file `tmp` back, sorts its rows and rewrites `file` (the same
/// file) with them; returns the writer, footer not yet written.
fn resort(
    mut file: File,
    tmp: &Path,
    schema: &SchemaRef,
    props: WriterProperties,
) -> parquet::errors::Result<ArrowWriter<File>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(tmp)?)?.build()?;
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
    let read_schema = batches.first().map_or_else(|| Arc::clone(schema), RecordBatch::schema);
    let all = arrow_select::concat::concat_batches(&read_schema, &batches)?;
    let (all, _) = partition::sort(all).map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))?;
    let all = RecordBatch::try_new(Arc::clone(schema), all.columns().to_vec())?;
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    let mut writer = ArrowWriter::try_new(file, Arc::clone(schema), Some(props_for(&props, schema)))?;
    writer.write(&all)?;
    Ok(writer)
}

fn scene_of(batch: &RecordBatch) -> Result<String> {
    let col = batch
        .column_by_name(SCENE_ID)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| Error::Column { sink: "geoparquet", column: SCENE_ID.into(), reason: "not Utf8".into() })?;
    if col.null_count() > 0 {
        return Err(Error::Column { sink: "geoparquet", column: SCENE_ID.into(), reason: "null".into() });
    }
    let first = col.value(0);
    if col.iter().any(|v| v != Some(first)) {
        return Err(Error::Column {
            sink: "geoparquet",
            column: SCENE_ID.into(),
            reason: "a batch mixes scenes".into(),
        });
    }
    Ok(first.to_string())
}

fn extend_bbox(b: &mut [f64; 4], batch: &RecordBatch) -> Result<()> {
    let err =
        || Error::Column { sink: "geoparquet", column: BBOX.into(), reason: "not a struct of four Float64".into() };
    let s = batch.column_by_name(BBOX).and_then(|c| c.as_any().downcast_ref::<StructArray>()).ok_or_else(err)?;
    if s.num_columns() != 4 {
        return Err(err());
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::builder::BinaryBuilder;
    use arrow_array::{FixedSizeListArray, Float32Array, Int8Array, Int32Array};
    use arrow_schema::TimeUnit;
    use terrastream_ingest::ChipStreamAdapter;
    use terrastream_ingest::schema::{CHIP_COL, CHIP_ROW, bbox_fields, embedding_field};

    const DAY: i64 = 86_400_000_000;
    const T0: i64 = 1_582_110_000_000_000; // 2020-02-19T11:00:00Z

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(SCENE_ID, DataType::Utf8, false),
            Field::new(DATETIME, DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
            Field::new(GRID_ID, DataType::Utf8, true),
            Field::new(CHIP_ROW, DataType::Int32, false),
            Field::new(CHIP_COL, DataType::Int32, false),
            Field::new(GEOMETRY, DataType::Binary, false),
            Field::new(BBOX, DataType::Struct(bbox_fields()), false),
            embedding_field(4),
        ]))
    }

    /// Chips `(row, col)` of `scene` at `t`, unit squares at `(col, row)`.
    fn batch(scene: &str, t: i64, chips: &[(i32, i32)]) -> RecordBatch {
        let n = chips.len();
        let mut wkb = BinaryBuilder::new();
        let mut bbox: [Vec<f64>; 4] = Default::default();
        for &(r, c) in chips {
            let (x, y) = (f64::from(c), f64::from(r));
            let mut b = vec![1u8];
            b.extend(3u32.to_le_bytes());
            b.extend(1u32.to_le_bytes());
            b.extend(5u32.to_le_bytes());
            for (px, py) in [(x, y), (x + 1.0, y), (x + 1.0, y + 1.0), (x, y + 1.0), (x, y)] {
                b.extend(px.to_le_bytes());
                b.extend(py.to_le_bytes());
            }
            wkb.append_value(b);
            for (k, v) in [x, y, x + 1.0, y + 1.0].into_iter().enumerate() {
                bbox[k].push(v);
            }
        }
        let values: Vec<f32> = chips.iter().flat_map(|&(r, c)| [r as f32, c as f32, -1.5, 0.25]).collect();
        let DataType::FixedSizeList(item, len) = embedding_field(4).data_type().clone() else { unreachable!() };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![scene; n])),
            Arc::new(TimestampMicrosecondArray::from(vec![t; n]).with_timezone("UTC")),
            Arc::new(StringArray::from(vec![Some("MGRS-29RKH"); n])),
            Arc::new(Int32Array::from(chips.iter().map(|c| c.0).collect::<Vec<_>>())),
            Arc::new(Int32Array::from(chips.iter().map(|c| c.1).collect::<Vec<_>>())),
            Arc::new(wkb.finish()),
            Arc::new(
                StructArray::try_new(
                    bbox_fields(),
                    bbox.into_iter().map(|v| Arc::new(Float64Array::from(v)) as ArrayRef).collect(),
                    None,
                )
                .expect("bbox"),
            ),
            Arc::new(
                FixedSizeListArray::try_new(item, len, Arc::new(Float32Array::from(values)), None).expect("embedding"),
            ),
        ];
        RecordBatch::try_new(schema(), columns).expect("batch")
    }

    fn run(cfg: &GeoParquetConfig, ledger: Arc<ChipLedger>, batches: Vec<RecordBatch>) -> Result<SinkReport> {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().expect("rt");
        let stream = futures::stream::iter(batches.into_iter().map(Ok)).boxed();
        rt.block_on(cfg.build(ledger)?.run(ChipStreamAdapter::new(schema(), stream).boxed()))
    }

    fn read(path: &Path) -> (RecordBatch, std::collections::HashMap<String, String>) {
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).expect("open")).expect("reader");
        let kv = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .map(|kv| kv.iter().map(|k| (k.key.clone(), k.value.clone().unwrap_or_default())).collect())
            .unwrap_or_default();
        let batches: Vec<RecordBatch> =
            builder.build().expect("build").collect::<std::result::Result<_, _>>().expect("read");
        (arrow_select::concat::concat_batches(&batches[0].schema(), &batches).expect("concat"), kv)
    }

    fn files_under(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("ls").map(|e| e.expect("entry")) {
                if e.file_type().expect("type").is_dir() {
                    stack.push(e.path());
                } else {
                    out.push(e.path().strip_prefix(dir).expect("rel").display().to_string());
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn a_named_unit_is_partitioned_sorted_quantised_and_replaced_on_rerun() {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut cfg = GeoParquetConfig::new(tmp.path().to_path_buf());
        cfg.partitioning = Partitioning::GridDate;
        cfg.work_unit = Some("29RKH_2020-02".into());
        cfg.embedding_encoding = EmbeddingEncoding::Int8;
        cfg.geometry_encoding = GeometryEncoding::Geoarrow;
        cfg.row_group_rows = 2;
        // The later scene of the same day comes first, and rows arrive out of order.
        let batches = || {
            vec![
                batch("S2B_late", T0 + 3_600_000_000, &[(1, 0), (0, 1)]),
                batch("S2A_early", T0, &[(1, 1), (0, 0)]),
                batch("S2A_early", T0, &[(0, 2)]),
                batch("S2A_next", T0 + 5 * DAY, &[(0, 0)]),
            ]
        };
        for _ in 0..2 {
            let report = run(&cfg, Arc::new(ChipLedger::default()), batches()).expect("run");
            assert_eq!(report.rows, 6);
            assert_eq!(report.files.len(), 2);
        }
        let out = tmp.path().join("embeddings");
        assert_eq!(
            files_under(&out),
            vec![
                "collection.json",
                "grid_id=MGRS-29RKH/date=2020-02-19/29RKH_2020-02.json",
                "grid_id=MGRS-29RKH/date=2020-02-19/29RKH_2020-02.parquet",
                "grid_id=MGRS-29RKH/date=2020-02-24/29RKH_2020-02.json",
                "grid_id=MGRS-29RKH/date=2020-02-24/29RKH_2020-02.parquet",
            ]
        );
        let (b, kv) = read(&out.join("grid_id=MGRS-29RKH/date=2020-02-19/29RKH_2020-02.parquet"));
        let key = |i: usize| {
            let t = b
                .column_by_name(DATETIME)
                .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
                .expect("t")
                .value(i);
            let r =
                b.column_by_name(CHIP_ROW).and_then(|c| c.as_any().downcast_ref::<Int32Array>()).expect("row").value(i);
            let c =
                b.column_by_name(CHIP_COL).and_then(|c| c.as_any().downcast_ref::<Int32Array>()).expect("col").value(i);
            (t, r, c)
        };
        let keys: Vec<_> = (0..b.num_rows()).map(key).collect();
        let late = T0 + 3_600_000_000;
        assert_eq!(keys, vec![(T0, 0, 0), (T0, 0, 2), (T0, 1, 1), (late, 0, 1), (late, 1, 0)]);
        assert_eq!(kv.get(ENCODING_KEY).map(String::as_str), Some("int8"));
        let geo: serde_json::Value = serde_json::from_str(&kv["geo"]).expect("geo");
        assert_eq!(geo["columns"]["geometry"]["encoding"], "polygon");
        assert_eq!(geo["columns"]["geometry"]["bbox"], json!([0.0, 0.0, 3.0, 2.0]));
        // Int8 values and scales: x ≈ q * scale within scale / 2; the rows' own values.
        let q = b.column_by_name(EMBEDDING).and_then(|c| c.as_any().downcast_ref::<FixedSizeListArray>()).expect("q");
        let q = q.values().as_any().downcast_ref::<Int8Array>().expect("int8");
        let s =
            b.column_by_name("embedding_scale").and_then(|c| c.as_any().downcast_ref::<Float32Array>()).expect("scale");
        for (i, (_, r, c)) in keys.iter().enumerate() {
            for (k, x) in [*r as f32, *c as f32, -1.5, 0.25].into_iter().enumerate() {
                let back = f32::from(q.value(i * 4 + k)) * s.value(i);
                assert!((back - x).abs() <= s.value(i) / 2.0 + 1e-6, "row {i} item {k}: {x} vs {back}");
            }
        }
        let item: serde_json::Value = serde_json::from_slice(
            &std::fs::read(out.join("grid_id=MGRS-29RKH/date=2020-02-19/29RKH_2020-02.json")).expect("item"),
        )
        .expect("json");
        assert_eq!(item["id"], "MGRS-29RKH_2020-02-19_29RKH_2020-02");
        assert_eq!(item["properties"]["table:row_count"], 5);
        assert_eq!(item["properties"]["terrastream:scene_ids"], json!(["S2A_early", "S2B_late"]));
        assert_eq!(item["properties"]["start_datetime"], "2020-02-19T11:00:00.000Z");
        assert_eq!(item["bbox"], json!([0.0, 0.0, 3.0, 2.0]));
    }

    #[test]
    fn a_failed_scene_drops_its_whole_unit() {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut cfg = GeoParquetConfig::new(tmp.path().to_path_buf());
        cfg.work_unit = Some("unit".into());
        let ledger = Arc::new(ChipLedger::default());
        ledger.add_failed_scene("B", "asset missing".into());
        let report =
            run(&cfg, Arc::clone(&ledger), vec![batch("A", T0, &[(0, 0)]), batch("B", T0, &[(0, 1)])]).expect("run");
        assert!(report.files.is_empty());
        assert_eq!(ledger.snapshot().skipped_total(), 2);
        assert!(files_under(&tmp.path().join("embeddings")).is_empty(), "nothing visible, no temporary left");
    }

    #[test]
    fn per_scene_units_get_one_file_each_with_float16() {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut cfg = GeoParquetConfig::new(tmp.path().to_path_buf());
        cfg.embedding_encoding = EmbeddingEncoding::Float16;
        let report =
            run(&cfg, Arc::new(ChipLedger::default()), vec![batch("A", T0, &[(0, 0)]), batch("B", T0, &[(0, 1)])])
                .expect("run");
        let names: Vec<String> =
            report.files.iter().map(|p| p.file_name().expect("name").to_string_lossy().into_owned()).collect();
        assert_eq!(names, vec!["A.parquet", "B.parquet"]);
        let (b, _) = read(&report.files[0]);
        let e = b.column_by_name(EMBEDDING).expect("embedding");
        assert_eq!(
            e.data_type(),
            &quantize::encoded_fields(&embedding_field(4), EmbeddingEncoding::Float16).expect("f")[0]
                .data_type()
                .clone()
        );
        assert_eq!(
            files_under(&tmp.path().join("embeddings")),
            vec!["A.json", "A.parquet", "B.json", "B.parquet", "collection.json"]
        );
    }
}

//! Chips and their embeddings, streamed from an output store's `embeddings` table (through the
//! SQL layer, so local directories, file:// and s3:// stores all work).

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, FixedSizeListArray, Float16Array, Float32Array, Int8Array, RecordBatch,
};
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type, Int32Type};
use futures::StreamExt;
use terrastream_ingest::schema::{BBOX, CHIP_COL, CHIP_ROW, GEOMETRY, SCENE_ID};
use terrastream_sinks::geoparquet::geometry::{Rings, parse_wkb_polygon};
use terrastream_sinks::geoparquet::scale_column;

use crate::sql;

/// The embedding column classified.
pub const EMBEDDING: &str = "embedding";

/// A batch of chips: the store's columns without the embeddings, and the embeddings decoded to
/// Float32 (Float16 widened, Int8 multiplied by its per-vector scale).
pub struct ChipBatch {
    /// The columns other than the embedding (and its scale), as read.
    pub columns: RecordBatch,
    /// `rows × dim` values, row-major.
    pub vectors: Vec<f32>,
    /// Embedding dimension.
    pub dim: usize,
}

impl ChipBatch {
    /// Row `i`'s embedding.
    pub fn vector(&self, i: usize) -> &[f32] {
        &self.vectors[i * self.dim..(i + 1) * self.dim]
    }

    /// Row `i`'s id, `<scene_id>/<chip_row>/<chip_col>` (the SQL layer's chip id).
    pub fn chip_id(&self, i: usize) -> Result<String> {
        let scene = string_col(&self.columns, SCENE_ID)?;
        let row = int_col(&self.columns, CHIP_ROW)?;
        let col = int_col(&self.columns, CHIP_COL)?;
        Ok(format!("{}/{}/{}", scene.value(i), row.value(i), col.value(i)))
    }

    /// Row `i`'s footprint (WGS 84 rings).
    pub fn footprint(&self, i: usize) -> Result<Rings> {
        let wkb = footprints(&self.columns)?;
        if wkb.is_null(i) {
            bail!("chip {}: no footprint", self.chip_id(i)?);
        }
        Ok(parse_wkb_polygon(wkb.value(i), i)?)
    }

    /// Row `i`'s bbox `[xmin, ymin, xmax, ymax]` in degrees.
    pub fn bbox(&self, i: usize) -> Result<[f64; 4]> {
        let s = self.columns.column_by_name(BBOX).and_then(|c| c.as_struct_opt()).context("no bbox column")?;
        let f = |name: &str| -> Result<f64> {
            let c = s.column_by_name(name).and_then(|c| c.as_primitive_opt::<Float64Type>());
            c.map(|c| c.value(i)).with_context(|| format!("bbox.{name} is not Float64"))
        };
        Ok([f("xmin")?, f("ymin")?, f("xmax")?, f("ymax")?])
    }

    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.columns.num_rows()
    }

    /// Whether the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn string_col<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a datafusion::arrow::array::StringArray> {
    b.column_by_name(name).and_then(|c| c.as_string_opt::<i32>()).with_context(|| format!("column {name} is missing or not Utf8"))
}

fn int_col<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a datafusion::arrow::array::Int32Array> {
    b.column_by_name(name)
        .and_then(|c| c.as_primitive_opt::<Int32Type>())
        .with_context(|| format!("column {name} is missing or not Int32"))
}

fn footprints(b: &RecordBatch) -> Result<&BinaryArray> {
    b.column_by_name(GEOMETRY).and_then(|c| c.as_binary_opt::<i32>()).with_context(|| {
        format!("column {GEOMETRY} is missing or not WKB (stores written with geometry = 'geoarrow' are not supported here)")
    })
}

/// Opens `store` (a directory or URL of an output store) in a SQL session on `threads`
/// partitions.
pub async fn open(store: &str, threads: Option<usize>) -> Result<datafusion::prelude::SessionContext> {
    let ctx = sql::session(threads);
    let registered = sql::tables::register(&ctx, &[store.to_string()]).await?;
    if !registered.tables.iter().any(|t| t == "embeddings") {
        bail!("--embeddings {store}: no embeddings table there (tables: {:?})", registered.tables);
    }
    Ok(ctx)
}

/// Runs `query` (over the `embeddings` table) and hands each batch to `each`, decoded.
pub async fn scan(
    ctx: &datafusion::prelude::SessionContext,
    query: &str,
    mut each: impl FnMut(ChipBatch) -> Result<()>,
) -> Result<()> {
    let df = match ctx.sql(query).await {
        Ok(df) => df,
        Err(e) => bail!("{e}\n{}", sql::tables::describe(ctx).await),
    };
    let mut stream = df.execute_stream().await?;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        if batch.num_rows() > 0 {
            each(decode(batch)?)?;
        }
    }
    Ok(())
}

/// `batch` with view and dictionary encodings of strings and binaries (what DataFusion's
/// Parquet scan hands out) cast to plain Utf8 / Binary, the types the outputs are written in.
pub fn plain(batch: RecordBatch) -> Result<RecordBatch> {
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        let to = match f.data_type() {
            DataType::Utf8View | DataType::LargeUtf8 => Some(DataType::Utf8),
            DataType::BinaryView | DataType::LargeBinary => Some(DataType::Binary),
            DataType::Dictionary(_, v) if matches!(v.as_ref(), DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8) => {
                Some(DataType::Utf8)
            }
            _ => None,
        };
        match to {
            Some(t) => {
                columns.push(datafusion::arrow::compute::cast(c, &t)?);
                fields.push(f.as_ref().clone().with_data_type(t));
            }
            None => {
                columns.push(Arc::clone(c));
                fields.push(f.as_ref().clone());
            }
        }
    }
    let schema = datafusion::arrow::datatypes::Schema::new_with_metadata(fields, batch.schema().metadata().clone());
    Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
}

/// Splits the embedding (and scale) off `batch` and decodes it.
pub fn decode(batch: RecordBatch) -> Result<ChipBatch> {
    let batch = plain(batch)?;
    let schema = batch.schema();
    let scale_name = scale_column(EMBEDDING);
    let embedding = batch.column_by_name(EMBEDDING).with_context(|| format!("no {EMBEDDING} column"))?;
    let scale = batch.column_by_name(&scale_name);
    let (dim, vectors) = vectors(embedding, scale)?;
    let keep: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| {
            let n = schema.field(i).name();
            n != EMBEDDING && *n != scale_name
        })
        .collect();
    Ok(ChipBatch { columns: batch.project(&keep)?, vectors, dim })
}

/// The values of a list of vectors, flattened, with its dimension; every row must have it.
fn vectors(column: &ArrayRef, scale: Option<&ArrayRef>) -> Result<(usize, Vec<f32>)> {
    let rows = column.len();
    if column.null_count() > 0 {
        bail!("{EMBEDDING}: {} rows without an embedding", column.null_count());
    }
    let (values, offsets): (ArrayRef, Vec<usize>) = match column.data_type() {
        DataType::List(_) => {
            let l = column.as_list::<i32>();
            (Arc::clone(l.values()), l.value_offsets().iter().map(|&o| o as usize).collect())
        }
        DataType::LargeList(_) => {
            let l = column.as_list::<i64>();
            (Arc::clone(l.values()), l.value_offsets().iter().map(|&o| o as usize).collect())
        }
        DataType::FixedSizeList(_, n) => {
            let l: &FixedSizeListArray = column.as_fixed_size_list();
            let n = *n as usize;
            let start = l.offset() * n;
            (Arc::clone(l.values()), (0..=rows).map(|r| start + r * n).collect())
        }
        other => bail!("{EMBEDDING}: expected a list of numbers, got {other}"),
    };
    let dim = offsets.get(1).zip(offsets.first()).map(|(b, a)| b - a).unwrap_or(0);
    if offsets.windows(2).any(|w| w[1] - w[0] != dim) || dim == 0 {
        bail!("{EMBEDDING}: vectors of different or zero lengths");
    }
    let (first, last) = (offsets[0], offsets[rows]);
    let mut out = Vec::with_capacity(rows * dim);
    if let Some(v) = values.as_any().downcast_ref::<Float32Array>() {
        out.extend_from_slice(&v.values()[first..last]);
    } else if let Some(v) = values.as_any().downcast_ref::<Float16Array>() {
        out.extend(v.values()[first..last].iter().map(|h| h.to_f32()));
    } else if let Some(v) = values.as_any().downcast_ref::<Int8Array>() {
        let scale = scale
            .and_then(|s| s.as_primitive_opt::<Float32Type>())
            .with_context(|| format!("{EMBEDDING} is Int8 but {} (Float32) is missing", scale_column(EMBEDDING)))?;
        for r in 0..rows {
            let s = scale.value(r);
            out.extend(v.values()[offsets[r]..offsets[r + 1]].iter().map(|&q| q as f32 * s));
        }
    } else {
        bail!("{EMBEDDING}: values are {}, expected Float32, Float16 or Int8", values.data_type());
    }
    Ok((dim, out))
}

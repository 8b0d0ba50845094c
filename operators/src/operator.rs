//! The `Operator` trait and helpers shared by operators.

use std::sync::Arc;

use arrow_array::{Array, FixedSizeListArray, Float32Array, RecordBatch};
use arrow_schema::{DataType, Schema};

use crate::{ChipStream, Error, Result};

/// A stage between source and sink.
pub trait Operator: Send + Sync {
    /// Short name, used in errors and logs.
    fn name(&self) -> &'static str;

    /// Wraps `input` in this stage. Checks the input schema before any data flows, so a
    /// misconfigured pipeline fails at build time rather than mid-run.
    fn apply(&self, input: ChipStream) -> Result<ChipStream>;
}

/// A stream that runs `f` on every batch of `input`, up to `in_flight` batches at once, keeping
/// their order: for stages whose work is asynchronous (a model thread answering on a channel).
pub fn map_batches_buffered<F, Fut>(input: ChipStream, schema: arrow_schema::SchemaRef, in_flight: usize, f: F) -> ChipStream
where
    F: Fn(RecordBatch) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<RecordBatch>> + Send + 'static,
{
    use futures::StreamExt;
    let f = Arc::new(f);
    let out = input
        .map(move |b| {
            let f = Arc::clone(&f);
            async move { f(b?).await.map_err(Into::into) }
        })
        .buffered(in_flight);
    terrastream_ingest::ChipStreamAdapter::new(schema, out.boxed()).boxed()
}

/// The values of a Float32 fixed-size-list column (a tensor or embedding column) and the
/// number of values per row.
pub fn f32_list(operator: &'static str, batch: &RecordBatch, column: &str) -> Result<(Float32Array, usize)> {
    let err = |reason: &str| Error::Column { operator, column: column.to_string(), reason: reason.to_string() };
    let array = batch.column_by_name(column).ok_or_else(|| err("missing"))?;
    let list = array.as_any().downcast_ref::<FixedSizeListArray>().ok_or_else(|| err("not a fixed-size list"))?;
    let values = list.values().as_any().downcast_ref::<Float32Array>().ok_or_else(|| err("values are not Float32"))?;
    // Slices of a list array keep the whole values buffer: honour the offset.
    let size = list.value_length() as usize;
    let start = list.offset() * size;
    Ok((values.slice(start, list.len() * size), size))
}

/// Checks that `schema` has a Float32 fixed-size-list column `column`.
pub fn require_f32_list(operator: &'static str, schema: &Schema, column: &str) -> Result<()> {
    let field = schema.field_with_name(column).map_err(|_| Error::Column {
        operator,
        column: column.to_string(),
        reason: format!("missing (columns: {})", schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")),
    })?;
    match field.data_type() {
        DataType::FixedSizeList(item, _) if item.data_type() == &DataType::Float32 => Ok(()),
        other => Err(Error::Column { operator, column: column.to_string(), reason: format!("expected a Float32 tensor, found {other}") }),
    }
}

/// A new Float32 fixed-size-list array of rows of `size` values with item field `item`.
pub fn f32_list_array(item: &Arc<arrow_schema::Field>, size: usize, values: Vec<f32>) -> Result<FixedSizeListArray> {
    Ok(FixedSizeListArray::try_new(Arc::clone(item), size as i32, Arc::new(Float32Array::from(values)), None)?)
}

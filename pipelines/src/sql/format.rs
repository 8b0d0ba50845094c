//! Result formats: an aligned `table` (long vectors and geometries shortened), `csv` (nested
//! and binary values as text), `json` (one object per line) and `parquet` (the Arrow types as
//! they are; needs `--out`).

use std::io::Write;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::parquet::arrow::ArrowWriter;

use super::error::{Error, Result};

/// How results are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// An aligned text table (vectors and geometries shortened to fit a terminal).
    #[default]
    Table,
    /// CSV with a header; nested and binary values as text.
    Csv,
    /// One JSON object per row (NDJSON).
    Json,
    /// A Parquet file (`--out` required).
    Parquet,
}

/// Longest cell of the `table` format, in characters.
const CELL_CHARS: usize = 48;

/// Writes `batches` (of `schema`) to `out` in `format`; `target` names `out` in errors.
pub fn write(format: Format, schema: &SchemaRef, batches: &[RecordBatch], out: impl Write, target: &str) -> Result<()> {
    let fail = |e: &dyn std::fmt::Display| Error::Output {
        target: target.to_string(),
        reason: e.to_string(),
    };
    let mut out = out;
    match format {
        Format::Table => {
            let batches = batches
                .iter()
                .map(|b| texts(b, Some(CELL_CHARS)))
                .collect::<Result<Vec<_>>>()?;
            let text = if batches.is_empty() {
                pretty_format_batches(&[RecordBatch::new_empty(text_schema(schema))])
            } else {
                pretty_format_batches(&batches)
            }
            .map_err(|e| fail(&e))?;
            writeln!(out, "{text}").map_err(|e| fail(&e))?;
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            writeln!(out, "{rows} row{}", if rows == 1 { "" } else { "s" }).map_err(|e| fail(&e))?;
        }
        Format::Csv => {
            let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(out);
            if batches.is_empty() {
                writer
                    .write(&RecordBatch::new_empty(text_schema(schema)))
                    .map_err(|e| fail(&e))?;
            }
            for b in batches {
                writer.write(&texts(b, None)?).map_err(|e| fail(&e))?;
            }
        }
        Format::Json => {
            let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(out);
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            writer.write_batches(&refs).map_err(|e| fail(&e))?;
            writer.finish().map_err(|e| fail(&e))?;
        }
        Format::Parquet => {
            // Buffered whole: the writer needs a `Send` sink, which a locked stdout is not.
            let mut writer = ArrowWriter::try_new(Vec::new(), Arc::clone(schema), None).map_err(|e| fail(&e))?;
            for b in batches {
                writer.write(b).map_err(|e| fail(&e))?;
            }
            let bytes = writer.into_inner().map_err(|e| fail(&e))?;
            out.write_all(&bytes).map_err(|e| fail(&e))?;
        }
    }
    Ok(())
}

/// Whether a column is written as text in `table` and `csv`.
fn as_text(t: &DataType) -> bool {
    t.is_nested() || matches!(t, DataType::Binary | DataType::LargeBinary | DataType::BinaryView)
}

fn text_schema(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| {
            if as_text(f.data_type()) {
                Arc::new(Field::new(f.name(), DataType::Utf8, true))
            } else {
                Arc::clone(f)
            }
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// `batch` with its nested and binary columns as text, cut to `max` characters.
fn texts(batch: &RecordBatch, max: Option<usize>) -> Result<RecordBatch> {
    let schema = batch.schema();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        if !as_text(field.data_type()) {
            columns.push(Arc::clone(column));
            continue;
        }
        let formatter = ArrayFormatter::try_new(column.as_ref(), &FormatOptions::default())
            .map_err(datafusion::error::DataFusionError::from)?;
        let values = (0..column.len()).map(|i| {
            column.is_valid(i).then(|| {
                let s = formatter.value(i).to_string();
                match max {
                    Some(max) if s.chars().count() > max => {
                        let cut: String = s.chars().take(max - 1).collect();
                        format!("{cut}…")
                    }
                    _ => s,
                }
            })
        });
        columns.push(Arc::new(values.collect::<StringArray>()));
    }
    Ok(RecordBatch::try_new(text_schema(&schema), columns).map_err(datafusion::error::DataFusionError::from)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{FixedSizeListBuilder, Float32Builder, Int32Array};

    fn batch() -> RecordBatch {
        let mut b = FixedSizeListBuilder::new(Float32Builder::new(), 40);
        b.values().append_slice(&[0.125; 40]);
        b.append(true);
        let v: ArrayRef = Arc::new(b.finish());
        RecordBatch::try_from_iter([("id", Arc::new(Int32Array::from(vec![7])) as ArrayRef), ("v", v)]).expect("batch")
    }

    #[test]
    fn table_shortens_vectors_and_counts_rows() {
        let b = batch();
        let mut out = Vec::new();
        write(Format::Table, &b.schema(), &[b], &mut out, "stdout").expect("write");
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.contains("[0.125, 0.125"), "{text}");
        assert!(text.contains('…') && text.ends_with("1 row\n"), "{text}");
    }

    #[test]
    fn csv_and_json_round_trip_values() {
        let b = batch();
        let mut csv = Vec::new();
        write(Format::Csv, &b.schema(), std::slice::from_ref(&b), &mut csv, "stdout").expect("csv");
        let csv = String::from_utf8(csv).expect("utf8");
        assert!(csv.starts_with("id,v\n7,\"[0.125, "), "{csv}");
        let mut json = Vec::new();
        write(Format::Json, &b.schema(), &[b], &mut json, "stdout").expect("json");
        let v: serde_json::Value = serde_json::from_slice(&json).expect("json");
        assert_eq!(v["id"], 7);
        assert_eq!(v["v"].as_array().map(Vec::len), Some(40));
    }
}

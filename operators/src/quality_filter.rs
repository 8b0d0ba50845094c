//! Drops chips with too little valid data or too much cloud, counting each in the ledger.

use std::sync::Arc;

use arrow_array::{Array, BooleanArray, Float32Array, RecordBatch};
use arrow_schema::DataType;
use futures::StreamExt;
use terrastream_ingest::schema::{CLOUD_FRACTION, VALID_FRACTION};
use terrastream_ingest::{ChipLedger, ChipStreamAdapter};

use crate::operator::Operator;
use crate::{ChipStream, Error, Result};

/// Keeps chips with `valid_fraction >= min_valid_fraction` and, when the chip has a cloud
/// fraction, `cloud_fraction <= max_cloud_fraction`.
#[derive(Debug, Clone)]
pub struct QualityFilter {
    min_valid_fraction: f32,
    max_cloud_fraction: f32,
    ledger: Arc<ChipLedger>,
}

impl QualityFilter {
    /// A filter; both thresholds are fractions in 0..=1.
    pub fn new(min_valid_fraction: f32, max_cloud_fraction: f32, ledger: Arc<ChipLedger>) -> Result<Self> {
        for (key, v) in [("filter.min_valid_fraction", min_valid_fraction), ("filter.max_cloud_fraction", max_cloud_fraction)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(Error::Option { key: key.into(), reason: format!("must be within 0..=1, got {v}") });
            }
        }
        Ok(Self { min_valid_fraction, max_cloud_fraction, ledger })
    }

    fn filter_batch(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let valid = fraction(&batch, VALID_FRACTION)?;
        let cloud = fraction(&batch, CLOUD_FRACTION)?;
        let mut keep = Vec::with_capacity(batch.num_rows());
        let (mut low_valid, mut cloudy) = (0u64, 0u64);
        for i in 0..batch.num_rows() {
            let ok_valid = valid.is_valid(i) && valid.value(i) >= self.min_valid_fraction;
            let ok_cloud = cloud.is_null(i) || cloud.value(i) <= self.max_cloud_fraction;
            if !ok_valid {
                low_valid += 1;
            } else if !ok_cloud {
                cloudy += 1;
            }
            keep.push(ok_valid && ok_cloud);
        }
        self.ledger.add_skipped(&format!("valid_fraction < {}", self.min_valid_fraction), low_valid);
        self.ledger.add_skipped(&format!("cloud_fraction > {}", self.max_cloud_fraction), cloudy);
        Ok(arrow_select::filter::filter_record_batch(&batch, &BooleanArray::from(keep))?)
    }
}

fn fraction(batch: &RecordBatch, column: &str) -> Result<Float32Array> {
    let array = batch.column_by_name(column).ok_or_else(|| Error::Column {
        operator: "quality_filter",
        column: column.into(),
        reason: "missing".into(),
    })?;
    array.as_any().downcast_ref::<Float32Array>().cloned().ok_or_else(|| Error::Column {
        operator: "quality_filter",
        column: column.into(),
        reason: format!("expected Float32, found {}", array.data_type()),
    })
}

impl Operator for QualityFilter {
    fn name(&self) -> &'static str {
        "quality_filter"
    }

    fn apply(&self, input: ChipStream) -> Result<ChipStream> {
        let schema = input.schema();
        for column in [VALID_FRACTION, CLOUD_FRACTION] {
            let ok = schema.field_with_name(column).map(|f| f.data_type() == &DataType::Float32).unwrap_or(false);
            if !ok {
                return Err(Error::Column { operator: self.name(), column: column.into(), reason: "missing or not Float32".into() });
            }
        }
        let this = self.clone();
        let out = input
            .map(move |b| b.and_then(|b| this.filter_batch(b).map_err(Into::into)))
            .filter(|b| futures::future::ready(b.as_ref().map_or(true, |b| b.num_rows() > 0)));
        Ok(ChipStreamAdapter::new(schema, out.boxed()).boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::ArrayRef;
    use arrow_schema::{Field, Schema};

    fn batch(valid: Vec<f32>, cloud: Vec<Option<f32>>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new(VALID_FRACTION, DataType::Float32, false),
            Field::new(CLOUD_FRACTION, DataType::Float32, true),
        ]));
        let cols: Vec<ArrayRef> = vec![Arc::new(Float32Array::from(valid)), Arc::new(Float32Array::from(cloud))];
        RecordBatch::try_new(schema, cols).expect("batch")
    }

    #[test]
    fn drops_and_counts_each_reason() {
        let ledger = Arc::new(ChipLedger::default());
        let f = QualityFilter::new(0.5, 0.3, Arc::clone(&ledger)).expect("filter");
        let out = f
            .filter_batch(batch(vec![1.0, 0.2, 0.9, 0.9, 0.5], vec![Some(0.0), Some(0.0), Some(0.8), None, Some(0.3)]))
            .expect("filtered");
        assert_eq!(out.num_rows(), 3);
        let snap = ledger.snapshot();
        assert_eq!(snap.skipped["valid_fraction < 0.5"], 1);
        assert_eq!(snap.skipped["cloud_fraction > 0.3"], 1);
    }

    #[test]
    fn thresholds_are_validated() {
        let err = QualityFilter::new(1.5, 0.3, Arc::default()).expect_err("out of range");
        assert!(err.to_string().contains("filter.min_valid_fraction"), "{err}");
    }
}

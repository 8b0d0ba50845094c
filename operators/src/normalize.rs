//! Standardizes a pixel column with per-band statistics: `(x - mean) / std`.
//!
//! No-data (NaN) becomes 0, the band mean after standardization: the model sees an average
//! pixel there, and `valid_fraction` says how much of the chip that is.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::DataType;
use futures::StreamExt;
use terrastream_ingest::ChipStreamAdapter;

use crate::operator::{Operator, f32_list, f32_list_array, require_f32_list};
use crate::{ChipStream, Error, Result};

/// Per-band mean and standard deviation, in the column's band order.
#[derive(Debug, Clone, PartialEq)]
pub struct BandStats {
    /// Means, one per band.
    pub mean: Vec<f32>,
    /// Standard deviations, one per band (> 0).
    pub std: Vec<f32>,
}

impl BandStats {
    /// TerraMind v1 pretraining statistics of a modality (`S2L2A`, `S2L1C`, `RGB`, `S1GRD`,
    /// `S1RTC`, `DEM`), as published with the model (terratorch `v1_pretraining_mean/std`).
    /// S2 values are L2A/L1C digital numbers (reflectance x 10000), S1 values dB, DEM metres.
    pub fn terramind_v1(modality: &str) -> Option<Self> {
        let (mean, std): (&[f32], &[f32]) = match modality {
            "S2L2A" => (
                &[1390.458, 1503.317, 1718.197, 1853.91, 2199.1, 2779.975, 2987.011, 3083.234, 3132.22, 3162.988, 2424.884, 1857.648],
                &[2106.761, 2141.107, 2038.973, 2134.138, 2085.321, 1889.926, 1820.257, 1871.918, 1753.829, 1797.379, 1434.261, 1334.311],
            ),
            "S2L1C" => (
                &[2357.089, 2137.385, 2018.788, 2082.986, 2295.651, 2854.537, 3122.849, 3040.56, 3306.481, 1473.847, 506.07, 2472.825, 1838.929],
                &[1624.683, 1675.806, 1557.708, 1833.702, 1823.738, 1733.977, 1732.131, 1679.732, 1727.26, 1024.687, 442.165, 1331.411, 1160.419],
            ),
            "RGB" => (&[87.271, 80.931, 66.667], &[58.767, 47.663, 42.631]),
            "S1GRD" => (&[-12.599, -20.293], &[5.195, 5.890]),
            "S1RTC" => (&[-10.93, -17.329], &[4.391, 4.459]),
            "DEM" => (&[670.665], &[951.272]),
            _ => return None,
        };
        Some(Self { mean: mean.to_vec(), std: std.to_vec() })
    }
}

impl BandStats {
    /// Standardized values `[B, bands, H, W]` (e.g. a generated image) back to physical units:
    /// `x * std + mean` per band.
    pub fn to_physical(&self, standardized: &tch::Tensor) -> Result<tch::Tensor> {
        let bands = self.mean.len() as i64;
        let size = standardized.size();
        if size.len() != 4 || size[1] != bands {
            return Err(Error::Column {
                operator: "to_physical",
                column: "image".into(),
                reason: format!("shape {size:?} does not have the statistics' {bands} bands"),
            });
        }
        let device = standardized.device();
        let scale = || -> std::result::Result<tch::Tensor, tch::TchError> {
            let per_band = |v: &[f32]| tch::Tensor::from_slice(v).f_reshape([1, bands, 1, 1])?.f_to_device(device);
            standardized.f_mul(&per_band(&self.std)?)?.f_add(&per_band(&self.mean)?)
        };
        Ok(scale().map_err(terrastream_model::Error::from)?)
    }
}

/// Standardizes one pixel column in place.
#[derive(Debug, Clone)]
pub struct Normalize {
    column: String,
    stats: Arc<BandStats>,
}

impl Normalize {
    /// Standardizes `column` with `stats`.
    pub fn new(column: &str, stats: BandStats) -> Result<Self> {
        if stats.mean.len() != stats.std.len() || stats.std.iter().any(|s| !(*s > 0.0)) {
            return Err(Error::Option { key: "normalize.stats".into(), reason: "one mean and one positive std per band".into() });
        }
        Ok(Self { column: column.to_string(), stats: Arc::new(stats) })
    }

    fn normalize_batch(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let (values, size) = f32_list(self.name(), &batch, &self.column)?;
        let bands = self.stats.mean.len();
        if size % bands != 0 {
            return Err(Error::Column {
                operator: self.name(),
                column: self.column.clone(),
                reason: format!("{size} values per chip do not split into {bands} bands"),
            });
        }
        let plane = size / bands;
        let mut out = Vec::with_capacity(values.len());
        for (i, &x) in values.values().iter().enumerate() {
            let b = (i % size) / plane;
            out.push(if x.is_finite() { (x - self.stats.mean[b]) / self.stats.std[b] } else { 0.0 });
        }
        let schema = batch.schema();
        let idx = schema.index_of(&self.column)?;
        let DataType::FixedSizeList(item, _) = schema.field(idx).data_type() else {
            return Err(Error::Column { operator: self.name(), column: self.column.clone(), reason: "not a list".into() });
        };
        let mut columns = batch.columns().to_vec();
        columns[idx] = Arc::new(f32_list_array(item, size, out)?);
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}

impl Operator for Normalize {
    fn name(&self) -> &'static str {
        "normalize"
    }

    fn apply(&self, input: ChipStream) -> Result<ChipStream> {
        let schema = input.schema();
        require_f32_list(self.name(), &schema, &self.column)?;
        let this = self.clone();
        let out = input.map(move |b| b.and_then(|b| this.normalize_batch(b).map_err(Into::into)));
        Ok(ChipStreamAdapter::new(schema, out.boxed()).boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;
    use arrow_schema::{Field, Schema};
    use terrastream_ingest::schema::tensor_field;

    #[test]
    fn standardizes_per_band_and_zeroes_nodata() {
        let field = tensor_field("X", &[2, 1, 2]);
        let DataType::FixedSizeList(item, _) = field.data_type().clone() else { panic!("list") };
        let schema = Arc::new(Schema::new(vec![field]));
        let values = vec![10.0, 30.0, 100.0, f32::NAN];
        let batch = RecordBatch::try_new(schema, vec![Arc::new(f32_list_array(&item, 4, values).expect("array"))]).expect("batch");
        let n = Normalize::new("X", BandStats { mean: vec![20.0, 50.0], std: vec![10.0, 25.0] }).expect("op");
        let out = n.normalize_batch(batch).expect("normalized");
        let (v, _) = f32_list("t", &out, "X").expect("values");
        assert_eq!(v.values().to_vec(), vec![-1.0, 1.0, 2.0, 0.0]);
        assert_eq!(v.null_count(), 0);
    }

    #[test]
    fn known_stats() {
        assert_eq!(BandStats::terramind_v1("S2L2A").map(|s| s.mean.len()), Some(12));
        assert!(BandStats::terramind_v1("XYZ").is_none());
        let _ = Field::new("unused", DataType::Null, true);
    }
}

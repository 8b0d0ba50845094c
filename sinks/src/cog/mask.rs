//! The mask column: reading it from chip batches, and building one from a pixel column (for
//! tests, demos, and rule-based masks such as the Sentinel-2 scene classification).

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, FixedSizeListArray, Float32Array, RecordBatch, UInt8Array};
use arrow_schema::{DataType, Field, Schema};
use terrastream_ingest::schema::{TENSOR_EXTENSION, tensor_shape};

use crate::{Error, Result};

/// What a mask column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskKind {
    /// UInt8 class ids.
    Classes,
    /// Float32 probabilities (or any continuous score).
    Probabilities,
}

/// The layout of a mask column: kind and chip size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskLayout {
    /// Classes or probabilities.
    pub kind: MaskKind,
    /// Chip height in pixels.
    pub height: usize,
    /// Chip width in pixels.
    pub width: usize,
}

/// Reads the layout of mask column `name` from `schema`: a `arrow.fixed_shape_tensor` of
/// shape `[H, W]` or `[1, H, W]`, UInt8 or Float32.
pub fn mask_layout(schema: &Schema, name: &str) -> Result<MaskLayout> {
    let err = |reason: String| Error::Column { sink: "cog", column: name.into(), reason };
    let field = schema.field_with_name(name).map_err(|_| err("missing".into()))?;
    let DataType::FixedSizeList(item, len) = field.data_type() else {
        return Err(err(format!("expected a fixed-size list tensor, found {}", field.data_type())));
    };
    let kind = match item.data_type() {
        DataType::UInt8 => MaskKind::Classes,
        DataType::Float32 => MaskKind::Probabilities,
        other => return Err(err(format!("values must be UInt8 (classes) or Float32 (probabilities), found {other}"))),
    };
    let shape = tensor_shape(field).ok_or_else(|| err(format!("no {TENSOR_EXTENSION} shape metadata")))?;
    let (height, width) = match shape.as_slice() {
        [h, w] | [1, h, w] => (*h, *w),
        other => return Err(err(format!("shape {other:?}: expected [H, W] or [1, H, W]"))),
    };
    if height * width != *len as usize {
        return Err(err(format!("shape {shape:?} does not match list length {len}")));
    }
    Ok(MaskLayout { kind, height, width })
}

/// A tensor field `name` of `kind` values and shape `[height, width]`.
pub fn mask_field(name: &str, kind: MaskKind, height: usize, width: usize) -> Field {
    let item = match kind {
        MaskKind::Classes => DataType::UInt8,
        MaskKind::Probabilities => DataType::Float32,
    };
    let metadata = HashMap::from([
        ("ARROW:extension:name".to_string(), TENSOR_EXTENSION.to_string()),
        ("ARROW:extension:metadata".to_string(), format!("{{\"shape\":[{height},{width}]}}")),
    ]);
    let list = DataType::FixedSizeList(Arc::new(Field::new("item", item, false)), (height * width) as i32);
    Field::new(name, list, false).with_metadata(metadata)
}

/// Channel `channel` of Float32 tensor column `source` (shape `[C, H, W]`), one `H * W` slice
/// per row.
fn channel_values(batch: &RecordBatch, source: &str, channel: usize) -> Result<(Vec<Vec<f32>>, usize, usize)> {
    let err = |reason: String| Error::Column { sink: "cog", column: source.into(), reason };
    let schema = batch.schema();
    let field = schema.field_with_name(source).map_err(|_| err("missing".into()))?;
    let shape = tensor_shape(field).ok_or_else(|| err("no tensor shape metadata".into()))?;
    let [c, h, w] = shape[..] else { return Err(err(format!("shape {shape:?}: expected [C, H, W]"))) };
    if channel >= c {
        return Err(err(format!("channel {channel} out of range (C = {c})")));
    }
    let list = batch
        .column_by_name(source)
        .and_then(|a| a.as_any().downcast_ref::<FixedSizeListArray>())
        .ok_or_else(|| err("not a fixed-size list".into()))?;
    let values = list.values().as_any().downcast_ref::<Float32Array>().ok_or_else(|| err("values are not Float32".into()))?;
    let per = c * h * w;
    let rows = (0..list.len())
        .map(|r| values.values()[r * per + channel * h * w..r * per + (channel + 1) * h * w].to_vec())
        .collect();
    Ok((rows, h, w))
}

fn append(batch: &RecordBatch, field: Field, values: ArrayRef) -> Result<RecordBatch> {
    let DataType::FixedSizeList(item, len) = field.data_type().clone() else {
        return Err(Error::Column { sink: "cog", column: field.name().clone(), reason: "not a list".into() });
    };
    let column = Arc::new(FixedSizeListArray::try_new(item, len, values, None)?);
    let schema = batch.schema();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(field);
    let mut columns = batch.columns().to_vec();
    columns.push(column);
    Ok(RecordBatch::try_new(Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())), columns)?)
}

/// Appends a class mask column `out` made from channel `channel` of Float32 tensor column
/// `source`: NaN (no data) becomes `nodata`; every other value must be a whole number in
/// `0..=255` (a class layer such as Sentinel-2 SCL read with nearest resampling).
pub fn class_mask_from_channel(batch: &RecordBatch, source: &str, channel: usize, out: &str, nodata: u8) -> Result<RecordBatch> {
    let (rows, h, w) = channel_values(batch, source, channel)?;
    let mut classes = Vec::with_capacity(rows.len() * h * w);
    for v in rows.iter().flatten() {
        classes.push(match *v {
            v if v.is_nan() => nodata,
            v if v.fract() == 0.0 && (0.0..=255.0).contains(&v) => v as u8,
            v => {
                return Err(Error::Column { sink: "cog", column: source.into(), reason: format!("{v} is not a class id (0..=255)") });
            }
        });
    }
    append(batch, mask_field(out, MaskKind::Classes, h, w), Arc::new(UInt8Array::from(classes)))
}

/// Appends a probability column `out` made from channel `channel` of Float32 tensor column
/// `source`: `clamp(value * scale, 0, 1)`, NaN (no data) stays NaN (e.g. Sentinel-2 L2A
/// reflectance digital numbers with `scale = 1e-4`).
pub fn probability_from_channel(batch: &RecordBatch, source: &str, channel: usize, out: &str, scale: f32) -> Result<RecordBatch> {
    let (rows, h, w) = channel_values(batch, source, channel)?;
    let values: Vec<f32> = rows.iter().flatten().map(|v| if v.is_nan() { f32::NAN } else { (v * scale).clamp(0.0, 1.0) }).collect();
    append(batch, mask_field(out, MaskKind::Probabilities, h, w), Arc::new(Float32Array::from(values)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use terrastream_ingest::schema::tensor_field;

    fn tensor_batch(values: Vec<f32>) -> RecordBatch {
        let field = tensor_field("SCL", &[1, 2, 2]);
        let DataType::FixedSizeList(item, len) = field.data_type().clone() else { panic!() };
        let list = FixedSizeListArray::try_new(item, len, Arc::new(Float32Array::from(values)), None).expect("list");
        RecordBatch::try_new(Arc::new(Schema::new(vec![field])), vec![Arc::new(list)]).expect("batch")
    }

    #[test]
    fn class_mask_from_a_class_layer() {
        let b = class_mask_from_channel(&tensor_batch(vec![4.0, f32::NAN, 6.0, 9.0]), "SCL", 0, "mask", 255).expect("mask");
        let layout = mask_layout(&b.schema(), "mask").expect("layout");
        assert_eq!(layout, MaskLayout { kind: MaskKind::Classes, height: 2, width: 2 });
        let list = b.column(1).as_any().downcast_ref::<FixedSizeListArray>().expect("list");
        let v = list.values().as_any().downcast_ref::<UInt8Array>().expect("u8");
        assert_eq!(v.values().as_ref(), &[4, 255, 6, 9]);
        let bad = class_mask_from_channel(&tensor_batch(vec![4.5, 0.0, 0.0, 0.0]), "SCL", 0, "mask", 255);
        assert!(bad.expect_err("fractional class").to_string().contains("SCL"));
        assert!(class_mask_from_channel(&tensor_batch(vec![0.0; 4]), "SCL", 1, "mask", 255).is_err());
    }

    #[test]
    fn probabilities_are_scaled_and_clamped() {
        let b = probability_from_channel(&tensor_batch(vec![5000.0, f32::NAN, 20000.0, 0.0]), "SCL", 0, "p", 1e-4).expect("p");
        assert_eq!(mask_layout(&b.schema(), "p").expect("layout").kind, MaskKind::Probabilities);
        let list = b.column(1).as_any().downcast_ref::<FixedSizeListArray>().expect("list");
        let v = list.values().as_any().downcast_ref::<Float32Array>().expect("f32");
        assert_eq!(v.value(0), 0.5);
        assert!(v.value(1).is_nan());
        assert_eq!((v.value(2), v.value(3)), (1.0, 0.0));
        assert!(mask_layout(&b.schema(), "absent").is_err());
    }
}

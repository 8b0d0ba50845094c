//! Embedding quantisation: Float32 vectors stored as Float16, or as Int8 with one Float32
//! scale per vector.
//!
//! Int8 is symmetric: `scale = max|x| / 127`, `q = round(x / scale)`, so `x ≈ q * scale` with
//! an absolute error of at most `scale / 2` per value; an all-zero vector has scale 0. The
//! encoding is named in the file's key-value metadata under [`ENCODING_KEY`].

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, FixedSizeListArray, Float16Array, Float32Array, Int8Array, ListArray};
use arrow_schema::{DataType, Field, FieldRef};
use half::f16;

use super::config::EmbeddingEncoding;
use crate::{Error, Result};

/// File (and Arrow schema) metadata key naming the embedding encoding (`float32`,
/// `float16`, `int8`).
pub const ENCODING_KEY: &str = "terrastream:embedding_encoding";
/// The optional per-patch embeddings column: `FixedSizeList<FixedSizeList<Float32, D>, P>`
/// or `List<FixedSizeList<Float32, D>>`, one `D`-vector per patch, written when present.
pub const PATCH_EMBEDDINGS: &str = "patch_embeddings";

/// The name of the Int8 scale column of embedding column `column` (`embedding_scale`).
pub fn scale_column(column: &str) -> String {
    format!("{column}_scale")
}

/// How a vector column is laid out: flat vectors, or a list (fixed or variable) of them.
#[derive(Debug, Clone)]
enum Layout {
    /// `FixedSizeList<Float32, D>`.
    Vectors { item: FieldRef, dim: i32 },
    /// `FixedSizeList<FixedSizeList<Float32, D>, P>`.
    FixedPatches { outer: FieldRef, patches: i32, item: FieldRef, dim: i32 },
    /// `List<FixedSizeList<Float32, D>>`.
    Patches { outer: FieldRef, item: FieldRef, dim: i32 },
}

fn layout(field: &Field) -> Result<Layout> {
    let err = |reason: String| Error::Column { sink: "geoparquet", column: field.name().clone(), reason };
    let vectors = |dt: &DataType| match dt {
        DataType::FixedSizeList(item, dim) if item.data_type() == &DataType::Float32 => Ok((Arc::clone(item), *dim)),
        other => Err(err(format!("expected FixedSizeList<Float32>, found {other}"))),
    };
    match field.data_type() {
        DataType::FixedSizeList(item, dim) if item.data_type() == &DataType::Float32 => {
            Ok(Layout::Vectors { item: Arc::clone(item), dim: *dim })
        }
        DataType::FixedSizeList(outer, patches) => {
            let (item, dim) = vectors(outer.data_type())?;
            Ok(Layout::FixedPatches { outer: Arc::clone(outer), patches: *patches, item, dim })
        }
        DataType::List(outer) => {
            let (item, dim) = vectors(outer.data_type())?;
            Ok(Layout::Patches { outer: Arc::clone(outer), item, dim })
        }
        other => Err(err(format!("expected FixedSizeList<Float32>, or a list of them, found {other}"))),
    }
}

fn with_type(item: &FieldRef, dt: DataType) -> FieldRef {
    Arc::new(item.as_ref().clone().with_data_type(dt))
}

/// The output fields of vector column `field` under `enc`: the values column, and for Int8
/// its scale column (Float32 per vector, nested like the vectors).
pub fn encoded_fields(field: &Field, enc: EmbeddingEncoding) -> Result<Vec<Field>> {
    let value_type = match enc {
        EmbeddingEncoding::Float32 => return Ok(vec![field.clone()]),
        EmbeddingEncoding::Float16 => DataType::Float16,
        EmbeddingEncoding::Int8 => DataType::Int8,
    };
    let scale_item = Arc::new(Field::new("item", DataType::Float32, false));
    let (values, scale) = match layout(field)? {
        Layout::Vectors { item, dim } => {
            (DataType::FixedSizeList(with_type(&item, value_type), dim), DataType::Float32)
        }
        Layout::FixedPatches { outer, patches, item, dim } => {
            let inner = DataType::FixedSizeList(with_type(&item, value_type), dim);
            (DataType::FixedSizeList(with_type(&outer, inner), patches), DataType::FixedSizeList(scale_item, patches))
        }
        Layout::Patches { outer, item, dim } => {
            let inner = DataType::FixedSizeList(with_type(&item, value_type), dim);
            (DataType::List(with_type(&outer, inner)), DataType::List(scale_item))
        }
    };
    let mut out = vec![field.clone().with_data_type(values)];
    if enc == EmbeddingEncoding::Int8 {
        out.push(Field::new(scale_column(field.name()), scale, field.is_nullable()));
    }
    Ok(out)
}

/// Encodes vector column `array` (described by `field`) under `enc`; returns the columns
/// of [`encoded_fields`], in order.
pub fn encode(field: &Field, array: &ArrayRef, enc: EmbeddingEncoding) -> Result<Vec<ArrayRef>> {
    if enc == EmbeddingEncoding::Float32 {
        return Ok(vec![Arc::clone(array)]);
    }
    let fields = encoded_fields(field, enc)?;
    let err = |reason: &str| Error::Column { sink: "geoparquet", column: field.name().clone(), reason: reason.into() };
    let nested_type = |i: usize| match fields[i].data_type() {
        DataType::FixedSizeList(f, _) | DataType::List(f) => Ok(Arc::clone(f)),
        _ => Err(err("unexpected output type")),
    };
    match layout(field)? {
        Layout::Vectors { .. } => {
            let list =
                array.as_any().downcast_ref::<FixedSizeListArray>().ok_or_else(|| err("not a fixed-size list"))?;
            let (values, scales) = encode_vectors(field.name(), list, enc)?;
            let mut out: Vec<ArrayRef> = vec![Arc::new(values)];
            out.extend(scales.map(|s| Arc::new(s) as ArrayRef));
            Ok(out)
        }
        Layout::FixedPatches { patches, .. } => {
            let outer =
                array.as_any().downcast_ref::<FixedSizeListArray>().ok_or_else(|| err("not a fixed-size list"))?;
            let inner = outer
                .values()
                .as_any()
                .downcast_ref::<FixedSizeListArray>()
                .ok_or_else(|| err("items are not fixed-size lists"))?;
            let (values, scales) = encode_vectors(field.name(), inner, enc)?;
            let mut out: Vec<ArrayRef> = vec![Arc::new(FixedSizeListArray::try_new(
                nested_type(0)?,
                patches,
                Arc::new(values),
                outer.nulls().cloned(),
            )?)];
            if let Some(s) = scales {
                out.push(Arc::new(FixedSizeListArray::try_new(
                    nested_type(1)?,
                    patches,
                    Arc::new(s),
                    outer.nulls().cloned(),
                )?));
            }
            Ok(out)
        }
        Layout::Patches { .. } => {
            let outer = array.as_any().downcast_ref::<ListArray>().ok_or_else(|| err("not a list"))?;
            let inner = outer
                .values()
                .as_any()
                .downcast_ref::<FixedSizeListArray>()
                .ok_or_else(|| err("items are not fixed-size lists"))?;
            let (values, scales) = encode_vectors(field.name(), inner, enc)?;
            let offsets = outer.offsets().clone();
            let mut out: Vec<ArrayRef> = vec![Arc::new(ListArray::try_new(
                nested_type(0)?,
                offsets.clone(),
                Arc::new(values),
                outer.nulls().cloned(),
            )?)];
            if let Some(s) = scales {
                out.push(Arc::new(ListArray::try_new(nested_type(1)?, offsets, Arc::new(s), outer.nulls().cloned())?));
            }
            Ok(out)
        }
    }
}

/// Encodes every vector of `list` (`FixedSizeList<Float32, D>`); the scales for Int8.
fn encode_vectors(
    column: &str,
    list: &FixedSizeListArray,
    enc: EmbeddingEncoding,
) -> Result<(FixedSizeListArray, Option<Float32Array>)> {
    let err = |reason: String| Error::Column { sink: "geoparquet", column: column.into(), reason };
    let DataType::FixedSizeList(item, dim) = list.data_type() else {
        return Err(err("not a fixed-size list".into()));
    };
    let values =
        list.values().as_any().downcast_ref::<Float32Array>().ok_or_else(|| err("values are not Float32".into()))?;
    let d = usize::try_from(*dim).map_err(|_| err("negative list size".into()))?;
    // The values of vector i, whatever the list's offset into its child array.
    let start = list.offset() * d;
    let vector = |i: usize| &values.values()[start + i * d..start + (i + 1) * d];
    let n = list.len();
    match enc {
        EmbeddingEncoding::Float32 => Ok((list.clone(), None)),
        EmbeddingEncoding::Float16 => {
            let mut out = Vec::with_capacity(n * d);
            for i in 0..n {
                for &x in vector(i) {
                    let h = f16::from_f32(x);
                    if x.is_finite() && !h.is_finite() {
                        return Err(err(format!("vector {i}: {x} overflows Float16 (max 65504)")));
                    }
                    out.push(h);
                }
            }
            let item = with_type(item, DataType::Float16);
            Ok((
                FixedSizeListArray::try_new(item, *dim, Arc::new(Float16Array::from(out)), list.nulls().cloned())?,
                None,
            ))
        }
        EmbeddingEncoding::Int8 => {
            let mut out = Vec::with_capacity(n * d);
            let mut scales = Vec::with_capacity(n);
            for i in 0..n {
                let v = vector(i);
                if list.is_null(i) {
                    out.extend(std::iter::repeat_n(0i8, d));
                    scales.push(None);
                    continue;
                }
                if let Some(bad) = v.iter().find(|x| !x.is_finite()) {
                    return Err(err(format!("vector {i}: {bad} cannot be quantised to Int8")));
                }
                let (scale, q) = quantize_int8(v);
                out.extend(q);
                scales.push(Some(scale));
            }
            let item = with_type(item, DataType::Int8);
            let values =
                FixedSizeListArray::try_new(item, *dim, Arc::new(Int8Array::from(out)), list.nulls().cloned())?;
            Ok((values, Some(Float32Array::from(scales))))
        }
    }
}

/// Symmetric Int8 quantisation of one finite vector: `(scale, q)` with `x ≈ q * scale`.
pub fn quantize_int8(v: &[f32]) -> (f32, impl Iterator<Item = i8> + '_) {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    let scale = max / 127.0;
    // Divide in f64: `x / scale` then rounds once, keeping the error within scale / 2.
    let inv = if scale > 0.0 { 1.0 / f64::from(scale) } else { 0.0 };
    (scale, v.iter().map(move |&x| (f64::from(x) * inv).round().clamp(-127.0, 127.0) as i8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use terrastream_ingest::schema::{embedding_field, fixed_list};

    fn noise(n: usize, seed: u64) -> Vec<f32> {
        (0..n as u64)
            .map(|i| {
                ((seed.wrapping_add(i).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
                    * 3.0
            })
            .collect()
    }

    fn vectors(rows: usize, dim: usize, seed: u64) -> FixedSizeListArray {
        let DataType::FixedSizeList(item, len) = embedding_field(dim).data_type().clone() else { unreachable!() };
        FixedSizeListArray::try_new(item, len, Arc::new(Float32Array::from(noise(rows * dim, seed))), None)
            .expect("list")
    }

    #[test]
    fn int8_error_is_at_most_half_a_step() {
        let field = embedding_field(64);
        let x: ArrayRef = Arc::new(vectors(50, 64, 7));
        let out = encode(&field, &x, EmbeddingEncoding::Int8).expect("encode");
        assert_eq!(out.len(), 2);
        let q = out[0].as_any().downcast_ref::<FixedSizeListArray>().expect("list");
        let q = q.values().as_any().downcast_ref::<Int8Array>().expect("int8");
        let s = out[1].as_any().downcast_ref::<Float32Array>().expect("scale");
        let orig = noise(50 * 64, 7);
        for r in 0..50 {
            let scale = f64::from(s.value(r));
            let max = orig[r * 64..(r + 1) * 64].iter().fold(0f32, |m, v| m.max(v.abs()));
            assert_eq!(s.value(r), max / 127.0);
            for k in 0..64 {
                let (xv, qv) = (f64::from(orig[r * 64 + k]), f64::from(q.value(r * 64 + k)));
                assert!(
                    (xv - qv * scale).abs() <= scale / 2.0 * (1.0 + 1e-6),
                    "row {r} item {k}: {xv} vs {qv} * {scale}"
                );
            }
            assert!((0..64).any(|k| q.value(r * 64 + k).abs() == 127), "the largest value maps to +-127");
        }
    }

    #[test]
    fn zero_vectors_and_non_finite_values() {
        let (scale, q) = quantize_int8(&[0.0, -0.0, 0.0]);
        assert_eq!((scale, q.collect::<Vec<_>>()), (0.0, vec![0, 0, 0]));
        let field = embedding_field(2);
        let DataType::FixedSizeList(item, _) = field.data_type().clone() else { unreachable!() };
        let bad: ArrayRef = Arc::new(
            FixedSizeListArray::try_new(item, 2, Arc::new(Float32Array::from(vec![1.0, f32::NAN])), None).expect("l"),
        );
        let err = encode(&field, &bad, EmbeddingEncoding::Int8).expect_err("NaN");
        assert!(err.to_string().contains("embedding") && err.to_string().contains("NaN"), "{err}");
        let DataType::FixedSizeList(item, _) = field.data_type().clone() else { unreachable!() };
        let big: ArrayRef = Arc::new(
            FixedSizeListArray::try_new(item, 2, Arc::new(Float32Array::from(vec![1.0, 1e6])), None).expect("l"),
        );
        assert!(
            encode(&field, &big, EmbeddingEncoding::Float16).expect_err("overflow").to_string().contains("Float16")
        );
    }

    #[test]
    fn float16_error_is_relative_half_ulp() {
        let field = embedding_field(32);
        let x: ArrayRef = Arc::new(vectors(10, 32, 3));
        let out = encode(&field, &x, EmbeddingEncoding::Float16).expect("encode");
        assert_eq!(out.len(), 1);
        let h = out[0].as_any().downcast_ref::<FixedSizeListArray>().expect("list");
        let h = h.values().as_any().downcast_ref::<Float16Array>().expect("f16");
        for (i, x) in noise(320, 3).into_iter().enumerate() {
            let back = h.value(i).to_f32();
            assert!((back - x).abs() <= (x.abs() * 2f32.powi(-11)).max(2f32.powi(-25)), "{x} -> {back}");
        }
    }

    #[test]
    fn patch_lists_keep_their_nesting_and_get_per_patch_scales() {
        let (p, d) = (4usize, 8usize);
        let inner = Arc::new(Field::new("item", fixed_list(DataType::Float32, d), false));
        let field = Field::new(PATCH_EMBEDDINGS, DataType::FixedSizeList(Arc::clone(&inner), p as i32), false);
        let x: ArrayRef = Arc::new(
            FixedSizeListArray::try_new(inner, p as i32, Arc::new(vectors(3 * p, d, 9)), None).expect("patches"),
        );
        let fields = encoded_fields(&field, EmbeddingEncoding::Int8).expect("fields");
        let out = encode(&field, &x, EmbeddingEncoding::Int8).expect("encode");
        assert_eq!(fields[1].name(), "patch_embeddings_scale");
        for (f, a) in fields.iter().zip(&out) {
            assert_eq!(f.data_type(), a.data_type(), "{}", f.name());
            assert_eq!(a.len(), 3);
        }
        let scales = out[1].as_any().downcast_ref::<FixedSizeListArray>().expect("scales");
        assert_eq!(scales.value_length(), p as i32);
        // A variable-length list of patches too.
        let list_field = Field::new(
            PATCH_EMBEDDINGS,
            DataType::List(Arc::new(Field::new("item", fixed_list(DataType::Float32, d), false))),
            true,
        );
        let offsets = arrow_buffer::OffsetBuffer::new(vec![0i32, 1, 4].into());
        let DataType::List(item) = list_field.data_type().clone() else { unreachable!() };
        let x: ArrayRef = Arc::new(ListArray::try_new(item, offsets, Arc::new(vectors(4, d, 1)), None).expect("list"));
        let out = encode(&list_field, &x, EmbeddingEncoding::Float16).expect("encode");
        assert_eq!(
            out[0].data_type(),
            encoded_fields(&list_field, EmbeddingEncoding::Float16).expect("f")[0].data_type()
        );
        assert_eq!(out[0].as_any().downcast_ref::<ListArray>().expect("list").value_length(1), 3);
    }
}

//! Vector functions on embedding columns: `cosine_similarity(a, b)`, `l2_distance(a, b)`,
//! `inner_product(a, b)` and `vector_norm(a)`, each with an optional last argument `scale`
//! (the per-row `embedding_scale` of Int8 embeddings, multiplying `a`).
//!
//! Arguments are `FixedSizeList<Float32 | Float16 | Int8>` columns (the three embedding
//! encodings of the GeoParquet sink) or any numeric list (an array literal `[0.1, 0.2, ...]`,
//! coerced to `List<Float32>`). Results are Float32, NULL where an input row is NULL or a
//! cosine has a zero-length vector. `cosine_similarity` needs no scale: it does not change the
//! angle.
//!
//! The common shape, a column against one query vector, runs over the column's contiguous
//! values buffer without a copy (Float32) or through one scratch row per batch (Float16, Int8),
//! with several independent accumulators per row so that the compiler vectorises the loop,
//! and AVX2+FMA code chosen at run time where the CPU has it.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, Float16Array, Float32Array, GenericListArray, Int8Array,
    OffsetSizeTrait,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Float32Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};

/// Which vector function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VectorOp {
    /// `a·b / (|a| |b|)`, in [-1, 1].
    Cosine,
    /// Euclidean distance `|a - b|`.
    L2,
    /// `a·b`.
    Inner,
    /// `|a|` (one vector argument).
    Norm,
}

impl VectorOp {
    /// The SQL name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cosine => "cosine_similarity",
            Self::L2 => "l2_distance",
            Self::Inner => "inner_product",
            Self::Norm => "vector_norm",
        }
    }

    fn vector_args(self) -> usize {
        if self == Self::Norm { 1 } else { 2 }
    }
}

/// A vector function as a DataFusion scalar UDF.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct VectorFunction {
    op: VectorOp,
    signature: Signature,
}

impl VectorFunction {
    /// The UDF for `op`.
    pub fn udf(op: VectorOp) -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            op,
            signature: Signature::user_defined(Volatility::Immutable),
        })
    }
}

/// The four vector functions.
pub fn functions() -> Vec<ScalarUDF> {
    [VectorOp::Cosine, VectorOp::L2, VectorOp::Inner, VectorOp::Norm]
        .into_iter()
        .map(VectorFunction::udf)
        .collect()
}

/// The type a vector argument is read as: the embedding encodings as they are, anything else
/// numeric as `List<Float32>`.
fn coerce_vector(name: &str, t: &DataType) -> Result<DataType> {
    let numeric = |t: &DataType| t.is_numeric() || matches!(t, DataType::Null);
    match t {
        DataType::Null => Ok(t.clone()),
        DataType::FixedSizeList(f, _)
            if matches!(f.data_type(), DataType::Float32 | DataType::Float16 | DataType::Int8) =>
        {
            Ok(t.clone())
        }
        DataType::FixedSizeList(f, n) if numeric(f.data_type()) => Ok(DataType::FixedSizeList(
            Arc::new(Field::new("item", DataType::Float32, true)),
            *n,
        )),
        DataType::List(f) | DataType::LargeList(f) | DataType::ListView(f) | DataType::LargeListView(f)
            if numeric(f.data_type()) =>
        {
            Ok(DataType::List(Arc::new(Field::new("item", DataType::Float32, true))))
        }
        other => plan_err!("{name}: expected a numeric vector (FixedSizeList or List), got {other}"),
    }
}

impl ScalarUDFImpl for VectorFunction {
    fn name(&self) -> &str {
        self.op.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float32)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let n = self.op.vector_args();
        if arg_types.len() != n && arg_types.len() != n + 1 {
            let args = if n == 1 {
                "(vector [, scale])"
            } else {
                "(vector, vector [, scale])"
            };
            return plan_err!("{}{args}: got {} arguments", self.op.name(), arg_types.len());
        }
        let mut out = Vec::with_capacity(arg_types.len());
        for t in &arg_types[..n] {
            out.push(coerce_vector(self.op.name(), t)?);
        }
        if let Some(scale) = arg_types.get(n) {
            if !(scale.is_numeric() || scale == &DataType::Null) {
                return plan_err!("{}: scale must be numeric, got {scale}", self.op.name());
            }
            out.push(DataType::Float32);
        }
        Ok(out)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let all_scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let n = self.op.vector_args();
        let mut arrays = Vec::with_capacity(args.args.len());
        for a in &args.args {
            arrays.push(match a {
                ColumnarValue::Array(a) => (Arc::clone(a), false),
                ColumnarValue::Scalar(s) => (s.to_array_of_size(1)?, rows != 1),
            });
        }
        let a = Vectors::new(self.op.name(), &arrays[0].0, arrays[0].1)?;
        let b = if n == 2 {
            Some(Vectors::new(self.op.name(), &arrays[1].0, arrays[1].1)?)
        } else {
            None
        };
        let scale = match arrays.get(n) {
            Some((s, broadcast)) => Some((
                s.as_primitive_opt::<Float32Type>().ok_or_else(|| scale_type(self.op))?,
                *broadcast,
            )),
            None => None,
        };
        let out_rows = if all_scalar { 1 } else { rows };
        let result = evaluate(self.op, &a, b.as_ref(), scale, out_rows)?;
        if all_scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?))
        } else {
            Ok(ColumnarValue::Array(Arc::new(result)))
        }
    }
}

fn scale_type(op: VectorOp) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::Execution(format!("{}: scale is not Float32", op.name()))
}

/// The values of a vector argument.
enum Values<'a> {
    F32(&'a [f32]),
    F16(&'a Float16Array),
    I8(&'a [i8]),
    /// An all-NULL argument.
    Null,
}

/// Where row `i`'s values are.
enum Rows<'a> {
    /// `dim` values a row, starting at row `first` of the values.
    Fixed {
        dim: usize,
        first: usize,
    },
    /// List offsets (already shifted by the array's offset).
    Var32(&'a [i32]),
    Var64(&'a [i64]),
}

/// A vector argument: a column of vectors, or one vector repeated (`broadcast`).
struct Vectors<'a> {
    values: Values<'a>,
    rows: Rows<'a>,
    nulls: Option<&'a NullBuffer>,
    broadcast: bool,
}

impl<'a> Vectors<'a> {
    fn new(name: &str, array: &'a ArrayRef, broadcast: bool) -> Result<Self> {
        let values_of = |v: &'a ArrayRef| -> Result<Values<'a>> {
            Ok(match v.data_type() {
                DataType::Float32 => Values::F32(v.as_primitive::<Float32Type>().values()),
                DataType::Float16 => {
                    Values::F16(v.as_any().downcast_ref::<Float16Array>().ok_or_else(|| {
                        datafusion::error::DataFusionError::Internal(format!("{name}: Float16 values"))
                    })?)
                }
                DataType::Int8 => Values::I8(
                    v.as_any()
                        .downcast_ref::<Int8Array>()
                        .ok_or_else(|| datafusion::error::DataFusionError::Internal(format!("{name}: Int8 values")))?
                        .values(),
                ),
                other => return exec_err!("{name}: vector values of type {other} (expected Float32, Float16, Int8)"),
            })
        };
        match array.data_type() {
            DataType::Null => Ok(Self {
                values: Values::Null,
                rows: Rows::Fixed { dim: 0, first: 0 },
                nulls: None,
                broadcast,
            }),
            DataType::FixedSizeList(_, dim) => {
                let list: &'a FixedSizeListArray = array.as_fixed_size_list();
                let dim = usize::try_from(*dim).unwrap_or(0);
                Ok(Self {
                    values: values_of(list.values())?,
                    rows: Rows::Fixed {
                        dim,
                        first: list.offset(),
                    },
                    nulls: list.nulls(),
                    broadcast,
                })
            }
            DataType::List(_) => Self::list(array.as_list::<i32>(), broadcast, values_of, |o| Rows::Var32(o)),
            DataType::LargeList(_) => Self::list(array.as_list::<i64>(), broadcast, values_of, |o| Rows::Var64(o)),
            other => exec_err!("{name}: expected a vector column, got {other}"),
        }
    }

    fn list<O: OffsetSizeTrait>(
        list: &'a GenericListArray<O>,
        broadcast: bool,
        values_of: impl Fn(&'a ArrayRef) -> Result<Values<'a>>,
        rows: impl Fn(&'a [O]) -> Rows<'a>,
    ) -> Result<Self> {
        Ok(Self {
            values: values_of(list.values())?,
            rows: rows(list.value_offsets()),
            nulls: list.nulls(),
            broadcast,
        })
    }

    fn is_null(&self, i: usize) -> bool {
        matches!(self.values, Values::Null)
            || self
                .nulls
                .is_some_and(|n| n.is_null(if self.broadcast { 0 } else { i }))
    }

    fn range(&self, i: usize) -> (usize, usize) {
        let i = if self.broadcast { 0 } else { i };
        match self.rows {
            Rows::Fixed { dim, first } => ((first + i) * dim, (first + i + 1) * dim),
            Rows::Var32(o) => (o[i] as usize, o[i + 1] as usize),
            Rows::Var64(o) => (o[i] as usize, o[i + 1] as usize),
        }
    }

    /// Row `i` as floats: borrowed from a Float32 buffer, or converted into `scratch`.
    fn row<'s>(&'s self, i: usize, scratch: &'s mut Vec<f32>) -> &'s [f32] {
        let (start, end) = self.range(i);
        match &self.values {
            Values::F32(v) => &v[start..end],
            Values::F16(v) => {
                scratch.clear();
                scratch.extend(v.values()[start..end].iter().map(|x| x.to_f32()));
                scratch
            }
            Values::I8(v) => {
                scratch.clear();
                scratch.extend(v[start..end].iter().map(|&x| f32::from(x)));
                scratch
            }
            Values::Null => &[],
        }
    }
}

/// Evaluates `op` over `rows` rows.
fn evaluate(
    op: VectorOp,
    a: &Vectors<'_>,
    b: Option<&Vectors<'_>>,
    scale: Option<(&Float32Array, bool)>,
    rows: usize,
) -> Result<Float32Array> {
    let mut out = vec![0f32; rows];
    let mut valid = vec![true; rows];
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA, the only requirement of `evaluate_fma`.
            unsafe { evaluate_fma(op, a, b, scale, &mut out, &mut valid)? };
            return Ok(finish(out, valid));
        }
    }
    evaluate_with::<false>(op, a, b, scale, &mut out, &mut valid)?;
    Ok(finish(out, valid))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn evaluate_fma(
    op: VectorOp,
    a: &Vectors<'_>,
    b: Option<&Vectors<'_>>,
    scale: Option<(&Float32Array, bool)>,
    out: &mut [f32],
    valid: &mut [bool],
) -> Result<()> {
    evaluate_with::<true>(op, a, b, scale, out, valid)
}

fn finish(out: Vec<f32>, valid: Vec<bool>) -> Float32Array {
    let nulls = if valid.iter().all(|&v| v) {
        None
    } else {
        Some(NullBuffer::from(valid))
    };
    Float32Array::new(out.into(), nulls)
}

#[inline(always)]
fn evaluate_with<const FMA: bool>(
    op: VectorOp,
    a: &Vectors<'_>,
    b: Option<&Vectors<'_>>,
    scale: Option<(&Float32Array, bool)>,
    out: &mut [f32],
    valid: &mut [bool],
) -> Result<()> {
    let (mut sa, mut sb) = (Vec::new(), Vec::new());
    // The query vector of the common shape, and its norm, computed once.
    let fixed_b = match b {
        Some(b) if b.broadcast && !b.is_null(0) => {
            let q = b.row(0, &mut sb).to_vec();
            let qq = kernel::sq::<FMA>(&q);
            Some((q, qq))
        }
        _ => None,
    };
    for i in 0..out.len() {
        let s = match scale {
            Some((s, broadcast)) => {
                let j = if broadcast { 0 } else { i };
                if s.is_null(j) {
                    valid[i] = false;
                    continue;
                }
                Some(s.value(j))
            }
            None => None,
        };
        if a.is_null(i) || b.is_some_and(|b| b.is_null(i)) {
            valid[i] = false;
            continue;
        }
        let x = a.row(i, &mut sa);
        let (q, qq) = match (&fixed_b, b) {
            (Some((q, qq)), _) => (q.as_slice(), *qq),
            (None, Some(b)) => {
                let q = b.row(i, &mut sb);
                (
                    q,
                    if op == VectorOp::Cosine {
                        kernel::sq::<FMA>(q)
                    } else {
                        0.0
                    },
                )
            }
            (None, None) => (&[][..], 0.0),
        };
        if op != VectorOp::Norm && x.len() != q.len() {
            return exec_err!("{}: vectors of {} and {} values (row {i})", op.name(), x.len(), q.len());
        }
        let s = s.unwrap_or(1.0);
        out[i] = match op {
            VectorOp::Cosine => {
                let (dot, xx) = kernel::dot_sq::<FMA>(x, q);
                let denominator = (xx * qq).sqrt();
                if denominator == 0.0 {
                    valid[i] = false;
                    0.0
                } else {
                    // A positive scale cancels; a negative one flips the sign.
                    s.signum() * dot / denominator
                }
            }
            VectorOp::Inner => s * kernel::dot::<FMA>(x, q),
            VectorOp::L2 => kernel::l2sq::<FMA>(x, s, q).sqrt(),
            VectorOp::Norm => s.abs() * kernel::sq::<FMA>(x).sqrt(),
        };
    }
    Ok(())
}

/// Per-row reductions with `LANES` independent accumulators (so that the loop vectorises
/// without reassociating floating-point sums, which the compiler may not do on its own).
mod kernel {
    const LANES: usize = 16;

    #[inline(always)]
    fn madd<const FMA: bool>(x: f32, y: f32, acc: f32) -> f32 {
        if FMA { x.mul_add(y, acc) } else { x * y + acc }
    }

    /// `(a·q, a·a)`.
    #[inline(always)]
    pub(super) fn dot_sq<const FMA: bool>(a: &[f32], q: &[f32]) -> (f32, f32) {
        let (mut d, mut s) = ([0f32; LANES], [0f32; LANES]);
        let (ca, cq) = (a.chunks_exact(LANES), q.chunks_exact(LANES));
        let (ra, rq) = (ca.remainder(), cq.remainder());
        for (x, y) in ca.zip(cq) {
            for l in 0..LANES {
                d[l] = madd::<FMA>(x[l], y[l], d[l]);
                s[l] = madd::<FMA>(x[l], x[l], s[l]);
            }
        }
        let (mut dt, mut st) = (d.iter().sum::<f32>(), s.iter().sum::<f32>());
        for (x, y) in ra.iter().zip(rq) {
            dt = madd::<FMA>(*x, *y, dt);
            st = madd::<FMA>(*x, *x, st);
        }
        (dt, st)
    }

    /// `a·q`.
    #[inline(always)]
    pub(super) fn dot<const FMA: bool>(a: &[f32], q: &[f32]) -> f32 {
        let mut d = [0f32; LANES];
        let (ca, cq) = (a.chunks_exact(LANES), q.chunks_exact(LANES));
        let (ra, rq) = (ca.remainder(), cq.remainder());
        for (x, y) in ca.zip(cq) {
            for l in 0..LANES {
                d[l] = madd::<FMA>(x[l], y[l], d[l]);
            }
        }
        let mut dt = d.iter().sum::<f32>();
        for (x, y) in ra.iter().zip(rq) {
            dt = madd::<FMA>(*x, *y, dt);
        }
        dt
    }

    /// `a·a`.
    #[inline(always)]
    pub(super) fn sq<const FMA: bool>(a: &[f32]) -> f32 {
        dot::<FMA>(a, a)
    }

    /// `|s a - q|²`.
    #[inline(always)]
    pub(super) fn l2sq<const FMA: bool>(a: &[f32], s: f32, q: &[f32]) -> f32 {
        let mut d = [0f32; LANES];
        let (ca, cq) = (a.chunks_exact(LANES), q.chunks_exact(LANES));
        let (ra, rq) = (ca.remainder(), cq.remainder());
        for (x, y) in ca.zip(cq) {
            for l in 0..LANES {
                let e = madd::<FMA>(x[l], s, -y[l]);
                d[l] = madd::<FMA>(e, e, d[l]);
            }
        }
        let mut dt = d.iter().sum::<f32>();
        for (x, y) in ra.iter().zip(rq) {
            let e = madd::<FMA>(*x, s, -*y);
            dt = madd::<FMA>(e, e, dt);
        }
        dt
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{FixedSizeListBuilder, Float32Builder, ListArray};
    use datafusion::arrow::datatypes::Float32Type;
    use datafusion::common::config::ConfigOptions;

    fn fixed(rows: &[Vec<f32>]) -> ArrayRef {
        let dim = rows[0].len() as i32;
        let mut b = FixedSizeListBuilder::new(Float32Builder::new(), dim);
        for r in rows {
            b.values().append_slice(r);
            b.append(true);
        }
        Arc::new(b.finish())
    }

    fn call(op: VectorOp, args: Vec<ColumnarValue>, rows: usize) -> Vec<Option<f32>> {
        let udf = VectorFunction::udf(op);
        let arg_fields = args
            .iter()
            .map(|a| Arc::new(Field::new("a", a.data_type(), true)))
            .collect();
        let out = udf
            .invoke_with_args(ScalarFunctionArgs {
                args,
                arg_fields,
                number_rows: rows,
                return_field: Arc::new(Field::new("r", DataType::Float32, true)),
                config_options: Arc::new(ConfigOptions::default()),
            })
            .expect("invoke");
        let a = out.into_array(rows).expect("array");
        a.as_primitive::<Float32Type>().iter().collect()
    }

    /// Straightforward f64 references, independent of the kernels.
    fn reference(op: VectorOp, a: &[f32], b: &[f32]) -> f64 {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
        let na = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        let nb = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        match op {
            VectorOp::Cosine => dot / (na * nb),
            VectorOp::Inner => dot,
            VectorOp::Norm => na,
            VectorOp::L2 => a
                .iter()
                .zip(b)
                .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
                .sum::<f64>()
                .sqrt(),
        }
    }

    fn random_rows(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        // A small LCG: reproducible values without a dependency.
        let mut state = seed;
        (0..n)
            .map(|_| {
                (0..dim)
                    .map(|_| {
                        state = state
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn column_against_literal_matches_f64_reference() {
        // 37 values: exercises the lane remainder.
        let rows = random_rows(50, 37, 7);
        let q = random_rows(1, 37, 8).remove(0);
        let col = fixed(&rows);
        for op in [VectorOp::Cosine, VectorOp::L2, VectorOp::Inner, VectorOp::Norm] {
            let mut args = vec![ColumnarValue::Array(Arc::clone(&col))];
            if op != VectorOp::Norm {
                args.push(ColumnarValue::Scalar(
                    ScalarValue::try_from_array(&fixed(&[q.clone()]), 0).expect("scalar"),
                ));
            }
            let got = call(op, args, rows.len());
            for (r, g) in rows.iter().zip(&got) {
                let want = reference(op, r, &q);
                let g = f64::from(g.expect("value"));
                assert!((g - want).abs() <= 1e-5 * want.abs().max(1.0), "{op:?}: {g} vs {want}");
            }
        }
    }

    #[test]
    fn list_literal_and_sliced_column_and_nulls() {
        let rows = random_rows(6, 16, 3);
        let mut b = FixedSizeListBuilder::new(Float32Builder::new(), 16);
        for (i, r) in rows.iter().enumerate() {
            b.values().append_slice(r);
            b.append(i != 2);
        }
        let col: ArrayRef = Arc::new(b.finish().slice(1, 4));
        let q = ListArray::from_iter_primitive::<Float32Type, _, _>(vec![Some(rows[0].iter().map(|x| Some(*x)))]);
        let got = call(
            VectorOp::Cosine,
            vec![
                ColumnarValue::Array(col),
                ColumnarValue::Scalar(ScalarValue::List(Arc::new(q))),
            ],
            4,
        );
        assert_eq!(got[1], None, "a NULL row gives NULL");
        for (k, i) in [(0, 1), (2, 3), (3, 4)] {
            let want = reference(VectorOp::Cosine, &rows[i], &rows[0]);
            assert!((f64::from(got[k].expect("value")) - want).abs() < 1e-6);
        }
    }

    #[test]
    fn int8_with_scale_and_dimension_mismatch() {
        let mut b = FixedSizeListBuilder::new(datafusion::arrow::array::Int8Builder::new(), 3);
        b.values().append_slice(&[1, -2, 3]);
        b.append(true);
        let col: ArrayRef = Arc::new(b.finish());
        let q = ScalarValue::try_from_array(&fixed(&[vec![0.5, 0.5, 0.5]]), 0).expect("q");
        let scale = ScalarValue::Float32(Some(0.25));
        let got = call(
            VectorOp::Inner,
            vec![
                ColumnarValue::Array(Arc::clone(&col)),
                ColumnarValue::Scalar(q),
                ColumnarValue::Scalar(scale),
            ],
            1,
        );
        assert_eq!(got, vec![Some((0.25 - 0.5 + 0.75) * 0.5)]);

        let udf = VectorFunction::udf(VectorOp::L2);
        let bad = ScalarValue::try_from_array(&fixed(&[vec![0.5, 0.5]]), 0).expect("q");
        let err = udf
            .invoke_with_args(ScalarFunctionArgs {
                args: vec![ColumnarValue::Array(col), ColumnarValue::Scalar(bad)],
                arg_fields: vec![],
                number_rows: 1,
                return_field: Arc::new(Field::new("r", DataType::Float32, true)),
                config_options: Arc::new(ConfigOptions::default()),
            })
            .expect_err("3 vs 2 values");
        assert!(err.to_string().contains("vectors of 3 and 2 values"), "{err}");
    }
}

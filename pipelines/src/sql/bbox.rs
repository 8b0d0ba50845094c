//! Row-group pruning on the bbox covering column (`bbox: struct<xmin, ymin, xmax, ymax>`).
//!
//! DataFusion pushes `WHERE bbox.xmin <= 1.5 AND ...` down to the Parquet scan, but prunes
//! row groups only on the statistics of top-level columns, and `bbox.xmin` is a leaf of a
//! struct. [`StructPruned`] wraps a listing table: for filters comparing a field of the covering
//! struct with a constant it reads each file's footer, checks the min/max statistics of the
//! leaf column (`bbox.xmin`, ...) per row group, and hands the scan a `ParquetAccessPlan`
//! that skips the row groups no row of which can match (and drops files with none left).
//! The filters still run on the rows read, so the result is the same with or without it.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Result, ScalarValue};
use datafusion::datasource::physical_plan::parquet::ParquetAccessPlan;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig};
use datafusion::datasource::source::DataSourceExec;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown, TableType};
use datafusion::parquet::file::metadata::RowGroupMetaData;
use datafusion::parquet::file::statistics::Statistics;
use datafusion::physical_plan::ExecutionPlan;

use super::tables::parquet_metadata;

/// The covering column of GeoParquet 1.1 footprints.
pub const BBOX: &str = "bbox";

/// `struct_column.field <op> value`, as a row group's statistics can refute it.
#[derive(Debug, Clone, PartialEq)]
struct Bound {
    field: String,
    op: Operator,
    value: f64,
}

impl Bound {
    /// Whether a row group whose `field` lies in `[min, max]` may hold a matching row.
    fn may_match(&self, min: f64, max: f64) -> bool {
        match self.op {
            Operator::Lt => min < self.value,
            Operator::LtEq => min <= self.value,
            Operator::Gt => max > self.value,
            Operator::GtEq => max >= self.value,
            Operator::Eq => min <= self.value && self.value <= max,
            _ => true,
        }
    }
}

/// `get_field(column, 'field')` of `column`: the field name.
fn struct_field<'a>(expr: &'a Expr, column: &str) -> Option<&'a str> {
    let Expr::ScalarFunction(f) = expr else { return None };
    if f.name() != "get_field" {
        return None;
    }
    match f.args.as_slice() {
        [
            Expr::Column(c),
            Expr::Literal(ScalarValue::Utf8(Some(name)) | ScalarValue::Utf8View(Some(name)), _),
        ] if c.name == column => Some(name),
        _ => None,
    }
}

fn number(expr: &Expr) -> Option<f64> {
    match expr {
        Expr::Literal(v, _) => match v.cast_to(&datafusion::arrow::datatypes::DataType::Float64).ok()? {
            ScalarValue::Float64(Some(x)) => Some(x),
            _ => None,
        },
        Expr::Cast(c) => number(&c.expr),
        Expr::TryCast(c) => number(&c.expr),
        _ => None,
    }
}

/// The bounds on fields of `column` in `filters` (their conjuncts; others are ignored).
fn bounds(filters: &[Expr], column: &str) -> Vec<Bound> {
    let mut out = Vec::new();
    for conjunct in filters.iter().flat_map(|f| split_conjunction(f)) {
        let Expr::BinaryExpr(BinaryExpr { left, op, right }) = conjunct else {
            continue;
        };
        let (field, op, value) = match (struct_field(left, column), number(right)) {
            (Some(f), Some(v)) => (f, *op, v),
            _ => match (number(left), struct_field(right, column), op.swap()) {
                (Some(v), Some(f), Some(op)) => (f, op, v),
                _ => continue,
            },
        };
        if matches!(
            op,
            Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq | Operator::Eq
        ) {
            out.push(Bound {
                field: field.to_string(),
                op,
                value,
            });
        }
    }
    out
}

fn min_max(stats: &Statistics) -> Option<(f64, f64)> {
    match stats {
        Statistics::Double(s) => Some((*s.min_opt()?, *s.max_opt()?)),
        Statistics::Float(s) => Some((f64::from(*s.min_opt()?), f64::from(*s.max_opt()?))),
        _ => None,
    }
}

/// Whether row group `rg` may hold a row meeting every bound (unknown statistics: yes).
fn row_group_may_match(rg: &RowGroupMetaData, column: &str, bounds: &[Bound]) -> bool {
    bounds.iter().all(|b| {
        rg.columns()
            .iter()
            .find(|c| matches!(c.column_path().parts(), [s, f] if s == column && *f == b.field))
            .and_then(|c| c.statistics())
            .and_then(min_max)
            .is_none_or(|(min, max)| b.may_match(min, max))
    })
}

/// A table whose Parquet scans skip row groups by the statistics of a struct column's fields.
#[derive(Debug)]
pub struct StructPruned {
    inner: Arc<dyn TableProvider>,
    column: String,
}

impl StructPruned {
    /// `inner` (a Parquet listing table), pruned on the fields of `column`.
    pub fn new(inner: Arc<dyn TableProvider>, column: &str) -> Self {
        Self {
            inner,
            column: column.to_string(),
        }
    }

    /// `plan` (the inner table's scan) with access plans that skip the row groups `bounds`
    /// exclude.
    async fn prune(
        &self,
        state: &dyn Session,
        plan: Arc<dyn ExecutionPlan>,
        bounds: &[Bound],
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(exec) = plan.downcast_ref::<DataSourceExec>() else {
            return Ok(plan);
        };
        let Some(config) = exec.data_source().downcast_ref::<FileScanConfig>() else {
            return Ok(plan);
        };
        let mut config = config.clone();
        let store = state.runtime_env().object_store(&config.object_store_url)?;
        let (mut kept, mut total) = (0usize, 0usize);
        let mut groups = Vec::with_capacity(config.file_groups.len());
        for group in std::mem::take(&mut config.file_groups) {
            let mut files = Vec::with_capacity(group.len());
            for mut file in group.into_inner() {
                let metadata = parquet_metadata(state.runtime_env(), store.as_ref(), &file.object_meta).await?;
                let mut access = ParquetAccessPlan::new_all(metadata.num_row_groups());
                let mut any = false;
                for (i, rg) in metadata.row_groups().iter().enumerate() {
                    total += 1;
                    if row_group_may_match(rg, &self.column, bounds) {
                        kept += 1;
                        any = true;
                    } else {
                        access.skip(i);
                    }
                }
                if any {
                    file.extensions.insert(access);
                    files.push(file);
                }
            }
            if !files.is_empty() {
                groups.push(FileGroup::new(files));
            }
        }
        tracing::debug!(column = %self.column, kept, total, "row groups after struct statistics");
        if groups.is_empty() {
            // No row group can match. A scan of no file groups has no partitions, which plans
            // above it that need one (a sort whose filter went into the scan) refuse.
            return Ok(Arc::new(datafusion::physical_plan::empty::EmptyExec::new(plan.schema())));
        }
        config.file_groups = groups;
        Ok(DataSourceExec::from_data_source(config))
    }
}

#[async_trait::async_trait]
impl TableProvider for StructPruned {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let plan = self.inner.scan(state, projection, filters, limit).await?;
        let bounds = bounds(filters, &self.column);
        if bounds.is_empty() {
            return Ok(plan);
        }
        self.prune(state, plan, &bounds).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::functions::core::expr_fn::get_field;
    use datafusion::logical_expr::{col, lit};

    #[test]
    fn bounds_from_both_sides_and_casts() {
        let xmin = get_field(col("bbox"), "xmin");
        let filters = vec![
            xmin.clone()
                .lt_eq(lit(1.5))
                .and(lit(2i64).lt(get_field(col("bbox"), "ymax"))),
            col("other").gt(lit(3)),
            xmin.gt(lit(0.5f32)),
        ];
        let got = bounds(&filters, "bbox");
        assert_eq!(
            got,
            vec![
                Bound {
                    field: "xmin".into(),
                    op: Operator::LtEq,
                    value: 1.5
                },
                Bound {
                    field: "ymax".into(),
                    op: Operator::Gt,
                    value: 2.0
                },
                Bound {
                    field: "xmin".into(),
                    op: Operator::Gt,
                    value: 0.5
                },
            ]
        );
        let b = &got[0];
        assert!(b.may_match(1.0, 9.0) && b.may_match(1.5, 2.0) && !b.may_match(1.6, 2.0));
        assert!(got[1].may_match(0.0, 2.5) && !got[1].may_match(0.0, 2.0));
    }
}

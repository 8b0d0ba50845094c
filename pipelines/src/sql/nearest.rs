//! Nearest neighbours: the table function `nearest(table, query, k)`.
//!
//! `query` is a vector (an array literal, `[0.1, 0.2, ...]`, as many values as the embeddings
//! have) or a chip id, `'<scene_id>/<chip_row>/<chip_col>'` (e.g.
//! `'S2A_29RKH_20200219_0_L2A/2/3'`), whose embedding is the query. The result is the `k` rows
//! of `table` with the highest `cosine_similarity(embedding, query)`, all of the table's
//! columns plus `score` (Float32), best first (equal scores by scene, time, row, column); the
//! query chip itself is among them.
//!
//! It is planned as `ORDER BY score DESC LIMIT k` over the table, which DataFusion runs as a
//! top-k (`SortExec: TopK(fetch=k)`): one heap of `k` rows, no full sort.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{DFSchema, Result, ScalarValue, plan_err};
use datafusion::datasource::provider_as_source;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, TableType, col, lit};
use datafusion::physical_plan::ExecutionPlan;

use super::vector::{VectorFunction, VectorOp};

/// The column the similarity is computed on.
pub const EMBEDDING: &str = "embedding";
/// The similarity column `nearest` adds.
pub const SCORE: &str = "score";
/// Columns that order rows of equal score.
const TIE_BREAK: [&str; 4] = ["scene_id", "datetime", "chip_row", "chip_col"];

/// What the nearest rows are nearest to.
#[derive(Debug, Clone)]
pub enum Query {
    /// A vector literal.
    Vector(ScalarValue),
    /// A chip of the table.
    Chip {
        /// `scene_id`.
        scene_id: String,
        /// `chip_row`.
        row: i32,
        /// `chip_col`.
        col: i32,
    },
}

impl Query {
    /// Parses a chip id, `<scene_id>/<chip_row>/<chip_col>`.
    pub fn chip(id: &str) -> Result<Self> {
        let mut parts = id.rsplitn(3, '/');
        let (col, row, scene) = (parts.next(), parts.next(), parts.next());
        match (
            scene,
            row.and_then(|r| r.parse().ok()),
            col.and_then(|c| c.parse().ok()),
        ) {
            (Some(scene), Some(row), Some(col)) if !scene.is_empty() => Ok(Self::Chip {
                scene_id: scene.to_string(),
                row,
                col,
            }),
            _ => plan_err!("nearest: chip id {id:?} is not '<scene_id>/<chip_row>/<chip_col>'"),
        }
    }
}

/// The `nearest` table function.
#[derive(Debug, Default)]
pub struct NearestFunction;

impl TableFunctionImpl for NearestFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        let [table, query, k] = exprs else {
            return plan_err!("nearest(table, query, k): got {} arguments", exprs.len());
        };
        let name = match table {
            Expr::Column(c) => c.name.clone(),
            other => match constant(args.session(), other)? {
                ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => s,
                v => return plan_err!("nearest: the table is a name, got {v}"),
            },
        };
        let query = match constant(args.session(), query)? {
            ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => {
                Query::chip(&s)?
            }
            v if v.data_type().is_nested() => Query::Vector(v),
            v => return plan_err!("nearest: the query is a vector or a chip id, got {v}"),
        };
        let k = match constant(args.session(), k)?.cast_to(&DataType::Int64)? {
            ScalarValue::Int64(Some(k)) if k > 0 => k as usize,
            v => return plan_err!("nearest: k must be a positive integer, got {v}"),
        };
        let Some(state) = args.session().as_any().downcast_ref::<SessionState>() else {
            return plan_err!("nearest: needs a DataFusion SessionState");
        };
        // The default catalog's tables are in memory: resolving one does no I/O.
        let inner = futures::executor::block_on(state.schema_for_ref(name.as_str())?.table(&name))?;
        let Some(inner) = inner else {
            return plan_err!("nearest: no table {name:?}");
        };
        NearestTable::try_new(name, inner, query, k).map(|t| Arc::new(t) as Arc<dyn TableProvider>)
    }
}

/// Evaluates a constant argument.
fn constant(session: &dyn Session, expr: &Expr) -> Result<ScalarValue> {
    let schema = DFSchema::empty();
    let physical = session.create_physical_expr(expr.clone(), &schema)?;
    let batch = RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        vec![],
        &RecordBatchOptions::new().with_row_count(Some(1)),
    )?;
    ScalarValue::try_from_array(&physical.evaluate(&batch)?.into_array(1)?, 0)
}

/// The `k` rows of a table nearest to a query.
#[derive(Debug)]
pub struct NearestTable {
    name: String,
    inner: Arc<dyn TableProvider>,
    query: Query,
    k: usize,
    schema: SchemaRef,
}

impl NearestTable {
    /// `k` rows of `inner` (registered as `name`) nearest to `query`.
    pub fn try_new(name: String, inner: Arc<dyn TableProvider>, query: Query, k: usize) -> Result<Self> {
        let base = inner.schema();
        if base.field_with_name(EMBEDDING).is_err() {
            return plan_err!("nearest: table {name} has no {EMBEDDING} column");
        }
        let mut fields: Vec<_> = base.fields().iter().map(Arc::clone).collect();
        fields.push(Arc::new(Field::new(SCORE, DataType::Float32, true)));
        let schema = Arc::new(Schema::new_with_metadata(fields, base.metadata().clone()));
        Ok(Self {
            name,
            inner,
            query,
            k,
            schema,
        })
    }

    /// The query vector: the literal, or the chip's embedding.
    async fn query_vector(&self, state: &dyn Session) -> Result<ScalarValue> {
        let (scene_id, row, chip_col) = match &self.query {
            Query::Vector(v) => return Ok(v.clone()),
            Query::Chip { scene_id, row, col } => (scene_id, *row, *col),
        };
        let plan = LogicalPlanBuilder::scan(self.name.as_str(), provider_as_source(Arc::clone(&self.inner)), None)?
            .filter(
                col("scene_id")
                    .eq(lit(scene_id.as_str()))
                    .and(col("chip_row").eq(lit(row)))
                    .and(col("chip_col").eq(lit(chip_col))),
            )?
            .project([col(EMBEDDING)])?
            .limit(0, Some(1))?
            .build()?;
        let physical = state.create_physical_plan(&plan).await?;
        let batches = datafusion::physical_plan::collect(physical, state.task_ctx()).await?;
        match batches.iter().find(|b| b.num_rows() > 0) {
            Some(b) => ScalarValue::try_from_array(b.column(0), 0),
            None => plan_err!("nearest: no chip {scene_id}/{row}/{chip_col} in {}", self.name),
        }
    }
}

#[async_trait::async_trait]
impl TableProvider for NearestTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let query = self.query_vector(state).await?;
        let cosine = VectorFunction::udf(VectorOp::Cosine).call(vec![col(EMBEDDING), lit(query)]);
        let mut columns: Vec<Expr> = self.inner.schema().fields().iter().map(|f| col(f.name())).collect();
        columns.push(cosine.alias(SCORE));
        // Ties (the same chip on several dates has the same embedding) broken by chip id, so
        // that the answer does not depend on the order files are read in.
        let mut order = vec![col(SCORE).sort(false, false)];
        for key in TIE_BREAK
            .iter()
            .filter(|k| self.inner.schema().field_with_name(k).is_ok())
        {
            order.push(col(*key).sort(true, false));
        }
        let mut plan = LogicalPlanBuilder::scan(self.name.as_str(), provider_as_source(Arc::clone(&self.inner)), None)?
            .project(columns)?
            .sort_with_limit(order, Some(limit.map_or(self.k, |l| l.min(self.k))))?;
        if let Some(p) = projection {
            plan = plan.project(p.iter().map(|&i| col(self.schema.field(i).name())))?;
        }
        state.create_physical_plan(&plan.build()?).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chip_ids_split_from_the_right() {
        match Query::chip("S2A_29RKH_20200219_0_L2A/2/3").expect("id") {
            Query::Chip { scene_id, row, col } => {
                assert_eq!((scene_id.as_str(), row, col), ("S2A_29RKH_20200219_0_L2A", 2, 3))
            }
            q => panic!("{q:?}"),
        }
        assert!(Query::chip("scene/2").is_err());
        assert!(Query::chip("/2/3").is_err());
        assert!(Query::chip("a/b/x").is_err());
    }
}

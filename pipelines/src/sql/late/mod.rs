//! Late materialisation of fixed-size list columns (embeddings) in Parquet scans.
//!
//! An embedding row is kilobytes wide, the rest of the row a few dozen bytes. [`LateLists`]
//! is a physical optimizer rule that, after DataFusion has pushed filters and projections
//! into a Parquet scan, splits the scan in two: DataFusion's own scan reads every other
//! column, applies the filters and adds each row's position in its file
//! (`file_row_index()`); [`LateListExec`] then reads the lists of just the rows that
//! came out, straight from their pages ([`pages`]). The output is the scan's, row for row.
//!
//! Outputs computed from the lists alone (`cosine_similarity(embedding, [...])`, which
//! DataFusion moves into the scan) are computed here, after the lists are read.
//!
//! A file whose list column is not stored so that this works (dictionary pages, other
//! encodings, no offset index, nullable lists) is read by the original scan instead, so the
//! rule changes speed, never results. Lists that a filter of the scan itself needs stay in
//! the scan.

pub mod pages;

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result};
use datafusion::config::ConfigOptions;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig, FileSource, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::projection::{ProjectionExpr, ProjectionExprs};
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::metrics::{Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use futures::{StreamExt, TryStreamExt};

use pages::{ListLeaf, PageCursor, ReadCounters};

/// The name of the row-position column the narrowed scan adds.
const ROW: &str = "__terrastream_file_row";

/// Rewrites Parquet scans that output wide fixed-size list columns into [`LateListExec`].
#[derive(Debug, Default)]
pub struct LateLists;

impl PhysicalOptimizerRule for LateLists {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            Ok(match LateListExec::try_new(&node)? {
                Some(exec) => Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>),
                None => Transformed::no(node),
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "late_lists"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Where an output column comes from.
#[derive(Debug, Clone)]
enum Source {
    /// Column `i` of the narrowed scan.
    Scan(usize),
    /// Expression `i` of [`LateListExec::exprs`], over the lists read from pages.
    Late(usize),
}

/// A Parquet scan whose fixed-size list columns are read after its filters, for the rows that
/// pass (see the module documentation).
#[derive(Debug)]
pub struct LateListExec {
    reader: Arc<Reader>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

/// What `EXPLAIN ANALYZE` shows of a partition besides its output rows: pages and bytes read
/// late, and files that went through the original scan.
#[derive(Clone)]
struct Counters {
    late: ReadCounters,
    scanned_files: Count,
}

/// The FixedSizeList fields worth reading late: non-null lists of non-null floats.
fn late_candidate(field: &Field) -> bool {
    matches!(field.data_type(), DataType::FixedSizeList(item, n)
        if *n > 1 && !field.is_nullable() && !item.is_nullable()
            && matches!(item.data_type(), DataType::Float32 | DataType::Float64))
}

impl LateListExec {
    /// `node` split as described in the module documentation, if it is a Parquet scan with a
    /// list column to read late.
    pub fn try_new(node: &Arc<dyn ExecutionPlan>) -> Result<Option<Self>> {
        let Some(exec) = node.downcast_ref::<DataSourceExec>() else {
            return Ok(None);
        };
        let Some(config) = exec.data_source().downcast_ref::<FileScanConfig>() else {
            return Ok(None);
        };
        let Some(source) = config.file_source.downcast_ref::<ParquetSource>() else {
            return Ok(None);
        };
        // A scan-level limit counts rows across files, which the per-file scans below would not.
        if config.limit.is_some() || config.file_groups.is_empty() {
            return Ok(None);
        }
        let Some(projection) = source.projection() else {
            return Ok(None);
        };
        let schema = node.schema();
        let table = source.table_schema().table_schema();
        let file_columns = source.table_schema().file_schema().fields().len();
        let filtered: Vec<String> = source
            .filter()
            .map(|p| collect_columns(&p).into_iter().map(|c| c.name().to_string()).collect())
            .unwrap_or_default();
        // A list the scan's own filter reads stays in the scan.
        let readable_late = |c: &Column| {
            c.index() < file_columns
                && table.field(c.index()).name() == c.name()
                && late_candidate(table.field(c.index()))
                && !filtered.iter().any(|f| f == c.name())
        };
        let mut late: Vec<Arc<Field>> = Vec::new();
        let mut exprs = Vec::new();
        let mut kept = Vec::new();
        let mut sources = Vec::with_capacity(schema.fields().len());
        for (i, p) in projection.iter().enumerate() {
            // An output computed from lists alone (the list itself, or `cosine_similarity(
            // embedding, [...])`, which DataFusion moves into the scan) is computed here after
            // the lists are read; anything else comes from the scan.
            let columns = collect_columns(&p.expr);
            if columns.is_empty() || !columns.iter().all(readable_late) {
                sources.push(Source::Scan(kept.len()));
                kept.push(i);
                continue;
            }
            let expr = Arc::clone(&p.expr).transform(|e| {
                let Some(c) = e.downcast_ref::<Column>() else {
                    return Ok(Transformed::no(e));
                };
                let at = match late.iter().position(|f| f.name() == c.name()) {
                    Some(at) => at,
                    None => {
                        late.push(Arc::new(table.field(c.index()).clone()));
                        late.len() - 1
                    }
                };
                Ok(Transformed::yes(
                    Arc::new(Column::new(c.name(), at)) as Arc<dyn PhysicalExpr>
                ))
            })?;
            sources.push(Source::Late(exprs.len()));
            exprs.push(expr.data);
        }
        if late.is_empty() {
            return Ok(None);
        }
        let mut narrowed: Vec<ProjectionExpr> = kept
            .iter()
            .map(|&i| {
                let name = schema.field(i).name();
                ProjectionExpr::new(Arc::new(Column::new(name, i)) as Arc<dyn PhysicalExpr>, name.clone())
            })
            .collect();
        narrowed.push(ProjectionExpr::new(row_index_expr(), ROW));
        let Some(narrow_source) = source.try_pushdown_projection(&ProjectionExprs::new(narrowed))? else {
            return Ok(None);
        };
        let mut narrow = config.clone();
        narrow.file_source = narrow_source;
        let narrow_schema = narrow.projected_schema()?;
        if narrow_schema
            .fields()
            .last()
            .is_none_or(|f| f.data_type() != &DataType::Int64)
        {
            return Ok(None);
        }
        Ok(Some(Self {
            reader: Arc::new(Reader {
                original: config.clone(),
                narrow,
                late: Arc::new(Schema::new(late)),
                exprs,
                sources,
                schema,
            }),
            properties: Arc::clone(exec.properties()),
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }

    /// `config` over `file` alone.
    fn one_file(config: &FileScanConfig, file: &PartitionedFile) -> Arc<DataSourceExec> {
        let mut config = config.clone();
        config.file_groups = vec![FileGroup::new(vec![file.clone()])];
        DataSourceExec::from_data_source(config)
    }
}

/// `file_row_index()`, which a Parquet scan answers with each row's position in its file.
fn row_index_expr() -> Arc<dyn PhysicalExpr> {
    Arc::new(ScalarFunctionExpr::new(
        "file_row_index",
        datafusion::functions::core::file_row_index(),
        vec![],
        Arc::new(Field::new("file_row_index", DataType::Int64, true)),
        Arc::new(ConfigOptions::default()),
    ))
}

/// The two scans and how their outputs combine: what each partition needs to read its files.
#[derive(Debug)]
struct Reader {
    /// The scan as planned: what files that cannot be read late go through.
    original: FileScanConfig,
    /// The scan without the late columns, plus [`ROW`] last.
    narrow: FileScanConfig,
    /// The lists read late, as the input of `exprs`.
    late: SchemaRef,
    /// The outputs computed from the late lists, over `late`.
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    /// Per output column, where it comes from.
    sources: Vec<Source>,
    schema: SchemaRef,
}

impl Reader {
    /// The output of `file`: late when its list columns allow, else the original scan.
    async fn file(
        self: Arc<Self>,
        file: PartitionedFile,
        ctx: Arc<TaskContext>,
        counters: Counters,
    ) -> Result<SendableRecordBatchStream> {
        let store = ctx.runtime_env().object_store(&self.original.object_store_url)?;
        let meta = super::tables::parquet_metadata(&ctx.runtime_env(), store.as_ref(), &file.object_meta).await?;
        let leaves: std::result::Result<Vec<ListLeaf>, String> =
            self.late.fields().iter().map(|f| ListLeaf::find(&meta, f)).collect();
        let leaves = match leaves {
            Ok(leaves) => leaves,
            Err(reason) => {
                tracing::debug!(file = %file.object_meta.location, %reason, "list columns read by the scan");
                counters.scanned_files.add(1);
                return LateListExec::one_file(&self.original, &file).execute(0, ctx);
            }
        };
        let scan = LateListExec::one_file(&self.narrow, &file).execute(0, ctx)?;
        let cursors: Vec<PageCursor> = leaves
            .into_iter()
            .map(|leaf| {
                PageCursor::new(
                    Arc::clone(&store),
                    file.object_meta.location.clone(),
                    Arc::clone(&meta),
                    leaf,
                )
                .with_counters(counters.late.clone())
            })
            .collect();
        let schema = Arc::clone(&self.schema);
        let stream = futures::stream::try_unfold((scan, cursors, self), |(mut scan, mut cursors, this)| async move {
            let Some(batch) = scan.next().await.transpose()? else {
                return Ok(None);
            };
            let out = this.assemble(&batch, &mut cursors).await?;
            Ok(Some((out, (scan, cursors, this))))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }

    /// The output batch for `batch` of the narrowed scan: its columns and the late lists of
    /// its rows.
    async fn assemble(&self, batch: &RecordBatch, cursors: &mut [PageCursor]) -> Result<RecordBatch> {
        let rows = batch
            .columns()
            .last()
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
            .ok_or_else(|| DataFusionError::Internal("late lists: the scan lost its row numbers".into()))?;
        if rows.null_count() > 0 {
            return Err(DataFusionError::Internal(
                "late lists: rows without a file position".into(),
            ));
        }
        let mut lists = Vec::with_capacity(cursors.len());
        for cursor in cursors.iter_mut() {
            lists.push(cursor.take(rows.values().iter().copied()).await?);
        }
        let lists = RecordBatch::try_new(Arc::clone(&self.late), lists)?;
        let computed = self
            .exprs
            .iter()
            .map(|e| e.evaluate(&lists)?.into_array(lists.num_rows()))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let columns: Vec<ArrayRef> = self
            .sources
            .iter()
            .map(|s| match s {
                Source::Scan(i) => Arc::clone(batch.column(*i)),
                Source::Late(i) => Arc::clone(&computed[*i]),
            })
            .collect();
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

impl DisplayAs for LateListExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let names: Vec<&str> = self.reader.late.fields().iter().map(|f| f.name().as_str()).collect();
        write!(f, "LateListExec: late=[{}], scan: ", names.join(", "))?;
        self.reader.narrow.fmt_as(t, f)
    }
}

impl ExecutionPlan for LateListExec {
    fn name(&self) -> &'static str {
        "LateListExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        _: Vec<Arc<dyn ExecutionPlan>>,
        _: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(children, ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let files = self
            .reader
            .original
            .file_groups
            .get(partition)
            .ok_or_else(|| DataFusionError::Internal(format!("late lists: no partition {partition}")))?
            .files()
            .to_vec();
        let reader = Arc::clone(&self.reader);
        let rows = MetricBuilder::new(&self.metrics).output_rows(partition);
        let counters = Counters {
            late: ReadCounters {
                pages: MetricBuilder::new(&self.metrics).counter("late_pages", partition),
                bytes: MetricBuilder::new(&self.metrics).counter("late_bytes", partition),
            },
            scanned_files: MetricBuilder::new(&self.metrics).counter("files_not_late", partition),
        };
        let stream = futures::stream::iter(files)
            .then(move |file| Arc::clone(&reader).file(file, Arc::clone(&context), counters.clone()))
            .try_flatten()
            .inspect_ok(move |b| rows.add(b.num_rows()));
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.reader.schema),
            stream,
        )))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{FixedSizeListArray, Float32Array, Float64Array, Int32Array};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::file::properties::WriterProperties;

    use super::*;
    use crate::sql;

    const SIZE: usize = 4;

    /// `rows` rows with ids from `first`: `x` in [0, 1), `embedding` non-null lists of SIZE.
    fn write(path: &std::path::Path, first: i32, rows: usize, dictionary: bool) {
        let item = Arc::new(Field::new("item", DataType::Float32, false));
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("x", DataType::Float64, false),
            Field::new(
                "embedding",
                DataType::FixedSizeList(Arc::clone(&item), SIZE as i32),
                false,
            ),
        ]));
        let ids: Vec<i32> = (first..first + rows as i32).collect();
        let x = Float64Array::from_iter_values(ids.iter().map(|i| f64::from(i * 37 % 100) / 100.0));
        let values = Float32Array::from_iter_values(
            ids.iter()
                .flat_map(|i| (0..SIZE).map(move |k| (*i as f32) + k as f32 / 10.0)),
        );
        let lists = FixedSizeListArray::try_new(item, SIZE as i32, Arc::new(values), None).expect("lists");
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int32Array::from(ids)), Arc::new(x), Arc::new(lists)],
        )
        .expect("batch");
        let props = WriterProperties::builder()
            .set_dictionary_enabled(dictionary)
            .set_max_row_group_row_count(Some(200))
            .set_data_page_row_count_limit(32)
            .set_write_batch_size(8)
            .build();
        let mut writer =
            ArrowWriter::try_new(std::fs::File::create(path).expect("file"), schema, Some(props)).expect("w");
        writer.write(&batch).expect("write");
        writer.close().expect("close");
    }

    async fn run(late: bool, dir: &std::path::Path, query: &str) -> (String, String) {
        let ctx = sql::session_with(Some(2), late);
        sql::tables::register(&ctx, &[format!("t={}/", dir.display())])
            .await
            .expect("register");
        let (_, rows) = sql::query(&ctx, query).await.expect("query");
        let (_, plan) = sql::query(&ctx, &format!("EXPLAIN {query}")).await.expect("explain");
        let text = |b: &[RecordBatch]| pretty_format_batches(b).expect("format").to_string();
        (text(&rows), text(&plan))
    }

    #[tokio::test]
    async fn late_lists_give_the_scans_rows() {
        let dir = tempfile::tempdir().expect("dir");
        write(&dir.path().join("a.parquet"), 0, 700, false);
        write(&dir.path().join("b.parquet"), 700, 450, false);
        // Dictionary pages: this file goes through the original scan.
        write(&dir.path().join("c.parquet"), 1150, 300, true);
        let filtered = "SELECT id, embedding, x FROM t WHERE x > 0.61 ORDER BY id";
        let (late, plan) = run(true, dir.path(), filtered).await;
        let (eager, eager_plan) = run(false, dir.path(), filtered).await;
        assert!(plan.contains("LateListExec: late=[embedding]"), "{plan}");
        assert!(!eager_plan.contains("LateListExec"), "{eager_plan}");
        assert_eq!(late, eager);
        // EXPLAIN ANALYZE counts what was read late and which file went through the scan.
        let (analyzed, _) = run(true, dir.path(), &format!("EXPLAIN ANALYZE {filtered}")).await;
        let line = analyzed
            .lines()
            .find(|l| l.contains("LateListExec"))
            .unwrap_or_else(|| panic!("{analyzed}"));
        let metric = |name: &str| -> u64 {
            let at = line
                .find(&format!("{name}="))
                .unwrap_or_else(|| panic!("no {name}: {line}"))
                + name.len()
                + 1;
            line[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        assert_eq!(metric("files_not_late"), 1, "{line}");
        assert!(metric("late_pages") > 5 && metric("late_bytes") > 0, "{line}");
        assert_eq!(
            metric("output_rows") as usize,
            late.lines().filter(|l| l.starts_with("| ")).count() - 1,
            "{line}"
        );
        // Rows from a late file and from the dictionary file.
        for row in [
            "| 2    | [2.0, 2.1, 2.2, 2.3]",
            "| 1151 | [1151.0, 1151.1, 1151.2, 1151.3]",
        ] {
            assert!(late.contains(row), "{row} in {late}");
        }
        // Every row; a filter on the list itself (DataFusion keeps a UDF filter above the scan,
        // so the lists of every row are read late and filtered after).
        for (query, is_late) in [
            ("SELECT embedding, id FROM t ORDER BY id", true),
            (
                "SELECT id, embedding FROM t WHERE vector_norm(embedding) > 2000 ORDER BY id",
                true,
            ),
            // Computed from the list alone: computed after it is read.
            (
                "SELECT id, cosine_similarity(embedding, [1.0, -1.0, 0.5, 0.0]) AS c FROM t WHERE x < 0.2 \
                 ORDER BY c DESC, id LIMIT 9",
                true,
            ),
        ] {
            let (late, plan) = run(true, dir.path(), query).await;
            assert_eq!(late, run(false, dir.path(), query).await.0, "{query}");
            assert_eq!(plan.contains("LateListExec"), is_late, "{plan}");
        }
    }
}

//! `terrastream sql`: SQL over the outputs with DataFusion, locally or straight from object
//! storage, without loading them into a separate database.
//!
//! | module | what |
//! |---|---|
//! | [`tables`] | `--tables DIR_OR_URL`: `embeddings`, `scenes`, `runs`, `units`, `masks` from an output store's layout; `NAME=PATH` for any Parquet |
//! | [`vector`] | `cosine_similarity`, `l2_distance`, `inner_product`, `vector_norm` over Float32/Float16/Int8 embeddings |
//! | [`nearest`] | the table function `nearest(table, query, k)` (a vector or a chip id `'<scene_id>/<row>/<col>'`) |
//! | [`spatial`] | `ST_*` functions on WKB footprints |
//! | [`bbox`] | filters on `bbox.xmin`.. skip row groups by the covering column's statistics |
//! | [`late`] | embeddings read after the filters, only for the rows that pass, straight from their pages |
//! | [`format`] | `--format table|csv|json|parquet` |
//! | [`shell`] | the interactive shell with history |
//!
//! `ORDER BY cosine_similarity(embedding, [...]) DESC LIMIT k` runs as a top-k
//! (`SortExec: TopK(fetch=k)`). Filters on `bbox.xmin`.. `bbox.ymax` and `datetime` reach the
//! Parquet scan; filters on the partition column `date` (hive-partitioned stores) skip files.

pub mod bbox;
pub mod error;
pub mod format;
pub mod late;
pub mod nearest;
pub mod shell;
pub mod spatial;
pub mod tables;
pub mod vector;

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

pub use error::{Error, Result};
pub use format::Format;

/// Arguments of `terrastream sql`.
#[derive(Debug, Clone, clap::Args)]
pub struct SqlArgs {
    /// The query; without one, an interactive shell.
    pub query: Option<String>,
    /// Output stores (directories, file:// or s3:// URLs) whose tables to register, or
    /// NAME=PATH for any Parquet file or directory.
    #[arg(long, num_args = 1.., value_name = "DIR_OR_URL")]
    pub tables: Vec<String>,
    /// Result format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write the results to this file instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Threads (DataFusion partitions); default: the number of CPUs.
    #[arg(long)]
    pub threads: Option<usize>,
}

/// A session with the vector, spatial and `nearest` functions, running on `threads`
/// partitions (all CPUs when `None`). Embedding columns are read late ([`late`]) unless
/// `TERRASTREAM_SQL_LATE_LISTS=off`.
pub fn session(threads: Option<usize>) -> SessionContext {
    session_with(threads, std::env::var("TERRASTREAM_SQL_LATE_LISTS").map_or(true, |v| v != "off"))
}

/// [`session`], with late reading of embedding columns on or off.
pub fn session_with(threads: Option<usize>, late_lists: bool) -> SessionContext {
    // DataFusion's own settings from the environment (`DATAFUSION_EXECUTION_BATCH_SIZE`, ...),
    // for tuning without a rebuild.
    let config = SessionConfig::from_env().unwrap_or_else(|e| {
        tracing::warn!("DATAFUSION_* environment settings ignored: {e}");
        SessionConfig::new()
    });
    let mut config = config.with_information_schema(true);
    // Late materialisation: filters run on their own columns first, and only the rows that
    // pass decode the wide embedding column.
    // (Unless the environment says otherwise.)
    let unset = |key: &str| std::env::var_os(key).is_none();
    if unset("DATAFUSION_EXECUTION_PARQUET_PUSHDOWN_FILTERS") {
        config.options_mut().execution.parquet.pushdown_filters = true;
    }
    if unset("DATAFUSION_EXECUTION_PARQUET_REORDER_FILTERS") {
        config.options_mut().execution.parquet.reorder_filters = true;
    }
    if let Some(n) = threads {
        config = config.with_target_partitions(n.max(1));
    }
    let mut state = SessionStateBuilder::new().with_config(config).with_default_features();
    if late_lists {
        state = state.with_physical_optimizer_rule(Arc::new(late::LateLists));
    }
    let ctx = SessionContext::new_with_state(state.build());
    for f in vector::functions() {
        ctx.register_udf(f);
    }
    spatial::register(&ctx);
    ctx.register_udtf("nearest", Arc::new(nearest::NearestFunction));
    ctx
}

/// About how many bytes a batch of a wide table holds (see [`batch_rows`]).
pub const BATCH_BYTES: usize = 1024 * 1024;

/// Rows per batch for rows `row_bytes` wide: about [`BATCH_BYTES`] a batch, a power of two
/// from 128 to DataFusion's default 8192. Batches of 8192 rows of 768-d Float32 embeddings
/// (24 MiB) fall out of the caches between the Parquet decoder and the vector functions; 256
/// rows made the 1,000,000-row top-10 bench 1.7 times faster.
pub fn batch_rows(row_bytes: usize) -> usize {
    let rows = BATCH_BYTES / row_bytes.max(1);
    rows.checked_next_power_of_two().map_or(8192, |p| if p > rows { p / 2 } else { p }).clamp(128, 8192)
}

/// The width in bytes of a row's fixed-size lists (embeddings, tensors): what makes rows wide.
fn list_bytes(schema: &datafusion::arrow::datatypes::Schema) -> usize {
    use datafusion::arrow::datatypes::DataType;
    schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::FixedSizeList(item, n) => item.data_type().primitive_width().unwrap_or(8) * (*n).max(0) as usize,
            _ => 0,
        })
        .sum()
}

/// Narrows the session's batch size to the widest of `tables` ([`batch_rows`]), unless
/// `DATAFUSION_EXECUTION_BATCH_SIZE` sets it.
pub async fn fit_batch_size(ctx: &SessionContext, tables: &[String]) -> datafusion::error::Result<()> {
    if std::env::var_os("DATAFUSION_EXECUTION_BATCH_SIZE").is_some() {
        return Ok(());
    }
    let mut widest = 0;
    for name in tables {
        widest = widest.max(list_bytes(&ctx.table_provider(name.as_str()).await?.schema()));
    }
    if widest > 0 {
        let rows = batch_rows(widest + 64);
        let state = ctx.state_ref();
        let mut state = state.write();
        let batch = &mut state.config_mut().options_mut().execution.batch_size;
        *batch = datafusion::common::config::ConfigNonZeroUsize::try_new(rows.min(batch.get()))?;
        tracing::debug!(rows = batch.get(), row_bytes = widest, "batch size");
    }
    Ok(())
}

/// Plans and runs `sql`; a failure carries DataFusion's error and the registered tables with
/// their columns.
pub async fn query(ctx: &SessionContext, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let run = async {
        let df = ctx.sql(sql).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await?;
        Ok::<_, datafusion::error::DataFusionError>((schema, batches))
    };
    match run.await {
        Ok(r) => Ok(r),
        Err(error) => Err(Error::Query {
            error,
            catalog: tables::describe(ctx).await,
        }),
    }
}

/// `terrastream sql`: registers the tables, then runs the query (or the shell).
pub async fn run(args: &SqlArgs) -> Result<()> {
    let ctx = session(args.threads);
    tables::register(&ctx, &args.tables).await?;
    let Some(sql) = &args.query else {
        return shell::run(&ctx, args.format).await;
    };
    let (schema, batches) = query(&ctx, sql).await?;
    match &args.out {
        Some(path) => {
            let target = path.display().to_string();
            let file = std::fs::File::create(path).map_err(|e| Error::Output {
                target: target.clone(),
                reason: e.to_string(),
            })?;
            format::write(args.format, &schema, &batches, std::io::BufWriter::new(file), &target)
        }
        None if args.format == Format::Parquet => Err(Error::Output {
            target: "stdout".into(),
            reason: "--format parquet needs --out FILE".into(),
        }),
        None => format::write(args.format, &schema, &batches, std::io::stdout().lock(), "stdout"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_rows_get_small_batches() {
        // TerraMind base (768-d Float32) and large (1024-d), plus the narrow columns.
        assert_eq!(batch_rows(768 * 4 + 64), 256);
        assert_eq!(batch_rows(1024 * 4 + 64), 128);
        assert_eq!(batch_rows(192 * 4 + 64), 1024);
        assert_eq!((batch_rows(1), batch_rows(usize::MAX)), (8192, 128));
    }
}

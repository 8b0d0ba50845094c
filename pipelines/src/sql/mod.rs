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
//! | [`format`] | `--format table|csv|json|parquet` |
//! | [`shell`] | the interactive shell with history |
//!
//! `ORDER BY cosine_similarity(embedding, [...]) DESC LIMIT k` runs as a top-k
//! (`SortExec: TopK(fetch=k)`). Filters on `bbox.xmin`.. `bbox.ymax` and `datetime` reach the
//! Parquet scan; filters on the partition column `date` (hive-partitioned stores) skip files.

pub mod bbox;
pub mod error;
pub mod format;
pub mod nearest;
pub mod shell;
pub mod spatial;
pub mod tables;
pub mod vector;

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
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
/// partitions (all CPUs when `None`).
pub fn session(threads: Option<usize>) -> SessionContext {
    let mut config = SessionConfig::new().with_information_schema(true);
    // Late materialisation: filters run on their own columns first, and only the rows that
    // pass decode the wide embedding column.
    config.options_mut().execution.parquet.pushdown_filters = true;
    config.options_mut().execution.parquet.reorder_filters = true;
    if let Some(n) = threads {
        config = config.with_target_partitions(n.max(1));
    }
    let ctx = SessionContext::new_with_config(config);
    for f in vector::functions() {
        ctx.register_udf(f);
    }
    spatial::register(&ctx);
    ctx.register_udtf("nearest", Arc::new(nearest::NearestFunction));
    ctx
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

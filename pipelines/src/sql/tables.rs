//! Output stores as tables: `--tables DIR_OR_URL` reads a store's layout and registers
//!
//! - `embeddings`: the GeoParquet files under `embeddings/`, flat or hive-partitioned
//!   (`grid_id=<tile>/date=<YYYY-MM-DD>/`, then `grid_id` Utf8 and `date` Date32 come from
//!   the directory names, so that filters on them skip whole files);
//! - `scenes`: a view, one row per scene of `embeddings` (chips, time, footprint extent);
//! - `runs` and `units`: the JSON records under `_manifest/runs/` and `_manifest/units/`;
//! - `masks`: the mask COGs under `masks/` (scene, path, size, modification time).
//!
//! Several stores register as one set of tables over all of them; `name=PATH` registers any
//! other Parquet file or directory as table `name`. Locations are paths, `file://` or `s3://`
//! URLs (credentials from the usual `AWS_*` variables).

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::json::ReaderBuilder;
use datafusion::arrow::json::reader::infer_json_schema_from_iterator;
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use super::bbox::{BBOX, StructPruned};
use super::error::{Error, Result};

/// The partition columns of a hive-partitioned `embeddings/` directory, in directory order.
pub const PARTITION_COLUMNS: [(&str, DataType); 2] = [("grid_id", DataType::Utf8), ("date", DataType::Date32)];

/// What `--tables` registered: table names in registration order.
#[derive(Debug, Default, Clone)]
pub struct Registered {
    /// The tables, sorted.
    pub tables: Vec<String>,
}

/// An opened location: its object store, the key prefix inside it, and the URL DataFusion
/// reads it under (ending in `/`).
struct Opened {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    url: String,
    given: String,
}

impl Opened {
    fn open(ctx: &SessionContext, given: &str) -> Result<Self> {
        let missing = |reason: String| Error::MissingPath {
            path: given.to_string(),
            reason,
        };
        let (store_href, url) = if let Some((scheme, _)) = given.split_once("://").filter(|(s, _)| *s != "file") {
            if scheme != "s3" {
                return Err(missing(format!(
                    "cannot read {scheme}:// stores (use a directory, file:// or s3://)"
                )));
            }
            (
                given.trim_end_matches('/').to_string(),
                format!("{}/", given.trim_end_matches('/')),
            )
        } else {
            let local = given.strip_prefix("file://").unwrap_or(given);
            let abs = std::path::absolute(local).map_err(|e| missing(e.to_string()))?;
            if !abs.exists() {
                return Err(missing("no such file or directory".into()));
            }
            let url = format!("file://{}", abs.display());
            let url = if abs.is_dir() {
                format!("{}/", url.trim_end_matches('/'))
            } else {
                url
            };
            (abs.display().to_string(), url)
        };
        let location =
            terrastream_ingest::store::open(&store_href, Path::new(".")).map_err(|e| missing(e.to_string()))?;
        if given.starts_with("s3://") {
            let parsed = ListingTableUrl::parse(&url)?;
            ctx.register_object_store(parsed.object_store().as_ref(), Arc::clone(&location.store));
        }
        Ok(Self {
            store: location.store,
            prefix: location.path,
            url,
            given: given.to_string(),
        })
    }

    fn child(&self, dir: &str) -> ObjectPath {
        dir.split('/')
            .filter(|p| !p.is_empty())
            .fold(self.prefix.clone(), |p, part| p.join(part))
    }

    /// The immediate sub-directories and files of `dir`.
    async fn list(&self, dir: &str) -> Result<(Vec<String>, Vec<object_store::ObjectMeta>)> {
        let listing = self
            .store
            .list_with_delimiter(Some(&self.child(dir)))
            .await
            .map_err(|e| Error::MissingPath {
                path: format!("{}{dir}", self.url),
                reason: e.to_string(),
            })?;
        let dirs = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        Ok((dirs, listing.objects))
    }

    /// Every object under `dir`, recursively.
    async fn list_all(&self, dir: &str) -> Result<Vec<object_store::ObjectMeta>> {
        self.store
            .list(Some(&self.child(dir)))
            .try_collect()
            .await
            .map_err(|e| Error::MissingPath {
                path: format!("{}{dir}", self.url),
                reason: e.to_string(),
            })
    }
}

/// The tables of one output store, found by listing it.
#[derive(Default)]
struct Layout {
    embeddings: Option<(String, bool)>,
    masks: Vec<object_store::ObjectMeta>,
    runs: Vec<serde_json::Value>,
    units: Vec<serde_json::Value>,
}

async fn read_layout(opened: &Opened) -> Result<Layout> {
    let (dirs, _) = opened.list("").await?;
    let mut layout = Layout::default();
    if dirs.iter().any(|d| d == "embeddings") {
        let (sub, _) = opened.list("embeddings").await?;
        let partitioned = sub.iter().any(|d| d.starts_with("grid_id="));
        layout.embeddings = Some((format!("{}embeddings/", opened.url), partitioned));
    }
    if dirs.iter().any(|d| d == "masks") {
        let (_, files) = opened.list("masks").await?;
        layout.masks = files
            .into_iter()
            .filter(|m| m.location.as_ref().ends_with(".tif"))
            .collect();
    }
    if dirs.iter().any(|d| d == "_manifest") {
        layout.runs = read_json_records(opened, "_manifest/runs").await?;
        layout.units = read_json_records(opened, "_manifest/units").await?;
    }
    if layout.embeddings.is_none() && layout.masks.is_empty() && layout.runs.is_empty() {
        return Err(Error::MissingPath {
            path: opened.given.clone(),
            reason: "no embeddings/, masks/ or _manifest/ here: not a terrastream output store \
                     (register a Parquet file or directory as NAME=PATH)"
                .into(),
        });
    }
    Ok(layout)
}

/// The JSON files of `dir`, one record each (pretty-printed objects, as the manifest writes).
async fn read_json_records(opened: &Opened, dir: &str) -> Result<Vec<serde_json::Value>> {
    let mut records = Vec::new();
    let mut files = opened.list_all(dir).await?;
    files.sort_by(|a, b| a.location.cmp(&b.location));
    for meta in files.into_iter().filter(|m| m.location.as_ref().ends_with(".json")) {
        let name = format!(
            "{}{}",
            opened.url,
            meta.location.as_ref().trim_start_matches(opened.prefix.as_ref())
        );
        let bad = |reason: String| Error::MissingPath {
            path: name.clone(),
            reason,
        };
        let bytes = opened
            .store
            .get(&meta.location)
            .await
            .map_err(|e| bad(e.to_string()))?
            .bytes()
            .await
            .map_err(|e| bad(e.to_string()))?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
        if value.is_object() {
            records.push(value);
        }
    }
    Ok(records)
}

/// The footer of the Parquet file `meta` with its page index, through the session's footer
/// cache (which DataFusion's scans read from too, so a file's footer is fetched once).
pub(crate) async fn parquet_metadata(
    env: &datafusion::execution::runtime_env::RuntimeEnv,
    store: &dyn ObjectStore,
    meta: &object_store::ObjectMeta,
) -> datafusion::common::Result<Arc<datafusion::parquet::file::metadata::ParquetMetaData>> {
    use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
    DFParquetMetadata::new(store, meta)
        .with_file_metadata_cache(Some(env.cache_manager.get_file_metadata_cache()))
        .with_page_index_policy(Some(datafusion::parquet::file::metadata::PageIndexPolicy::Optional))
        .fetch_metadata()
        .await
}

/// Registers the `--tables` arguments with `ctx`.
pub async fn register(ctx: &SessionContext, args: &[String]) -> Result<Registered> {
    let mut embeddings: Vec<(String, bool)> = Vec::new();
    let (mut masks, mut runs, mut units) = (Vec::new(), Vec::new(), Vec::new());
    let mut registered = Registered::default();
    for arg in args {
        if let Some((name, path)) = named(arg) {
            let opened = Opened::open(ctx, path)?;
            register_parquet(ctx, name, vec![opened.url.clone()], false).await?;
            registered.tables.push(name.to_string());
            continue;
        }
        let opened = Opened::open(ctx, arg)?;
        let layout = read_layout(&opened).await?;
        embeddings.extend(layout.embeddings);
        masks.extend(
            layout
                .masks
                .into_iter()
                .map(|m| (opened.url.clone(), opened.prefix.clone(), m)),
        );
        runs.extend(layout.runs);
        units.extend(layout.units);
    }
    if !embeddings.is_empty() {
        let partitioned = embeddings[0].1;
        if embeddings.iter().any(|(_, p)| *p != partitioned) {
            return Err(Error::BadTableArg {
                arg: args.join(" "),
                reason: "some stores are partitioned by grid_id/date and some are not: register them apart \
                         (NAME=PATH)"
                    .into(),
            });
        }
        register_parquet(
            ctx,
            "embeddings",
            embeddings.into_iter().map(|(u, _)| u).collect(),
            partitioned,
        )
        .await?;
        ctx.sql(SCENES_VIEW).await?;
        registered
            .tables
            .extend(["embeddings".to_string(), "scenes".to_string()]);
    }
    if !masks.is_empty() {
        ctx.register_table("masks", Arc::new(masks_table(&masks)?))?;
        registered.tables.push("masks".into());
    }
    for (name, records) in [("runs", runs), ("units", units)] {
        if !records.is_empty() {
            ctx.register_table(name, Arc::new(json_table(name, &records)?))?;
            registered.tables.push(name.into());
        }
    }
    registered.tables.sort();
    crate::sql::fit_batch_size(ctx, &registered.tables).await?;
    Ok(registered)
}

/// `NAME=PATH`, where NAME is an SQL identifier (a path may contain `=`, a name may not
/// contain `/`).
fn named(arg: &str) -> Option<(&str, &str)> {
    let (name, path) = arg.split_once('=')?;
    let ident = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    ident.then_some((name, path))
}

/// One row per scene of `embeddings`.
const SCENES_VIEW: &str = "CREATE VIEW scenes AS \
    SELECT scene_id, collection, grid_id, min(datetime) AS datetime, count(*) AS chips, \
    min(bbox.xmin) AS xmin, min(bbox.ymin) AS ymin, max(bbox.xmax) AS xmax, max(bbox.ymax) AS ymax, \
    avg(valid_fraction) AS valid_fraction, avg(cloud_fraction) AS cloud_fraction \
    FROM embeddings GROUP BY scene_id, collection, grid_id";

/// A Parquet listing table over `urls` (directories end in `/`), hive-partitioned by
/// [`PARTITION_COLUMNS`] when `partitioned`, its row groups pruned on the `bbox` covering
/// column's statistics when it has one.
async fn register_parquet(ctx: &SessionContext, name: &str, urls: Vec<String>, partitioned: bool) -> Result<()> {
    let paths = urls
        .iter()
        .map(ListingTableUrl::parse)
        .collect::<std::result::Result<Vec<_>, _>>()?;
    // A directory is listed for `.parquet` files; a file named on its own is read whatever its
    // name, so that a file which is not Parquet gets the Parquet reader's error, not "No files
    // found".
    let extension = if urls.iter().all(|u| !u.ends_with('/')) { "" } else { ".parquet" };
    let mut options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(extension);
    if partitioned {
        options = options.with_table_partition_cols(
            PARTITION_COLUMNS
                .iter()
                .map(|(n, t)| (n.to_string(), t.clone()))
                .collect(),
        );
    }
    let state = ctx.state();
    let config = ListingTableConfig::new_with_multi_paths(paths).with_listing_options(options);
    let config = config.infer_schema(&state).await.map_err(|e| Error::MissingPath {
        path: urls.join(", "),
        reason: format!("cannot read the Parquet schema: {e}"),
    })?;
    let config = match (&config.file_schema, partitioned) {
        // The files keep their grid_id column, which the partition column of the same name
        // replaces (same values).
        (Some(schema), true) => {
            let fields: Vec<_> = schema
                .fields()
                .iter()
                .filter(|f| f.name() != "grid_id")
                .map(Arc::clone)
                .collect();
            let file_schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
            config.with_schema(file_schema)
        }
        _ => config,
    };
    let table = Arc::new(ListingTable::try_new(config)?);
    let has_bbox = table
        .schema()
        .field_with_name(BBOX)
        .is_ok_and(|f| matches!(f.data_type(), DataType::Struct(_)));
    if has_bbox {
        ctx.register_table(name, Arc::new(StructPruned::new(table, BBOX)))?;
    } else {
        ctx.register_table(name, table)?;
    }
    Ok(())
}

/// `masks`: one row per mask COG.
fn masks_table(masks: &[(String, ObjectPath, object_store::ObjectMeta)]) -> Result<MemTable> {
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("scene_id", DataType::Utf8, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("size", DataType::UInt64, false),
        Field::new(
            "last_modified",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ]));
    let stem = |m: &object_store::ObjectMeta| {
        m.location
            .filename()
            .unwrap_or_default()
            .trim_end_matches(".tif")
            .to_string()
    };
    let path = |(url, prefix, m): &(String, ObjectPath, object_store::ObjectMeta)| {
        format!(
            "{url}{}",
            m.location
                .as_ref()
                .trim_start_matches(prefix.as_ref())
                .trim_start_matches('/')
        )
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(masks.iter().map(|(_, _, m)| stem(m)))),
        Arc::new(StringArray::from_iter_values(masks.iter().map(path))),
        Arc::new(UInt64Array::from_iter_values(masks.iter().map(|(_, _, m)| m.size))),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(
                masks.iter().map(|(_, _, m)| m.last_modified.timestamp_micros()),
            )
            .with_timezone("UTC"),
        ),
    ];
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns).map_err(datafusion::error::DataFusionError::from)?;
    Ok(MemTable::try_new(schema, vec![vec![batch]])?)
}

/// JSON records as a table, the schema inferred over all of them.
fn json_table(name: &str, records: &[serde_json::Value]) -> Result<MemTable> {
    let bad = |e: datafusion::arrow::error::ArrowError| Error::MissingPath {
        path: format!("{name} (_manifest JSON)"),
        reason: e.to_string(),
    };
    let schema = Arc::new(infer_json_schema_from_iterator(records.iter().map(Ok)).map_err(bad)?);
    let mut decoder = ReaderBuilder::new(Arc::clone(&schema)).build_decoder().map_err(bad)?;
    decoder.serialize(records).map_err(bad)?;
    let batch = decoder
        .flush()
        .map_err(bad)?
        .unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(&schema)));
    Ok(MemTable::try_new(schema, vec![vec![batch]])?)
}

/// The registered tables and their columns, one table a line, for error messages and the
/// shell's `\d`.
pub async fn describe(ctx: &SessionContext) -> String {
    let mut names: Vec<String> = ctx
        .catalog("datafusion")
        .and_then(|c| c.schema("public"))
        .map(|s| s.table_names())
        .unwrap_or_default();
    names.sort();
    if names.is_empty() {
        return "tables: none registered (use --tables DIR_OR_URL)".into();
    }
    let mut out = String::from("tables:");
    for name in names {
        let columns = match ctx.table_provider(name.as_str()).await {
            Ok(t) => t
                .schema()
                .fields()
                .iter()
                .map(|f| format!("{} {}", f.name(), short_type(f.data_type())))
                .collect::<Vec<_>>()
                .join(", "),
            Err(e) => format!("? ({e})"),
        };
        out.push_str(&format!("\n  {name}({columns})"));
    }
    out
}

/// A type as a reader wants it in a column list: `FixedSizeList(Float32, 768)`, not the
/// whole field.
fn short_type(t: &DataType) -> String {
    match t {
        DataType::FixedSizeList(f, n) => format!("{}[{n}]", short_type(f.data_type())),
        DataType::List(f) | DataType::LargeList(f) => format!("{}[]", short_type(f.data_type())),
        DataType::Struct(fields) => format!(
            "struct<{}>",
            fields
                .iter()
                .map(|f| format!("{} {}", f.name(), short_type(f.data_type())))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        DataType::Dictionary(_, v) => short_type(v),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_tables_need_an_identifier() {
        assert_eq!(named("chips=/data/x.parquet"), Some(("chips", "/data/x.parquet")));
        assert_eq!(named("/data/a=b/x.parquet"), None);
        assert_eq!(named("s3://b/p"), None);
        assert_eq!(named("1x=y"), None);
    }

    #[test]
    fn short_types_read_like_sql() {
        let t = DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, false)), 768);
        assert_eq!(short_type(&t), "Float32[768]");
    }

    #[tokio::test]
    async fn a_missing_path_is_named() {
        let ctx = SessionContext::new();
        let err = register(&ctx, &["/nonexistent/terrastream-out".into()])
            .await
            .expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/terrastream-out"), "{err}");
        let tmp = tempfile::tempdir().expect("tmp");
        let err = register(&ctx, &[tmp.path().display().to_string()])
            .await
            .expect_err("empty");
        assert!(err.to_string().contains("not a terrastream output store"), "{err}");
    }
}

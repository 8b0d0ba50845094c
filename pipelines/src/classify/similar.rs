//! `terrastream similar`: the chips most similar to a chip (by id) or to the chip under a
//! point, anywhere in an output store, through the SQL layer's `nearest()` top-k.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Float32Type, Int32Type};
use futures::StreamExt;
use serde_json::json;
use terrastream_sinks::geoparquet::geometry::parse_wkb_polygon;

use super::{chips, examples};
use crate::sql;

/// Arguments of `terrastream similar`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimilarArgs {
    /// The output store holding the embeddings (directory, file:// or s3:// URL).
    #[arg(long)]
    pub embeddings: String,
    /// The query chip, `<scene_id>/<chip_row>/<chip_col>`.
    #[arg(long, conflicts_with = "point", required_unless_present = "point")]
    pub chip: Option<String>,
    /// The query point `LON,LAT` (degrees): the chip whose footprint contains it.
    #[arg(long, allow_hyphen_values = true)]
    pub point: Option<String>,
    /// How many chips to return (the query chip itself is not among them).
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Write here: `.parquet` (GeoParquet-compatible columns) or `.geojson`; default GeoJSON on
    /// stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Threads (default: all CPUs).
    #[arg(long)]
    pub threads: Option<usize>,
}

fn parse_point(s: &str) -> Result<(f64, f64)> {
    let bad = || format!("--point {s:?}: expected LON,LAT in degrees");
    let (lon, lat) = s.split_once(',').with_context(bad)?;
    let (lon, lat): (f64, f64) = (lon.trim().parse().with_context(bad)?, lat.trim().parse().with_context(bad)?);
    if !((-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat)) {
        bail!("{}", bad());
    }
    Ok((lon, lat))
}

/// The id of the chip containing `p`, the first in (scene_id, row, col) order when several do.
async fn chip_at(ctx: &datafusion::prelude::SessionContext, store: &str, p: (f64, f64)) -> Result<String> {
    let q = format!(
        "SELECT scene_id, chip_row, chip_col, geometry FROM embeddings \
         WHERE bbox.xmin <= {x} AND bbox.xmax >= {x} AND bbox.ymin <= {y} AND bbox.ymax >= {y} \
         ORDER BY scene_id, chip_row, chip_col",
        x = p.0,
        y = p.1
    );
    let mut stream = ctx.sql(&q).await?.execute_stream().await?;
    while let Some(b) = stream.next().await {
        let b = chips::plain(b?)?;
        let scene = b.column(0).as_string_opt::<i32>().context("scene_id is not a string")?;
        let row = b.column(1).as_primitive_opt::<Int32Type>().context("chip_row is not Int32")?;
        let col = b.column(2).as_primitive_opt::<Int32Type>().context("chip_col is not Int32")?;
        let wkb = b.column(3).as_binary_opt::<i32>().context("geometry is not WKB")?;
        for i in 0..b.num_rows() {
            if !wkb.is_null(i) && examples::in_polygon(&parse_wkb_polygon(wkb.value(i), i)?, p) {
                return Ok(format!("{}/{}/{}", scene.value(i), row.value(i), col.value(i)));
            }
        }
    }
    bail!("--point {},{}: no chip of {store} contains it", p.0, p.1)
}

/// Runs `similar`; returns the result rows (without embeddings).
pub async fn similar(args: &SimilarArgs) -> Result<Vec<RecordBatch>> {
    if args.k == 0 {
        bail!("--k must be at least 1");
    }
    let ctx = chips::open(&args.embeddings, args.threads).await?;
    let id = match (&args.chip, &args.point) {
        (Some(id), _) => id.clone(),
        (None, Some(p)) => chip_at(&ctx, &args.embeddings, parse_point(p)?).await?,
        (None, None) => bail!("give --chip ID or --point LON,LAT"),
    };
    let sql::nearest::Query::Chip { scene_id, row, col } =
        sql::nearest::Query::chip(&id).map_err(|e| anyhow::anyhow!("--chip: {e}"))?
    else {
        bail!("--chip {id:?}: not a chip id")
    };
    let quoted = |s: &str| s.replace('\'', "''");
    let q = format!(
        "SELECT scene_id, chip_row, chip_col, datetime, geometry, bbox, score \
         FROM nearest('embeddings', '{}', {}) \
         WHERE NOT (scene_id = '{}' AND chip_row = {row} AND chip_col = {col}) \
         ORDER BY score DESC, scene_id, chip_row, chip_col LIMIT {}",
        quoted(&id),
        args.k + 1,
        quoted(&scene_id),
        args.k
    );
    let (schema, batches) = sql::query(&ctx, &q).await?;
    match &args.out {
        Some(path) if path.extension().is_some_and(|e| e == "parquet") => {
            let target = path.display().to_string();
            let file = std::fs::File::create(path).with_context(|| format!("--out {target}"))?;
            sql::format::write(sql::Format::Parquet, &schema, &batches, file, &target)?;
        }
        Some(path) => std::fs::write(path, geojson(&batches)?.to_string()).with_context(|| format!("--out {}", path.display()))?,
        None => println!("{}", geojson(&batches)?),
    }
    Ok(batches)
}

/// The rows as a GeoJSON FeatureCollection (WGS 84), properties id and score.
pub fn geojson(batches: &[RecordBatch]) -> Result<serde_json::Value> {
    let mut features = vec![];
    for b in batches {
        let b = chips::plain(b.clone())?;
        let scene = b.column_by_name("scene_id").and_then(|c| c.as_string_opt::<i32>()).context("scene_id")?;
        let row = b.column_by_name("chip_row").and_then(|c| c.as_primitive_opt::<Int32Type>()).context("chip_row")?;
        let col = b.column_by_name("chip_col").and_then(|c| c.as_primitive_opt::<Int32Type>()).context("chip_col")?;
        let score = b.column_by_name("score").and_then(|c| c.as_primitive_opt::<Float32Type>()).context("score")?;
        let wkb = b.column_by_name("geometry").and_then(|g| g.as_binary_opt::<i32>()).context("geometry is not WKB")?;
        for i in 0..b.num_rows() {
            let rings = parse_wkb_polygon(wkb.value(i), i)?;
            let coords: Vec<Vec<[f64; 2]>> = rings.iter().map(|r| r.iter().map(|&(x, y)| [x, y]).collect()).collect();
            features.push(json!({
                "type": "Feature",
                "id": format!("{}/{}/{}", scene.value(i), row.value(i), col.value(i)),
                "properties": {"scene_id": scene.value(i), "chip_row": row.value(i), "chip_col": col.value(i), "score": score.value(i)},
                "geometry": {"type": "Polygon", "coordinates": coords},
            }));
        }
    }
    Ok(json!({"type": "FeatureCollection", "features": features}))
}

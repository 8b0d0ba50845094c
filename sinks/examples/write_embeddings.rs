//! Writes GeoParquet embeddings (with STAC items and a collection) from real Sentinel-2 scenes.
//!
//! A stand-in for the embed operator, so that the sink is tested on real chips without the
//! model: each chip's 12 bands (reflectance, `DN * 1e-4`) are averaged over a 4 x 4 grid of
//! cells; `embedding` is the 192 cell means (band-major) minus their mean, and with
//! `--patches` `patch_embeddings` holds each cell's 12 band means minus their mean
//! (`FixedSizeList<FixedSizeList<Float32, 12>, 16>`). Both are real-valued, signed and differ
//! from chip to chip, which is what quantisation and similarity checks need.
//!
//! ```text
//! cargo run -p terrastream-sinks --example write_embeddings -- \
//!     CONFIG_JSON ASSET_PREFIX ASSET_DIR CHIP [--patches] [--shuffle] ITEM.json...
//! ```
//! `CONFIG_JSON` is a [`GeoParquetConfig`] as JSON. `--shuffle` feeds the batches in reverse
//! order with their rows reversed (the sink must still write sorted files). Prints the sink
//! report as JSON on stdout.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use arrow_array::{Array, ArrayRef, FixedSizeListArray, Float32Array, RecordBatch, UInt32Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use futures::StreamExt;
use terrastream_ingest::bands::S2L2A;
use terrastream_ingest::grid::EdgePolicy;
use terrastream_ingest::item::{HrefRewrite, SceneItem};
use terrastream_ingest::schema::{embedding_field, fixed_list};
use terrastream_ingest::{ChipLedger, ChipStreamAdapter, SceneOptions, SceneSource};
use terrastream_sinks::GeoParquetConfig;
use terrastream_sinks::geoparquet::PATCH_EMBEDDINGS;

/// Cells per chip side.
const CELLS: usize = 4;
const BANDS: usize = 12;

fn patch_field() -> Field {
    let inner = Arc::new(Field::new("item", fixed_list(DataType::Float32, BANDS), false));
    Field::new(PATCH_EMBEDDINGS, DataType::FixedSizeList(inner, (CELLS * CELLS) as i32), false)
}

/// Appends `embedding` (and `patch_embeddings`) computed from the `S2L2A` pixel column.
fn embed(batch: &RecordBatch, chip: usize, patches: bool, schema: &SchemaRef) -> Result<RecordBatch> {
    let pixels = batch
        .column_by_name(S2L2A.name)
        .and_then(|c| c.as_any().downcast_ref::<FixedSizeListArray>())
        .context("S2L2A column")?;
    let values = pixels.values().as_any().downcast_ref::<Float32Array>().context("Float32 pixels")?;
    let per_chip = BANDS * chip * chip;
    let cell = chip / CELLS;
    let (mut pooled, mut patch) = (Vec::new(), Vec::new());
    for r in 0..batch.num_rows() {
        let px = &values.values()[(pixels.offset() + r) * per_chip..(pixels.offset() + r + 1) * per_chip];
        // means[cell][band]
        let mut means = vec![[0f32; BANDS]; CELLS * CELLS];
        for (k, m) in means.iter_mut().enumerate() {
            let (cy, cx) = (k / CELLS, k % CELLS);
            for (b, mb) in m.iter_mut().enumerate() {
                let (mut sum, mut n) = (0f64, 0u32);
                for y in cy * cell..(cy + 1) * cell {
                    for x in cx * cell..(cx + 1) * cell {
                        let v = px[b * chip * chip + y * chip + x];
                        if v.is_finite() {
                            sum += f64::from(v);
                            n += 1;
                        }
                    }
                }
                *mb = if n > 0 { (sum / f64::from(n) * 1e-4) as f32 } else { 0.0 };
            }
        }
        let flat: Vec<f32> = (0..BANDS).flat_map(|b| means.iter().map(move |m| m[b])).collect();
        let centre = flat.iter().sum::<f32>() / flat.len() as f32;
        pooled.extend(flat.iter().map(|v| v - centre));
        for m in &means {
            let c = m.iter().sum::<f32>() / BANDS as f32;
            patch.extend(m.iter().map(|v| v - c));
        }
    }
    let DataType::FixedSizeList(item, len) = embedding_field(BANDS * CELLS * CELLS).data_type().clone() else {
        bail!("embedding type")
    };
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(FixedSizeListArray::try_new(item, len, Arc::new(Float32Array::from(pooled)), None)?));
    if patches {
        let DataType::FixedSizeList(outer, p) = patch_field().data_type().clone() else { bail!("patch type") };
        let DataType::FixedSizeList(inner, d) = outer.data_type().clone() else { bail!("patch type") };
        let vectors = FixedSizeListArray::try_new(inner, d, Arc::new(Float32Array::from(patch)), None)?;
        columns.push(Arc::new(FixedSizeListArray::try_new(outer, p, Arc::new(vectors), None)?) as ArrayRef);
    }
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 5 {
        bail!("usage: write_embeddings CONFIG_JSON ASSET_PREFIX ASSET_DIR CHIP [--patches] [--shuffle] ITEM.json...");
    }
    let cfg: GeoParquetConfig = serde_json::from_str(&args[0]).context("CONFIG_JSON")?;
    let (prefix, assets) = (&args[1], &args[2]);
    let chip: usize = args[3].parse().context("CHIP")?;
    let flags: Vec<&str> = args[4..].iter().map(String::as_str).filter(|a| a.starts_with("--")).collect();
    let (patches, shuffle) = (flags.contains(&"--patches"), flags.contains(&"--shuffle"));
    let items = args[4..]
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(|p| SceneItem::from_path(&PathBuf::from(p)))
        .collect::<Result<Vec<_>, _>>()?;

    let ledger = Arc::new(ChipLedger::default());
    let options = SceneOptions {
        modality: S2L2A,
        chip_size: chip,
        stride: chip,
        edge: EdgePolicy::Snap,
        rewrites: vec![HrefRewrite { prefix: prefix.clone(), replace: format!("{assets}/") }],
        cloud_mask: false,
        request_budget: None,
    };
    let source = SceneSource::new(options, Arc::clone(&ledger))?;
    let mut fields: Vec<_> = source.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(embedding_field(BANDS * CELLS * CELLS));
    if patches {
        fields.push(patch_field());
    }
    let schema: SchemaRef = Arc::new(Schema::new_with_metadata(fields, source.schema().metadata().clone()));
    let s = Arc::clone(&schema);
    let embedded = source.stream(items, 2).map(move |batch| {
        embed(&batch?, chip, patches, &s).map_err(|e| datafusion_common::DataFusionError::Execution(format!("{e:#}")))
    });
    let stream = if shuffle {
        let mut batches: Vec<_> = embedded.collect().await;
        batches.reverse();
        let reversed = batches.into_iter().map(|b| {
            let b = b?;
            let order = UInt32Array::from((0..b.num_rows() as u32).rev().collect::<Vec<_>>());
            Ok(arrow_select::take::take_record_batch(&b, &order)?)
        });
        futures::stream::iter(reversed.collect::<Vec<_>>()).boxed()
    } else {
        embedded.boxed()
    };
    let report = cfg.build(Arc::clone(&ledger))?.run(ChipStreamAdapter::new(schema, stream).boxed()).await?;
    let failed = ledger.snapshot().failed;
    if !failed.is_empty() {
        bail!("scene failed: {failed:?}");
    }
    println!(
        "{}",
        serde_json::json!({
            "files": report.files,
            "rows": report.rows,
            "stac_items": report.stac_items,
            "collection": report.collection,
        })
    );
    Ok(())
}

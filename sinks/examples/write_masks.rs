//! Writes mask COGs (with STAC items and a collection) from a real Sentinel-2 scene.
//!
//! A stand-in for a segmentation operator: the scene's own layers become the mask column.
//! `classes` reads the scene classification layer (SCL, nearest resampling) and uses its class
//! ids as a class mask; `probabilities` reads B08 (NIR) and uses `clamp(DN * 1e-4, 0, 1)`
//! (surface reflectance) as a probability-like score. Chips overlap when `--stride` is less
//! than `--chip`, so the sink's vote and mean are exercised on real data.
//!
//! ```text
//! cargo run -p terrastream-sinks --example write_masks -- \
//!     ITEM.json ASSET_PREFIX ASSET_DIR OUT_DIR classes|probabilities [CHIP STRIDE [deflate|zstd]]
//! ```
//! Prints the sink report as JSON on stdout.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use arrow_schema::Schema;
use futures::StreamExt;
use terrastream_ingest::bands::{ModalityBands, Resampling, S2_SCL, S2L2A_BANDS};
use terrastream_ingest::grid::EdgePolicy;
use terrastream_ingest::item::{HrefRewrite, SceneItem};
use terrastream_ingest::{ChipLedger, ChipStreamAdapter, SceneOptions, SceneSource};
use terrastream_sinks::cog::{CogCompression, CogConfig, MaskKind, class_mask_from_channel, mask_field, probability_from_channel};

static SCL_ONLY: [terrastream_ingest::bands::Band; 1] = [S2_SCL];
static B08_ONLY: [terrastream_ingest::bands::Band; 1] = [S2L2A_BANDS[7]];

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 5 {
        bail!("usage: write_masks ITEM ASSET_PREFIX ASSET_DIR OUT_DIR classes|probabilities [CHIP STRIDE [deflate|zstd]]");
    }
    let (item, prefix, assets, out, kind) = (&args[0], &args[1], &args[2], &args[3], &args[4]);
    let chip: usize = args.get(5).map_or(Ok(128), |s| s.parse()).context("CHIP")?;
    let stride: usize = args.get(6).map_or(Ok(96), |s| s.parse()).context("STRIDE")?;
    let compression = match args.get(7).map(String::as_str) {
        None | Some("deflate") => CogCompression::Deflate,
        Some("zstd") => CogCompression::Zstd,
        Some(other) => bail!("compression {other:?}: deflate or zstd"),
    };
    let (modality, kind) = match kind.as_str() {
        "classes" => (ModalityBands { name: "SCL", bands: &SCL_ONLY, resampling: Resampling::Nearest }, MaskKind::Classes),
        "probabilities" => (ModalityBands { name: "B08", bands: &B08_ONLY, resampling: Resampling::Bilinear }, MaskKind::Probabilities),
        other => bail!("kind {other:?}: classes or probabilities"),
    };

    let ledger = Arc::new(ChipLedger::default());
    let options = SceneOptions {
        modality,
        chip_size: chip,
        stride,
        edge: EdgePolicy::Snap,
        rewrites: vec![HrefRewrite { prefix: prefix.clone(), replace: format!("{assets}/") }],
        cloud_mask: false,
        request_budget: None,
    };
    let source = SceneSource::new(options, Arc::clone(&ledger))?;
    let item = SceneItem::from_path(&PathBuf::from(item))?;

    let mut fields: Vec<_> = source.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(mask_field("mask", kind, chip, chip));
    let schema = Arc::new(Schema::new_with_metadata(fields, source.schema().metadata().clone()));
    let name = modality.name;
    let chips = source.stream(vec![item], 2).map(move |batch| {
        let batch = batch?;
        let with_mask = match kind {
            MaskKind::Classes => class_mask_from_channel(&batch, name, 0, "mask", 255),
            MaskKind::Probabilities => probability_from_channel(&batch, name, 0, "mask", 1e-4),
        };
        with_mask.map_err(|e| datafusion_common::DataFusionError::External(Box::new(e)))
    });
    let stream = ChipStreamAdapter::new(schema, chips.boxed()).boxed();

    let mut cfg = CogConfig::new(PathBuf::from(out));
    cfg.compression = compression;
    let report = cfg.build(Arc::clone(&ledger))?.run(stream).await?;
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

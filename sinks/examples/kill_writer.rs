//! A slow writer of one large output, to be killed mid-file by the kill test.
//!
//! ```text
//! kill_writer geoparquet OUT_DIR   # the GeoParquet sink: 64 batches of 1024 chips with
//!                                  # 768-d embeddings (~200 MB), 100 ms apart
//! kill_writer object STORE_DIR     # ObjectCommit to a LocalFileSystem object store: 256 MB
//!                                  # in 1 MiB chunks, 20 ms apart
//! ```
//! Prints `writing` once the first bytes are on their way, `committed PATH` at the end.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use arrow_array::builder::{BinaryBuilder, StringBuilder};
use arrow_array::{ArrayRef, FixedSizeListArray, Float32Array, Float64Array, RecordBatch, StructArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use futures::StreamExt;
use terrastream_ingest::schema::{BBOX, DATETIME, GEOMETRY, SCENE_ID, bbox_fields, embedding_field};
use terrastream_ingest::{ChipLedger, ChipStreamAdapter};
use terrastream_sinks::GeoParquetConfig;
use terrastream_sinks::commit::{CommitMode, ObjectCommit};

const DIM: usize = 768;

/// Deterministic, incompressible-ish values (a multiplicative hash).
fn noise(seed: u64, n: usize) -> Vec<f32> {
    (0..n as u64).map(|i| ((seed.wrapping_add(i).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as f32) / (1u64 << 24) as f32).collect()
}

fn batch(schema: &Arc<Schema>, k: u64, rows: usize) -> Result<RecordBatch> {
    let mut ids = StringBuilder::new();
    let mut geometry = BinaryBuilder::new();
    for _ in 0..rows {
        ids.append_value("S2A_KILL_TEST");
        // A unit square at (0, 0) as ISO WKB.
        let mut wkb = vec![1u8];
        wkb.extend_from_slice(&3u32.to_le_bytes());
        wkb.extend_from_slice(&1u32.to_le_bytes());
        wkb.extend_from_slice(&5u32.to_le_bytes());
        for (x, y) in [(0.0f64, 0.0f64), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0), (0.0, 0.0)] {
            wkb.extend_from_slice(&x.to_le_bytes());
            wkb.extend_from_slice(&y.to_le_bytes());
        }
        geometry.append_value(wkb);
    }
    let bbox = StructArray::try_new(
        bbox_fields(),
        [0.0, 0.0, 1.0, 1.0].iter().map(|&v| Arc::new(Float64Array::from(vec![v; rows])) as ArrayRef).collect(),
        None,
    )?;
    let DataType::FixedSizeList(item, len) = embedding_field(DIM).data_type().clone() else { bail!("embedding type") };
    let embedding = FixedSizeListArray::try_new(item, len, Arc::new(Float32Array::from(noise(k, rows * DIM))), None)?;
    // 2020-02-19T11:00:00Z.
    let datetime = TimestampMicrosecondArray::from(vec![1_582_110_000_000_000i64; rows]).with_timezone("UTC");
    let columns: Vec<ArrayRef> = vec![Arc::new(ids.finish()), Arc::new(datetime), Arc::new(geometry.finish()), Arc::new(bbox), Arc::new(embedding)];
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(mode), Some(out)) = (args.first(), args.get(1)) else { bail!("usage: kill_writer geoparquet|object DIR") };
    let out = PathBuf::from(out);
    match mode.as_str() {
        "geoparquet" => {
            let schema = Arc::new(Schema::new(vec![
                Field::new(SCENE_ID, DataType::Utf8, false),
                Field::new(DATETIME, DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
                Field::new(GEOMETRY, DataType::Binary, false),
                Field::new(BBOX, DataType::Struct(bbox_fields()), false),
                embedding_field(DIM),
            ]));
            let s = Arc::clone(&schema);
            let batches = futures::stream::iter(0..64u64).then(move |k| {
                let s = Arc::clone(&s);
                async move {
                    if k == 1 {
                        println!("writing");
                        let _ = std::io::stdout().flush();
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    batch(&s, k, 1024).map_err(|e| datafusion_common::DataFusionError::Execution(e.to_string()))
                }
            });
            let mut cfg = GeoParquetConfig::new(out);
            cfg.row_group_rows = 1024;
            let report = cfg.build(Arc::new(ChipLedger::default()))?.run(ChipStreamAdapter::new(schema, batches.boxed()).boxed()).await?;
            println!("committed {}", report.files.first().map(|p| p.display().to_string()).unwrap_or_default());
        }
        "object" => {
            std::fs::create_dir_all(&out)?;
            let store = Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&out)?);
            let commit = ObjectCommit::new(store, CommitMode::Replace).with_part_size(1 << 20);
            let chunks = futures::stream::iter(0..256u64).then(|k| async move {
                if k == 1 {
                    println!("writing");
                    let _ = std::io::stdout().flush();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                let bytes: Vec<u8> = noise(k, 1 << 18).iter().flat_map(|v| v.to_le_bytes()).collect();
                Ok(bytes::Bytes::from(bytes))
            });
            let key = object_store::path::Path::from("masks/S2A_KILL_TEST.tif");
            let size = commit.put_stream(chunks, &key).await?;
            println!("committed {key} {size}");
        }
        other => bail!("mode {other:?}: geoparquet or object"),
    }
    Ok(())
}

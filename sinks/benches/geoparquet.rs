//! Throughput of the GeoParquet sink vs Arrow's plain `ArrowWriter` on the same batches.
//!
//! Both write 16 batches of 1024 chips (768-d Float32 embeddings, ids, datetime, WKB
//! footprints, bbox) with the same zstd level and row-group size; the sink adds what the plain
//! writer lacks: dropping tensor columns, the sort-order check, footprint parsing (bbox, hull),
//! the `geo` metadata, blocking-pool hand-offs, an fsync + atomic rename on commit, and the
//! STAC item (a sha2-256 pass over the file) and collection. The sink runs with each embedding
//! encoding (float32, float16, int8: the encoding work is part of its time). Criterion reports
//! rows/s; summary lines print rows/s, MB/s (of Arrow input), output size and the ratio to
//! the plain writer, measured in the same process.
//!
//! `cargo bench -p terrastream-sinks --bench geoparquet`

// criterion_group! generates an undocumented public fn.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::builder::{BinaryBuilder, Int32Builder, StringBuilder};
use arrow_array::{ArrayRef, FixedSizeListArray, Float32Array, Float64Array, RecordBatch, StructArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use terrastream_ingest::schema::{BBOX, CHIP_COL, CHIP_ROW, DATETIME, GEOMETRY, SCENE_ID, bbox_fields, embedding_field};
use terrastream_ingest::{ChipLedger, ChipStreamAdapter};
use terrastream_sinks::GeoParquetConfig;
use terrastream_sinks::geoparquet::EmbeddingEncoding;

const DIM: usize = 768;
const ROWS: usize = 1024;
const BATCHES: usize = 16;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(SCENE_ID, DataType::Utf8, false),
        Field::new(DATETIME, DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
        Field::new(CHIP_ROW, DataType::Int32, false),
        Field::new(CHIP_COL, DataType::Int32, false),
        Field::new(GEOMETRY, DataType::Binary, false),
        Field::new(BBOX, DataType::Struct(bbox_fields()), false),
        embedding_field(DIM),
    ]))
}

fn batches() -> Vec<RecordBatch> {
    let schema = schema();
    (0..BATCHES)
        .map(|k| {
            let (mut ids, mut rows, mut cols, mut geom) = (StringBuilder::new(), Int32Builder::new(), Int32Builder::new(), BinaryBuilder::new());
            let mut bbox: [Vec<f64>; 4] = Default::default();
            for r in 0..ROWS {
                ids.append_value("S2A_29RKH_20200219_0_L2A");
                rows.append_value(k as i32);
                cols.append_value(r as i32);
                let (x, y) = (-12.0 + r as f64 * 1e-3, 24.0 + k as f64 * 1e-3);
                let mut wkb = vec![1u8];
                wkb.extend_from_slice(&3u32.to_le_bytes());
                wkb.extend_from_slice(&1u32.to_le_bytes());
                wkb.extend_from_slice(&5u32.to_le_bytes());
                for (px, py) in [(x, y), (x + 1e-3, y), (x + 1e-3, y + 1e-3), (x, y + 1e-3), (x, y)] {
                    wkb.extend_from_slice(&px.to_le_bytes());
                    wkb.extend_from_slice(&py.to_le_bytes());
                }
                geom.append_value(wkb);
                for (i, v) in [x, y, x + 1e-3, y + 1e-3].into_iter().enumerate() {
                    bbox[i].push(v);
                }
            }
            // Embedding-like values: smooth per chip plus noise, not trivially compressible.
            let values: Vec<f32> = (0..ROWS * DIM)
                .map(|i| {
                    let h = ((k * ROWS * DIM + i) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
                    ((i % DIM) as f32 * 0.01).sin() + (h as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
                })
                .collect();
            let DataType::FixedSizeList(item, len) = embedding_field(DIM).data_type().clone() else { unreachable!() };
            let columns: Vec<ArrayRef> = vec![
                Arc::new(ids.finish()),
                // 2020-02-19T11:00:00Z.
                Arc::new(TimestampMicrosecondArray::from(vec![1_582_110_000_000_000i64; ROWS]).with_timezone("UTC")),
                Arc::new(rows.finish()),
                Arc::new(cols.finish()),
                Arc::new(geom.finish()),
                Arc::new(StructArray::try_new(bbox_fields(), bbox.into_iter().map(|v| Arc::new(Float64Array::from(v)) as ArrayRef).collect(), None).expect("bbox")),
                Arc::new(FixedSizeListArray::try_new(item, len, Arc::new(Float32Array::from(values)), None).expect("embedding")),
            ];
            RecordBatch::try_new(Arc::clone(&schema), columns).expect("batch")
        })
        .collect()
}

fn run_sink(rt: &tokio::runtime::Runtime, batches: &[RecordBatch], dir: &std::path::Path, enc: EmbeddingEncoding) {
    let stream = futures::stream::iter(batches.to_vec().into_iter().map(Ok)).boxed();
    let input = ChipStreamAdapter::new(schema(), stream).boxed();
    let mut cfg = GeoParquetConfig::new(dir.join(enc.name()));
    cfg.row_group_rows = 8192;
    cfg.embedding_encoding = enc;
    let sink = cfg.build(Arc::new(ChipLedger::default())).expect("build");
    let report = rt.block_on(sink.run(input)).expect("run");
    assert_eq!(report.rows as usize, ROWS * BATCHES);
}

fn run_plain(batches: &[RecordBatch], dir: &std::path::Path) {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("level")))
        .set_max_row_group_row_count(Some(8192))
        .build();
    let file = std::fs::File::create(dir.join("plain.parquet")).expect("create");
    let mut w = ArrowWriter::try_new(file, schema(), Some(props)).expect("writer");
    for b in batches {
        w.write(b).expect("write");
    }
    w.close().expect("close");
}

fn timed(f: impl FnOnce()) -> Duration {
    let s = Instant::now();
    f();
    s.elapsed()
}

fn median(mut t: Vec<Duration>) -> Duration {
    t.sort();
    t[t.len() / 2]
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let batches = batches();
    let bytes: usize = batches.iter().map(RecordBatch::get_array_memory_size).sum();
    let rows = (ROWS * BATCHES) as u64;
    let dir = tempfile::tempdir().expect("tmp");

    let encodings = [EmbeddingEncoding::Float32, EmbeddingEncoding::Float16, EmbeddingEncoding::Int8];
    let mut g = c.benchmark_group("geoparquet_write");
    g.sample_size(10).throughput(Throughput::Elements(rows));
    for enc in encodings {
        g.bench_function(format!("terrastream_sink_{}", enc.name()), |b| b.iter(|| run_sink(&rt, &batches, dir.path(), enc)));
    }
    g.bench_function("arrow_writer", |b| b.iter(|| run_plain(&batches, dir.path())));
    g.finish();

    // Interleaved rounds, so that drift (page cache, clock) hits every variant alike.
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); encodings.len() + 1];
    for _ in 0..7 {
        for (k, enc) in encodings.iter().enumerate() {
            times[k].push(timed(|| run_sink(&rt, &batches, dir.path(), *enc)));
        }
        times[encodings.len()].push(timed(|| run_plain(&batches, dir.path())));
    }
    let meds: Vec<Duration> = times.into_iter().map(median).collect();
    let per = |d: Duration| (rows as f64 / d.as_secs_f64(), bytes as f64 / 1e6 / d.as_secs_f64());
    let (pr, pm) = per(meds[encodings.len()]);
    let plain_out = std::fs::metadata(dir.path().join("plain.parquet")).map_or(0, |m| m.len());
    println!(
        "summary: {rows} rows, {:.1} MB Arrow in | ArrowWriter {pr:.0} rows/s {pm:.1} MB/s, {:.1} MB out",
        bytes as f64 / 1e6,
        plain_out as f64 / 1e6
    );
    for (k, enc) in encodings.iter().enumerate() {
        let (sr, sm) = per(meds[k]);
        let out = std::fs::metadata(dir.path().join(enc.name()).join("embeddings/S2A_29RKH_20200219_0_L2A.parquet")).map_or(0, |m| m.len());
        println!(
            "summary: sink {:<7} {sr:.0} rows/s {sm:.1} MB/s, {:.1} MB out | sink/ArrowWriter throughput ratio {:.3}",
            enc.name(),
            out as f64 / 1e6,
            sr / pr
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

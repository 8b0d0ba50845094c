//! Shared by the benches that need 1,000,000 random embeddings in Parquet (`sql`, `classify`):
//! files that look like the sink's (8192-row groups, rows sorted by place so that row groups
//! cover compact areas) but hold random vectors, with no compression and no dictionaries
//! (random floats gain nothing from either). Generated once per directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{
    ArrayRef, FixedSizeListArray, Float32Array, Float64Array, Int32Array, RecordBatch, StringArray, StructArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use rand::{Rng, SeedableRng};

pub const DIM: usize = 768;
pub const FILES: usize = 8;
const ROW_GROUP: usize = 8192;

pub fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn bbox_fields() -> Fields {
    ["xmin", "ymin", "xmax", "ymax"]
        .iter()
        .map(|n| Field::new(*n, DataType::Float64, false))
        .collect()
}

/// Writes `rows` random rows into `FILES` files under `dir` (once: kept for later runs).
pub fn generate(dir: &Path, rows: usize) {
    let done = dir.join("_complete");
    if done.exists() {
        return;
    }
    std::fs::create_dir_all(dir).expect("bench dir");
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let schema = Arc::new(Schema::new(vec![
        Field::new("scene_id", DataType::Utf8, false),
        Field::new("chip_row", DataType::Int32, false),
        Field::new("chip_col", DataType::Int32, false),
        Field::new("bbox", DataType::Struct(bbox_fields()), false),
        Field::new(
            "embedding",
            DataType::FixedSizeList(Arc::clone(&item), DIM as i32),
            false,
        ),
    ]));
    let props = WriterProperties::builder()
        .set_compression(Compression::UNCOMPRESSED)
        .set_dictionary_enabled(false)
        .set_max_row_group_row_count(Some(ROW_GROUP))
        .build();
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let per_file = rows.div_ceil(FILES);
    let started = Instant::now();
    for f in 0..FILES {
        let path = dir.join(format!("part-{f}.parquet"));
        let file = std::fs::File::create(&path).expect("create bench file");
        let mut writer = ArrowWriter::try_new(file, Arc::clone(&schema), Some(props.clone())).expect("writer");
        let first = f * per_file;
        let last = rows.min(first + per_file);
        for start in (first..last).step_by(ROW_GROUP) {
            let n = ROW_GROUP.min(last - start);
            // Longitude grows with the row number (rows sorted by place), latitude is random.
            let xmin: Vec<f64> = (start..start + n)
                .map(|i| -180.0 + 360.0 * i as f64 / rows as f64 + rng.random_range(0.0..0.01))
                .collect();
            let ymin: Vec<f64> = (0..n).map(|_| rng.random_range(-60.0..60.0)).collect();
            let bbox = StructArray::new(
                bbox_fields(),
                vec![
                    Arc::new(Float64Array::from(xmin.clone())) as ArrayRef,
                    Arc::new(Float64Array::from(ymin.clone())),
                    Arc::new(Float64Array::from_iter_values(xmin.iter().map(|x| x + 0.02))),
                    Arc::new(Float64Array::from_iter_values(ymin.iter().map(|y| y + 0.02))),
                ],
                None,
            );
            let values: Vec<f32> = (0..n * DIM).map(|_| rng.random_range(-1.0..1.0)).collect();
            let embedding = FixedSizeListArray::new(
                Arc::clone(&item),
                DIM as i32,
                Arc::new(Float32Array::from(values)),
                None,
            );
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from_iter_values(
                    (start..start + n).map(|i| format!("scene_{}", i / 1000)),
                )),
                Arc::new(Int32Array::from_iter_values(
                    (start..start + n).map(|i| (i % 1000 / 32) as i32),
                )),
                Arc::new(Int32Array::from_iter_values(
                    (start..start + n).map(|i| (i % 32) as i32),
                )),
                Arc::new(bbox),
                Arc::new(embedding),
            ];
            writer
                .write(&RecordBatch::try_new(Arc::clone(&schema), columns).expect("batch"))
                .expect("write");
        }
        writer.close().expect("close");
    }
    std::fs::write(&done, "").expect("marker");
    eprintln!(
        "generated {rows} rows in {FILES} files in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// Removes the generated files on the way out (also after a panic).
pub struct Cleanup(pub Option<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}


/// Where the files go: `dir_var`'s directory (kept), else /dev/shm (removed on drop of the
/// returned [`Cleanup`]): `(files dir, cleanup)`.
pub fn bench_dir(dir_var: &str, name: &str, rows: usize) -> (PathBuf, Cleanup) {
    // 3 GB of files: in memory (tmpfs) and removed afterwards unless a directory is given.
    let kept = std::env::var(dir_var).ok().map(PathBuf::from);
    let base = kept.clone().unwrap_or_else(|| {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() { shm.join(name) } else { std::env::temp_dir().join(name) }
    });
    let dir = base.join(format!("rows-{rows}"));
    (dir, Cleanup(kept.is_none().then_some(base)))
}

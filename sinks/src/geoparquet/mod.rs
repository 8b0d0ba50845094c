//! GeoParquet 1.1 embeddings sink: chip ids, footprints and embeddings, one file per work unit
//! (a scene, or a named unit such as `<tile>_<period>`) and partition.
//!
//! Pixel (tensor) columns are dropped; everything else is written with zstd, row groups sized
//! for scans, the `geo` metadata (PROJJSON CRS, bbox covering column) and a deterministic file
//! name, so re-running a work unit replaces its files. Files are committed atomically; a work
//! unit with a scene that failed upstream leaves no file. Every file gets a STAC item
//! (projection, table and file extensions) listed in the collection of `<dir>/embeddings`.
//!
//! - [`config`]: the options ([`GeoParquetConfig`]): embedding encoding (Float32, Float16,
//!   Int8 + scale), geometry encoding (WKB, GeoArrow), partitioning (none, hive by grid and
//!   date), work-unit name, row groups.
//! - [`sink`]: the runtime ([`GeoParquetSink::run`]): sorting, partitioning, commit, items.
//! - [`quantize`]: Float16 / Int8 encoding of `embedding` and the optional `patch_embeddings`.
//! - [`geometry`]: WKB footprints, GeoArrow polygons, the convex hull for STAC.
//! - [`partition`]: hive partition directories and the in-file sort key.
//! - [`metadata`]: the `geo` file metadata.

pub mod config;
pub mod geometry;
pub mod metadata;
pub mod partition;
pub mod quantize;
pub mod sink;

pub use config::{EmbeddingEncoding, GeoParquetConfig, GeometryEncoding, Partitioning};
pub use metadata::geo_metadata;
pub use quantize::{ENCODING_KEY, PATCH_EMBEDDINGS, scale_column};
pub use sink::GeoParquetSink;

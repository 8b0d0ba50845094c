//! terrastream-sinks: where chip batches end.
//!
//! - [`geoparquet`]: embeddings and chip metadata to GeoParquet 1.1, one file per scene.
//! - [`commit`]: atomic commit of output files (temporary name, then rename).
//! - [`crs`]: PROJJSON for the CRS GeoParquet metadata needs.

#![deny(missing_docs)]

pub mod commit;
pub mod crs;
mod error;
pub mod geoparquet;

pub use error::{Error, Result};
pub use geoparquet::{GeoParquetConfig, GeoParquetSink, SinkReport};

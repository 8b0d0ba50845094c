//! terrastream-sinks: where chip batches end.
//!
//! Every sink follows one shape: a serde config (`deny_unknown_fields`) whose
//! `build(ledger) -> Result<Sink>` validates everything before any I/O, and a runtime whose
//! `run(self, ChipStream) -> Result<SinkReport>` consumes the stream and commits one file per
//! work unit (scene, or a named unit), atomically, under a deterministic name.
//!
//! | module | what | entry points |
//! |---|---|---|
//! | [`geoparquet`] | embeddings and chip metadata to GeoParquet 1.1 (Float32/Float16/Int8 embeddings, optional patch embeddings, WKB or GeoArrow footprints, hive partitions by grid and date), one file per work unit and partition, STAC item each | [`GeoParquetConfig::build`], [`GeoParquetSink::run`] |
//! | [`cog`] | class masks / probabilities mosaicked per scene into tiled COGs with overviews, colour table, STAC item | [`CogConfig::build`], [`CogSink::run`] |
//! | [`stac`] | STAC items (projection, raster, table, file extensions) per output file, static collection per output directory (partition directories included) | [`stac::write_item`], [`stac::write_collection`] |
//! | [`commit`] | atomic commit: local temporary name + rename; object stores: temporary key + copy, or conditional put | [`commit::PendingFile`], [`commit::ObjectCommit`] |
//! | [`crs`] | PROJJSON for the CRS GeoParquet metadata needs | [`crs::epsg_4326`] |
//! | [`report`] | what a sink wrote | [`SinkReport`] |
//!
//! Errors are one [`Error`] enum; failures name the file, column, option or scene.

#![deny(missing_docs)]

pub mod cog;
pub mod commit;
pub mod crs;
mod error;
pub mod geoparquet;
pub mod report;
pub mod stac;

pub use cog::{CogConfig, CogSink};
pub use error::{Error, Result};
pub use geoparquet::{GeoParquetConfig, GeoParquetSink};
pub use report::SinkReport;

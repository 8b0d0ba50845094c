//! terrastream: streaming Earth-observation foundation-model inference.
//!
//! The binary's pipelines, each a chain of sources → operators → sinks named by a config file:
//!
//! - [`map`]: the mapping job (`terrastream map run.toml`): scenes in, GeoParquet embeddings out.
//! - [`sql`]: `terrastream sql`, SQL over the outputs (DataFusion) with vector and spatial
//!   functions and `nearest(table, query, k)`.
//! - [`flood`]: `terrastream flood water`, water masks from Sentinel-1/2 rasters on disk.
//! - [`cog`]: `terrastream cog info|read`, the COG reader as a debugging tool.
//! - [`npy`]: NumPy `.npy` output.
//! - [`stac_cmd`]: `terrastream stac search|poll|catalog`, items as NDJSON.
//! - [`model_cmd`]: `terrastream model embed`, TerraMind on user-supplied tensors.
//! - [`telemetry`]: logging (`RUST_LOG`, optional JSON) and progress bars.

#![deny(missing_docs)]

pub mod cog;
pub mod flood;
pub mod map;
pub mod map_cmd;
pub mod model_cmd;
pub mod npy;
pub mod sql;
pub mod stac_cmd;
pub mod telemetry;

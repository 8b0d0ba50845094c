//! terrastream: streaming Earth-observation foundation-model inference.
//!
//! The binary's pipelines, each a chain of sources → operators → sinks named by a config file:
//!
//! - [`map`]: the mapping job (`terrastream map run.toml`): scenes in, GeoParquet embeddings out.
//! - [`sql`]: `terrastream sql`, SQL over the outputs (DataFusion) with vector and spatial
//!   functions and `nearest(table, query, k)`.
//! - [`classify`]: `terrastream classify` (few-shot labels from example points/polygons) and
//!   `terrastream similar` (the chips most like one chip or point).
//! - [`flood`]: `terrastream flood water|run|serve`: water masks from Sentinel-1/2 rasters, event
//!   maps searched from a STAC API, and a service that maps events posted to it.
//! - [`cog`]: `terrastream cog info|read`, the COG reader as a debugging tool.
//! - [`npy`]: NumPy `.npy` output; [`rgb_png`]: quick-look PNGs.
//! - [`stac_cmd`]: `terrastream stac search|poll|catalog`, items as NDJSON.
//! - [`model_cmd`]: `terrastream model embed`, TerraMind on user-supplied tensors.
//! - [`error_line`]: errors as one line, each cause once (failure logs, messages).
//! - [`telemetry`]: logging (`RUST_LOG`, optional JSON) and progress bars.
//! - [`time_span`]: days and seconds from config files: their bounds and durations.

#![deny(missing_docs)]

pub mod classify;
pub mod cog;
pub mod error_line;
pub mod flood;
pub mod map;
pub mod map_cmd;
pub mod model_cmd;
pub mod npy;
pub mod rgb_png;
pub mod sql;
pub mod stac_cmd;
pub mod telemetry;
pub mod time_span;

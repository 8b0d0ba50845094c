//! terrastream: streaming Earth-observation foundation-model inference.
//!
//! The binary's pipelines, each a chain of sources → operators → sinks named by a config file:
//!
//! - [`map`]: the mapping job (`terrastream map run.toml`): scenes in, GeoParquet embeddings out.
//! - [`telemetry`]: logging (`RUST_LOG`, optional JSON) and progress bars.

#![deny(missing_docs)]

pub mod map;
pub mod telemetry;

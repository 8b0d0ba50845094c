//! The mapping job: `terrastream map run.toml`.
//!
//! Source (STAC items → chip batches) → quality filter → normalize → embed → GeoParquet sink.

mod config;
mod run;

pub use config::{FilterConfig, GridConfig, MapConfig, ModelConfig, OutputConfig, SourceConfig};
pub use run::{MapSummary, run};

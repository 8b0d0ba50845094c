//! The mapping job: `terrastream map run.toml`.
//!
//! A run is planned into work units (grid tile x period), this shard's units that are not
//! already done are mapped, each through source (STAC items → chip batches) → quality filter →
//! normalize → embed (or TiM) → GeoParquet sink (and mask COG sinks), and every unit's state is kept in a manifest in the
//! output store, so re-running the same command resumes and never duplicates rows.
//!
//! - [`config`]: the run config (TOML) and its validation.
//! - [`plan`]: finding scenes and grouping them into work units.
//! - [`shard`]: which units a shard maps (`--shard`, Slurm, Kubernetes).
//! - [`manifest`]: per-unit state in the output store.
//! - [`masks`]: the mask heads (`[output] masks`) and their COG sinks.
//! - [`output`]: the output location (directory or object store).
//! - [`run`]: the engine.

pub mod config;
pub mod manifest;
pub mod masks;
pub mod output;
pub mod plan;
mod run;
pub mod shard;

pub use config::{
    FilterConfig, GridConfig, MapConfig, ModelConfig, OutputConfig, Period, RunConfig, Selection, SourceConfig,
};
pub use run::{MapSummary, RunOptions, UnitOutcome, modality, run};

//! terrastream-operators: the stages between a chip source and a sink.
//!
//! Every stage is an [`Operator`]: it takes a [`ChipStream`] and returns one, so stages chain
//! in any order a pipeline config names and DataFusion plans can feed or consume them.
//!
//! - [`operator`]: the `Operator` trait and column helpers.
//! - [`quality_filter`]: drops chips with too little valid data or too many clouds.
//! - [`normalize`]: standardizes pixel columns with the model's pretraining statistics.
//! - [`embed`]: runs the TerraMind encoder on a dedicated model thread and adds `embedding`.
//! - [`tim`]: runs TerraMind TiM on that thread and adds `tim_<MOD>` token ids (and optionally
//!   the TiM-conditioned `embedding`).
//! - [`water`]: water masks and probabilities from Sentinel-1 thresholds, Sentinel-2 water
//!   indices and TerraMind land cover, their ensemble, and flood change detection (plain
//!   Rust on pixel slices, no model runtime except for TerraMind).

#![deny(missing_docs)]

pub mod embed;
mod error;
pub mod normalize;
pub mod operator;
pub mod quality_filter;
pub mod tim;
pub mod water;

pub use embed::{DeviceChoice, Embed, EmbedConfig};
pub use error::{Error, Result};
pub use normalize::{BandStats, Normalize};
pub use operator::Operator;
pub use quality_filter::QualityFilter;
pub use tim::{Tim, TimOperatorConfig};
pub use terrastream_ingest::ChipStream;

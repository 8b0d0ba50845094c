//! Errors of the sinks.

use std::path::PathBuf;

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong writing output.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file operation failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done (`create`, `rename`, ...).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Parquet encoding failed.
    #[error("writing {}", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// The input lacks a column the sink needs.
    #[error("sink {sink}: column {column}: {reason}")]
    Column {
        /// The sink.
        sink: &'static str,
        /// The column.
        column: String,
        /// What is wrong.
        reason: String,
    },
    /// The upstream stages failed.
    #[error(transparent)]
    Upstream(#[from] datafusion_common::DataFusionError),
    /// Building a batch failed.
    #[error(transparent)]
    Arrow(#[from] arrow_schema::ArrowError),
    /// A background task failed.
    #[error("writer task: {0}")]
    Task(String),
    /// COG encoding failed.
    #[error("writing COG {}", path.display())]
    Cog {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: geotiff_writer::Error,
    },
    /// Chips of one output cannot be mosaicked together.
    #[error("mosaic {key}: {reason}")]
    Mosaic {
        /// The output's key (scene id).
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A sink option is invalid.
    #[error("sink option {key}: {reason}")]
    Option {
        /// The option, as written in a config file (`cog.tile_size`).
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// An object-store operation failed.
    #[error("object store: {op} {key}")]
    ObjectStore {
        /// What was being done (`put`, `copy`, ...).
        op: &'static str,
        /// The object key.
        key: String,
        /// Why.
        #[source]
        source: object_store::Error,
    },
    /// A create-only commit found an object under the final key.
    #[error("object store: {key} already exists (create-only commit)")]
    AlreadyCommitted {
        /// The object key.
        key: String,
    },
    /// Georeferencing (CRS, footprint) failed.
    #[error(transparent)]
    Geo(#[from] terrastream_ingest::Error),
    /// JSON encoding or decoding failed.
    #[error("JSON {}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

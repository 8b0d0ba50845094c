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
}

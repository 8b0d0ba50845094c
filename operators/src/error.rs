//! Errors of the operators.

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in an operator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input lacks a column the operator needs, or it has the wrong type.
    #[error("operator {operator}: column {column}: {reason}")]
    Column {
        /// The operator.
        operator: &'static str,
        /// The column.
        column: String,
        /// What is wrong.
        reason: String,
    },
    /// An invalid setting.
    #[error("invalid option {key}: {reason}")]
    Option {
        /// The config key.
        key: String,
        /// Why.
        reason: String,
    },
    /// The model failed to load or run.
    #[error(transparent)]
    Model(#[from] terrastream_model::Error),
    /// The model thread is gone.
    #[error("model thread stopped: {0}")]
    Worker(String),
    /// Building a batch failed.
    #[error(transparent)]
    Arrow(#[from] arrow_schema::ArrowError),
}

impl From<Error> for datafusion_common::DataFusionError {
    fn from(e: Error) -> Self {
        datafusion_common::DataFusionError::External(Box::new(e))
    }
}

//! What can go wrong in `terrastream sql`, each error naming its input.

use datafusion::error::DataFusionError;

/// An error of `terrastream sql`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `--tables` location that does not exist or holds no output store.
    #[error("--tables {path}: {reason}")]
    MissingPath {
        /// The location as given.
        path: String,
        /// What is missing there.
        reason: String,
    },
    /// A `--tables` argument that is not a path, URL or `name=path`.
    #[error("--tables {arg}: {reason}")]
    BadTableArg {
        /// The argument as given.
        arg: String,
        /// Why it was refused.
        reason: String,
    },
    /// A query that failed to plan or run, with what the session has to offer.
    #[error("{error}\n{catalog}")]
    Query {
        /// DataFusion's error.
        error: DataFusionError,
        /// The registered tables and their columns.
        catalog: String,
    },
    /// Writing the results (`--out`, stdout).
    #[error("writing results to {target}: {reason}")]
    Output {
        /// The file or stream.
        target: String,
        /// The writer's error.
        reason: String,
    },
    /// DataFusion outside a user query (registering tables, reading manifests).
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    /// The interactive shell's line editor.
    #[error("shell: {0}")]
    Shell(String),
}

/// `Result` of `terrastream sql`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

//! What a sink did.

use std::path::PathBuf;

/// What a sink wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkReport {
    /// Committed output files.
    pub files: Vec<PathBuf>,
    /// Rows (chips) in them.
    pub rows: u64,
    /// STAC items written, one per output file.
    pub stac_items: Vec<PathBuf>,
    /// The STAC collection rebuilt after the last file, if any file was written.
    pub collection: Option<PathBuf>,
}

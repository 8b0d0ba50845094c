//! Errors of the ingest crate. Every error names the input that caused it: the item id, the
//! asset key, the href, the byte range or window.

use std::path::PathBuf;

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while ingesting a scene.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A STAC item file could not be read.
    #[error("item file {}", path.display())]
    ReadItem {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A STAC item is not valid JSON or not a STAC item.
    #[error("item file {}: not a STAC item", path.display())]
    ParseItem {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// An item lacks a field the pipeline needs.
    #[error("item {item}: {what}")]
    InvalidItem {
        /// Item id.
        item: String,
        /// What is missing or wrong.
        what: String,
    },
    /// An item has none of the asset keys that carry a band.
    #[error("item {item}: no asset for band {band} (looked for asset keys {keys:?})")]
    MissingAsset {
        /// Item id.
        item: String,
        /// Band name (e.g. `B8A`).
        band: String,
        /// Asset keys tried.
        keys: Vec<String>,
    },
    /// Reading one asset of an item failed.
    #[error("item {item}, asset {asset} ({href})")]
    Asset {
        /// Item id.
        item: String,
        /// Asset key.
        asset: String,
        /// Resolved href.
        href: String,
        /// Why.
        #[source]
        source: CogError,
    },
    /// The assets of an item do not share a CRS.
    #[error("item {item}: asset {asset} is in EPSG:{found}, the scene grid is EPSG:{expected}")]
    MixedCrs {
        /// Item id.
        item: String,
        /// Asset key.
        asset: String,
        /// EPSG of the scene grid.
        expected: u32,
        /// EPSG of the asset.
        found: u32,
    },
    /// An href cannot be turned into a readable location.
    #[error("href {href}: {reason}")]
    Href {
        /// The href.
        href: String,
        /// Why.
        reason: String,
    },
    /// A coordinate transformation failed.
    #[error("EPSG:{epsg}: {reason}")]
    Crs {
        /// The source CRS.
        epsg: u32,
        /// Why.
        reason: String,
    },
    /// An invalid option (chip size, stride, ...).
    #[error("invalid option {key}: {reason}")]
    Option {
        /// The option (config key).
        key: String,
        /// Why.
        reason: String,
    },
    /// Building an Arrow batch failed (a bug, not bad input).
    #[error(transparent)]
    Arrow(#[from] arrow_schema::ArrowError),
}

/// What went wrong reading one GeoTIFF.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CogError {
    /// The object store could not open or read the file.
    #[error(transparent)]
    Store(#[from] object_store::Error),
    /// The bytes are not a readable TIFF.
    #[error("not a readable TIFF: {0}")]
    Tiff(#[from] async_tiff::error::AsyncTiffError),
    /// Reading or decoding the tile at this position failed.
    #[error("tile (col {x}, row {y}), bytes {range}: {source}")]
    Tile {
        /// Tile column.
        x: usize,
        /// Tile row.
        y: usize,
        /// Byte range of the tile in the file, as `start..end`.
        range: String,
        /// Why.
        source: async_tiff::error::AsyncTiffError,
    },
    /// A valid TIFF that this reader does not support.
    #[error("unsupported TIFF: {0}")]
    Unsupported(String),
    /// The TIFF carries no usable georeferencing.
    #[error("not georeferenced: {0}")]
    NotGeoreferenced(String),
    /// A pixel window that does not fit the image.
    #[error("{0}")]
    Window(String),
    /// The TIFF parser gave up on a malformed file.
    #[error("malformed TIFF: {0}")]
    Malformed(String),
    /// A decode task panicked or was cancelled.
    #[error("decode task failed: {0}")]
    Task(String),
}

impl From<Error> for datafusion_common::DataFusionError {
    fn from(e: Error) -> Self {
        datafusion_common::DataFusionError::External(Box::new(e))
    }
}

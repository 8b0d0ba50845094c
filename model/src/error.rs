//! The crate's error type.

use std::fmt;
use std::path::PathBuf;

/// A checkpoint tensor whose shape differs from the one the model needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    /// The checkpoint key, e.g. `encoder.0.attn.qkv.weight`.
    pub key: String,
    /// The shape the model needs.
    pub expected: Vec<i64>,
    /// The shape stored in the file.
    pub found: Vec<i64>,
}

impl fmt::Display for ShapeMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (expected {:?}, file has {:?})",
            self.key, self.expected, self.found
        )
    }
}

fn list<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The checkpoint lacks keys the model needs, or holds them with other shapes. Every
    /// offending key is listed, not just the first one.
    #[error(
        "checkpoint {}: {} missing key(s) [{}], {} mis-shaped key(s) [{}]",
        file.display(), missing.len(), missing.join(", "), mismatched.len(), list(mismatched)
    )]
    Checkpoint {
        /// The checkpoint file.
        file: PathBuf,
        /// Keys the model needs that the file lacks.
        missing: Vec<String>,
        /// Keys present with a different shape.
        mismatched: Vec<ShapeMismatch>,
    },
    /// The checkpoint's extension is none of `.safetensors`, `.pt`, `.pth`, `.bin`, `.ckpt`.
    #[error("checkpoint {}: unknown format (expected .safetensors, .pt, .pth, .bin or .ckpt)", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// libtorch could not read a checkpoint file (corrupt, or not a state dict).
    #[error("checkpoint {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: tch::TchError,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An image whose height or width is not a positive multiple of the patch size (16).
    #[error("chip size {h}x{w} is not a positive multiple of 16 in both directions")]
    ChipSize {
        /// Height in pixels.
        h: i64,
        /// Width in pixels.
        w: i64,
    },
    /// An input tensor with the wrong rank, channel count, dtype or batch size.
    #[error("input {modality}: expected {expected}, got shape {found:?}")]
    InputShape {
        /// The modality name.
        modality: String,
        /// What was expected, in words.
        expected: String,
        /// The shape given.
        found: Vec<i64>,
    },
    /// Inputs whose token grids (H/16 x W/16) differ.
    #[error("all inputs must share one token grid: {first} has {a:?}, {other} has {b:?}")]
    GridMismatch {
        /// The first modality.
        first: String,
        /// Its grid.
        a: (i64, i64),
        /// The modality that differs.
        other: String,
        /// Its grid.
        b: (i64, i64),
    },
    /// No input was given.
    #[error("no input modality given")]
    NoInputs,
    /// A modality was given as input twice.
    #[error("modality {0} given twice")]
    DuplicateModality(String),
    /// The model was built without this modality's embedding (or, for TiM, its decoder).
    #[error("the model was built without {what} for modality {modality}")]
    NotBuilt {
        /// The modality.
        modality: String,
        /// Which part is missing: "an encoder embedding", "a TiM decoder", ...
        what: &'static str,
    },
    /// TerraMind v1 has no tokenizer for this modality (there are tokenizers for S2L2A, S1GRD,
    /// S1RTC, DEM, NDVI and LULC).
    #[error("TerraMind v1 has no tokenizer for modality {0}")]
    NoTokenizer(String),
    /// An unknown variant name (expected tiny, small, base or large).
    #[error("unknown TerraMind variant {0:?} (expected tiny, small, base or large)")]
    UnknownVariant(String),
    /// An unknown modality name.
    #[error("unknown modality {0:?}")]
    UnknownModality(String),
    /// A band name that the pre-trained patch projection of the modality does not have.
    #[error("modality {modality} has no pre-trained band {band:?} (known: {known})")]
    UnknownBand {
        /// The modality.
        modality: String,
        /// The unknown band.
        band: String,
        /// The known bands, comma separated.
        known: String,
    },
    /// An invalid configuration value.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Fetching official weights failed.
    #[error("fetching {url}: {reason}")]
    Fetch {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// An error raised by libtorch.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

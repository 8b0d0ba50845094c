//! Errors of the water-mapping methods.

/// Result type of the water-mapping methods.
pub type WaterResult<T, E = WaterError> = std::result::Result<T, E>;

/// Why a water-mapping method produced no map.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WaterError {
    /// An input band does not hold `width * height` values.
    #[error("water method {method}: band {band} has {got} values, expected {expected} (width x height)")]
    Shape {
        /// The method.
        method: &'static str,
        /// The band (`VV`, `green`, `SCL`, ...).
        band: &'static str,
        /// `width * height`.
        expected: usize,
        /// Values given.
        got: usize,
    },
    /// The method was given none of the bands it can use.
    #[error("water method {method}: no input: {reason}")]
    NoInput {
        /// The method.
        method: &'static str,
        /// What is missing.
        reason: String,
    },
    /// No threshold could be chosen for a feature (no valid pixels, or all of one value) and
    /// no fallback threshold was configured.
    #[error("water method {method}: feature {feature}: no threshold: {reason}")]
    NoSplit {
        /// The method.
        method: &'static str,
        /// The feature (`VV dB`, `MNDWI`, ...).
        feature: &'static str,
        /// Why.
        reason: String,
    },
    /// An invalid option.
    #[error("water method {method}: option {key}: {reason}")]
    Option {
        /// The method.
        method: &'static str,
        /// The option.
        key: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// The method cannot run in this build or without a resource it needs.
    #[error("water method {method} is not available: {missing}")]
    NotAvailable {
        /// The method.
        method: &'static str,
        /// What is missing, and where it will come from.
        missing: String,
    },
    /// The model behind a method failed to load or run (checkpoint keys, shapes, libtorch).
    #[error("water method {method}: {what}: {source}")]
    Model {
        /// The method.
        method: &'static str,
        /// What was being done: "loading checkpoint <path>", "window at column 224, row 0", ...
        what: String,
        /// The model's error.
        source: terrastream_model::Error,
    },
    /// Maps to be combined are on different grids.
    #[error("water maps differ in size: {a} vs {b} (width x height)")]
    GridMismatch {
        /// One map's size.
        a: String,
        /// The other's.
        b: String,
    },
}

//! COG mask sink: chips of class masks or probabilities mosaicked back into one raster per
//! scene and written as tiled Cloud-Optimized GeoTIFFs with overviews, each with a STAC item.
//!
//! - [`config`]: the user-facing options ([`CogConfig`]) and `build`.
//! - [`sink`]: the runtime ([`CogSink::run`]).
//! - [`mosaic`]: the pure mosaicking kernel (vote / mean, growing canvas).
//! - [`writer`]: encoding a mosaic as a COG.
//! - [`mask`]: the mask column: its layout, and building one from a pixel column.

pub mod config;
pub mod mask;
pub mod mosaic;
pub mod sink;
pub mod writer;

pub use config::{ClassColour, CogCompression, CogConfig, ColourTable};
pub use mask::{MaskKind, MaskLayout, class_mask_from_channel, mask_field, probability_from_channel};
pub use mosaic::{ChipValues, Mosaic, MosaicRaster, RasterData};
pub use sink::CogSink;

//! `terrastream flood ...`: event-triggered flood mapping.
//!
//! - [`water_cmd`]: `flood water`, one water mask from co-registered rasters on disk with the
//!   methods of [`terrastream_operators::water`].
//! - [`raster`]: reading those rasters and checking they share a grid.
//! - [`polygons`]: the pixels of a class as polygons, GeoJSON in WGS 84.
//! - [`output`]: mask and probability COGs through the sinks crate's writer.

pub mod output;
pub mod polygons;
pub mod raster;
pub mod water_cmd;

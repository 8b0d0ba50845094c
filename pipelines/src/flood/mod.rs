//! `terrastream flood ...`: event-triggered flood mapping.
//!
//! - [`water_cmd`]: `flood water`, one water mask from co-registered rasters on disk with the
//!   methods of [`terrastream_operators::water`].
//! - [`event`]: one event mapped in one shot (`flood run`, and `flood serve`'s jobs).
//! - [`run_cmd`]: `flood run`'s command line.
//! - [`aoi`]: the event's AOI (GeoJSON) checked, measured and boxed.
//! - [`scenes`]: the event's post-event, reference and Sentinel-2 scenes by STAC search.
//! - [`inputs`]: the output grid and the scenes' bands read onto it.
//! - [`vector`]: flood polygons as GeoParquet.
//! - [`quicklook`]: the quick-look PNG.
//! - [`serve`]: `flood serve`, events over HTTP and from watched AOIs, mapped in the background.
//! - [`raster`]: reading those rasters and checking they share a grid.
//! - [`polygons`]: the pixels of a class as polygons, GeoJSON in WGS 84.
//! - [`output`]: mask and probability COGs through the sinks crate's writer.

pub mod aoi;
pub mod event;
pub mod inputs;
pub mod output;
pub mod polygons;
pub mod quicklook;
pub mod raster;
pub mod run_cmd;
pub mod scenes;
pub mod serve;
pub mod vector;
pub mod water_cmd;

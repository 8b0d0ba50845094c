//! terrastream-ingest: from STAC items and Cloud-Optimized GeoTIFFs to chip batches.
//!
//! A scene (one STAC item) is read band by band with range requests for only the tiles a chip
//! row needs, co-registered onto the grid of its finest band, cut into square chips and emitted
//! as Arrow record batches that follow the chip-batch contract in [`schema`].
//!
//! - [`schema`]: the chip-batch schema (column names, types, version).
//! - [`bands`]: Sentinel-2 L2A band table in TerraMind order, per-provider asset keys.
//! - [`item`]: loading STAC items and resolving their asset hrefs.
//! - [`store`]: hrefs to `object_store` locations.
//! - [`limit`]: concurrent requests per host, request budget per scene.
//! - [`cog`]: COG window reads (full resolution or the overview a coarser grid needs) with a
//!   bounded decoded-tile cache; tiles decode in `decode` (DEFLATE via libdeflate, predictors).
//! - [`geo`]: affine transforms, CRS handling and footprints (WKB, EPSG:4326).
//! - [`grid`]: chip grids (size, stride, edge policy).
//! - [`resample`]: nearest, bilinear and average resampling between grids.
//! - [`warp`]: warping onto a grid in another CRS, by reprojection or GCP geocoding (S1 onto S2).
//! - [`sar`]: Sentinel-1 radiometry (DN, linear power, dB) and band tables.
//! - [`scene`]: the scene source: one item into a stream of chip batches.
//! - [`pairing`]: matching each Sentinel-2 scene with the nearest Sentinel-1 acquisition.
//! - [`companion`]: a scene's Sentinel-1 item warped chip by chip onto its grid, in dB.
//! - [`stac_api`]: STAC API item search with paging, retries and backoff.
//! - [`catalog`]: static STAC catalogs (local or remote), walked for their items.
//! - [`provider`]: Earth Search and Planetary Computer: API roots, asset keys in TerraMind band
//!   order, SAS signing of blob hrefs.
//! - [`poll`]: polling a STAC API for new scenes, with a watermark kept in the output store.
//! - [`ledger`]: counts of chips read, skipped (and why), written and failed.
//! - [`memory`]: keeping a long run's resident memory flat (one glibc malloc arena).
//! - [`stream`]: the `ChipStream` type, its adapter, and `tee` (one stream to several sinks).

#![deny(missing_docs)]

pub mod bands;
pub mod catalog;
pub mod cog;
pub mod companion;
mod decode;
mod error;
pub mod geo;
pub mod grid;
mod ifd_check;
mod inflate;
pub mod item;
pub mod ledger;
pub mod limit;
pub mod memory;
pub mod pairing;
pub mod poll;
pub mod provider;
mod range_reader;
pub mod resample;
pub mod retry_after;
pub mod sar;
pub mod scene;
pub mod schema;
pub mod stac_api;
pub mod store;
pub mod stream;
pub mod warp;

pub use error::{CogError, Error, Result};
pub use ledger::{ChipLedger, LedgerSnapshot};
pub use companion::S1Options;
pub use pairing::ScenePair;
pub use scene::{SceneOptions, SceneSource};
pub use stream::{ChipStream, ChipStreamAdapter, tee};

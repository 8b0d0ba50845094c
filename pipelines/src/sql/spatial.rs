//! Spatial functions on chip footprints (`geometry`: WKB in EPSG:4326): `ST_Intersects`,
//! `ST_Within`, `ST_Area`, `ST_AsText`, `ST_GeomFromText` and the rest of
//! [geodatafusion](https://github.com/datafusion-contrib/geodatafusion) (same arrow,
//! DataFusion and `geo` versions as ours), which reads plain WKB `Binary` columns as
//! geometries.
//!
//! Areas and distances are in the units of the coordinates: square degrees for footprints.

use datafusion::prelude::SessionContext;

/// Registers the spatial functions with `ctx`.
pub fn register(ctx: &SessionContext) {
    geodatafusion::register(ctx);
}

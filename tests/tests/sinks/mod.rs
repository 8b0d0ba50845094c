//! The sinks on their own, on the real sample scene: mask COGs read back by GDAL, GeoParquet
//! embeddings read back by DuckDB, STAC items validated against the bundled STAC JSON schemas,
//! and a writer killed mid-file.

mod cog;
mod geoparquet;
mod kill;
pub mod support;

//! The sinks on their own, on the real sample scene: mask COGs read back by GDAL, STAC items
//! validated against the bundled STAC JSON schemas, and a writer killed mid-file.

mod cog;
mod kill;
mod support;

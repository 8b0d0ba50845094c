//! The ingestor's COG reader against GDAL.

mod cog_read;
mod http;
mod stac;

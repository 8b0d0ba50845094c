//! The ingestor's COG reader against GDAL.

mod catalog;
mod cog_read;
mod coregister;
mod http;
mod limits;
mod overviews;
mod poll;
mod provider;
mod stac;
mod stac_faults;

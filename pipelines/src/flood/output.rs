//! Flood rasters out: class masks and probabilities as Cloud-Optimized GeoTIFFs, through the
//! sinks crate's COG writer, committed atomically.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use terrastream_sinks::cog::writer::{CogEncoding, write_cog};
use terrastream_sinks::cog::{ClassColour, CogCompression, ColourTable, MosaicRaster, RasterData};
use terrastream_sinks::commit::PendingFile;

use super::raster::Grid;

/// The no-data value of probability rasters (finite, so overview averaging skips it).
pub const PROBABILITY_NODATA: f32 = -1.0;

/// Legend of water masks: dry, water, no data.
pub fn water_colours() -> ColourTable {
    let c = |value, rgb, name: &str| ClassColour {
        value,
        rgb,
        name: name.into(),
    };
    ColourTable(vec![
        c(0, [230, 220, 190], "dry"),
        c(1, [0, 90, 255], "water"),
        c(255, [0, 0, 0], "no data"),
    ])
}

/// Writes a class raster (`nodata` marks no data) on `grid` to `path` as a COG.
pub fn write_classes(
    path: &Path,
    grid: &Grid,
    values: Vec<u8>,
    nodata: u8,
    colours: ColourTable,
    tile_size: u32,
) -> Result<PathBuf> {
    let nodata_pixels = values.iter().filter(|&&v| v == nodata).count() as u64;
    write(
        path,
        grid,
        RasterData::Classes { values, nodata },
        nodata_pixels,
        colours,
        tile_size,
    )
}

/// Writes probabilities (NaN = no data, stored as [`PROBABILITY_NODATA`]) on `grid` to `path`.
pub fn write_probability(path: &Path, grid: &Grid, probability: &[f32], tile_size: u32) -> Result<PathBuf> {
    let values: Vec<f32> = probability
        .iter()
        .map(|&p| if p.is_nan() { PROBABILITY_NODATA } else { p })
        .collect();
    let nodata_pixels = probability.iter().filter(|p| p.is_nan()).count() as u64;
    let data = RasterData::Probabilities {
        values,
        nodata: PROBABILITY_NODATA,
    };
    write(path, grid, data, nodata_pixels, ColourTable(vec![]), tile_size)
}

fn write(
    path: &Path,
    grid: &Grid,
    data: RasterData,
    nodata_pixels: u64,
    colours: ColourTable,
    tile_size: u32,
) -> Result<PathBuf> {
    let raster = MosaicRaster {
        epsg: grid.epsg,
        transform: grid.transform,
        width: grid.width,
        height: grid.height,
        data,
        chips: 1,
        nodata_pixels,
    };
    let enc = CogEncoding {
        compression: CogCompression::Deflate,
        tile_size,
        colours,
    };
    let (pending, mut file) = PendingFile::create(path)?;
    let written = (|| -> Result<()> {
        let mut out = BufWriter::with_capacity(1 << 20, &mut file);
        write_cog(&mut out, &raster, &enc, path)?;
        out.flush().with_context(|| format!("write {}", path.display()))
    })();
    if let Err(e) = written {
        pending.abort();
        return Err(e);
    }
    Ok(pending.commit(file)?)
}

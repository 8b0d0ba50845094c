//! Encoding a mosaic as a Cloud-Optimized GeoTIFF with `geotiff-writer`.

use std::io::{Seek, Write};
use std::path::Path;

use geotiff_writer::{CogBuilder, ColorMap, Compression, GeoTiffBuilder, PhotometricInterpretation, Predictor, Resampling};
use ndarray::ArrayView2;

use super::config::{CogCompression, ColourTable};
use super::mosaic::{MosaicRaster, RasterData};
use crate::{Error, Result};

/// How to encode a COG.
#[derive(Debug, Clone)]
pub struct CogEncoding {
    /// Tile compression.
    pub compression: CogCompression,
    /// Tile side in pixels (multiple of 16).
    pub tile_size: u32,
    /// Colour table of class rasters.
    pub colours: ColourTable,
}

/// Overview factors, 2, 4, 8, ..., until the smallest overview fits in one tile (what GDAL's
/// COG driver does).
pub fn overview_levels(width: usize, height: usize, tile: u32) -> Vec<u32> {
    let mut levels = Vec::new();
    let mut f = 2u32;
    let side = width.max(height) as u64;
    while side.div_ceil(u64::from(f) / 2) > u64::from(tile) && f <= 1 << 16 {
        levels.push(f);
        f *= 2;
    }
    levels
}

/// Writes `raster` as a COG to `out`; `path` names the file in errors. Classes are written as
/// a palette image with nearest-neighbour overviews, probabilities as Float32 with average
/// overviews that skip nodata.
pub fn write_cog<W: Write + Seek>(out: W, raster: &MosaicRaster, enc: &CogEncoding, path: &Path) -> Result<()> {
    let cog_err = |source| Error::Cog { path: path.to_path_buf(), source };
    let epsg = u16::try_from(raster.epsg).map_err(|_| Error::Mosaic {
        key: path.display().to_string(),
        reason: format!("EPSG:{} does not fit a GeoTIFF GeoKey (max 65535)", raster.epsg),
    })?;
    let t = raster.transform;
    let (w, h) = (raster.width, raster.height);
    let dims = |what| Error::Mosaic { key: path.display().to_string(), reason: format!("{what}: {w} x {h} too large") };
    let base = GeoTiffBuilder::new(u32::try_from(w).map_err(|_| dims("width"))?, u32::try_from(h).map_err(|_| dims("height"))?)
        .tile_size(enc.tile_size, enc.tile_size)
        .epsg(epsg)
        .origin(t[0], t[3])
        .pixel_scale(t[1], -t[5])
        .compression(match enc.compression {
            CogCompression::Deflate => Compression::Deflate,
            CogCompression::Zstd => Compression::Zstd,
        });
    let levels = overview_levels(w, h, enc.tile_size);
    match &raster.data {
        RasterData::Classes { values, nodata } => {
            let rgb = enc.colours.rgb256();
            let plane = |k: usize| rgb.iter().map(|c| u16::from(c[k]) * 257).collect::<Vec<u16>>();
            let map = ColorMap::new(plane(0), plane(1), plane(2))
                .map_err(|e| cog_err(geotiff_writer::Error::InvalidConfig(e)))?;
            let builder = base
                .nodata(&nodata.to_string())
                .predictor(Predictor::Horizontal)
                .photometric(PhotometricInterpretation::Palette)
                .color_map(map);
            let view = ArrayView2::from_shape((h, w), values.as_slice()).map_err(|e| dims_err(path, e))?;
            CogBuilder::new(builder)
                .overview_levels(levels)
                .resampling(Resampling::NearestNeighbor)
                .write_2d_to(out, view)
                .map_err(cog_err)
        }
        RasterData::Probabilities { values, nodata } => {
            let builder = base.nodata(&format_f32(*nodata)).predictor(Predictor::FloatingPoint);
            let view = ArrayView2::from_shape((h, w), values.as_slice()).map_err(|e| dims_err(path, e))?;
            CogBuilder::new(builder)
                .overview_levels(levels)
                .resampling(Resampling::Average)
                .write_2d_to(out, view)
                .map_err(cog_err)
        }
    }
}

fn dims_err(path: &Path, e: ndarray::ShapeError) -> Error {
    Error::Mosaic { key: path.display().to_string(), reason: format!("raster shape: {e}") }
}

/// The shortest decimal that parses back to `v` (GDAL reads the nodata tag as text).
fn format_f32(v: f32) -> String {
    format!("{v}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overviews_stop_when_one_tile_holds_the_image() {
        assert_eq!(overview_levels(512, 512, 512), Vec::<u32>::new());
        assert_eq!(overview_levels(513, 100, 512), vec![2]);
        assert_eq!(overview_levels(1098, 1098, 512), vec![2, 4]);
        assert_eq!(overview_levels(10980, 10980, 512), vec![2, 4, 8, 16, 32]);
    }
}

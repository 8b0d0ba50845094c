//! Co-registered input rasters of `flood water`: bands read whole through the pipeline's COG
//! reader, with the grid they lie on.

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use terrastream_ingest::cog::Cog;
use terrastream_ingest::store;

/// Relative tolerance on pixel size and origin for two rasters to share a grid.
const GRID_TOLERANCE: f64 = 1e-6;

/// The pixel grid of a raster.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    /// EPSG code of the CRS.
    pub epsg: u32,
    /// GDAL GeoTransform (north-up).
    pub transform: [f64; 6],
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
}

impl Grid {
    /// Whether `other` is the same grid: same CRS and size, origin and pixel size equal to
    /// within a millionth of a pixel.
    pub fn matches(&self, other: &Grid) -> bool {
        let px = self.transform[1].abs().max(self.transform[5].abs());
        self.epsg == other.epsg
            && (self.width, self.height) == (other.width, other.height)
            && self
                .transform
                .iter()
                .zip(&other.transform)
                .all(|(a, b)| (a - b).abs() <= GRID_TOLERANCE * px)
    }

    /// Pixel width and height in metres: the transform's units for projected CRSs; for
    /// geographic ones (degrees) at the grid's central latitude on the WGS 84 ellipsoid.
    pub fn pixel_metres(&self) -> (f64, f64) {
        let t = self.transform;
        let (dx, dy) = (t[1].abs(), t[5].abs());
        if !is_geographic(self.epsg) {
            return (dx, dy);
        }
        let lat = (t[3] + t[5] * self.height as f64 / 2.0).to_radians();
        // Metres per degree of longitude and latitude (series for WGS 84, error < 1 m/degree).
        let m_lon = 111_412.84 * lat.cos() - 93.5 * (3.0 * lat).cos();
        let m_lat = 111_132.92 - 559.82 * (2.0 * lat).cos() + 1.175 * (4.0 * lat).cos();
        (dx * m_lon, dy * m_lat)
    }
}

/// Geographic (longitude/latitude) CRSs that the flood inputs are commonly delivered in.
fn is_geographic(epsg: u32) -> bool {
    matches!(epsg, 4326 | 4258 | 4269 | 4283 | 4617 | 4167 | 4674)
}

/// An open input raster.
#[derive(Debug)]
pub struct InputRaster {
    /// The href it was opened from, for messages.
    pub href: String,
    /// Its grid.
    pub grid: Grid,
    /// Number of bands.
    pub bands: usize,
    cog: Cog,
}

impl InputRaster {
    /// Opens `href` (path, `file://` or remote URL) and checks it has a north-up grid and a
    /// CRS.
    pub async fn open(href: &str) -> Result<Self> {
        let cwd = std::env::current_dir().context("current directory")?;
        let cog = Cog::open(&store::open(href, &cwd)?)
            .await
            .with_context(|| format!("href {href}"))?;
        let info = cog.info();
        let transform = info.geo_transform().with_context(|| format!("href {href}"))?;
        ensure!(
            transform.is_north_up(),
            "href {href}: the grid is rotated; warp it north-up first (gdalwarp)"
        );
        let Some(epsg) = info.epsg else {
            bail!("href {href}: the GeoKeys name no EPSG code")
        };
        let grid = Grid {
            epsg,
            transform: transform.0,
            width: info.width,
            height: info.height,
        };
        Ok(Self {
            href: href.into(),
            grid,
            bands: info.bands,
            cog,
        })
    }

    /// Band `band` (1-based, as GDAL counts) as Float32, no data as NaN.
    pub async fn band(&self, band: usize) -> Result<Vec<f32>> {
        ensure!(
            (1..=self.bands).contains(&band),
            "href {}: no band {band} (it has {})",
            self.href,
            self.bands
        );
        let (w, h) = (self.grid.width, self.grid.height);
        self.cog
            .read_window(band - 1, 0, 0, w, h)
            .await
            .with_context(|| format!("href {}: band {band}", self.href))
    }

    /// Fails unless `other` lies on this raster's grid.
    pub fn check_same_grid(&self, other: &InputRaster) -> Result<()> {
        ensure!(
            self.grid.matches(&other.grid),
            "{} and {} are not co-registered: {:?} vs {:?} (resample one onto the other, e.g. gdalwarp -tr/-te)",
            self.href,
            other.href,
            self.grid,
            other.grid
        );
        Ok(())
    }

    /// The file name, for logs.
    pub fn name(&self) -> String {
        Path::new(&self.href)
            .file_name()
            .map_or_else(|| self.href.clone(), |n| n.to_string_lossy().into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degree_pixels_in_metres() {
        // Sen1Floods11's ~10 m grid at 38.1° N: 1/11132 degree.
        let g = Grid {
            epsg: 4326,
            transform: [-0.78, 8.983e-5, 0.0, 38.13, 0.0, -8.983e-5],
            width: 512,
            height: 512,
        };
        let (dx, dy) = g.pixel_metres();
        assert!((dx - 7.87).abs() < 0.05 && (dy - 9.98).abs() < 0.05, "{dx} {dy}");
        let utm = Grid {
            epsg: 32629,
            transform: [0.0, 10.0, 0.0, 0.0, 0.0, -10.0],
            ..g
        };
        assert_eq!(utm.pixel_metres(), (10.0, 10.0));
        assert!(g.matches(&Grid {
            transform: [-0.78, 8.983e-5, 0.0, 38.13 + 1e-12, 0.0, -8.983e-5],
            ..g
        }));
        assert!(!g.matches(&Grid {
            transform: [-0.78, 8.983e-5, 0.0, 38.13 + 1e-5, 0.0, -8.983e-5],
            ..g
        }));
    }
}

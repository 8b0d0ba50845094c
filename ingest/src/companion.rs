//! The Sentinel-1 companion of a Sentinel-2 scene: the matched Sentinel-1 item's VV and VH
//! assets warped onto the grid of every chip of the Sentinel-2 scene and converted to dB, for a
//! second pixel column (named after the modality, `S1GRD` or `S1RTC`).
//!
//! Each chip is warped on its own grid ([`DstGrid`] of the chip), so a warp reads only the
//! source tiles under that chip, whatever the source geometry (radar geometry by GCPs, or
//! another CRS). Decoded tiles stay cached while the chips of a row are warped; after each row
//! the cache keeps only the tiles that the next row's chips will read ([`Cog::retain_windows`]),
//! so memory follows one chip row, never the whole scene.

use std::sync::Arc;

use crate::bands::{ModalityBands, Resampling};
use crate::cog::Cog;
use crate::geo::GeoTransform;
use crate::item::{HrefRewrite, SceneItem};
use crate::limit::RequestBudget;
use crate::sar::Radiometry;
use crate::schema::PixelColumn;
use crate::warp::{DstGrid, SourceModel, WarpOptions, source_window_of, warp_cog_onto};
use crate::{CogError, Error, Result};

/// Ledger reason for the chips of a Sentinel-2 scene that has no matched Sentinel-1 item when
/// Sentinel-1 is optional ([`S1Options::required`] false): the scene is skipped, since the
/// model cannot be fed a missing modality.
pub const NO_S1_MATCH: &str = "no Sentinel-1 match";

/// How the Sentinel-1 companion of each scene is read.
#[derive(Debug, Clone)]
pub struct S1Options {
    /// The modality, and name of the pixel column: [`crate::sar::S1GRD`] or
    /// [`crate::sar::S1RTC`] (bands `[VV, VH]`).
    pub modality: ModalityBands,
    /// What the assets' values are; the column holds dB.
    pub radiometry: Radiometry,
    /// Sampling of the source: bilinear (default) or nearest.
    pub resampling: Resampling,
    /// Largest error of the warp's linear approximation of the transformation, in source
    /// pixels (GDAL's `-et`, default 0.125; 0 transforms every pixel exactly).
    pub max_error_px: f64,
    /// A scene without a matched Sentinel-1 item fails (`true`) or is skipped, its chips
    /// counted under [`NO_S1_MATCH`] (`false`).
    pub required: bool,
    /// Href rewrites applied to the Sentinel-1 assets.
    pub rewrites: Vec<HrefRewrite>,
}

impl S1Options {
    /// `modality` from assets holding `radiometry`, bilinear, GDAL's default error threshold,
    /// optional, no rewrites.
    pub fn new(modality: ModalityBands, radiometry: Radiometry) -> Self {
        Self {
            modality,
            radiometry,
            resampling: Resampling::Bilinear,
            max_error_px: 0.125,
            required: false,
            rewrites: Vec::new(),
        }
    }

    /// The pixel column for chips of `chip` x `chip` pixels.
    pub fn pixel_column(&self, chip: usize) -> PixelColumn {
        PixelColumn { name: self.modality.name.into(), channels: self.modality.bands.len(), height: chip, width: chip }
    }

    fn warp_options(&self) -> WarpOptions {
        WarpOptions {
            resampling: self.resampling,
            src_nodata: self.radiometry.source_nodata(),
            max_error_px: self.max_error_px,
            gcp_order: None,
        }
    }
}

/// One polarisation asset of an open Sentinel-1 item.
#[derive(Debug)]
struct S1Asset {
    key: String,
    href: String,
    cog: Cog,
}

/// A Sentinel-1 item whose band assets are open, ready to be warped chip by chip.
#[derive(Debug)]
pub(crate) struct OpenS1 {
    item: String,
    bands: Vec<S1Asset>,
    options: S1Options,
}

impl OpenS1 {
    /// Opens every band asset of `item` and checks it can be located (a transform or GCPs), so
    /// a broken Sentinel-1 item fails before any chip is read. Requests count against the
    /// scene's `budget`.
    pub(crate) async fn open(
        item: &SceneItem,
        options: &S1Options,
        budget: Option<&Arc<RequestBudget>>,
    ) -> Result<Self> {
        let mut bands = Vec::with_capacity(options.modality.bands.len());
        for band in options.modality.bands {
            let (key, href) =
                item.asset_href(band.asset_keys, &options.rewrites).ok_or_else(|| Error::MissingAsset {
                    item: item.id().to_string(),
                    band: band.name.to_string(),
                    keys: band.asset_keys.iter().map(ToString::to_string).collect(),
                })?;
            let asset_err =
                |source| Error::Asset { item: item.id().into(), asset: key.clone(), href: href.clone(), source };
            let stores = crate::store::Stores::global();
            let location = match budget {
                Some(b) => stores.open_budgeted(&href, &item.base_dir, b)?,
                None => stores.open(&href, &item.base_dir)?,
            };
            let cog = Cog::open(&location).await.map_err(asset_err)?;
            SourceModel::of_cog(cog.info(), None).map_err(asset_err)?;
            bands.push(S1Asset { key, href, cog });
        }
        Ok(Self { item: item.id().to_string(), bands, options: options.clone() })
    }

    /// The item id.
    pub(crate) fn id(&self) -> &str {
        &self.item
    }

    /// The pixel column's name: the modality.
    pub(crate) fn column(&self) -> &'static str {
        self.options.modality.name
    }

    fn asset_err(&self, b: &S1Asset) -> impl Fn(CogError) -> Error + '_ {
        let (key, href) = (b.key.clone(), b.href.clone());
        move |source| Error::Asset { item: self.item.clone(), asset: key.clone(), href: href.clone(), source }
    }

    /// Every band warped onto `grid` and converted to dB: one row-major `Vec` per band, NaN
    /// where the acquisition has no data.
    pub(crate) async fn read(&self, grid: &DstGrid) -> Result<Vec<Vec<f32>>> {
        let options = self.options.warp_options();
        let reads = self.bands.iter().map(|b| async move {
            let mut raster = warp_cog_onto(&b.cog, 0, grid, &options).await.map_err(self.asset_err(b))?;
            self.options.radiometry.convert(&mut raster.data);
            Ok::<_, Error>(raster.data)
        });
        futures::future::try_join_all(reads).await
    }

    /// The chips at column offsets `cols` of the chip row at pixel row `row` of the scene grid
    /// (`epsg`, `transform`), each `chip` x `chip`: per chip, per band, row-major dB.
    pub(crate) async fn read_row(
        &self,
        epsg: u32,
        transform: &GeoTransform,
        cols: &[usize],
        row: usize,
        chip: usize,
    ) -> Result<Vec<Vec<Vec<f32>>>> {
        let mut chips = Vec::with_capacity(cols.len());
        // One chip at a time: chips next to each other share tiles, which are fetched once.
        for &col in cols {
            let grid = DstGrid::new(epsg, transform.offset(col as f64, row as f64), chip, chip)?;
            chips.push(self.read(&grid).await?);
        }
        Ok(chips)
    }

    /// Keeps in the tile caches only what the chips at `cols` of the row at `next_row` will
    /// read; `None` (no next row) empties them.
    pub(crate) fn retain_row(
        &self,
        epsg: u32,
        transform: &GeoTransform,
        cols: &[usize],
        next_row: Option<usize>,
        chip: usize,
    ) -> Result<()> {
        let options = self.options.warp_options();
        for b in &self.bands {
            let mut keep = Vec::new();
            if let Some(row) = next_row {
                for &col in cols {
                    let grid = DstGrid::new(epsg, transform.offset(col as f64, row as f64), chip, chip)?;
                    keep.extend(source_window_of(&b.cog, &grid, &options).map_err(self.asset_err(b))?);
                }
            }
            b.cog.retain_windows(&keep);
        }
        Ok(())
    }
}

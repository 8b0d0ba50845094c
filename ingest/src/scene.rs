//! The scene source: STAC items in, a stream of chip batches out (one batch per chip row).
//!
//! Each item's band assets are opened first (so a missing or broken asset fails before any
//! chip is emitted), then chip rows are read top to bottom: every band is read for the strip of
//! the scene under the row, resampled onto the grid of the finest band, and cut into chips.
//! A scene that fails is recorded in the [`ChipLedger`] with its reason and the stream moves on
//! to the next scene.
//!
//! With [`SceneSource::with_s1`], each scene comes with its matched Sentinel-1 item
//! ([`ScenePair`]), warped chip by chip onto the scene grid ([`crate::companion`]) into a second
//! pixel column; `valid_fraction` then counts pixels with data in every band of both columns.

use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, Float32Builder, Int32Builder, StringBuilder};
use arrow_array::{
    ArrayRef, FixedSizeListArray, Float32Array, Float64Array, RecordBatch, StructArray, TimestampMicrosecondArray,
};
use arrow_schema::{ArrowError, SchemaRef};
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::bands::{ModalityBands, Resampling, S2_SCL, SCL_CLOUD_CLASSES};
use crate::cog::Cog;
use crate::companion::{NO_S1_MATCH, OpenS1, S1Options};
use crate::geo::{Footprint, GeoTransform, ToWgs84};
use crate::grid::{ChipGrid, EdgePolicy};
use crate::item::{HrefRewrite, SceneItem};
use crate::ledger::ChipLedger;
use crate::pairing::ScenePair;
use crate::schema::{self, PixelColumn};
use crate::stream::{ChipStream, ChipStreamAdapter};
use crate::{Error, Result};

/// How scenes are cut into chips.
#[derive(Debug, Clone)]
pub struct SceneOptions {
    /// The modality to read, e.g. [`crate::bands::S2L2A`].
    pub modality: ModalityBands,
    /// Chip side in pixels of the scene grid (the finest band).
    pub chip_size: usize,
    /// Distance between chip origins in pixels.
    pub stride: usize,
    /// Edge handling.
    pub edge: EdgePolicy,
    /// Href rewrites applied to every asset.
    pub rewrites: Vec<HrefRewrite>,
    /// Read the scene classification layer, when the item has one, for `cloud_fraction`.
    pub cloud_mask: bool,
    /// Most requests one scene may issue (headers and tiles of all its assets); a scene that
    /// needs more fails, named, instead of running up a bill. `None`: no limit.
    pub request_budget: Option<u64>,
}

/// Reads scenes into chip batches.
#[derive(Debug, Clone)]
pub struct SceneSource {
    options: Arc<SceneOptions>,
    s1: Option<Arc<S1Options>>,
    ledger: Arc<ChipLedger>,
}

/// One band asset of an open scene.
#[derive(Debug)]
struct BandAsset {
    key: String,
    href: String,
    cog: Cog,
    transform: GeoTransform,
}

/// A scene whose assets are open and whose grid is known.
#[derive(Debug)]
pub struct OpenScene {
    item: SceneItem,
    bands: Vec<BandAsset>,
    scl: Option<BandAsset>,
    /// The scene grid: transform of the finest band.
    transform: GeoTransform,
    epsg: u32,
    grid: ChipGrid,
    proj: ToWgs84,
    /// The Sentinel-1 companion, when the source reads one and the scene has a match.
    s1: Option<OpenS1>,
}

impl SceneSource {
    /// A source with `options` that counts chips in `ledger`.
    pub fn new(options: SceneOptions, ledger: Arc<ChipLedger>) -> Result<Self> {
        ChipGrid::new(1, 1, options.chip_size, options.stride, options.edge)?;
        Ok(Self { options: Arc::new(options), s1: None, ledger })
    }

    /// This source, also reading each scene's matched Sentinel-1 item into a second pixel
    /// column named after `s1.modality` (see [`SceneSource::stream_pairs`]).
    pub fn with_s1(mut self, s1: S1Options) -> Self {
        self.s1 = Some(Arc::new(s1));
        self
    }

    /// The Sentinel-2 pixel column this source fills.
    pub fn pixel_column(&self) -> PixelColumn {
        let o = &self.options;
        PixelColumn { name: o.modality.name.into(), channels: o.modality.bands.len(), height: o.chip_size, width: o.chip_size }
    }

    /// Every pixel column this source fills, in column order: the scene's modality, then the
    /// Sentinel-1 modality when reading one.
    pub fn pixel_columns(&self) -> Vec<PixelColumn> {
        let mut columns = vec![self.pixel_column()];
        columns.extend(self.s1.as_ref().map(|s1| s1.pixel_column(self.options.chip_size)));
        columns
    }

    /// The schema of the batches.
    pub fn schema(&self) -> SchemaRef {
        schema::chip_schema(&self.pixel_columns())
    }

    /// Opens every band asset of `item` and works out its chip grid (no Sentinel-1 companion).
    pub async fn open(&self, item: SceneItem) -> Result<OpenScene> {
        self.open_pair(item.into()).await
    }

    /// Opens the scene of `pair` as [`SceneSource::open`] does, and its Sentinel-1 item when the
    /// source reads one ([`SceneSource::with_s1`]) and the pair has one. Both share the
    /// scene's request budget.
    pub async fn open_pair(&self, pair: ScenePair) -> Result<OpenScene> {
        let ScenePair { s2: item, s1 } = pair;
        let o = &self.options;
        let budget = o.request_budget.map(|max| crate::limit::RequestBudget::new(item.id(), max));
        let mut bands = Vec::with_capacity(o.modality.bands.len());
        for band in o.modality.bands {
            let (key, href) = item.asset_href(band.asset_keys, &o.rewrites).ok_or_else(|| Error::MissingAsset {
                item: item.id().to_string(),
                band: band.name.to_string(),
                keys: band.asset_keys.iter().map(ToString::to_string).collect(),
            })?;
            bands.push(open_asset(&item, key, href, budget.as_ref()).await?);
        }
        let scl = match (o.cloud_mask, item.asset_href(S2_SCL.asset_keys, &o.rewrites)) {
            (true, Some((key, href))) => Some(open_asset(&item, key, href, budget.as_ref()).await?),
            _ => None,
        };
        // The finest band defines the grid; ties go to the first in band order.
        let finest = bands
            .iter()
            .min_by(|a, b| a.transform.res_x().total_cmp(&b.transform.res_x()))
            .ok_or_else(|| Error::InvalidItem { item: item.id().into(), what: "modality has no bands".into() })?;
        let info = finest.cog.info();
        let epsg = info.epsg.ok_or_else(|| Error::Asset {
            item: item.id().into(),
            asset: finest.key.clone(),
            href: finest.href.clone(),
            source: crate::CogError::NotGeoreferenced("no EPSG code in the GeoKeys".into()),
        })?;
        for b in bands.iter().chain(scl.iter()) {
            let found = b.cog.info().epsg.unwrap_or(0);
            if found != epsg {
                return Err(Error::MixedCrs { item: item.id().into(), asset: b.key.clone(), expected: epsg, found });
            }
        }
        let grid = ChipGrid::new(info.width, info.height, o.chip_size, o.stride, o.edge)?;
        let transform = finest.transform;
        let s1 = match (&self.s1, &s1) {
            (Some(options), Some(s1)) => Some(OpenS1::open(s1, options, budget.as_ref()).await?),
            _ => None,
        };
        Ok(OpenScene { bands, scl, transform, epsg, grid, proj: ToWgs84::new(epsg)?, item, s1 })
    }

    /// Streams the chips of `items`, in order, one batch per chip row. Reading runs on a
    /// spawned task ahead of the consumer by at most `prefetch` batches.
    ///
    /// On a source that reads Sentinel-1 ([`SceneSource::with_s1`]) the items have no match:
    /// use [`SceneSource::stream_pairs`].
    ///
    /// `items` may be lazy (a search still paging, copies made on the fly): each is taken when
    /// the scene before it is done, and dropped after its own.
    pub fn stream<I>(&self, items: I, prefetch: usize) -> ChipStream
    where
        I: IntoIterator<Item = SceneItem>,
        I::IntoIter: Send + 'static,
    {
        self.stream_pairs(items.into_iter().map(ScenePair::from), prefetch)
    }

    /// Streams the chips of each pair's Sentinel-2 scene as [`SceneSource::stream`] does, with
    /// the pair's Sentinel-1 item in its own pixel column when the source reads one
    /// ([`SceneSource::with_s1`]). A scene without a Sentinel-1 item then fails, named, when
    /// [`S1Options::required`], and is otherwise skipped, its chips counted in the ledger under
    /// [`NO_S1_MATCH`].
    pub fn stream_pairs<I>(&self, pairs: I, prefetch: usize) -> ChipStream
    where
        I: IntoIterator<Item = ScenePair>,
        I::IntoIter: Send + 'static,
    {
        let pairs = pairs.into_iter();
        let (tx, rx) = mpsc::channel(prefetch.max(1));
        let source = self.clone();
        tokio::spawn(async move {
            for pair in pairs {
                let id = pair.s2.id().to_string();
                // A panic while reading one scene is that scene's failure, not a lost stream.
                let result = std::panic::AssertUnwindSafe(source.send_scene(pair, &tx))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|p| {
                        Err(Error::InvalidItem {
                            item: id.clone(),
                            what: format!("internal error: {}", crate::cog::panic_message(p.as_ref())),
                        })
                    });
                if let Err(e) = result {
                    let reason = error_chain(&e);
                    warn!(scene = %id, "scene failed: {reason}");
                    source.ledger.add_failed_scene(&id, reason);
                }
                if tx.is_closed() {
                    return;
                }
            }
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok(b), rx)) });
        ChipStreamAdapter::new(self.schema(), stream.boxed()).boxed()
    }

    async fn send_scene(&self, pair: ScenePair, tx: &mpsc::Sender<RecordBatch>) -> Result<()> {
        let unmatched = self.s1.as_ref().filter(|_| pair.s1.is_none());
        if unmatched.is_some_and(|s1| s1.required) {
            return Err(Error::InvalidItem {
                item: pair.s2.id().into(),
                what: "no Sentinel-1 item matched, and the run requires one".into(),
            });
        }
        let scene = self.open_pair(pair).await?;
        self.ledger.add_planned(scene.grid.len() as u64);
        if unmatched.is_some() {
            // Opened only to count its chips: the summary says how many were left out and why.
            info!(scene = scene.item.id(), chips = scene.grid.len(), "scene skipped: {NO_S1_MATCH}");
            self.ledger.add_skipped(NO_S1_MATCH, scene.grid.len() as u64);
            return Ok(());
        }
        let s1 = scene.s1.as_ref().map(OpenS1::id);
        info!(scene = scene.item.id(), s1, chips = scene.grid.len(), epsg = scene.epsg, "scene open");
        let schema = self.schema();
        let rows = scene.grid.row_offsets();
        for (row_idx, &ro) in rows.iter().enumerate() {
            let next = rows.get(row_idx + 1).copied();
            let batch = scene.read_chip_row(&schema, &self.options, row_idx, ro, next).await?;
            self.ledger.add_read(batch.num_rows() as u64);
            if tx.send(batch).await.is_err() {
                return Ok(());
            }
        }
        Ok(())
    }
}

async fn open_asset(
    item: &SceneItem,
    key: String,
    href: String,
    budget: Option<&Arc<crate::limit::RequestBudget>>,
) -> Result<BandAsset> {
    let asset_err = |source| Error::Asset { item: item.id().into(), asset: key.clone(), href: href.clone(), source };
    let stores = crate::store::Stores::global();
    let location = match budget {
        Some(b) => stores.open_budgeted(&href, &item.base_dir, b)?,
        None => stores.open(&href, &item.base_dir)?,
    };
    let cog = Cog::open(&location).await.map_err(asset_err)?;
    let transform = cog.info().geo_transform().map_err(asset_err)?;
    Ok(BandAsset { key, href, cog, transform })
}

/// `error: cause: cause` on one line, each text once: our errors (and object_store's and
/// async-tiff's) already put their cause's text in their own message and also return it from
/// `source()`, so a plain walk would repeat every cause once per level above it.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

impl OpenScene {
    /// The scene's chip grid.
    pub fn grid(&self) -> &ChipGrid {
        &self.grid
    }

    async fn read_band(&self, b: &BandAsset, dst: &GeoTransform, w: usize, h: usize, m: Resampling) -> Result<Vec<f32>> {
        let raster = b.cog.read_onto(0, dst, w, h, m).await.map_err(|source| Error::Asset {
            item: self.item.id().into(),
            asset: b.key.clone(),
            href: b.href.clone(),
            source,
        })?;
        Ok(raster.data)
    }

    async fn read_chip_row(
        &self,
        schema: &SchemaRef,
        options: &SceneOptions,
        row_idx: usize,
        ro: usize,
        next_ro: Option<usize>,
    ) -> Result<RecordBatch> {
        let chip = options.chip_size;
        let cols = self.grid.col_offsets();
        let strip_w = cols.last().map_or(0, |c| c + chip);
        let strip_t = self.transform.offset(0.0, ro as f64);
        let method = options.modality.resampling;
        let s2_strips = futures::future::try_join_all(
            self.bands.iter().map(|b| self.read_band(b, &strip_t, strip_w, chip, method)),
        );
        let s1_chips = async {
            match &self.s1 {
                Some(s1) => s1.read_row(self.epsg, &self.transform, &cols, ro, chip).await.map(Some),
                None => Ok(None),
            }
        };
        let (strips, s1_chips) = futures::future::try_join(s2_strips, s1_chips).await?;
        let scl = match &self.scl {
            Some(b) => Some(self.read_band(b, &strip_t, strip_w, chip, Resampling::Nearest).await?),
            None => None,
        };
        // Tiles above the next chip row will not be needed again.
        let next_top = self.transform.apply(0.0, next_ro.unwrap_or(usize::MAX / 2) as f64).1;
        for b in self.bands.iter().chain(self.scl.iter()) {
            let (_, r) = b.transform.invert(0.0, next_top);
            b.cog.evict_above(r.max(0.0).floor() as usize);
        }
        if let Some(s1) = &self.s1 {
            s1.retain_row(self.epsg, &self.transform, &cols, next_ro, chip)?;
        }

        let n = cols.len();
        let channels = strips.len();
        let mut pixels = Vec::with_capacity(n * channels * chip * chip);
        let s1_channels = s1_chips.as_ref().and_then(|c| c.first()).map_or(0, Vec::len);
        let mut s1_pixels = Vec::with_capacity(n * s1_channels * chip * chip);
        let mut valid = Vec::with_capacity(n);
        let mut cloud = Float32Builder::with_capacity(n);
        let mut transforms = Vec::with_capacity(n * 6);
        let mut geometry = BinaryBuilder::new();
        let mut bbox: [Vec<f64>; 4] = Default::default();
        for (col_idx, &co) in cols.iter().enumerate() {
            for strip in &strips {
                for r in 0..chip {
                    pixels.extend_from_slice(&strip[r * strip_w + co..r * strip_w + co + chip]);
                }
            }
            let s1 = s1_chips.as_ref().map(|c| &c[col_idx]);
            for band in s1.into_iter().flatten() {
                s1_pixels.extend_from_slice(band);
            }
            let mut n_valid = 0usize;
            let mut n_cloud = 0usize;
            let mut n_scl = 0usize;
            for r in 0..chip {
                for c in 0..chip {
                    let i = r * strip_w + co + c;
                    let s1_valid = s1.is_none_or(|bands| bands.iter().all(|b| b[r * chip + c].is_finite()));
                    if s1_valid && strips.iter().all(|s| s[i].is_finite()) {
                        n_valid += 1;
                        if let Some(scl) = &scl {
                            let v = scl[i];
                            if v.is_finite() {
                                n_scl += 1;
                                if SCL_CLOUD_CLASSES.iter().any(|&k| f32::from(k) == v) {
                                    n_cloud += 1;
                                }
                            }
                        }
                    }
                }
            }
            valid.push(n_valid as f32 / (chip * chip) as f32);
            match (&scl, n_scl) {
                (Some(_), k) if k > 0 => cloud.append_value(n_cloud as f32 / k as f32),
                _ => cloud.append_null(),
            }
            let t = self.transform.offset(co as f64, ro as f64);
            transforms.extend_from_slice(&t.0);
            let fp = Footprint::of_window(&t, chip, chip, &self.proj)?;
            geometry.append_value(fp.to_wkb());
            for (k, v) in fp.bbox().into_iter().enumerate() {
                bbox[k].push(v);
            }
        }

        let item = &self.item;
        let datetime = item.datetime()?;
        let mut scene_id = StringBuilder::new();
        let mut collection = StringBuilder::new();
        let mut grid_id = StringBuilder::new();
        let mut chip_row = Int32Builder::new();
        let mut chip_col = Int32Builder::new();
        let mut crs = Int32Builder::new();
        let grid_code = item.grid_id();
        for col_idx in 0..n {
            scene_id.append_value(item.id());
            collection.append_option(item.item.collection.as_deref());
            grid_id.append_option(grid_code.as_deref());
            chip_row.append_value(row_idx as i32);
            chip_col.append_value(col_idx as i32);
            crs.append_value(self.epsg as i32);
        }
        let fields = schema.fields();
        let list = |name: &str, values: ArrayRef| -> Result<ArrayRef> {
            let field = schema.field_with_name(name)?;
            let arrow_schema::DataType::FixedSizeList(item, size) = field.data_type() else {
                return Err(ArrowError::SchemaError(format!("{name} is not a fixed-size list")).into());
            };
            Ok(Arc::new(FixedSizeListArray::try_new(Arc::clone(item), *size, values, None)?))
        };
        let bbox_array = StructArray::try_new(
            schema::bbox_fields(),
            bbox.into_iter().map(|v| Arc::new(Float64Array::from(v)) as ArrayRef).collect(),
            None,
        )?;
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(scene_id.finish()),
            Arc::new(collection.finish()),
            Arc::new(TimestampMicrosecondArray::from(vec![datetime.timestamp_micros(); n]).with_timezone("UTC")),
            Arc::new(grid_id.finish()),
            Arc::new(chip_row.finish()),
            Arc::new(chip_col.finish()),
            Arc::new(crs.finish()),
            list(schema::TRANSFORM, Arc::new(Float64Array::from(transforms)))?,
            Arc::new(geometry.finish()),
            Arc::new(bbox_array),
            list(options.modality.name, Arc::new(Float32Array::from(pixels)))?,
        ];
        if let Some(s1) = &self.s1 {
            columns.push(list(s1.column(), Arc::new(Float32Array::from(s1_pixels)))?);
        }
        columns.push(Arc::new(Float32Array::from(valid)));
        columns.push(Arc::new(cloud.finish()));
        debug_assert_eq!(columns.len(), fields.len());
        Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
    }
}

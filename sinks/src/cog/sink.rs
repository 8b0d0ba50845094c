//! The COG mask sink at run time: chips in, one mosaicked COG (and its STAC item) per scene.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, FixedSizeListArray, Float32Array, Float64Array, Int32Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt8Array};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::{Map, json};
use terrastream_ingest::geo::{Footprint, GeoTransform, ToWgs84};
use terrastream_ingest::schema::{CRS, DATETIME, GRID_ID, SCENE_ID, TRANSFORM};
use terrastream_ingest::{ChipLedger, ChipStream};
use tracing::{debug, info, warn};

use super::config::CogConfig;
use super::mask::{MaskKind, MaskLayout, mask_layout};
use super::mosaic::{ChipValues, Mosaic, MosaicRaster, RasterData};
use super::writer::{CogEncoding, write_cog};
use crate::commit::{PendingFile, safe_file_stem};
use crate::report::SinkReport;
use crate::stac::{self, COG_MEDIA_TYPE, OutputFile, Projection};
use crate::{Error, Result};

/// Writes chip masks as one COG per scene, with a STAC item each and a collection.
#[derive(Debug)]
pub struct CogSink {
    cfg: CogConfig,
    ledger: Arc<ChipLedger>,
}

/// The scene being mosaicked.
#[derive(Debug)]
struct OpenScene {
    scene: String,
    grid_id: Option<String>,
    datetime: DateTime<Utc>,
    mosaic: Mosaic,
}

impl CogSink {
    pub(super) fn new(cfg: CogConfig, ledger: Arc<ChipLedger>) -> Self {
        Self { cfg, ledger }
    }

    /// The directory of the COGs, their items and the collection: `<dir>/<subdir>`.
    pub fn out_dir(&self) -> PathBuf {
        self.cfg.subdir.split('/').fold(self.cfg.dir.clone(), |d, p| d.join(p))
    }

    /// The path of a scene's COG: `<dir>/<subdir>/<scene_id>.tif` (characters other than
    /// letters, digits, `-`, `_`, `.` replaced by `_`).
    pub fn path_for(&self, scene_id: &str) -> PathBuf {
        self.out_dir().join(format!("{}.tif", safe_file_stem(scene_id)))
    }

    /// Consumes `input` until it ends, committing one COG per scene (a scene's chips must be
    /// consecutive), then rebuilds the STAC collection. A scene that failed upstream (in the
    /// ledger) leaves no file; an upstream error stops the run and leaves no partial file.
    pub async fn run(self, mut input: ChipStream) -> Result<SinkReport> {
        let schema = input.schema();
        let layout = mask_layout(&schema, &self.cfg.column)?;
        for column in [SCENE_ID, CRS, TRANSFORM, DATETIME] {
            if schema.field_with_name(column).is_err() {
                return Err(Error::Column { sink: "cog", column: column.into(), reason: "missing".into() });
            }
        }
        let mut report = SinkReport::default();
        let mut open: Option<OpenScene> = None;
        while let Some(batch) = input.next().await {
            let batch = batch?;
            let (column, nodata) = (self.cfg.column.clone(), self.nodata_class());
            let (next, done) = tokio::task::spawn_blocking(move || absorb(open, &batch, &column, layout, nodata))
                .await
                .map_err(|e| Error::Task(e.to_string()))??;
            open = next;
            for scene in done {
                self.finish(scene, &mut report).await?;
            }
        }
        if let Some(scene) = open.take() {
            self.finish(scene, &mut report).await?;
        }
        if !report.files.is_empty() {
            let (dir, opts) = (self.out_dir(), self.cfg.stac.clone());
            let collection = tokio::task::spawn_blocking(move || stac::write_collection(&dir, &opts))
                .await
                .map_err(|e| Error::Task(e.to_string()))??;
            report.collection = Some(collection);
        }
        Ok(report)
    }

    fn nodata_class(&self) -> Nodata {
        Nodata { class: self.cfg.class_nodata, probability: self.cfg.probability_nodata }
    }

    async fn finish(&self, scene: OpenScene, report: &mut SinkReport) -> Result<()> {
        if self.ledger.scene_failed(&scene.scene) {
            warn!(scene = scene.scene, "scene failed upstream: no mask written");
            return Ok(());
        }
        let path = self.path_for(&scene.scene);
        let encoding = CogEncoding { compression: self.cfg.compression, tile_size: self.cfg.tile_size, colours: self.cfg.colours.clone() };
        let opts = self.cfg.stac.clone();
        let written = tokio::task::spawn_blocking(move || write_scene(scene, &path, &encoding, &opts))
            .await
            .map_err(|e| Error::Task(e.to_string()))??;
        if let Some((file, item, chips)) = written {
            report.rows += chips;
            report.files.push(file);
            report.stac_items.push(item);
        }
        Ok(())
    }
}

/// Nodata values of the two mask kinds.
#[derive(Debug, Clone, Copy)]
struct Nodata {
    class: u8,
    probability: f32,
}

/// Adds the chips of `batch` to the open scene; returns the scene still open and the scenes
/// that ended in this batch.
fn absorb(mut open: Option<OpenScene>, batch: &RecordBatch, column: &str, layout: MaskLayout, nodata: Nodata) -> Result<(Option<OpenScene>, Vec<OpenScene>)> {
    let col_err = |name: &str, reason: &str| Error::Column { sink: "cog", column: name.into(), reason: reason.into() };
    let get = |name: &str| batch.column_by_name(name).ok_or_else(|| col_err(name, "missing"));
    let scenes = get(SCENE_ID)?.as_any().downcast_ref::<StringArray>().ok_or_else(|| col_err(SCENE_ID, "not Utf8"))?;
    let crs = get(CRS)?.as_any().downcast_ref::<Int32Array>().ok_or_else(|| col_err(CRS, "not Int32"))?;
    let transforms = get(TRANSFORM)?.as_any().downcast_ref::<FixedSizeListArray>().ok_or_else(|| col_err(TRANSFORM, "not a fixed-size list"))?;
    let transform_values = transforms.values().as_any().downcast_ref::<Float64Array>().ok_or_else(|| col_err(TRANSFORM, "not Float64"))?;
    if transforms.value_length() != 6 {
        return Err(col_err(TRANSFORM, "not 6 values per row"));
    }
    let datetimes = get(DATETIME)?.as_any().downcast_ref::<TimestampMicrosecondArray>().ok_or_else(|| col_err(DATETIME, "not Timestamp(µs)"))?;
    let grid_ids = batch.column_by_name(GRID_ID).and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned());
    let masks = get(column)?.as_any().downcast_ref::<FixedSizeListArray>().ok_or_else(|| col_err(column, "not a fixed-size list"))?;
    let n = layout.height * layout.width;
    let classes = masks.values().as_any().downcast_ref::<UInt8Array>();
    let probabilities = masks.values().as_any().downcast_ref::<Float32Array>();
    let mut done = Vec::new();
    for i in 0..batch.num_rows() {
        if scenes.is_null(i) || crs.is_null(i) || transforms.is_null(i) || datetimes.is_null(i) {
            return Err(col_err(SCENE_ID, &format!("row {i}: null scene_id, crs, transform or datetime")));
        }
        let scene = scenes.value(i);
        if open.as_ref().is_some_and(|o| o.scene != scene) {
            done.extend(open.take());
        }
        let o = match open.take() {
            Some(o) => o,
            None => {
                let datetime = DateTime::from_timestamp_micros(datetimes.value(i))
                    .ok_or_else(|| col_err(DATETIME, &format!("scene {scene}: timestamp out of range")))?;
                let mosaic = match layout.kind {
                    MaskKind::Classes => Mosaic::classes(scene, nodata.class),
                    MaskKind::Probabilities => Mosaic::probabilities(scene, nodata.probability),
                };
                let grid_id = grid_ids.as_ref().filter(|g| !g.is_null(i)).map(|g| g.value(i).to_string());
                debug!(scene, "mosaic started");
                OpenScene { scene: scene.to_string(), grid_id, datetime, mosaic }
            }
        };
        let mut o = o;
        if !masks.is_null(i) {
            let epsg = u32::try_from(crs.value(i)).map_err(|_| col_err(CRS, &format!("scene {scene}: EPSG {} < 0", crs.value(i))))?;
            let t: [f64; 6] = transform_values.values()[i * 6..i * 6 + 6].try_into().map_err(|_| col_err(TRANSFORM, "short"))?;
            let start = i * n;
            let values = match (classes, probabilities) {
                (Some(c), _) => ChipValues::Classes(&c.values()[start..start + n]),
                (_, Some(p)) => ChipValues::Probabilities(&p.values()[start..start + n]),
                _ => return Err(col_err(column, "values are neither UInt8 nor Float32")),
            };
            o.mosaic.add_chip(epsg, t, layout.height, layout.width, values)?;
        }
        open = Some(o);
    }
    Ok((open, done))
}

/// Mosaics, writes and commits one scene, then its STAC item. `None` when it had no chips.
fn write_scene(scene: OpenScene, path: &Path, enc: &CogEncoding, opts: &stac::StacOptions) -> Result<Option<(PathBuf, PathBuf, u64)>> {
    let OpenScene { scene, grid_id, datetime, mosaic } = scene;
    let Some(raster) = mosaic.finish() else { return Ok(None) };
    let (pending, mut file) = PendingFile::create(path)?;
    let written = (|| {
        let mut out = BufWriter::with_capacity(1 << 20, &mut file);
        write_cog(&mut out, &raster, enc, path)?;
        out.flush().map_err(|source| Error::Io { op: "write", path: path.into(), source })
    })();
    if let Err(e) = written {
        pending.abort();
        return Err(e);
    }
    let file = pending.commit(file)?;
    info!(scene, chips = raster.chips, width = raster.width, height = raster.height, path = %file.display(), "mask committed");
    let item = stac::write_item(&output_file(&file, &scene, grid_id, datetime, &raster)?, opts)?;
    Ok(Some((file, item, raster.chips)))
}

fn output_file(path: &Path, scene: &str, grid_id: Option<String>, datetime: DateTime<Utc>, raster: &MosaicRaster) -> Result<OutputFile> {
    let footprint = Footprint::of_window(&GeoTransform(raster.transform), raster.width, raster.height, &ToWgs84::new(raster.epsg)?)?;
    let band = match &raster.data {
        RasterData::Classes { nodata, .. } => json!({"data_type": "uint8", "nodata": nodata}),
        RasterData::Probabilities { nodata, .. } => json!({"data_type": "float32", "nodata": nodata}),
    };
    let mut band = band;
    band["spatial_resolution"] = json!(raster.transform[1]);
    band["sampling"] = json!("area");
    let mut properties = Map::new();
    properties.insert("terrastream:scene_id".into(), json!(scene));
    properties.insert("terrastream:chips".into(), json!(raster.chips));
    if let Some(g) = grid_id {
        properties.insert("terrastream:grid_id".into(), json!(g));
    }
    Ok(OutputFile {
        path: path.to_path_buf(),
        collection_dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        id: path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| scene.to_string()),
        datetime,
        footprint,
        media_type: COG_MEDIA_TYPE,
        projection: Projection { epsg: raster.epsg, shape: Some([raster.height, raster.width]), transform: Some(raster.transform) },
        raster_bands: Some(vec![band]),
        table: None,
        properties,
    })
}

//! What `classify` writes: chip labels as GeoParquet (the embeddings' id and footprint columns
//! plus `label`, `score`, `margin`), a class-map COG per grid tile, and a quick-look PNG.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int32Type, Schema};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::metadata::KeyValue;
use datafusion::parquet::file::properties::WriterProperties;
use terrastream_ingest::geo::Reproject;
use terrastream_ingest::schema::{CRS, GRID_ID, TRANSFORM};
use terrastream_sinks::cog::writer::{CogEncoding, write_cog};
use terrastream_sinks::cog::{ChipValues, ClassColour, CogCompression, ColourTable, Mosaic};
use terrastream_sinks::commit::PendingFile;
use terrastream_sinks::geoparquet::GeometryEncoding;

use super::chips::ChipBatch;
use super::classifier::Decision;

/// The label written for chips left unknown.
pub const UNKNOWN: &str = "unknown";
/// Class-map value of unknown chips; labels are 1, 2, ... in sorted order.
pub const UNKNOWN_CLASS: u8 = 0;
/// Class-map value where no chip lies.
pub const NODATA: u8 = 255;

/// Streams chip labels into `labels.parquet` (GeoParquet 1.1, the input's footprints).
pub struct LabelsWriter {
    path: PathBuf,
    open: Option<(PendingFile, File, ArrowWriter<File>)>,
    bbox: [f64; 4],
    rows: u64,
}

impl LabelsWriter {
    /// A writer of `path` (created on the first batch, committed by [`LabelsWriter::finish`]).
    pub fn new(path: PathBuf) -> Self {
        Self { path, open: None, bbox: [f64::MAX, f64::MAX, f64::MIN, f64::MIN], rows: 0 }
    }

    /// Appends `chips`' columns with their decisions.
    pub fn write(&mut self, chips: &ChipBatch, decisions: &[Decision], labels: &[String]) -> Result<()> {
        let names: Vec<&str> = decisions.iter().map(|d| d.label.map_or(UNKNOWN, |l| labels[l].as_str())).collect();
        let mut fields: Vec<Field> = chips.columns.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("label", DataType::Utf8, false));
        fields.push(Field::new("score", DataType::Float32, false));
        fields.push(Field::new("margin", DataType::Float32, false));
        let mut columns: Vec<ArrayRef> = chips.columns.columns().to_vec();
        columns.push(Arc::new(StringArray::from(names)));
        columns.push(Arc::new(Float32Array::from_iter_values(decisions.iter().map(|d| d.score))));
        columns.push(Arc::new(Float32Array::from_iter_values(decisions.iter().map(|d| d.margin))));
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
        for i in 0..chips.len() {
            let b = chips.bbox(i)?;
            self.bbox = [self.bbox[0].min(b[0]), self.bbox[1].min(b[1]), self.bbox[2].max(b[2]), self.bbox[3].max(b[3])];
        }
        if self.open.is_none() {
            let (pending, file) = PendingFile::create(&self.path)?;
            let props = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::default()))
                .build();
            let writer = ArrowWriter::try_new(file.try_clone()?, batch.schema(), Some(props))?;
            self.open = Some((pending, file, writer));
        }
        if let Some((_, _, w)) = &mut self.open {
            w.write(&batch).with_context(|| format!("write {}", self.path.display()))?;
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Adds the `geo` metadata, closes and commits the file; `None` when no row was written.
    pub fn finish(self) -> Result<Option<PathBuf>> {
        let Some((pending, file, mut writer)) = self.open else { return Ok(None) };
        let geo = terrastream_sinks::geoparquet::geo_metadata(self.bbox, GeometryEncoding::Wkb);
        writer.append_key_value_metadata(KeyValue::new("geo".into(), geo.to_string()));
        if let Err(e) = writer.close() {
            pending.abort();
            return Err(e).with_context(|| format!("write {}", self.path.display()));
        }
        Ok(Some(pending.commit(file)?))
    }
}

/// One chip of a class map: its grid, pixel grid and class.
#[derive(Debug, Clone, Copy)]
struct MapChip {
    transform: [f64; 6],
    size: usize,
    class: u8,
}

/// Chips of each grid tile (`grid_id`, or `EPSG:<crs>` without one) and their classes.
#[derive(Debug, Default)]
pub struct ClassMaps {
    grids: BTreeMap<String, (u32, Vec<MapChip>)>,
}

/// The legend of class maps: unknown, the labels (1..), no data.
pub fn colours(labels: &[String]) -> ColourTable {
    const PALETTE: [[u8; 3]; 10] = [
        [31, 119, 180],
        [255, 127, 14],
        [44, 160, 44],
        [214, 39, 40],
        [148, 103, 189],
        [140, 86, 75],
        [227, 119, 194],
        [188, 189, 34],
        [23, 190, 207],
        [127, 127, 127],
    ];
    let mut c = vec![ClassColour { value: UNKNOWN_CLASS, rgb: [200, 200, 200], name: UNKNOWN.into() }];
    for (i, l) in labels.iter().enumerate() {
        c.push(ClassColour { value: (i + 1) as u8, rgb: PALETTE[i % PALETTE.len()], name: l.clone() });
    }
    c.push(ClassColour { value: NODATA, rgb: [0, 0, 0], name: "no data".into() });
    ColourTable(c)
}

impl ClassMaps {
    /// Records `chips`' classes (1-based label, 0 unknown). The chip size in pixels comes from
    /// its footprint projected back into its CRS.
    pub fn add(&mut self, chips: &ChipBatch, decisions: &[Decision]) -> Result<()> {
        let b = &chips.columns;
        let crs = b.column_by_name(CRS).and_then(|c| c.as_primitive_opt::<Int32Type>()).context("no Int32 crs column")?;
        let transforms = b.column_by_name(TRANSFORM).with_context(|| format!("no {TRANSFORM} column"))?;
        let grid = b.column_by_name(GRID_ID).map(|c| datafusion::arrow::compute::cast(c, &DataType::Utf8)).transpose()?;
        let grid = grid.as_ref().and_then(|g| g.as_string_opt::<i32>());
        let mut projections: BTreeMap<u32, Reproject> = BTreeMap::new();
        for (i, d) in decisions.iter().enumerate() {
            let epsg = crs.value(i) as u32;
            // FixedSizeList<Float64, 6> as the sink writes it; a plain list from other writers.
            let t = if let Some(l) = transforms.as_fixed_size_list_opt() {
                l.value(i)
            } else if let Some(l) = transforms.as_list_opt::<i32>() {
                l.value(i)
            } else {
                bail!("{TRANSFORM} is {}, not a list of Float64", transforms.data_type())
            };
            let t = t.as_primitive_opt::<Float64Type>().context("transform is not Float64")?;
            if t.len() != 6 {
                bail!("chip {}: transform has {} values", chips.chip_id(i)?, t.len());
            }
            let t: [f64; 6] = std::array::from_fn(|k| t.value(k));
            if !projections.contains_key(&epsg) {
                projections.insert(epsg, Reproject::new(4326, epsg)?);
            }
            let to_crs = &projections[&epsg];
            let ring = chips.footprint(i)?.into_iter().next().unwrap_or_default();
            let xs: Vec<f64> = ring.iter().filter_map(|&(lon, lat)| to_crs.apply(lon, lat)).map(|p| p.0).collect();
            let max_x = xs.iter().copied().fold(f64::MIN, f64::max);
            let size = ((max_x - t[0]) / t[1]).round();
            if !(size.is_finite() && size >= 1.0) {
                bail!("chip {}: cannot tell its size from footprint and transform", chips.chip_id(i)?);
            }
            let key = grid.filter(|g| !g.is_null(i)).map_or(format!("EPSG-{epsg}"), |g| g.value(i).to_string());
            let class = d.label.map_or(UNKNOWN_CLASS, |l| (l + 1) as u8);
            self.grids.entry(key).or_insert((epsg, vec![])).1.push(MapChip { transform: t, size: size as usize, class });
        }
        Ok(())
    }

    /// Writes one COG per grid tile under `dir` (`<grid>.tif`); returns each path with its
    /// pixel counts per class value and the pixel area in square metres.
    pub fn write(self, dir: &Path, labels: &[String]) -> Result<Vec<(PathBuf, BTreeMap<u8, u64>, f64)>> {
        let mut out = vec![];
        for (key, (epsg, chips)) in self.grids {
            // Class maps at the coarsest resolution that keeps every chip edge on a pixel edge.
            let first = chips[0].transform;
            let mut step = 0u64;
            for c in &chips {
                step = gcd(step, c.size as u64);
                step = gcd(step, ((c.transform[0] - first[0]) / first[1]).round().abs() as u64);
                step = gcd(step, ((c.transform[3] - first[3]) / first[5]).round().abs() as u64);
            }
            let f = step.max(1) as f64;
            let mut mosaic = Mosaic::classes(key.clone(), NODATA);
            for c in &chips {
                let t = c.transform;
                let n = (c.size as f64 / f) as usize;
                let coarse = [t[0], t[1] * f, 0.0, t[3], 0.0, t[5] * f];
                mosaic.add_chip(epsg, coarse, n, n, ChipValues::Classes(&vec![c.class; n * n]))?;
            }
            let Some(raster) = mosaic.finish() else { continue };
            let mut counts = BTreeMap::new();
            if let terrastream_sinks::cog::RasterData::Classes { values, .. } = &raster.data {
                for v in values {
                    *counts.entry(*v).or_insert(0u64) += 1;
                }
            }
            let pixel_m2 = (raster.transform[1] * raster.transform[5]).abs();
            let path = dir.join("class_maps").join(format!("{}.tif", key.replace(['/', ':'], "-")));
            let enc = CogEncoding { compression: CogCompression::Deflate, tile_size: 256, colours: colours(labels) };
            let (pending, mut file) = PendingFile::create(&path)?;
            let written = (|| -> Result<()> {
                let mut w = BufWriter::new(&mut file);
                write_cog(&mut w, &raster, &enc, &path)?;
                std::io::Write::flush(&mut w).with_context(|| format!("write {}", path.display()))
            })();
            if let Err(e) = written {
                pending.abort();
                return Err(e);
            }
            let path = pending.commit(file)?;
            write_quicklook(&path.with_extension("png"), &raster, labels)?;
            out.push((path, counts, pixel_m2));
        }
        Ok(out)
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The class map as a PNG in the legend's colours (no data black).
fn write_quicklook(path: &Path, raster: &terrastream_sinks::cog::MosaicRaster, labels: &[String]) -> Result<PathBuf> {
    let terrastream_sinks::cog::RasterData::Classes { values, .. } = &raster.data else {
        bail!("{}: not a class map", path.display())
    };
    let legend = colours(labels);
    let mut lut = [[0u8; 3]; 256];
    for c in &legend.0 {
        lut[c.value as usize] = c.rgb;
    }
    let rgb: Vec<u8> = values.iter().flat_map(|&v| lut[v as usize]).collect();
    crate::rgb_png::write_rgb(path, raster.width, raster.height, &rgb)
}

//! Cloud-Optimized GeoTIFF window reads.
//!
//! Only the tiles a window touches are fetched (one range request each), decoded off the async
//! runtime, converted to Float32 with no-data as NaN, and kept in a small cache so that chip
//! rows sharing a tile row do not fetch it twice. Callers evict tile rows they have passed,
//! which keeps memory flat while a scene streams top to bottom.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_tiff::decoder::DecoderRegistry;
use async_tiff::metadata::TiffMetadataReader;
use async_tiff::metadata::cache::ReadaheadMetadataCache;
use async_tiff::reader::{AsyncFileReader, ObjectReader};
use async_tiff::tags::{Compression, PlanarConfiguration};
use async_tiff::{DataType, ImageFileDirectory, TypedArray};

use crate::bands::Resampling;
use crate::error::CogError;
use crate::geo::GeoTransform;
use crate::resample::{Raster, resample};
use crate::store::Location;

/// What a COG is: size, tiling, georeferencing, data type.
#[derive(Debug, Clone, PartialEq)]
pub struct CogInfo {
    /// Width in pixels of the full-resolution image.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Tile width in pixels.
    pub tile_width: usize,
    /// Tile height in pixels.
    pub tile_height: usize,
    /// Samples (bands) per pixel.
    pub bands: usize,
    /// Pixel-to-CRS transform (pixel corners); `None` when the file has none (e.g. Sentinel-1
    /// GRD in radar geometry, located by ground control points only).
    pub transform: Option<GeoTransform>,
    /// Ground control points in the file (GRD products carry hundreds, with no transform).
    pub gcp_count: usize,
    /// `(width, height)` of the overviews (reduced-resolution images), largest first.
    pub overviews: Vec<(usize, usize)>,
    /// EPSG code of the CRS, when the GeoKeys name one.
    pub epsg: Option<u32>,
    /// The GDAL no-data value.
    pub nodata: Option<f64>,
    /// Sample data type.
    pub data_type: DataType,
    /// Compression of the tiles.
    pub compression: Compression,
}

impl CogInfo {
    /// The affine transform, or why there is none.
    pub fn geo_transform(&self) -> Result<GeoTransform, CogError> {
        self.transform.ok_or_else(|| {
            CogError::NotGeoreferenced(if self.gcp_count > 0 {
                format!("located by {} ground control points only; GCP geocoding is not supported", self.gcp_count)
            } else {
                "no ModelTransformation or ModelTiepoint+ModelPixelScale".into()
            })
        })
    }

    /// Bytes per sample.
    pub fn sample_bytes(&self) -> usize {
        match self.data_type {
            DataType::UInt8 | DataType::Int8 | DataType::Bool => 1,
            DataType::UInt16 | DataType::Int16 => 2,
            DataType::UInt32 | DataType::Int32 | DataType::Float32 => 4,
            _ => 8,
        }
    }
}

/// A window of every band in the file's own data type: `bands x height x width` samples,
/// band-major, native byte order.
#[derive(Debug, Clone, PartialEq)]
pub struct RawWindow {
    /// Sample type.
    pub data_type: DataType,
    /// Bands.
    pub bands: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// Samples, `[band][row][col]`.
    pub bytes: Vec<u8>,
}

/// Decoded tile: `bands` planes of `tile_height * tile_width` values.
type DecodedTile = Arc<Vec<f32>>;

/// An open COG.
#[derive(Debug)]
pub struct Cog {
    reader: Arc<dyn AsyncFileReader>,
    ifd: Arc<ImageFileDirectory>,
    info: CogInfo,
    tiles: Mutex<HashMap<(usize, usize), DecodedTile>>,
}

/// Compressions the default decoder registry handles.
const SUPPORTED_COMPRESSIONS: [Compression; 6] = [
    Compression::None,
    Compression::Deflate,
    Compression::OldDeflate,
    Compression::LZW,
    Compression::ZSTD,
    Compression::ModernJPEG,
];

impl Cog {
    /// Opens the COG at `location`: reads its header and IFDs (one or two range requests).
    pub async fn open(location: &Location) -> Result<Self, CogError> {
        use futures::FutureExt;
        // The TIFF parser panics on some malformed headers (unknown tag types); a bad file must
        // be an error naming the asset, not a crash.
        std::panic::AssertUnwindSafe(Self::open_unguarded(location))
            .catch_unwind()
            .await
            .map_err(|p| CogError::Malformed(panic_message(p.as_ref())))?
    }

    async fn open_unguarded(location: &Location) -> Result<Self, CogError> {
        let reader: Arc<dyn AsyncFileReader> =
            Arc::new(ObjectReader::new(Arc::clone(&location.store), location.path.clone()));
        let cache = ReadaheadMetadataCache::new(Arc::clone(&reader));
        let mut meta = TiffMetadataReader::try_open(&cache).await?;
        let mut ifds = meta.read_all_ifds(&cache).await?;
        // The full-resolution image is the first IFD of a valid COG; take the widest, so that
        // files with their IFDs in another order (not valid COGs) still read.
        let full = (0..ifds.len())
            .max_by_key(|&i| (ifds[i].image_width(), std::cmp::Reverse(i)))
            .ok_or_else(|| CogError::Unsupported("no image in file".into()))?;
        let ifd = ifds.swap_remove(full);
        let mut overviews: Vec<(usize, usize)> = ifds
            .iter()
            .filter(|o| o.samples_per_pixel() == ifd.samples_per_pixel() && o.image_width() < ifd.image_width())
            .map(|o| (o.image_width() as usize, o.image_height() as usize))
            .collect();
        overviews.sort_by(|a, b| b.cmp(a));
        let mut info = info(&ifd)?;
        info.overviews = overviews;
        Ok(Self { reader, ifd: Arc::new(ifd), info, tiles: Mutex::new(HashMap::new()) })
    }

    /// Size, tiling and georeferencing.
    pub fn info(&self) -> &CogInfo {
        &self.info
    }

    /// Reads band `band` (0-based) in the pixel window at `(col, row)` of `width` x `height`.
    /// The window may extend past the image: those pixels are NaN, as are no-data pixels.
    pub async fn read_window(
        &self,
        band: usize,
        col: isize,
        row: isize,
        width: usize,
        height: usize,
    ) -> Result<Vec<f32>, CogError> {
        let info = &self.info;
        if band >= info.bands {
            return Err(CogError::Unsupported(format!("band {} requested, file has {}", band + 1, info.bands)));
        }
        let mut out = vec![f32::NAN; width * height];
        // Clip to the image.
        let c0 = col.max(0) as usize;
        let r0 = row.max(0) as usize;
        let c1 = ((col + width as isize).max(0) as usize).min(info.width);
        let r1 = ((row + height as isize).max(0) as usize).min(info.height);
        if c0 >= c1 || r0 >= r1 {
            return Ok(out);
        }
        let (tw, th) = (info.tile_width, info.tile_height);
        let tiles: Vec<(usize, usize)> = (r0 / th..=(r1 - 1) / th)
            .flat_map(|ty| (c0 / tw..=(c1 - 1) / tw).map(move |tx| (tx, ty)))
            .collect();
        let decoded = futures::future::try_join_all(tiles.iter().map(|&(tx, ty)| self.tile(tx, ty))).await?;
        for (&(tx, ty), tile) in tiles.iter().zip(decoded) {
            let plane = &tile[band * tw * th..(band + 1) * tw * th];
            // Intersection of the tile with the clipped window, in image pixels.
            let ic0 = (tx * tw).max(c0);
            let ic1 = ((tx + 1) * tw).min(c1);
            let ir0 = (ty * th).max(r0);
            let ir1 = ((ty + 1) * th).min(r1);
            for r in ir0..ir1 {
                let src = &plane[(r - ty * th) * tw + (ic0 - tx * tw)..(r - ty * th) * tw + (ic1 - tx * tw)];
                let dst_row = (r as isize - row) as usize;
                let dst_col = (ic0 as isize - col) as usize;
                out[dst_row * width + dst_col..dst_row * width + dst_col + (ic1 - ic0)].copy_from_slice(src);
            }
        }
        Ok(out)
    }

    /// Reads band `band` resampled onto the `width` x `height` grid with transform `dst` (same
    /// CRS). A grid aligned with the file's pixels is read directly.
    pub async fn read_onto(
        &self,
        band: usize,
        dst: &GeoTransform,
        width: usize,
        height: usize,
        method: Resampling,
    ) -> Result<Raster, CogError> {
        let src_t = self.info.geo_transform()?;
        let (fc, fr) = src_t.invert(dst.0[0], dst.0[3]);
        let aligned = (dst.res_x() - src_t.res_x()).abs() < 1e-9 * src_t.res_x()
            && (dst.res_y() - src_t.res_y()).abs() < 1e-9 * src_t.res_y()
            && (fc - fc.round()).abs() < 1e-6
            && (fr - fr.round()).abs() < 1e-6;
        if aligned {
            let data = self.read_window(band, fc.round() as isize, fr.round() as isize, width, height).await?;
            return Ok(Raster { transform: *dst, width, height, data });
        }
        // Source pixels under the target window, plus one for the bilinear neighbours.
        let (x1, y1) = dst.apply(width as f64, height as f64);
        let (lc, lr) = src_t.invert(x1, y1);
        let c0 = fc.min(lc).floor() as isize - 1;
        let r0 = fr.min(lr).floor() as isize - 1;
        let c1 = fc.max(lc).ceil() as isize + 1;
        let r1 = fr.max(lr).ceil() as isize + 1;
        let (sw, sh) = ((c1 - c0) as usize, (r1 - r0) as usize);
        let data = self.read_window(band, c0, r0, sw, sh).await?;
        let src = Raster { transform: src_t.offset(c0 as f64, r0 as f64), width: sw, height: sh, data };
        Ok(resample(&src, dst, width, height, method))
    }

    /// Reads every band of the window at `(col, row)` of `width` x `height`, which must lie
    /// inside the image, in the file's own data type. Not cached: for inspection and checks.
    pub async fn read_window_raw(&self, col: usize, row: usize, width: usize, height: usize) -> Result<RawWindow, CogError> {
        let info = &self.info;
        if width == 0 || height == 0 || col + width > info.width || row + height > info.height {
            return Err(CogError::Window(format!(
                "window {col},{row},{width},{height} is not inside the {}x{} image",
                info.width, info.height
            )));
        }
        let (tw, th, bands, size) = (info.tile_width, info.tile_height, info.bands, info.sample_bytes());
        let mut out = vec![0u8; bands * width * height * size];
        for ty in row / th..=(row + height - 1) / th {
            for tx in col / tw..=(col + width - 1) / tw {
                let planes = self.fetch_decoded(tx, ty, raw_planes).await?;
                let (c0, c1) = ((tx * tw).max(col), ((tx + 1) * tw).min(col + width));
                let (r0, r1) = ((ty * th).max(row), ((ty + 1) * th).min(row + height));
                for b in 0..bands {
                    for r in r0..r1 {
                        let src = (b * th * tw + (r - ty * th) * tw + (c0 - tx * tw)) * size;
                        let dst = (b * height * width + (r - row) * width + (c0 - col)) * size;
                        let n = (c1 - c0) * size;
                        out[dst..dst + n].copy_from_slice(&planes[src..src + n]);
                    }
                }
            }
        }
        Ok(RawWindow { data_type: info.data_type, bands, height, width, bytes: out })
    }

    /// Drops cached tiles that lie entirely above pixel row `row`: the stream has passed them.
    pub fn evict_above(&self, row: usize) {
        let th = self.info.tile_height;
        let mut tiles = self.tiles.lock().unwrap_or_else(|p| p.into_inner());
        tiles.retain(|&(_, ty), _| (ty + 1) * th > row);
    }

    async fn tile(&self, tx: usize, ty: usize) -> Result<DecodedTile, CogError> {
        if let Some(t) = self.tiles.lock().unwrap_or_else(|p| p.into_inner()).get(&(tx, ty)) {
            return Ok(Arc::clone(t));
        }
        let decoded = self.fetch_decoded(tx, ty, to_planes).await?;
        let decoded = Arc::new(decoded);
        self.tiles.lock().unwrap_or_else(|p| p.into_inner()).insert((tx, ty), Arc::clone(&decoded));
        Ok(decoded)
    }
}

impl Cog {
    /// Fetches tile `(tx, ty)` and decodes it with `convert` on a blocking thread. Errors name
    /// the tile and its byte range; a panicking decoder is an error, not a crash.
    async fn fetch_decoded<T: Send + 'static>(
        &self,
        tx: usize,
        ty: usize,
        convert: fn(async_tiff::Array, &CogInfo) -> Result<T, CogError>,
    ) -> Result<T, CogError> {
        let range = self
            .ifd
            .tile_byte_range(tx, ty)
            .map(|r| match r {
                async_tiff::TileByteRange::Chunky(r) => format!("{}..{}", r.start, r.end),
                async_tiff::TileByteRange::Planar(rs) => {
                    rs.iter().map(|r| format!("{}..{}", r.start, r.end)).collect::<Vec<_>>().join(",")
                }
            })
            .unwrap_or_default();
        let tile_err = |source| CogError::Tile { x: tx, y: ty, range: range.clone(), source };
        let tile = self.ifd.fetch_tile(tx, ty, self.reader.as_ref()).await.map_err(tile_err)?;
        let info = self.info.clone();
        tokio::task::spawn_blocking(move || {
            let array = tile.decode(&DecoderRegistry::default())?;
            Ok::<_, async_tiff::error::AsyncTiffError>(convert(array, &info))
        })
        .await
        .map_err(|e| match e.try_into_panic() {
            Ok(p) => CogError::Task(format!("tile (col {tx}, row {ty}): decoder failed: {}", panic_message(p.as_ref()))),
            Err(e) => CogError::Task(format!("tile (col {tx}, row {ty}): {e}")),
        })?
        .map_err(tile_err)?
    }
}

/// The message of a panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Converts a decoded tile to Float32 planes `[band][row][col]`, no-data to NaN.
fn to_planes(array: async_tiff::Array, info: &CogInfo) -> Result<Vec<f32>, CogError> {
    let shape = array.shape();
    let (tw, th, bands) = (info.tile_width, info.tile_height, info.bands);
    let planar = match shape {
        [h, w, b] if h == th && w == tw && b == bands => false,
        [b, h, w] if h == th && w == tw && b == bands => true,
        other => {
            return Err(CogError::Unsupported(format!(
                "decoded tile has shape {other:?}, expected {th}x{tw} with {bands} bands"
            )));
        }
    };
    let values: Vec<f32> = match array.into_inner().0 {
        TypedArray::UInt8(v) => v.into_iter().map(f32::from).collect(),
        TypedArray::UInt16(v) => v.into_iter().map(f32::from).collect(),
        TypedArray::Int8(v) => v.into_iter().map(f32::from).collect(),
        TypedArray::Int16(v) => v.into_iter().map(f32::from).collect(),
        TypedArray::UInt32(v) => v.into_iter().map(|x| x as f32).collect(),
        TypedArray::Int32(v) => v.into_iter().map(|x| x as f32).collect(),
        TypedArray::Float32(v) => v,
        TypedArray::Float64(v) => v.into_iter().map(|x| x as f32).collect(),
        other => return Err(CogError::Unsupported(format!("sample type {:?}", type_name(&other)))),
    };
    let nodata = info.nodata.map(|n| n as f32);
    let fix = |v: f32| if Some(v) == nodata { f32::NAN } else { v };
    let n = tw * th;
    if planar || bands == 1 {
        return Ok(values.into_iter().map(fix).collect());
    }
    let mut out = vec![0f32; n * bands];
    for (i, px) in values.chunks_exact(bands).enumerate() {
        for (b, &v) in px.iter().enumerate() {
            out[b * n + i] = fix(v);
        }
    }
    Ok(out)
}

/// A decoded tile's samples as native-endian bytes, band-major `[band][row][col]`.
fn raw_planes(array: async_tiff::Array, info: &CogInfo) -> Result<Vec<u8>, CogError> {
    let shape = array.shape();
    let (tw, th, bands) = (info.tile_width, info.tile_height, info.bands);
    let planar = match shape {
        [h, w, b] if h == th && w == tw && b == bands => bands == 1,
        [b, h, w] if h == th && w == tw && b == bands => true,
        other => return Err(CogError::Unsupported(format!("decoded tile has shape {other:?}"))),
    };
    use bytemuck::cast_slice;
    let bytes: Vec<u8> = match array.into_inner().0 {
        TypedArray::UInt8(v) => v,
        TypedArray::Int8(v) => cast_slice(&v).to_vec(),
        TypedArray::UInt16(v) => cast_slice(&v).to_vec(),
        TypedArray::Int16(v) => cast_slice(&v).to_vec(),
        TypedArray::UInt32(v) => cast_slice(&v).to_vec(),
        TypedArray::Int32(v) => cast_slice(&v).to_vec(),
        TypedArray::Float32(v) => cast_slice(&v).to_vec(),
        TypedArray::Float64(v) => cast_slice(&v).to_vec(),
        other => return Err(CogError::Unsupported(format!("sample type {}", type_name(&other)))),
    };
    if planar {
        return Ok(bytes);
    }
    let size = info.sample_bytes();
    let n = tw * th;
    let mut out = vec![0u8; bytes.len()];
    for (i, px) in bytes.chunks_exact(size * bands).enumerate() {
        for b in 0..bands {
            out[(b * n + i) * size..(b * n + i + 1) * size].copy_from_slice(&px[b * size..(b + 1) * size]);
        }
    }
    Ok(out)
}

fn type_name(a: &TypedArray) -> &'static str {
    match a {
        TypedArray::Bool(_) => "1-bit",
        TypedArray::UInt64(_) => "uint64",
        TypedArray::Int64(_) => "int64",
        _ => "other",
    }
}

fn info(ifd: &ImageFileDirectory) -> Result<CogInfo, CogError> {
    let (Some(tile_width), Some(tile_height)) = (ifd.tile_width(), ifd.tile_height()) else {
        return Err(CogError::Unsupported(
            "strip-organised TIFF (no tiles); convert it to a tiled COG, e.g. `gdal_translate -of COG`".into(),
        ));
    };
    let compression = ifd.compression();
    if !SUPPORTED_COMPRESSIONS.contains(&compression) {
        return Err(CogError::Unsupported(format!("compression {compression:?}")));
    }
    let bands = ifd.samples_per_pixel() as usize;
    let data_type = ifd_data_type(ifd)?;
    let (width, height) = (ifd.image_width() as usize, ifd.image_height() as usize);
    let (tile_width, tile_height) = (tile_width as usize, tile_height as usize);
    if width == 0 || height == 0 || tile_width == 0 || tile_height == 0 {
        return Err(CogError::Unsupported(format!("empty image {width}x{height}, tiles {tile_width}x{tile_height}")));
    }
    // A corrupt file may list fewer tiles than the image needs; check before indexing.
    let per_band = width.div_ceil(tile_width) * height.div_ceil(tile_height);
    let needed = if ifd.planar_configuration() == PlanarConfiguration::Planar { per_band * bands } else { per_band };
    let offsets = ifd.tile_offsets().map_or(0, <[u64]>::len);
    let counts = ifd.tile_byte_counts().map_or(0, <[u64]>::len);
    if offsets < needed || counts < needed {
        return Err(CogError::Unsupported(format!(
            "corrupt tile index: {offsets} offsets and {counts} byte counts for {needed} tiles"
        )));
    }
    let (transform, gcp_count) = geo_transform(ifd)?;
    let epsg = ifd.geo_key_directory().and_then(|g| g.epsg_code()).map(u32::from);
    let nodata = ifd.gdal_nodata().and_then(|s| s.trim().trim_end_matches('\0').parse::<f64>().ok());
    Ok(CogInfo {
        width,
        height,
        tile_width,
        tile_height,
        bands,
        transform,
        gcp_count,
        overviews: Vec::new(),
        epsg,
        nodata,
        data_type,
        compression,
    })
}

fn ifd_data_type(ifd: &ImageFileDirectory) -> Result<DataType, CogError> {
    use async_tiff::tags::SampleFormat;
    let bits = ifd.bits_per_sample().first().copied().unwrap_or(0);
    let format = ifd.sample_format().first().copied().unwrap_or(SampleFormat::Uint);
    let dt = match (format, bits) {
        (SampleFormat::Uint, 8) => DataType::UInt8,
        (SampleFormat::Uint, 16) => DataType::UInt16,
        (SampleFormat::Uint, 32) => DataType::UInt32,
        (SampleFormat::Int, 8) => DataType::Int8,
        (SampleFormat::Int, 16) => DataType::Int16,
        (SampleFormat::Int, 32) => DataType::Int32,
        (SampleFormat::Float, 32) => DataType::Float32,
        (SampleFormat::Float, 64) => DataType::Float64,
        (f, b) => return Err(CogError::Unsupported(format!("{b}-bit {f:?} samples"))),
    };
    Ok(dt)
}

/// The affine transform, if any, and the number of ground control points.
fn geo_transform(ifd: &ImageFileDirectory) -> Result<(Option<GeoTransform>, usize), CogError> {
    let pixel_is_point = ifd.geo_key_directory().and_then(|g| g.raster_type) == Some(2);
    let t = if let Some(m) = ifd.model_transformation().filter(|m| m.len() >= 8) {
        GeoTransform([m[3], m[0], m[1], m[7], m[4], m[5]])
    } else {
        match (ifd.model_tiepoint(), ifd.model_pixel_scale()) {
            (Some(tp), Some(scale)) if tp.len() == 6 && scale.len() >= 2 => {
                let (i, j, x, y) = (tp[0], tp[1], tp[3], tp[4]);
                GeoTransform::north_up(x - i * scale[0], y + j * scale[1], scale[0], scale[1])
            }
            (Some(tp), _) if tp.len() > 6 => return Ok((None, tp.len() / 6)),
            _ => return Ok((None, 0)),
        }
    };
    if !t.is_north_up() {
        return Err(CogError::Unsupported(format!("rotated or south-up grid {:?}", t.0)));
    }
    // GDAL's convention: a PixelIsPoint tie point names the pixel centre.
    Ok((Some(if pixel_is_point { t.offset(-0.5, -0.5) } else { t }), 0))
}

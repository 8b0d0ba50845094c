//! Cloud-Optimized GeoTIFF window reads.
//!
//! Only the tiles a window touches are fetched (one range request each), decoded off the async
//! runtime, converted to Float32 with no-data as NaN, and kept in a small cache so that chip
//! rows sharing a tile row do not fetch it twice. Callers evict tile rows they have passed,
//! which keeps memory flat while a scene streams top to bottom.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_tiff::metadata::TiffMetadataReader;
use async_tiff::metadata::cache::ReadaheadMetadataCache;
use async_tiff::reader::{AsyncFileReader, Endianness};
use async_tiff::tags::{Compression, PlanarConfiguration};
use async_tiff::{DataType, ImageFileDirectory};

use crate::bands::Resampling;
use crate::decode::{Layout, decode_planes};
use crate::error::CogError;
use crate::geo::GeoTransform;
use crate::range_reader::RangeReader;
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
    /// Number of ground control points in the file (GRD products carry hundreds, with no
    /// transform); equal to `gcps.len()`.
    pub gcp_count: usize,
    /// The ground control points, in the CRS named by [`CogInfo::epsg`]; empty when the file
    /// has an affine transform.
    pub gcps: Vec<Gcp>,
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
                format!(
                    "located by {} ground control points only, no affine transform (warp it onto a grid with warp::warp_cog_onto)",
                    self.gcp_count
                )
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

/// A ground control point: a position in the image tied to a point of the CRS.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gcp {
    /// Column in pixels from the image's left edge (pixel corners: 0.5 is the first pixel's
    /// centre, GDAL's convention).
    pub pixel: f64,
    /// Row in pixels from the image's top edge.
    pub line: f64,
    /// CRS x (longitude in degrees for EPSG:4326).
    pub x: f64,
    /// CRS y (latitude in degrees for EPSG:4326).
    pub y: f64,
    /// Height in metres (ignored by the polynomial geocoding, as GDAL ignores it).
    pub z: f64,
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

/// One image of the file: the full-resolution image (level 0) or an overview.
#[derive(Debug)]
struct Level {
    ifd: ImageFileDirectory,
    layout: Layout,
    width: usize,
    height: usize,
}

/// An open COG.
#[derive(Debug)]
pub struct Cog {
    reader: Arc<dyn AsyncFileReader>,
    /// The full-resolution image, then the overviews, largest first.
    levels: Vec<Level>,
    info: CogInfo,
    /// Decoded tiles by `(level, tile column, tile row)`.
    tiles: Mutex<HashMap<(usize, usize, usize), DecodedTile>>,
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

/// GDAL's default `GDAL_OVERVIEW_OVERSAMPLING_THRESHOLD` for nearest neighbour: an overview
/// up to 1.2 times coarser than the target is still read.
const NEAREST_OVERSAMPLING: f64 = 1.2;
/// GDAL's threshold for the other resamplings: 1.0, nudged by 1% against rounding, i.e. the
/// overview must be at least as fine as the target.
const OTHER_OVERSAMPLING: f64 = 1.01;

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
            Arc::new(RangeReader::new(Arc::clone(&location.store), location.path.clone()));
        let cache = ReadaheadMetadataCache::new(Arc::clone(&reader));
        crate::ifd_check::check_ifd_chain(&cache).await?;
        let mut meta = TiffMetadataReader::try_open(&cache).await?;
        let endianness = meta.endianness();
        let mut ifds = meta.read_all_ifds(&cache).await?;
        // The full-resolution image is the first IFD of a valid COG; take the widest, so that
        // files with their IFDs in another order (not valid COGs) still read.
        let full = (0..ifds.len())
            .max_by_key(|&i| (ifds[i].image_width(), std::cmp::Reverse(i)))
            .ok_or_else(|| CogError::Unsupported("no image in file".into()))?;
        let ifd = ifds.swap_remove(full);
        let mut info = info(&ifd)?;
        let size = info.sample_bytes();
        // Overviews: smaller images of the same samples. Transparency masks (NewSubfileType
        // bit 2) are not; an overview this reader cannot read is left out, not an error, since
        // the full resolution still is.
        let mut overviews: Vec<Level> = ifds
            .into_iter()
            .filter(|o| {
                o.samples_per_pixel() == ifd.samples_per_pixel()
                    && o.image_width() < ifd.image_width()
                    && o.new_subfile_type().is_none_or(|t| t & 4 == 0)
                    && ifd_data_type(o).ok() == Some(info.data_type)
            })
            .filter_map(|o| match level(o, endianness, size) {
                Ok(l) => Some(l),
                Err(e) => {
                    tracing::warn!(path = %location.path, "overview left out: {e}");
                    None
                }
            })
            .collect();
        overviews.sort_by_key(|l| std::cmp::Reverse((l.width, l.height)));
        info.overviews = overviews.iter().map(|l| (l.width, l.height)).collect();
        let mut levels = vec![level(ifd, endianness, size)?];
        levels.extend(overviews);
        Ok(Self { reader, levels, info, tiles: Mutex::new(HashMap::new()) })
    }

    /// Size, tiling and georeferencing.
    pub fn info(&self) -> &CogInfo {
        &self.info
    }

    fn level(&self, level: usize) -> Result<&Level, CogError> {
        self.levels.get(level).ok_or_else(|| {
            CogError::Window(format!("overview level {level} requested, file has {}", self.levels.len() - 1))
        })
    }

    /// Pixel-to-CRS transform of `level` (0: full resolution, `i`: the `i`-th overview of
    /// [`CogInfo::overviews`]): the full-resolution transform with pixels scaled by the size
    /// ratio, as GDAL derives an overview's transform.
    pub fn level_transform(&self, level: usize) -> Result<GeoTransform, CogError> {
        let t = self.info.geo_transform()?;
        let l = self.level(level)?;
        let sx = self.info.width as f64 / l.width as f64;
        let sy = self.info.height as f64 / l.height as f64;
        let c = t.0;
        Ok(GeoTransform([c[0], c[1] * sx, c[2] * sy, c[3], c[4] * sx, c[5] * sy]))
    }

    /// The level GDAL reads for a target grid of `res_x` x `res_y` CRS units per pixel: the most
    /// reduced overview whose downsampling factor stays below the target's times GDAL's
    /// oversampling threshold (1.2 for nearest, else 1.0, i.e. at least as fine as the target),
    /// or 0 (full resolution) when none does, e.g. for a grid as fine as the data or finer.
    pub fn level_for(&self, res_x: f64, res_y: f64, method: Resampling) -> usize {
        let Some(t) = self.info.transform else { return 0 };
        let desired = (res_x.abs() / t.res_x()).min(res_y.abs() / t.res_y());
        let threshold = if method == Resampling::Nearest { NEAREST_OVERSAMPLING } else { OTHER_OVERSAMPLING };
        let mut best = (0, 0.0);
        for (i, l) in self.levels.iter().enumerate().skip(1) {
            let factor = (self.info.width as f64 / l.width as f64).min(self.info.height as f64 / l.height as f64);
            if factor < desired * threshold && factor > best.1 {
                best = (i, factor);
            }
        }
        best.0
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
        self.read_window_at(0, band, col, row, width, height).await
    }

    /// As [`Cog::read_window`], in pixels of `level` (0: full resolution, `i`: overview `i`).
    pub async fn read_window_at(
        &self,
        level: usize,
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
        let l = self.level(level)?;
        let mut out = vec![f32::NAN; width * height];
        // Clip to the image.
        let c0 = col.max(0) as usize;
        let r0 = row.max(0) as usize;
        let c1 = ((col + width as isize).max(0) as usize).min(l.width);
        let r1 = ((row + height as isize).max(0) as usize).min(l.height);
        if c0 >= c1 || r0 >= r1 {
            return Ok(out);
        }
        let (tw, th) = (l.layout.tile_width, l.layout.tile_height);
        let tiles: Vec<(usize, usize)> = (r0 / th..=(r1 - 1) / th)
            .flat_map(|ty| (c0 / tw..=(c1 - 1) / tw).map(move |tx| (tx, ty)))
            .collect();
        let decoded = futures::future::try_join_all(tiles.iter().map(|&(tx, ty)| self.tile(level, tx, ty))).await?;
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
    /// CRS). When the grid is coarser than the data, the pixels come from the overview GDAL
    /// would pick ([`Cog::level_for`]), so only that overview's tiles are fetched. A grid
    /// aligned with the pixels read is read directly.
    pub async fn read_onto(
        &self,
        band: usize,
        dst: &GeoTransform,
        width: usize,
        height: usize,
        method: Resampling,
    ) -> Result<Raster, CogError> {
        let level = self.level_for(dst.res_x(), dst.res_y(), method);
        self.read_onto_level(level, band, dst, width, height, method).await
    }

    /// As [`Cog::read_onto`], from `level` (0: full resolution, `i`: overview `i`).
    pub async fn read_onto_level(
        &self,
        level: usize,
        band: usize,
        dst: &GeoTransform,
        width: usize,
        height: usize,
        method: Resampling,
    ) -> Result<Raster, CogError> {
        let src_t = self.level_transform(level)?;
        let (fc, fr) = src_t.invert(dst.0[0], dst.0[3]);
        let aligned = (dst.res_x() - src_t.res_x()).abs() < 1e-9 * src_t.res_x()
            && (dst.res_y() - src_t.res_y()).abs() < 1e-9 * src_t.res_y()
            && (fc - fc.round()).abs() < 1e-6
            && (fr - fr.round()).abs() < 1e-6;
        if aligned {
            let data = self.read_window_at(level, band, fc.round() as isize, fr.round() as isize, width, height).await?;
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
        let data = self.read_window_at(level, band, c0, r0, sw, sh).await?;
        let src = Raster { transform: src_t.offset(c0 as f64, r0 as f64), width: sw, height: sh, data };
        Ok(resample(&src, dst, width, height, method))
    }

    /// Reads every band of the window at `(col, row)` of `width` x `height`, which must lie
    /// inside the image, in the file's own data type. Not cached: for inspection and checks.
    pub async fn read_window_raw(&self, col: usize, row: usize, width: usize, height: usize) -> Result<RawWindow, CogError> {
        self.read_window_raw_at(0, col, row, width, height).await
    }

    /// As [`Cog::read_window_raw`], in pixels of `level` (0: full resolution, `i`: overview
    /// `i`). The window's tiles are fetched and decoded concurrently.
    pub async fn read_window_raw_at(
        &self,
        level: usize,
        col: usize,
        row: usize,
        width: usize,
        height: usize,
    ) -> Result<RawWindow, CogError> {
        let l = self.level(level)?;
        if width == 0 || height == 0 || col + width > l.width || row + height > l.height {
            return Err(CogError::Window(format!(
                "window {col},{row},{width},{height} is not inside the {}x{} image{}",
                l.width,
                l.height,
                if level > 0 { format!(" (overview {level})") } else { String::new() }
            )));
        }
        let (tw, th, bands, size) = (l.layout.tile_width, l.layout.tile_height, self.info.bands, l.layout.sample_bytes);
        let tiles: Vec<(usize, usize)> = (row / th..=(row + height - 1) / th)
            .flat_map(|ty| (col / tw..=(col + width - 1) / tw).map(move |tx| (tx, ty)))
            .collect();
        let mut decoded =
            futures::future::try_join_all(tiles.iter().map(|&(tx, ty)| self.fetch_decoded(level, tx, ty, |p, _| Ok(p))))
                .await?;
        let raw = |bytes| RawWindow { data_type: self.info.data_type, bands, height, width, bytes };
        if col % tw == 0 && row % th == 0 && (width, height) == (tw, th) {
            // The window is one whole tile, whose planes are already the window's layout.
            if let Some(planes) = decoded.pop() {
                return Ok(raw(planes));
            }
        }
        // Written in output order (band, row, tile column), so the buffer is never zero-filled.
        let (tx0, ty0) = (col / tw, row / th);
        let columns = (col + width - 1) / tw - tx0 + 1;
        let mut out = Vec::with_capacity(bands * width * height * size);
        for b in 0..bands {
            for r in row..row + height {
                let ty = r / th;
                for (k, planes) in decoded[(ty - ty0) * columns..][..columns].iter().enumerate() {
                    let tx = tx0 + k;
                    let (c0, c1) = ((tx * tw).max(col), ((tx + 1) * tw).min(col + width));
                    let src = (b * th * tw + (r - ty * th) * tw + (c0 - tx * tw)) * size;
                    out.extend_from_slice(&planes[src..src + (c1 - c0) * size]);
                }
            }
        }
        Ok(raw(out))
    }

    /// Drops cached tiles, of every level, that lie entirely above full-resolution pixel row
    /// `row` (less the one-pixel margin [`Cog::read_onto`] reads around a window): the stream
    /// has passed them.
    pub fn evict_above(&self, row: usize) {
        let full_height = self.info.height as f64;
        let mut tiles = self.tiles.lock().unwrap_or_else(|p| p.into_inner());
        tiles.retain(|&(level, _, ty), _| {
            let l = &self.levels[level];
            let r = (row as f64 * l.height as f64 / full_height).floor() as usize;
            (ty + 1) * l.layout.tile_height + 1 > r
        });
    }

    /// Drops cached full-resolution tiles that intersect none of the pixel windows `keep`
    /// (`(col, row, width, height)`), and every cached overview tile. For warps, whose source
    /// rows do not follow the destination rows (radar geometry, rotated grids), so
    /// [`Cog::evict_above`] does not apply: keep what the next strip's warps will read.
    pub fn retain_windows(&self, keep: &[(isize, isize, usize, usize)]) {
        let l = &self.levels[0];
        let (tw, th) = (l.layout.tile_width as isize, l.layout.tile_height as isize);
        let mut tiles = self.tiles.lock().unwrap_or_else(|p| p.into_inner());
        tiles.retain(|&(level, tx, ty), _| {
            let (x0, y0) = (tx as isize * tw, ty as isize * th);
            level == 0
                && keep.iter().any(|&(c, r, w, h)| {
                    x0 < c + w as isize && c < x0 + tw && y0 < r + h as isize && r < y0 + th
                })
        });
    }

    /// Decoded tiles held in the cache (for memory checks).
    pub fn cached_tiles(&self) -> usize {
        self.tiles.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    async fn tile(&self, level: usize, tx: usize, ty: usize) -> Result<DecodedTile, CogError> {
        if let Some(t) = self.tiles.lock().unwrap_or_else(|p| p.into_inner()).get(&(level, tx, ty)) {
            return Ok(Arc::clone(t));
        }
        let decoded = Arc::new(self.fetch_decoded(level, tx, ty, to_f32).await?);
        self.tiles.lock().unwrap_or_else(|p| p.into_inner()).insert((level, tx, ty), Arc::clone(&decoded));
        Ok(decoded)
    }
}

impl Cog {
    /// Fetches tile `(tx, ty)` of `level`, decodes it to band planes and applies `convert`, on
    /// a blocking thread. Errors name the tile and its byte range; a panicking decoder is an
    /// error, not a crash.
    async fn fetch_decoded<T: Send + 'static>(
        &self,
        level: usize,
        tx: usize,
        ty: usize,
        convert: fn(Vec<u8>, &CogInfo) -> Result<T, CogError>,
    ) -> Result<T, CogError> {
        let l = self.level(level)?;
        let range = l
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
        let tile = l.ifd.fetch_tile(tx, ty, self.reader.as_ref()).await.map_err(tile_err)?;
        let (layout, info) = (l.layout, self.info.clone());
        tokio::task::spawn_blocking(move || {
            let planes = decode_planes(tile, &layout)?;
            Ok::<_, async_tiff::error::AsyncTiffError>(convert(planes, &info))
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

/// Band planes of native-endian samples to Float32, no-data to NaN.
fn to_f32(planes: Vec<u8>, info: &CogInfo) -> Result<Vec<f32>, CogError> {
    let nodata = info.nodata.map(|n| n as f32);
    let fix = |v: f32| if Some(v) == nodata { f32::NAN } else { v };
    fn each<const N: usize>(bytes: &[u8], f: impl Fn([u8; N]) -> f32) -> Vec<f32> {
        bytes
            .chunks_exact(N)
            .map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                f(a)
            })
            .collect()
    }
    Ok(match info.data_type {
        DataType::UInt8 => planes.iter().map(|&v| fix(f32::from(v))).collect(),
        DataType::Int8 => planes.iter().map(|&v| fix(f32::from(v as i8))).collect(),
        DataType::UInt16 => each(&planes, |a| fix(f32::from(u16::from_ne_bytes(a)))),
        DataType::Int16 => each(&planes, |a| fix(f32::from(i16::from_ne_bytes(a)))),
        DataType::UInt32 => each(&planes, |a| fix(u32::from_ne_bytes(a) as f32)),
        DataType::Int32 => each(&planes, |a| fix(i32::from_ne_bytes(a) as f32)),
        DataType::Float32 => each(&planes, |a| fix(f32::from_ne_bytes(a))),
        DataType::Float64 => each(&planes, |a| fix(f64::from_ne_bytes(a) as f32)),
        other => return Err(CogError::Unsupported(format!("sample type {other:?}"))),
    })
}

/// One image of the file with its tile layout, checked against its tile index.
fn level(ifd: ImageFileDirectory, endianness: Endianness, sample_bytes: usize) -> Result<Level, CogError> {
    let (Some(tw), Some(th)) = (ifd.tile_width(), ifd.tile_height()) else {
        return Err(CogError::Unsupported(
            "strip-organised TIFF (no tiles); convert it to a tiled COG, e.g. `gdal_translate -of COG`".into(),
        ));
    };
    let compression = ifd.compression();
    if !SUPPORTED_COMPRESSIONS.contains(&compression) {
        return Err(CogError::Unsupported(format!("compression {compression:?}")));
    }
    let (width, height) = (ifd.image_width() as usize, ifd.image_height() as usize);
    check_tile_index(&ifd, width, height, tw as usize, th as usize)?;
    let layout = Layout::of(&ifd, endianness, sample_bytes);
    Ok(Level { ifd, layout, width, height })
}

/// A corrupt file may list fewer tiles than the image needs; checked before any indexing.
fn check_tile_index(ifd: &ImageFileDirectory, width: usize, height: usize, tw: usize, th: usize) -> Result<(), CogError> {
    if width == 0 || height == 0 || tw == 0 || th == 0 {
        return Err(CogError::Unsupported(format!("empty image {width}x{height}, tiles {tw}x{th}")));
    }
    let bands = ifd.samples_per_pixel() as usize;
    let per_band = width.div_ceil(tw) * height.div_ceil(th);
    let needed = if ifd.planar_configuration() == PlanarConfiguration::Planar { per_band * bands } else { per_band };
    let offsets = ifd.tile_offsets().map_or(0, <[u64]>::len);
    let counts = ifd.tile_byte_counts().map_or(0, <[u64]>::len);
    if offsets < needed || counts < needed {
        return Err(CogError::Unsupported(format!(
            "corrupt tile index: {offsets} offsets and {counts} byte counts for {needed} tiles"
        )));
    }
    Ok(())
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
    check_tile_index(ifd, width, height, tile_width, tile_height)?;
    let (transform, gcps) = geo_transform(ifd)?;
    let epsg = ifd.geo_key_directory().and_then(|g| g.epsg_code()).map(u32::from);
    let nodata = ifd.gdal_nodata().and_then(|s| s.trim().trim_end_matches('\0').parse::<f64>().ok());
    Ok(CogInfo {
        width,
        height,
        tile_width,
        tile_height,
        bands,
        transform,
        gcp_count: gcps.len(),
        gcps,
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
        (f, b) => {
            // TIFF SampleFormat 5 and 6 are complex integers and floats (SAR SLC products).
            let kind = match f {
                SampleFormat::Unknown(5) => "complex integer".to_string(),
                SampleFormat::Unknown(6) => "complex float".to_string(),
                other => format!("{other:?}"),
            };
            return Err(CogError::Unsupported(format!(
                "{b}-bit {kind} samples (8-32 bit integers and 32/64-bit floats are read)"
            )));
        }
    };
    Ok(dt)
}

/// The affine transform, if any, or else the ground control points.
fn geo_transform(ifd: &ImageFileDirectory) -> Result<(Option<GeoTransform>, Vec<Gcp>), CogError> {
    let pixel_is_point = ifd.geo_key_directory().and_then(|g| g.raster_type) == Some(2);
    let t = if let Some(m) = ifd.model_transformation().filter(|m| m.len() >= 8) {
        GeoTransform([m[3], m[0], m[1], m[7], m[4], m[5]])
    } else {
        match (ifd.model_tiepoint(), ifd.model_pixel_scale()) {
            (Some(tp), Some(scale)) if tp.len() == 6 && scale.len() >= 2 => {
                let (i, j, x, y) = (tp[0], tp[1], tp[3], tp[4]);
                GeoTransform::north_up(x - i * scale[0], y + j * scale[1], scale[0], scale[1])
            }
            (Some(tp), _) if tp.len() > 6 => return Ok((None, gcps(tp, pixel_is_point))),
            _ => return Ok((None, Vec::new())),
        }
    };
    if !t.is_north_up() {
        return Err(CogError::Unsupported(format!("rotated or south-up grid {:?}", t.0)));
    }
    // GDAL's convention: a PixelIsPoint tie point names the pixel centre.
    Ok((Some(if pixel_is_point { t.offset(-0.5, -0.5) } else { t }), Vec::new()))
}

/// The tie points of a ModelTiepoint tag with several `(I, J, K, X, Y, Z)` entries.
fn gcps(tiepoints: &[f64], pixel_is_point: bool) -> Vec<Gcp> {
    // GDAL's convention, as for the transform: a PixelIsPoint tie point names a pixel centre.
    let shift = if pixel_is_point { 0.5 } else { 0.0 };
    tiepoints
        .chunks_exact(6)
        .map(|t| Gcp { pixel: t[0] + shift, line: t[1] + shift, x: t[3], y: t[4], z: t[5] })
        .collect()
}

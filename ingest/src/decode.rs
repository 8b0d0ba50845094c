//! Tile decoding: a fetched tile's compressed bytes to band planes of native-endian samples.
//!
//! DEFLATE and uncompressed tiles, with or without horizontal differencing (the layout of the
//! Sentinel COGs on Earth Search and Planetary Computer), are inflated with libdeflate (what
//! GDAL uses; about twice as fast as zlib) straight into a buffer of the tile's exact size, not
//! zero-filled first ([`crate::inflate`]), and un-predicted in place: one allocation, no growth,
//! no typed copy. Other codecs and predictors go through async-tiff's decoder registry.

use std::sync::LazyLock;

use async_tiff::decoder::DecoderRegistry;
use async_tiff::error::AsyncTiffError;
use async_tiff::reader::Endianness;
use async_tiff::tags::{Compression, Predictor};
use async_tiff::{CompressedBytes, ImageFileDirectory, Tile, TypedArray};

/// How the tiles of one image (full resolution or an overview) are laid out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Layout {
    /// Tile width in pixels (edge tiles are stored at full size too).
    pub(crate) tile_width: usize,
    /// Tile height in pixels.
    pub(crate) tile_height: usize,
    /// Samples per pixel.
    pub(crate) bands: usize,
    /// Bytes per sample.
    pub(crate) sample_bytes: usize,
    predictor: Predictor,
    compression: Compression,
    /// The file's byte order is the machine's.
    native: bool,
}

impl Layout {
    /// The layout of `ifd`'s tiles, for a file in `endianness`.
    pub(crate) fn of(ifd: &ImageFileDirectory, endianness: Endianness, sample_bytes: usize) -> Self {
        Self {
            tile_width: ifd.tile_width().unwrap_or(ifd.image_width()) as usize,
            tile_height: ifd.tile_height().unwrap_or(ifd.image_height()) as usize,
            bands: ifd.samples_per_pixel() as usize,
            sample_bytes,
            predictor: ifd.predictor().unwrap_or(Predictor::None),
            compression: ifd.compression(),
            native: matches!(endianness, Endianness::LittleEndian) == cfg!(target_endian = "little"),
        }
    }

    /// Bytes of one band plane of a tile.
    pub(crate) fn plane_bytes(&self) -> usize {
        self.tile_width * self.tile_height * self.sample_bytes
    }

    fn fast(&self) -> bool {
        matches!(self.compression, Compression::None | Compression::Deflate | Compression::OldDeflate)
            && matches!(self.predictor, Predictor::None | Predictor::Horizontal)
            && matches!(self.sample_bytes, 1 | 2 | 4 | 8)
    }
}

/// Decodes `tile` into `bands` planes of `tile_height x tile_width` native-endian samples,
/// band-major.
pub(crate) fn decode_planes(tile: Tile, layout: &Layout) -> Result<Vec<u8>, AsyncTiffError> {
    if !layout.fast() {
        return via_registry(tile, layout);
    }
    let plane = layout.plane_bytes();
    let total = plane * layout.bands;
    match tile.compressed_bytes() {
        CompressedBytes::Planar(chunks) => {
            if chunks.len() != layout.bands {
                return Err(general(format!("{} band chunks for {} bands", chunks.len(), layout.bands)));
            }
            let mut out = Vec::with_capacity(total);
            for chunk in chunks {
                let start = out.len();
                inflate_append(chunk, &mut out, plane, layout.compression)?;
                unpredict(&mut out[start..], layout, 1);
            }
            Ok(out)
        }
        CompressedBytes::Chunky(bytes) if layout.bands == 1 => {
            let mut out = Vec::with_capacity(total);
            inflate_append(bytes, &mut out, total, layout.compression)?;
            unpredict(&mut out, layout, 1);
            Ok(out)
        }
        CompressedBytes::Chunky(bytes) => {
            let mut pixels = Vec::with_capacity(total);
            inflate_append(bytes, &mut pixels, total, layout.compression)?;
            unpredict(&mut pixels, layout, layout.bands);
            Ok(deinterleave(&pixels, layout))
        }
    }
}

fn general(msg: String) -> AsyncTiffError {
    AsyncTiffError::General(msg)
}

/// Appends exactly `len` bytes decoded from the compressed `input` to `out`.
fn inflate_append(input: &[u8], out: &mut Vec<u8>, len: usize, compression: Compression) -> Result<(), AsyncTiffError> {
    if compression == Compression::None {
        let src = input
            .get(..len)
            .ok_or_else(|| general(format!("uncompressed tile has {} bytes, expected {len}", input.len())))?;
        out.extend_from_slice(src);
        return Ok(());
    }
    crate::inflate::zlib_append(input, out, len).map_err(general)
}

/// Swaps to native byte order and undoes horizontal differencing (TIFF predictor 2), in place,
/// on rows of `tile_width * samples` samples.
fn unpredict(buf: &mut [u8], layout: &Layout, samples: usize) {
    let row = layout.tile_width * samples * layout.sample_bytes;
    match layout.sample_bytes {
        1 => each_row::<u8>(buf, row, samples, layout),
        2 => each_row::<u16>(buf, row, samples, layout),
        4 => each_row::<u32>(buf, row, samples, layout),
        _ => each_row::<u64>(buf, row, samples, layout),
    }
}

/// An unsigned sample word: differencing wraps at its width whatever the sample format.
trait Word: Copy {
    const SIZE: usize;
    fn read(b: &[u8], native: bool) -> Self;
    fn write(self, b: &mut [u8]);
    fn wrapping_add(self, o: Self) -> Self;
}

macro_rules! word {
    ($t:ty) => {
        impl Word for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            #[inline(always)]
            fn read(b: &[u8], native: bool) -> Self {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(b);
                let v = <$t>::from_ne_bytes(a);
                if native { v } else { v.swap_bytes() }
            }
            #[inline(always)]
            fn write(self, b: &mut [u8]) {
                b.copy_from_slice(&self.to_ne_bytes());
            }
            #[inline(always)]
            fn wrapping_add(self, o: Self) -> Self {
                <$t>::wrapping_add(self, o)
            }
        }
    };
}
word!(u8);
word!(u16);
word!(u32);
word!(u64);

fn each_row<W: Word + bytemuck::Pod>(buf: &mut [u8], row: usize, samples: usize, layout: &Layout) {
    let differenced = layout.predictor == Predictor::Horizontal;
    if !differenced && layout.native {
        return;
    }
    if layout.native
        && let Ok(words) = bytemuck::try_cast_slice_mut::<u8, W>(buf)
    {
        // The common case (little-endian files on little-endian machines, an aligned buffer):
        // a running sum over whole words, without per-sample slicing.
        for line in words.chunks_exact_mut(row / W::SIZE) {
            for i in samples..line.len() {
                line[i] = line[i].wrapping_add(line[i - samples]);
            }
        }
        return;
    }
    for line in buf.chunks_exact_mut(row) {
        if !differenced {
            for w in line.chunks_exact_mut(W::SIZE) {
                W::read(w, false).write(w);
            }
            continue;
        }
        let step = samples * W::SIZE;
        // The first pixel is stored as is; every later sample adds its left neighbour's.
        for w in line[..step].chunks_exact_mut(W::SIZE) {
            W::read(w, layout.native).write(w);
        }
        for i in (step..line.len()).step_by(W::SIZE) {
            let left = W::read(&line[i - step..i - step + W::SIZE], true);
            let v = W::read(&line[i..i + W::SIZE], layout.native).wrapping_add(left);
            v.write(&mut line[i..i + W::SIZE]);
        }
    }
}

/// Pixel-interleaved samples to band planes (`pixels` holds whole pixels).
fn deinterleave(pixels: &[u8], layout: &Layout) -> Vec<u8> {
    match layout.sample_bytes {
        1 => deinterleave_n::<1>(pixels, layout),
        2 => deinterleave_n::<2>(pixels, layout),
        4 => deinterleave_n::<4>(pixels, layout),
        _ => deinterleave_n::<8>(pixels, layout),
    }
}

/// With the sample size a constant, each sample moves as one load and store, not a memcpy call.
/// The planes are written once into uninitialised capacity, not over a zero fill.
fn deinterleave_n<const N: usize>(pixels: &[u8], layout: &Layout) -> Vec<u8> {
    let bands = layout.bands;
    let count = pixels.len() / (N * bands);
    let mut out = Vec::with_capacity(count * N * bands);
    let spare = &mut out.spare_capacity_mut()[..count * N * bands];
    for (b, plane) in spare.chunks_exact_mut(count * N).enumerate() {
        for (dst, px) in plane.chunks_exact_mut(N).zip(pixels.chunks_exact(N * bands)) {
            for (d, &v) in dst.iter_mut().zip(&px[b * N..(b + 1) * N]) {
                d.write(v);
            }
        }
    }
    // SAFETY: `bands` planes of `count` samples of N bytes: the loops above wrote each of the
    // `count * N * bands` bytes once (`pixels` holds exactly `count` whole pixels per zip).
    unsafe { out.set_len(count * N * bands) };
    out
}

/// The default decoders, built once (a registry is a map of boxed decoders).
static REGISTRY: LazyLock<DecoderRegistry> = LazyLock::new(DecoderRegistry::default);

/// Any codec async-tiff knows (LZW, ZSTD, JPEG, floating-point predictor).
fn via_registry(tile: Tile, layout: &Layout) -> Result<Vec<u8>, AsyncTiffError> {
    let array = tile.decode(&REGISTRY)?;
    let shape = array.shape();
    let (tw, th, bands) = (layout.tile_width, layout.tile_height, layout.bands);
    let planar = match shape {
        [h, w, b] if h == th && w == tw && b == bands => bands == 1,
        [b, h, w] if h == th && w == tw && b == bands => true,
        other => {
            return Err(general(format!("decoded tile has shape {other:?}, expected {th}x{tw}x{bands}")));
        }
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
        TypedArray::UInt64(v) => cast_slice(&v).to_vec(),
        TypedArray::Int64(v) => cast_slice(&v).to_vec(),
        TypedArray::Bool(_) => return Err(general("1-bit samples".into())),
    };
    if bytes.len() != layout.plane_bytes() * bands {
        return Err(general(format!(
            "decoded tile has {} bytes, expected {}",
            bytes.len(),
            layout.plane_bytes() * bands
        )));
    }
    if planar {
        return Ok(bytes);
    }
    Ok(deinterleave(&bytes, layout))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(bands: usize, sample_bytes: usize, predictor: Predictor, native: bool) -> Layout {
        Layout { tile_width: 3, tile_height: 2, bands, sample_bytes, predictor, compression: Compression::None, native }
    }

    #[test]
    fn horizontal_differencing_is_undone_per_row_and_sample() {
        // Two rows of three RGB-like 16-bit pixels, differenced per sample: the decoded row
        // is the running sum of each band, wrapping at 16 bits.
        let diffs: [u16; 18] = [1, 10, 100, 1, 10, 100, 1, 10, 65535, 5, 6, 7, 0, 0, 0, 1, 1, 1];
        let mut buf: Vec<u8> = diffs.iter().flat_map(|v| v.to_ne_bytes()).collect();
        unpredict(&mut buf, &layout(3, 2, Predictor::Horizontal, true), 3);
        let got: Vec<u16> = buf.chunks_exact(2).map(|c| u16::from_ne_bytes([c[0], c[1]])).collect();
        assert_eq!(got, vec![1, 10, 100, 2, 20, 200, 3, 30, 199, 5, 6, 7, 5, 6, 7, 6, 7, 8]);
    }

    #[test]
    fn foreign_byte_order_is_swapped() {
        let mut buf: Vec<u8> = [0x0102u16, 0x0304].iter().flat_map(|v| v.swap_bytes().to_ne_bytes()).collect();
        let l = Layout { tile_width: 2, tile_height: 1, ..layout(1, 2, Predictor::None, false) };
        unpredict(&mut buf, &l, 1);
        assert_eq!(buf, [0x0102u16, 0x0304].iter().flat_map(|v| v.to_ne_bytes()).collect::<Vec<_>>());
    }

    #[test]
    fn interleaved_pixels_become_band_planes() {
        let l = layout(3, 2, Predictor::None, true);
        let pixels: Vec<u8> = (0u16..18).flat_map(|v| v.to_ne_bytes()).collect();
        let out = deinterleave(&pixels, &l);
        assert_eq!(out.len(), pixels.len());
        let got: Vec<u16> = out.chunks_exact(2).map(|c| u16::from_ne_bytes([c[0], c[1]])).collect();
        assert_eq!(got, vec![0, 3, 6, 9, 12, 15, 1, 4, 7, 10, 13, 16, 2, 5, 8, 11, 14, 17]);
    }

    #[test]
    fn short_or_corrupt_deflate_is_an_error() {
        let mut out = Vec::new();
        assert!(inflate_append(b"not zlib", &mut out, 16, Compression::Deflate).is_err());
        assert!(inflate_append(&[1, 2, 3], &mut out, 16, Compression::None).is_err());
        assert!(out.is_empty());
    }
}

//! zlib streams inflated by libdeflate straight into the spare capacity of a `Vec`.
//!
//! A decoded tile is written whole by the inflater, so zero-filling its buffer first (as a safe
//! `&mut [u8]` requires) is wasted work: the `memset` and the page faults behind it were about a
//! tenth of the decode benchmark's time at 2 threads.

use std::cell::RefCell;
use std::ptr::NonNull;

use libdeflate_sys::{
    libdeflate_alloc_decompressor, libdeflate_decompressor, libdeflate_free_decompressor,
    libdeflate_result_LIBDEFLATE_BAD_DATA, libdeflate_result_LIBDEFLATE_INSUFFICIENT_SPACE,
    libdeflate_result_LIBDEFLATE_SUCCESS, libdeflate_zlib_decompress,
};

/// libdeflate's decompressor: a few kB of tables, so one per thread rather than one per tile.
struct Decompressor(NonNull<libdeflate_decompressor>);

impl Decompressor {
    fn new() -> Option<Self> {
        // SAFETY: no arguments; a null return (out of memory) is checked.
        NonNull::new(unsafe { libdeflate_alloc_decompressor() }).map(Self)
    }
}

impl Drop for Decompressor {
    fn drop(&mut self) {
        // SAFETY: allocated by libdeflate_alloc_decompressor and freed once, here.
        unsafe { libdeflate_free_decompressor(self.0.as_ptr()) }
    }
}

thread_local! {
    static DECOMPRESSOR: RefCell<Option<Decompressor>> = const { RefCell::new(None) };
}

/// Inflates the zlib stream `input`, which must hold exactly `len` bytes, onto the end of `out`.
/// On error `out` is unchanged; the message says what was wrong with the stream.
pub(crate) fn zlib_append(input: &[u8], out: &mut Vec<u8>, len: usize) -> Result<(), String> {
    out.reserve_exact(len);
    DECOMPRESSOR.with_borrow_mut(|slot| {
        let d = match slot {
            Some(d) => d,
            None => slot.insert(Decompressor::new().ok_or("libdeflate could not allocate a decompressor")?),
        };
        let mut produced = 0usize;
        // SAFETY: `input` is valid for `input.len()` bytes; the destination is the `len` bytes of
        // spare capacity reserved above, which libdeflate only writes; `produced` is the number
        // of bytes it wrote, and only those are made part of `out`.
        let result = unsafe {
            libdeflate_zlib_decompress(
                d.0.as_ptr(),
                input.as_ptr().cast(),
                input.len(),
                out.as_mut_ptr().add(out.len()).cast(),
                len,
                &mut produced,
            )
        };
        match result {
            r if r == libdeflate_result_LIBDEFLATE_SUCCESS && produced == len => {
                // SAFETY: libdeflate initialised `produced` (== len) bytes past the old length.
                unsafe { out.set_len(out.len() + len) };
                Ok(())
            }
            r if r == libdeflate_result_LIBDEFLATE_SUCCESS => {
                Err(format!("DEFLATE stream ends after {produced} of {len} bytes"))
            }
            r if r == libdeflate_result_LIBDEFLATE_BAD_DATA => Err(format!("DEFLATE stream: invalid data (tile of {len} bytes)")),
            r if r == libdeflate_result_LIBDEFLATE_INSUFFICIENT_SPACE => {
                Err(format!("DEFLATE stream holds more than the tile's {len} bytes"))
            }
            r => Err(format!("DEFLATE stream: libdeflate error {r} (tile of {len} bytes)")),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A zlib stream of `data` (stored blocks: no compressor needed in the tests).
    fn zlib_stored(data: &[u8]) -> Vec<u8> {
        let mut z = vec![0x78, 0x01];
        let chunks: Vec<&[u8]> = data.chunks(65_535).collect();
        for (i, c) in chunks.iter().enumerate() {
            z.push(u8::from(i + 1 == chunks.len()));
            let n = c.len() as u16;
            z.extend_from_slice(&n.to_le_bytes());
            z.extend_from_slice(&(!n).to_le_bytes());
            z.extend_from_slice(c);
        }
        let (mut a, mut b) = (1u32, 0u32);
        for &x in data {
            a = (a + u32::from(x)) % 65_521;
            b = (b + a) % 65_521;
        }
        z.extend_from_slice(&((b << 16) | a).to_be_bytes());
        z
    }

    #[test]
    fn appends_exactly_the_stream_and_keeps_what_was_there() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let z = zlib_stored(&data);
        let mut out = vec![9, 9];
        zlib_append(&z, &mut out, data.len()).expect("inflate");
        assert_eq!(out.len(), data.len() + 2);
        assert_eq!(&out[..2], &[9, 9]);
        assert_eq!(&out[2..], &data[..]);
    }

    #[test]
    fn a_stream_of_another_length_or_corrupt_is_an_error_and_leaves_out_unchanged() {
        let data = vec![5u8; 1000];
        let z = zlib_stored(&data);
        let mut out = vec![1];
        let short = zlib_append(&z, &mut out, 2000).expect_err("short");
        assert!(short.contains("ends after 1000 of 2000"), "{short}");
        let long = zlib_append(&z, &mut out, 10).expect_err("long");
        assert!(long.contains("more than"), "{long}");
        let mut bad = z.clone();
        bad[3] ^= 0xff; // the stored block's length no longer matches its complement
        let corrupt = zlib_append(&bad, &mut out, 1000).expect_err("corrupt");
        assert!(corrupt.contains("invalid data"), "{corrupt}");
        assert_eq!(out, vec![1]);
    }
}

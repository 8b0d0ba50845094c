//! A walk over a TIFF's IFD chain before the TIFF parser sees it. The parser trusts the file:
//! it allocates room for as many values as a tag claims (2^32 in a damaged file: an allocation
//! failure aborts the process, which no `catch_unwind` stops), takes the IFD count of a BigTIFF
//! as given, and follows `next IFD` offsets until one is zero (a cycle never ends). Here each
//! of those is bounded first and a file past the bounds is an error naming what is wrong. The
//! bytes read here are the ones the parser reads next, through the same metadata cache.

use std::collections::HashSet;

use async_tiff::metadata::MetadataFetch;

use crate::CogError;

/// Most values one tag may claim: 2^24, e.g. the tile index of a 16-million-tile band (over
/// a million pixels on a side at 256-pixel tiles); real COGs stay far below.
pub(crate) const MAX_TAG_VALUES: u64 = 1 << 24;
/// Most entries in one IFD (classic TIFF allows 65,535; real files have a few dozen).
pub(crate) const MAX_IFD_ENTRIES: u64 = 4096;
/// Most IFDs in a file: the full image, its overviews and their masks (a COG of a 100,000-pixel
/// image has about 20).
pub(crate) const MAX_IFDS: usize = 1024;

/// Bytes per value of TIFF field type `t` (TIFF 6.0 and BigTIFF); `None` for unknown types.
fn type_size(t: u16) -> Option<u64> {
    Some(match t {
        1 | 2 | 6 | 7 => 1,
        3 | 8 => 2,
        4 | 9 | 11 | 13 => 4,
        5 | 10 | 12 | 16 | 17 | 18 => 8,
        _ => return None,
    })
}

struct Order {
    little: bool,
}

impl Order {
    fn u16(&self, b: &[u8]) -> u16 {
        let a = [b[0], b[1]];
        if self.little {
            u16::from_le_bytes(a)
        } else {
            u16::from_be_bytes(a)
        }
    }
    fn u32(&self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        if self.little {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    }
    fn u64(&self, b: &[u8]) -> u64 {
        let a = [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]];
        if self.little {
            u64::from_le_bytes(a)
        } else {
            u64::from_be_bytes(a)
        }
    }
}

fn malformed(msg: String) -> CogError {
    CogError::Malformed(msg)
}

async fn read<F: MetadataFetch>(
    fetch: &F,
    start: u64,
    len: u64,
    what: &str,
) -> Result<bytes::Bytes, CogError> {
    let end = start
        .checked_add(len)
        .ok_or_else(|| malformed(format!("{what} at byte {start} runs past 2^64")))?;
    // A failed read is the store's error (a missing file, a server that ignores Range), as
    // when the parser reads the same bytes; only what the bytes say is judged here.
    let b = fetch.fetch(start..end).await?;
    if (b.len() as u64) < len {
        return Err(malformed(format!(
            "{what} (bytes {start}..{end}): file ends after {} bytes",
            b.len()
        )));
    }
    Ok(b)
}

/// Checks the header and every IFD of the file behind `fetch` against the bounds above.
pub(crate) async fn check_ifd_chain<F: MetadataFetch>(fetch: &F) -> Result<(), CogError> {
    let head = read(fetch, 0, 8, "TIFF header").await?;
    let order = match &head[..2] {
        b"II" => Order { little: true },
        b"MM" => Order { little: false },
        other => {
            return Err(malformed(format!(
                "not a TIFF: starts with bytes {other:02x?}"
            )));
        }
    };
    let big = match order.u16(&head[2..4]) {
        42 => false,
        43 => true,
        v => {
            return Err(malformed(format!(
                "not a TIFF: version {v} (42 or 43 for BigTIFF)"
            )));
        }
    };
    let mut next = if big {
        order.u64(&read(fetch, 8, 8, "BigTIFF header").await?)
    } else {
        u64::from(order.u32(&head[4..8]))
    };
    let (count_len, entry_len, offset_len) = if big { (8, 20, 8) } else { (2, 12, 4) };
    let mut seen = HashSet::new();
    while next != 0 {
        let at = next;
        if !seen.insert(at) {
            return Err(malformed(format!("IFD chain loops back to byte {at}")));
        }
        if seen.len() > MAX_IFDS {
            return Err(malformed(format!("more than {MAX_IFDS} IFDs")));
        }
        let n = read(fetch, at, count_len, "IFD entry count").await?;
        let entries = if big {
            order.u64(&n)
        } else {
            u64::from(order.u16(&n))
        };
        if entries > MAX_IFD_ENTRIES {
            return Err(malformed(format!(
                "IFD at byte {at} claims {entries} entries (at most {MAX_IFD_ENTRIES})"
            )));
        }
        let body = read(
            fetch,
            at + count_len,
            entries * entry_len + offset_len,
            "IFD entries",
        )
        .await?;
        for e in body[..(entries * entry_len) as usize].chunks_exact(entry_len as usize) {
            let (tag, typ) = (order.u16(&e[0..2]), order.u16(&e[2..4]));
            let count = if big {
                order.u64(&e[4..12])
            } else {
                u64::from(order.u32(&e[4..8]))
            };
            if type_size(typ).is_some() && count > MAX_TAG_VALUES {
                return Err(malformed(format!(
                    "IFD at byte {at}: tag {tag} claims {count} values (at most {MAX_TAG_VALUES})"
                )));
            }
        }
        let tail = &body[(entries * entry_len) as usize..];
        next = if big {
            order.u64(tail)
        } else {
            u64::from(order.u32(tail))
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_tiff::error::AsyncTiffResult;
    use bytes::Bytes;
    use std::ops::Range;

    #[derive(Debug)]
    struct Mem(Bytes);

    #[async_trait::async_trait]
    impl MetadataFetch for Mem {
        async fn fetch(&self, range: Range<u64>) -> AsyncTiffResult<Bytes> {
            let len = self.0.len() as u64;
            Ok(self
                .0
                .slice(range.start.min(len) as usize..range.end.min(len) as usize))
        }
    }

    /// A little-endian classic TIFF with one IFD at byte 8 holding `entries`
    /// (tag, type, count, value) and `next` as its next-IFD offset.
    fn tiff(entries: &[(u16, u16, u32, u32)], next: u32) -> Bytes {
        let mut b = b"II*\0\x08\0\0\0".to_vec();
        b.extend((entries.len() as u16).to_le_bytes());
        for &(tag, typ, count, value) in entries {
            b.extend(tag.to_le_bytes());
            b.extend(typ.to_le_bytes());
            b.extend(count.to_le_bytes());
            b.extend(value.to_le_bytes());
        }
        b.extend(next.to_le_bytes());
        Bytes::from(b)
    }

    fn check(b: Bytes) -> Result<(), String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(check_ifd_chain(&Mem(b)))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn sane_files_pass_and_damage_is_named() {
        assert_eq!(check(tiff(&[(256, 3, 1, 64), (257, 3, 1, 64)], 0)), Ok(()));
        // The count the fuzzer found: 2^32 - 1 values of a tag, 137 GB of parser memory.
        let err = check(tiff(&[(256, 3, 1, 64), (273, 4, u32::MAX, 100)], 0)).expect_err("refused");
        assert!(err.contains("tag 273 claims 4294967295 values"), "{err}");
        let err = check(tiff(&[(256, 3, 1, 64)], 8)).expect_err("refused");
        assert!(err.contains("loops back to byte 8"), "{err}");
        let err = check(tiff(&[(256, 3, 1, 64)], 4000)).expect_err("refused");
        assert!(err.contains("file ends"), "{err}");
        let err = check(Bytes::from_static(b"GIF89a\0\0\0\0")).expect_err("refused");
        assert!(err.contains("not a TIFF"), "{err}");
        // A BigTIFF claiming 2^40 IFD entries.
        let mut big = b"II+\0\x08\0\0\0\x10\0\0\0\0\0\0\0".to_vec();
        big.extend((1u64 << 40).to_le_bytes());
        let err = check(Bytes::from(big)).expect_err("refused");
        assert!(err.contains("claims 1099511627776 entries"), "{err}");
    }
}

//! Byte-range reads for the TIFF reader, checked against what the server said it sent. A server
//! (or a proxy) that announces `Content-Range: bytes a-b` and then sends fewer bytes, with a
//! `Content-Length` to match, ends the body cleanly: neither the HTTP client nor object_store
//! notices, and the tile decoder gets a truncated tile. Such a short body is a transport fault
//! like a reset connection, so it is retried with the store's backoff and, if it persists, is an
//! error naming the byte range.

use std::ops::Range;
use std::sync::Arc;

use async_tiff::error::{AsyncTiffError, AsyncTiffResult};
use async_tiff::reader::AsyncFileReader;
use async_trait::async_trait;
use bytes::Bytes;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, OBJECT_STORE_COALESCE_DEFAULT, ObjectStore};

use crate::store::Stores;

/// Reads byte ranges of one object (what async-tiff's `ObjectReader` does, plus the length check).
#[derive(Debug)]
pub(crate) struct RangeReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
}

impl RangeReader {
    pub(crate) fn new(store: Arc<dyn ObjectStore>, path: Path) -> Self {
        Self { store, path }
    }

    /// `range`, or as much of it as the object has (a range past the end is cut there, as for
    /// `get_range`); retried while fewer bytes arrive than the response announced.
    async fn read(&self, range: Range<u64>) -> object_store::Result<Bytes> {
        let network = Stores::global().options();
        let mut attempt = 0;
        loop {
            let options = GetOptions {
                range: Some(GetRange::Bounded(range.clone())),
                ..Default::default()
            };
            let result = self.store.get_opts(&self.path, options).await?;
            let announced = result.range.end - result.range.start;
            let bytes = result.bytes().await?;
            if bytes.len() as u64 == announced {
                return Ok(bytes);
            }
            if attempt >= network.max_retries {
                return Err(object_store::Error::Generic {
                    store: "terrastream",
                    source: format!(
                        "{}: bytes {}..{}: {} of the {announced} announced bytes arrived, after {attempt} retries",
                        self.path,
                        range.start,
                        range.end,
                        bytes.len()
                    )
                    .into(),
                });
            }
            attempt += 1;
            let backoff = network.backoff(attempt);
            tracing::warn!(path = %self.path, ?range, got = bytes.len(), announced, attempt, "short body, retrying");
            tokio::time::sleep(backoff).await;
        }
    }
}

#[async_trait]
impl AsyncFileReader for RangeReader {
    async fn get_bytes(&self, range: Range<u64>) -> AsyncTiffResult<Bytes> {
        self.read(range).await.map_err(AsyncTiffError::from)
    }

    async fn get_byte_ranges(&self, ranges: Vec<Range<u64>>) -> AsyncTiffResult<Vec<Bytes>> {
        // Nearby ranges in one request, as object_store's own `get_ranges` does; its slicing
        // panics when a fetch comes back short (a truncated file), so this one checks.
        let merged = merge(&ranges, OBJECT_STORE_COALESCE_DEFAULT);
        let fetched =
            futures::future::try_join_all(merged.iter().map(|r| self.read(r.clone()))).await?;
        ranges
            .iter()
            .map(|r| {
                let i = merged.partition_point(|m| m.start <= r.start) - 1;
                let (start, end) = (
                    (r.start - merged[i].start) as usize,
                    (r.end - merged[i].start) as usize,
                );
                if end > fetched[i].len() {
                    return Err(AsyncTiffError::General(format!(
                        "bytes {}..{}: the file ends at byte {}",
                        r.start,
                        r.end,
                        merged[i].start + fetched[i].len() as u64
                    )));
                }
                Ok(fetched[i].slice(start..end))
            })
            .collect()
    }
}

/// Sorted ranges covering `ranges`, those less than `gap` bytes apart merged.
fn merge(ranges: &[Range<u64>], gap: u64) -> Vec<Range<u64>> {
    let mut sorted = ranges.to_vec();
    sorted.sort_unstable_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::with_capacity(sorted.len());
    for r in sorted {
        match out.last_mut() {
            Some(last) if r.start <= last.end.saturating_add(gap) => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_keeps_every_range_inside_one_fetch() {
        let ranges = [10..20, 0..5, 4_000_000..4_000_010, 30..1_000, 19..25];
        let merged = merge(&ranges, 4);
        assert_eq!(merged, vec![0..5, 10..25, 30..1_000, 4_000_000..4_000_010]);
        for r in &ranges {
            assert!(
                merged.iter().any(|m| m.start <= r.start && r.end <= m.end),
                "{r:?}"
            );
        }
    }
}

//! Rows of a fixed-size list column (an embedding) read straight from its PLAIN data pages.
//!
//! A `FixedSizeList<Float32>` column is stored as a Parquet LIST whose leaf carries one
//! repetition and one definition level per float. The Arrow reader decodes all of those levels
//! and rebuilds validity from them, which costs more than the floats themselves. When every
//! list is required and full, the levels say nothing the schema does not: each row is `size`
//! consecutive values. So for a row we find its page through the offset index, skip the level
//! bytes in one step, and copy `size` values out of the page.
//!
//! [`ListLeaf::find`] says whether a file's column qualifies (and why not); what it checks
//! once per file, [`PageCursor`] checks again on each page it reads, so a file that lies in
//! its metadata gives an error naming the file, row group and page, never wrong rows.

use std::io::Cursor;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::{ArrayRef, FixedSizeListArray, Float32Array, Float64Array};
use datafusion::arrow::buffer::{Buffer, MutableBuffer, ScalarBuffer};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{DataFusionError, Result};
use datafusion::parquet::arrow::parquet_to_arrow_schema;
use datafusion::parquet::basic::{Encoding, Type as PhysicalType};
use datafusion::parquet::column::page::{Page, PageReader};
use datafusion::parquet::file::metadata::ParquetMetaData;
use datafusion::parquet::file::page_index::offset_index::PageLocation;
use datafusion::parquet::file::reader::{ChunkReader, Length};
use datafusion::parquet::file::serialized_reader::SerializedPageReader;
use datafusion::physical_plan::metrics::Count;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

/// A file's leaf column that holds a fixed-size list, readable page by page.
#[derive(Debug, Clone)]
pub struct ListLeaf {
    /// The list field (its item type and size).
    pub field: FieldRef,
    /// The leaf's index among the file's Parquet columns.
    pub leaf: usize,
    /// Values per row.
    pub size: usize,
    /// Bytes per value (4 for FLOAT, 8 for DOUBLE).
    pub width: usize,
}

impl ListLeaf {
    /// `field` (a non-null `FixedSizeList` of non-null Float32 or Float64) in the file `meta`
    /// describes, if every row group stores it PLAIN, without a dictionary, with an offset
    /// index; otherwise why not.
    pub fn find(meta: &ParquetMetaData, field: &FieldRef) -> std::result::Result<Self, String> {
        let DataType::FixedSizeList(item, size) = field.data_type() else {
            return Err("not a fixed-size list".into());
        };
        let (physical, width) = match item.data_type() {
            DataType::Float32 => (PhysicalType::FLOAT, 4),
            DataType::Float64 => (PhysicalType::DOUBLE, 8),
            other => return Err(format!("items are {other}, not Float32 or Float64")),
        };
        if field.is_nullable() || item.is_nullable() {
            return Err("nullable lists or items".into());
        }
        let size = usize::try_from(*size).ok().filter(|s| *s > 0).ok_or("empty lists")?;
        let schema = meta.file_metadata().schema_descr();
        // The file's own Arrow type: a plain LIST of the same width would let rows differ in length.
        let arrow = parquet_to_arrow_schema(schema, meta.file_metadata().key_value_metadata())
            .map_err(|e| format!("no Arrow schema: {e}"))?;
        match arrow.field_with_name(field.name()).map(Field::data_type) {
            Ok(DataType::FixedSizeList(i, n)) if *n as usize == size && i.data_type() == item.data_type() => {}
            Ok(other) => return Err(format!("the file stores it as {other}")),
            Err(_) => return Err("not in the file".into()),
        }
        let leaves: Vec<usize> = (0..schema.num_columns())
            .filter(|&i| schema.column(i).path().parts().first() == Some(field.name()))
            .collect();
        let [leaf] = leaves[..] else {
            return Err(format!("{} leaf columns", leaves.len()));
        };
        let column = schema.column(leaf);
        if column.physical_type() != physical || column.max_def_level() != 1 || column.max_rep_level() != 1 {
            return Err(format!(
                "leaf {:?} with levels def {} rep {}",
                column.physical_type(),
                column.max_def_level(),
                column.max_rep_level()
            ));
        }
        let offsets = meta.offset_index().ok_or("no offset index")?;
        for (i, rg) in meta.row_groups().iter().enumerate() {
            let chunk = rg.column(leaf);
            if chunk.dictionary_page_offset().is_some() {
                return Err(format!("row group {i} has a dictionary"));
            }
            if let Some(e) = chunk
                .encodings()
                .find(|e| !matches!(e, Encoding::PLAIN | Encoding::RLE))
            {
                return Err(format!("row group {i} uses {e:?}"));
            }
            if offsets
                .get(i)
                .and_then(|o| o.get(leaf))
                .is_none_or(|o| o.page_locations().is_empty())
            {
                return Err(format!("row group {i} has no offset index"));
            }
        }
        Ok(Self {
            field: Arc::clone(field),
            leaf,
            size,
            width,
        })
    }
}

/// One page's bytes, addressed by file offset, as the page reader asks for them.
struct PageBytes {
    start: u64,
    bytes: Bytes,
}

impl Length for PageBytes {
    fn len(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }
}

impl ChunkReader for PageBytes {
    type T = Cursor<Bytes>;

    fn get_read(&self, start: u64) -> datafusion::parquet::errors::Result<Self::T> {
        let rest = self.len().saturating_sub(start) as usize;
        Ok(Cursor::new(self.get_bytes(start, rest)?))
    }

    fn get_bytes(&self, start: u64, length: usize) -> datafusion::parquet::errors::Result<Bytes> {
        let from = start.checked_sub(self.start).map(|o| o as usize);
        match from {
            Some(from) if from + length <= self.bytes.len() => Ok(self.bytes.slice(from..from + length)),
            _ => Err(datafusion::parquet::errors::ParquetError::General(format!(
                "bytes {start}..{} outside the page read at {}..{}",
                start + length as u64,
                self.start,
                self.len()
            ))),
        }
    }
}

/// Pages and bytes a [`PageCursor`] read (for `EXPLAIN ANALYZE`).
#[derive(Debug, Clone, Default)]
pub struct ReadCounters {
    /// Data pages decoded.
    pub pages: Count,
    /// Bytes fetched from the store.
    pub bytes: Count,
}

/// The decoded values of one page and the file rows they belong to.
struct LoadedPage {
    rows: Range<u64>,
    values: Bytes,
}

/// Reads rows of one [`ListLeaf`] of one file, keeping the pages of its last read (consecutive
/// batches of a scan mostly ask for rows of the same pages).
pub struct PageCursor {
    store: Arc<dyn ObjectStore>,
    location: ObjectPath,
    meta: Arc<ParquetMetaData>,
    leaf: ListLeaf,
    /// The file row of each row group's first row, then the file's row count.
    starts: Vec<u64>,
    /// The pages of the last read, in order.
    loaded: Vec<LoadedPage>,
    /// The page in `loaded` that answered last.
    current: usize,
    /// `(row group, page)` just after the last read: asking for it next means the scan walks
    /// the pages in order, and the next read takes several.
    next: Option<(usize, usize)>,
    counters: ReadCounters,
}

/// At most this many bytes of consecutive pages per read once a scan walks a column in order:
/// a few requests per row group on object stores rather than one per page.
const READ_AHEAD: u64 = 4 << 20;

impl PageCursor {
    /// A cursor over `leaf` of the file at `location` described by `meta`.
    pub fn new(store: Arc<dyn ObjectStore>, location: ObjectPath, meta: Arc<ParquetMetaData>, leaf: ListLeaf) -> Self {
        let mut starts = Vec::with_capacity(meta.num_row_groups() + 1);
        let mut at = 0u64;
        for rg in meta.row_groups() {
            starts.push(at);
            at += rg.num_rows().max(0) as u64;
        }
        starts.push(at);
        Self {
            store,
            location,
            meta,
            leaf,
            starts,
            loaded: Vec::new(),
            current: 0,
            next: None,
            counters: ReadCounters::default(),
        }
    }

    /// Counts what it reads into `counters`.
    pub fn with_counters(mut self, counters: ReadCounters) -> Self {
        self.counters = counters;
        self
    }

    fn error(&self, what: String) -> DataFusionError {
        DataFusionError::Execution(format!("{}: column {}: {what}", self.location, self.leaf.field.name()))
    }

    /// The lists of file rows `rows` (zero-based, any order), as a `FixedSizeList` array.
    pub async fn take(&mut self, rows: impl IntoIterator<Item = i64>) -> Result<ArrayRef> {
        let row_bytes = self.leaf.size * self.leaf.width;
        let rows = rows.into_iter();
        let mut out = MutableBuffer::new(rows.size_hint().0 * row_bytes);
        let mut count = 0usize;
        for row in rows {
            let row = u64::try_from(row).map_err(|_| self.error(format!("row number {row}")))?;
            if !self.loaded.get(self.current).is_some_and(|p| p.rows.contains(&row)) {
                match self.loaded.iter().position(|p| p.rows.contains(&row)) {
                    Some(i) => self.current = i,
                    None => self.load(row).await?,
                }
            }
            let page = self
                .loaded
                .get(self.current)
                .ok_or_else(|| self.error(format!("row {row} not loaded")))?;
            let at = (row - page.rows.start) as usize * row_bytes;
            out.extend_from_slice(&page.values[at..at + row_bytes]);
            count += 1;
        }
        let values: Buffer = out.into();
        let values: ArrayRef = match self.leaf.width {
            4 => Arc::new(Float32Array::new(
                ScalarBuffer::new(values, 0, count * self.leaf.size),
                None,
            )),
            _ => Arc::new(Float64Array::new(
                ScalarBuffer::new(values, 0, count * self.leaf.size),
                None,
            )),
        };
        let DataType::FixedSizeList(item, size) = self.leaf.field.data_type() else {
            return Err(self.error("not a fixed-size list".into()));
        };
        Ok(Arc::new(FixedSizeListArray::try_new(
            Arc::clone(item),
            *size,
            values,
            None,
        )?))
    }

    /// Reads and checks the page holding file row `row`.
    async fn load(&mut self, row: u64) -> Result<()> {
        let rg = self.starts.partition_point(|&s| s <= row).saturating_sub(1);
        if rg >= self.meta.num_row_groups() {
            return Err(self.error(format!("row {row} past the file's {} rows", self.starts[rg])));
        }
        let (rg_start, rg_rows) = (self.starts[rg], self.starts[rg + 1] - self.starts[rg]);
        let locations: &[PageLocation] = self
            .meta
            .offset_index()
            .and_then(|o| o.get(rg))
            .and_then(|o| o.get(self.leaf.leaf))
            .map(|o| o.page_locations().as_slice())
            .ok_or_else(|| self.error(format!("row group {rg}: no offset index")))?;
        let in_rg = row - rg_start;
        let page = locations
            .partition_point(|l| l.first_row_index as u64 <= in_rg)
            .saturating_sub(1);
        let size = |p: usize| locations[p].compressed_page_size.max(0) as u64;
        let start = locations[page].offset as u64;
        let mut last = page;
        if self.next == Some((rg, page)) {
            while last + 1 < locations.len() && locations[last + 1].offset as u64 + size(last + 1) - start <= READ_AHEAD
            {
                last += 1;
            }
        }
        let range = start..locations[last].offset as u64 + size(last);
        let bytes = self
            .store
            .get_range(&self.location, range.clone())
            .await
            .map_err(|e| self.error(format!("row group {rg} pages {page}..={last}: bytes {range:?}: {e}")))?;
        self.counters.bytes.add(bytes.len());
        self.counters.pages.add(last - page + 1);
        let chunk = PageBytes {
            start: range.start,
            bytes,
        };
        let column = self.meta.row_group(rg).column(self.leaf.leaf);
        let mut reader =
            SerializedPageReader::new(Arc::new(chunk), column, rg_rows as usize, Some(locations.to_vec()))?;
        for _ in 0..page {
            reader.skip_next_page()?;
        }
        let mut loaded = Vec::with_capacity(last - page + 1);
        for p in page..=last {
            let first = locations[p].first_row_index as u64;
            let end = locations.get(p + 1).map_or(rg_rows, |l| l.first_row_index as u64);
            let values = self.decode(reader.get_next_page()?, rg, p, end - first)?;
            loaded.push(LoadedPage {
                rows: rg_start + first..rg_start + end,
                values,
            });
        }
        self.loaded = loaded;
        self.current = 0;
        self.next = Some(if last + 1 < locations.len() {
            (rg, last + 1)
        } else {
            (rg + 1, 0)
        });
        Ok(())
    }

    /// The value bytes of `page` (page `p` of row group `rg`, `rows` rows), checked.
    fn decode(&self, page: Option<Page>, rg: usize, p: usize, rows: u64) -> Result<Bytes> {
        let at = |what: String| self.error(format!("row group {rg} page {p}: {what}"));
        let (buf, num_values, encoding, levels) = match page {
            Some(Page::DataPage {
                buf,
                num_values,
                encoding,
                def_level_encoding,
                rep_level_encoding,
                ..
            }) => {
                if def_level_encoding != Encoding::RLE || rep_level_encoding != Encoding::RLE {
                    return Err(at(format!("levels in {rep_level_encoding:?}/{def_level_encoding:?}")));
                }
                // v1: repetition then definition levels, each a 4-byte length and its bytes.
                let mut skip = 0usize;
                for _ in 0..2 {
                    let len = buf
                        .get(skip..skip + 4)
                        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                        .ok_or_else(|| at("levels cut short".into()))?;
                    skip += 4 + len;
                }
                (buf, num_values, encoding, skip)
            }
            Some(Page::DataPageV2 {
                buf,
                num_values,
                encoding,
                num_nulls,
                num_rows,
                def_levels_byte_len,
                rep_levels_byte_len,
                ..
            }) => {
                if num_nulls != 0 || u64::from(num_rows) != rows {
                    return Err(at(format!("{num_nulls} nulls in {num_rows} rows, expected {rows}")));
                }
                (
                    buf,
                    num_values,
                    encoding,
                    (def_levels_byte_len + rep_levels_byte_len) as usize,
                )
            }
            Some(other) => return Err(at(format!("a {:?} page where a data page belongs", other.page_type()))),
            None => return Err(at("missing".into())),
        };
        if encoding != Encoding::PLAIN {
            return Err(at(format!("values in {encoding:?}, not PLAIN")));
        }
        let expected = rows as usize * self.leaf.size;
        let values = buf.slice(levels.min(buf.len())..);
        // Every row full: as many values as rows x size, all present (nulls take no bytes).
        if num_values as usize != expected || values.len() != expected * self.leaf.width {
            return Err(at(format!(
                "{num_values} values in {} bytes for {rows} rows of {}",
                values.len(),
                self.leaf.size
            )));
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, Int32Array, RecordBatch};
    use datafusion::arrow::datatypes::Schema;
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::basic::{Compression, ZstdLevel};
    use datafusion::parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataReader};
    use datafusion::parquet::file::properties::{WriterProperties, WriterVersion};
    use object_store::memory::InMemory;

    const SIZE: usize = 6;
    const ROWS: usize = 1000;

    fn list_field() -> FieldRef {
        let item = Arc::new(Field::new("item", DataType::Float32, false));
        Arc::new(Field::new(
            "embedding",
            DataType::FixedSizeList(item, SIZE as i32),
            false,
        ))
    }

    /// A file of ROWS rows in row groups of 300 and pages of at most 64 rows; row r holds
    /// r * SIZE .. (r + 1) * SIZE halved.
    fn file(props: WriterProperties) -> Bytes {
        let field = list_field();
        let schema = Arc::new(Schema::new(vec![
            Arc::new(Field::new("id", DataType::Int32, false)),
            Arc::clone(&field),
        ]));
        let DataType::FixedSizeList(item, _) = field.data_type() else {
            unreachable!()
        };
        let values = Float32Array::from_iter_values((0..ROWS * SIZE).map(|i| i as f32 * 0.5));
        let lists = FixedSizeListArray::try_new(Arc::clone(item), SIZE as i32, Arc::new(values), None).expect("lists");
        let ids = Int32Array::from_iter_values(0..ROWS as i32);
        let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(ids), Arc::new(lists)]).expect("batch");
        let mut buf = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut buf, schema, Some(props)).expect("writer");
        writer.write(&batch).expect("write");
        writer.close().expect("close");
        Bytes::from(buf)
    }

    fn paged() -> datafusion::parquet::file::properties::WriterPropertiesBuilder {
        WriterProperties::builder()
            .set_max_row_group_row_count(Some(300))
            .set_data_page_row_count_limit(64)
            .set_write_batch_size(16)
    }

    async fn cursor(
        bytes: Bytes,
    ) -> (
        std::result::Result<ListLeaf, String>,
        Arc<ParquetMetaData>,
        Arc<dyn ObjectStore>,
    ) {
        let meta = ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Optional)
            .parse_and_finish(&bytes)
            .expect("metadata");
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        store
            .put(&ObjectPath::from("t/f.parquet"), bytes.into())
            .await
            .expect("put");
        let meta = Arc::new(meta);
        (ListLeaf::find(&meta, &list_field()), meta, store)
    }

    #[tokio::test]
    async fn rows_from_v1_and_compressed_v2_pages() {
        let v1 = paged().set_dictionary_enabled(false).build();
        let v2 = paged()
            .set_dictionary_enabled(false)
            .set_writer_version(WriterVersion::PARQUET_2_0)
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build();
        for props in [v1, v2] {
            let (leaf, meta, store) = cursor(file(props)).await;
            let leaf = leaf.expect("qualifies");
            assert!(
                meta.offset_index().expect("index")[0][1].page_locations().len() > 3,
                "several pages"
            );
            let mut cursor = PageCursor::new(store, ObjectPath::from("t/f.parquet"), meta, leaf);
            // Page and row-group edges, out of order, repeated.
            let rows = [0i64, 5, 63, 64, 299, 300, 999, 7, 998, 64];
            let got = cursor.take(rows).await.expect("take");
            let got = got.as_any().downcast_ref::<FixedSizeListArray>().expect("lists");
            assert_eq!(got.len(), rows.len());
            for (i, r) in rows.iter().enumerate() {
                let values = got.value(i);
                let values = values.as_any().downcast_ref::<Float32Array>().expect("f32");
                let want: Vec<f32> = (0..SIZE).map(|k| (*r as usize * SIZE + k) as f32 * 0.5).collect();
                assert_eq!(values.values().to_vec(), want, "row {r}");
            }
            // A walk through every row in batches: reads ahead, across row groups, same values.
            for batch in (0..ROWS as i64).collect::<Vec<_>>().chunks(100) {
                let got = cursor.take(batch.iter().copied()).await.expect("walk");
                let got = got.as_any().downcast_ref::<FixedSizeListArray>().expect("lists");
                let values = got.values().as_any().downcast_ref::<Float32Array>().expect("f32");
                let first = batch[0] as usize * SIZE;
                let want: Vec<f32> = (first..first + batch.len() * SIZE).map(|i| i as f32 * 0.5).collect();
                assert_eq!(values.values().to_vec(), want, "rows from {}", batch[0]);
            }
            assert!(cursor.loaded.len() > 1, "no read-ahead: {} page", cursor.loaded.len());
            let err = cursor.take([1000i64]).await.expect_err("past the end").to_string();
            assert!(err.contains("t/f.parquet") && err.contains("row 1000"), "{err}");
        }
    }

    #[tokio::test]
    async fn dictionaries_and_missing_offset_index_are_refused_with_a_reason() {
        let (leaf, ..) = cursor(file(paged().build())).await;
        assert!(leaf.expect_err("dictionary").contains("dictionary"));
        let no_index = paged()
            .set_dictionary_enabled(false)
            .set_offset_index_disabled(true)
            .set_statistics_enabled(datafusion::parquet::file::properties::EnabledStatistics::Chunk)
            .build();
        let (leaf, ..) = cursor(file(no_index)).await;
        assert!(leaf.expect_err("no index").contains("offset index"));
    }
}

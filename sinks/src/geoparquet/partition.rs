//! Where rows go and in which order: hive-style partitions by grid tile and date, and the
//! sort key `(grid_id, datetime, chip_row, chip_col)` of the rows within a file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use arrow_array::{Array, Int32Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt32Array};
use arrow_select::take::take_record_batch;
use terrastream_ingest::schema::{CHIP_COL, CHIP_ROW, DATETIME, GRID_ID};

use crate::{Error, Result};

/// Partition value of a null grid id (Hive's and DuckDB's convention).
pub const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// The sort key of one row; absent columns and nulls sort first.
pub type SortKey = (Option<String>, Option<i64>, Option<i32>, Option<i32>);

/// The key columns of a batch, those it has.
struct Keys<'a> {
    grid: Option<&'a StringArray>,
    datetime: Option<&'a TimestampMicrosecondArray>,
    row: Option<&'a Int32Array>,
    col: Option<&'a Int32Array>,
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str, what: &str) -> Result<Option<&'a T>> {
    match batch.column_by_name(name) {
        None => Ok(None),
        Some(c) => c.as_any().downcast_ref::<T>().map(Some).ok_or_else(|| Error::Column {
            sink: "geoparquet",
            column: name.into(),
            reason: format!("not {what}"),
        }),
    }
}

impl<'a> Keys<'a> {
    fn of(batch: &'a RecordBatch) -> Result<Self> {
        Ok(Self {
            grid: column(batch, GRID_ID, "Utf8")?,
            datetime: column(batch, DATETIME, "Timestamp(µs)")?,
            row: column(batch, CHIP_ROW, "Int32")?,
            col: column(batch, CHIP_COL, "Int32")?,
        })
    }

    fn key(&self, i: usize) -> (Option<&'a str>, Option<i64>, Option<i32>, Option<i32>) {
        (
            self.grid.filter(|a| a.is_valid(i)).map(|a| a.value(i)),
            self.datetime.filter(|a| a.is_valid(i)).map(|a| a.value(i)),
            self.row.filter(|a| a.is_valid(i)).map(|a| a.value(i)),
            self.col.filter(|a| a.is_valid(i)).map(|a| a.value(i)),
        )
    }
}

fn owned(k: (Option<&str>, Option<i64>, Option<i32>, Option<i32>)) -> SortKey {
    (k.0.map(str::to_string), k.1, k.2, k.3)
}

/// Sorts `batch` by the sort key (stable; returns it unchanged when already sorted) and
/// returns it with its first and last keys; `None` keys for an empty batch.
pub fn sort(batch: RecordBatch) -> Result<(RecordBatch, Option<(SortKey, SortKey)>)> {
    let n = batch.num_rows();
    if n == 0 {
        return Ok((batch, None));
    }
    let keys = Keys::of(&batch)?;
    let sorted = (1..n).all(|i| keys.key(i - 1) <= keys.key(i));
    let batch = if sorted {
        batch.clone()
    } else {
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_by(|&a, &b| keys.key(a as usize).cmp(&keys.key(b as usize)));
        take_record_batch(&batch, &UInt32Array::from(order))?
    };
    let keys = Keys::of(&batch)?;
    let range = (owned(keys.key(0)), owned(keys.key(n - 1)));
    Ok((batch, Some(range)))
}

/// Percent-encodes a partition value: letters, digits, `-`, `_`, `.` are kept.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The partition directory of a grid id and a UTC timestamp (µs): `grid_id=<g>/date=<d>`.
pub fn partition_dir(grid: Option<&str>, datetime_us: i64) -> Result<PathBuf> {
    let date = chrono::DateTime::from_timestamp_micros(datetime_us)
        .ok_or_else(|| Error::Column {
            sink: "geoparquet",
            column: DATETIME.into(),
            reason: format!("{datetime_us} µs is out of range"),
        })?
        .format("%Y-%m-%d")
        .to_string();
    let grid = grid.map_or_else(|| NULL_PARTITION.to_string(), escape);
    Ok(PathBuf::from(format!("grid_id={grid}")).join(format!("date={date}")))
}

/// Splits `batch` by partition directory (rows keep their order within each part).
pub fn split(batch: &RecordBatch) -> Result<Vec<(PathBuf, RecordBatch)>> {
    let keys = Keys::of(batch)?;
    let Some(datetime) = keys.datetime else {
        return Err(Error::Column {
            sink: "geoparquet",
            column: DATETIME.into(),
            reason: "missing (needed by partitioning = \"grid_date\")".into(),
        });
    };
    let mut parts: BTreeMap<PathBuf, Vec<u32>> = BTreeMap::new();
    let mut last: Option<(Option<&str>, i64, PathBuf)> = None;
    for i in 0..batch.num_rows() {
        if datetime.is_null(i) {
            return Err(Error::Column {
                sink: "geoparquet",
                column: DATETIME.into(),
                reason: format!("row {i} is null"),
            });
        }
        let (grid, t) = (keys.key(i).0, datetime.value(i));
        // Rows of one scene share a partition: compute its path once per run of equal keys.
        let dir = match &last {
            Some((g, lt, d)) if *g == grid && chrono_day(*lt) == chrono_day(t) => d.clone(),
            _ => partition_dir(grid, t)?,
        };
        parts.entry(dir.clone()).or_default().push(i as u32);
        last = Some((grid, t, dir));
    }
    if parts.len() == 1 {
        return Ok(parts.into_keys().map(|d| (d, batch.clone())).collect());
    }
    parts.into_iter().map(|(d, rows)| Ok((d, take_record_batch(batch, &UInt32Array::from(rows))?))).collect()
}

/// The UTC day number of a timestamp in µs.
fn chrono_day(us: i64) -> i64 {
    us.div_euclid(86_400_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow_array::ArrayRef;
    use arrow_schema::{DataType, Field, Schema, TimeUnit};

    fn batch(grid: Vec<Option<&str>>, t: Vec<i64>, rows: Vec<i32>, cols: Vec<i32>) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new(GRID_ID, DataType::Utf8, true),
            Field::new(DATETIME, DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
            Field::new(CHIP_ROW, DataType::Int32, false),
            Field::new(CHIP_COL, DataType::Int32, false),
        ]);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(grid)),
            Arc::new(TimestampMicrosecondArray::from(t).with_timezone("UTC")),
            Arc::new(Int32Array::from(rows)),
            Arc::new(Int32Array::from(cols)),
        ];
        RecordBatch::try_new(Arc::new(schema), columns).expect("batch")
    }

    #[test]
    fn rows_sort_by_grid_time_row_col() {
        let b =
            batch(vec![Some("B"), Some("A"), Some("A"), None], vec![5, 9, 5, 1], vec![0, 1, 1, 0], vec![0, 2, 1, 0]);
        let (s, range) = sort(b).expect("sort");
        let col = s.column(3).as_any().downcast_ref::<Int32Array>().expect("cols");
        assert_eq!(col.values().to_vec(), vec![0, 1, 2, 0]);
        let (first, last) = range.expect("keys");
        assert_eq!(first, (None, Some(1), Some(0), Some(0)));
        assert_eq!(last, (Some("B".into()), Some(5), Some(0), Some(0)));
    }

    #[test]
    fn partitions_by_tile_and_utc_date() {
        let day = 86_400_000_000i64;
        // 2020-02-19T10:59:59Z and 2020-02-19T23:59:59.999999Z share a date; midnight does not.
        let t0 = 1_582_109_999_000_000i64;
        let b = batch(
            vec![Some("MGRS-29RKH"), Some("MGRS-29RKH"), Some("MGRS-29RKH"), Some("a/b")],
            vec![t0, t0 - t0 % day + day - 1, t0 - t0 % day + day, t0],
            vec![0; 4],
            vec![0, 1, 2, 3],
        );
        let parts = split(&b).expect("split");
        let dirs: Vec<String> = parts.iter().map(|(d, _)| d.display().to_string()).collect();
        assert_eq!(
            dirs,
            vec![
                "grid_id=MGRS-29RKH/date=2020-02-19",
                "grid_id=MGRS-29RKH/date=2020-02-20",
                "grid_id=a%2Fb/date=2020-02-19"
            ]
        );
        assert_eq!(parts.iter().map(|(_, b)| b.num_rows()).collect::<Vec<_>>(), vec![2, 1, 1]);
        assert_eq!(
            partition_dir(None, 0).expect("null").display().to_string(),
            "grid_id=__HIVE_DEFAULT_PARTITION__/date=1970-01-01"
        );
    }
}

//! End-to-end tests of terrastream live in `tests/`: they run the real binary on the real
//! sample data in `../shared/data` and read outputs back with independent readers (DuckDB,
//! GDAL). This library is empty.

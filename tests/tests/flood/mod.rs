//! Flood mapping on the real Sen1Floods11 chip: `flood water` per method, scored against the
//! hand-drawn label by GDAL + NumPy, and its COGs checked by GDAL's validator.

mod run;
mod serve;
mod water;

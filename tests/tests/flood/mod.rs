//! Flood mapping on the real Sen1Floods11 chip: `flood water` per method, scored against the
//! hand-drawn label by GDAL + NumPy, and its COGs checked by GDAL's validator.

mod load;
mod restart;
mod run;
mod serve;
mod water;

use std::path::PathBuf;

use crate::common::shared_data;

/// One file of the chip: `S1Hand`, `S2Hand`, `LabelHand`, ...
fn chip(kind: &str) -> PathBuf {
    shared_data().join(format!("sen1floods11/Spain_7370579_{kind}.tif"))
}

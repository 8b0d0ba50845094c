//! Mosaicking chips back into one raster per output (scene): a pure kernel, no I/O.
//!
//! Chips must share a CRS and a pixel grid (same resolution, origins a whole number of pixels
//! apart): they were cut from one scene grid. The canvas grows to the union of the chips seen,
//! so nothing about the scene's extent needs to be known in advance. Where chips overlap:
//!
//! - class masks take the **majority vote** of the chips that cover the pixel (ties go to the
//!   lowest class value, so the result does not depend on chip order);
//! - probabilities take the **mean** of the chips that cover the pixel.
//!
//! A chip pixel equal to the class nodata value, or a NaN probability, is "no prediction" and
//! does not vote. Pixels that no chip predicts are nodata in the result.
//!
//! Memory: class mosaics hold 2 bytes per canvas pixel plus about 24 bytes per pixel where
//! chips disagree; probability mosaics 6 bytes per canvas pixel (a 10980 x 10980 Sentinel-2
//! tile: 241 MB and 723 MB).

use std::collections::HashMap;

use crate::{Error, Result};

/// Tolerance, in pixels, for a chip origin to count as lying on the mosaic's pixel grid.
const GRID_TOLERANCE_PX: f64 = 1e-3;

/// The values of one chip's mask, row-major `height * width`.
#[derive(Debug, Clone, Copy)]
pub enum ChipValues<'a> {
    /// Class ids.
    Classes(&'a [u8]),
    /// Probabilities (any finite value; NaN = no prediction).
    Probabilities(&'a [f32]),
}

/// The pixels of a finished mosaic.
#[derive(Debug, Clone, PartialEq)]
pub enum RasterData {
    /// Class ids, with the value that marks pixels no chip predicted.
    Classes {
        /// Row-major values.
        values: Vec<u8>,
        /// The nodata value.
        nodata: u8,
    },
    /// Mean probabilities, with the value that marks pixels no chip predicted.
    Probabilities {
        /// Row-major values.
        values: Vec<f32>,
        /// The nodata value (finite, so that overview averaging can skip it).
        nodata: f32,
    },
}

/// A finished mosaic: georeferenced pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct MosaicRaster {
    /// EPSG code of the pixel grid.
    pub epsg: u32,
    /// GDAL GeoTransform of the raster, in CRS units (metres for UTM); north-up.
    pub transform: [f64; 6],
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// The pixels.
    pub data: RasterData,
    /// Number of chips mosaicked.
    pub chips: u64,
    /// Pixels that no chip predicted (nodata in `data`).
    pub nodata_pixels: u64,
}

/// The pixel grid the first chip fixes.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Grid {
    epsg: u32,
    /// Origin of pixel (0, 0), CRS units.
    x0: f64,
    y0: f64,
    /// Pixel size, CRS units, both positive.
    res_x: f64,
    res_y: f64,
}

/// The canvas bounds, in pixels of [`Grid`] (may start at negative offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Bounds {
    col0: i64,
    row0: i64,
    width: usize,
    height: usize,
}

impl Bounds {
    fn union(self, other: Bounds) -> Bounds {
        if self.width == 0 || self.height == 0 {
            return other;
        }
        let col0 = self.col0.min(other.col0);
        let row0 = self.row0.min(other.row0);
        let col1 = (self.col0 + self.width as i64).max(other.col0 + other.width as i64);
        let row1 = (self.row0 + self.height as i64).max(other.row0 + other.height as i64);
        Bounds { col0, row0, width: (col1 - col0) as usize, height: (row1 - row0) as usize }
    }
}

/// Per-pixel state of the mosaic.
#[derive(Debug)]
enum Accumulator {
    Classes {
        nodata: u8,
        /// The leading class, valid where `count > 0`.
        value: Vec<u8>,
        /// Votes for `value` (saturating); 0 = no vote yet.
        count: Vec<u8>,
        /// Pixels where chips disagree, keyed by grid `(row, col)`: every class with its votes.
        disputed: HashMap<(i64, i64), Vec<(u8, u32)>>,
    },
    Probabilities {
        nodata: f32,
        sum: Vec<f32>,
        count: Vec<u16>,
    },
}

/// Chips of one output being mosaicked.
#[derive(Debug)]
pub struct Mosaic {
    key: String,
    grid: Option<Grid>,
    bounds: Bounds,
    acc: Accumulator,
    chips: u64,
}

impl Mosaic {
    /// An empty class mosaic for output `key` (used in errors); `nodata` marks pixels without
    /// a prediction, in the chips and in the result.
    pub fn classes(key: impl Into<String>, nodata: u8) -> Self {
        let acc = Accumulator::Classes { nodata, value: Vec::new(), count: Vec::new(), disputed: HashMap::new() };
        Self { key: key.into(), grid: None, bounds: Bounds::default(), acc, chips: 0 }
    }

    /// An empty probability mosaic for output `key`; `nodata` (finite) marks pixels without a
    /// prediction in the result.
    pub fn probabilities(key: impl Into<String>, nodata: f32) -> Self {
        let acc = Accumulator::Probabilities { nodata, sum: Vec::new(), count: Vec::new() };
        Self { key: key.into(), grid: None, bounds: Bounds::default(), acc, chips: 0 }
    }

    /// The output key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Chips added so far.
    pub fn chips(&self) -> u64 {
        self.chips
    }

    fn err(&self, reason: String) -> Error {
        Error::Mosaic { key: self.key.clone(), reason }
    }

    /// Adds a `height` x `width` chip whose pixel grid is `transform` (GDAL order, CRS units)
    /// in `epsg`.
    pub fn add_chip(&mut self, epsg: u32, transform: [f64; 6], height: usize, width: usize, values: ChipValues<'_>) -> Result<()> {
        let t = transform;
        if !(t[2] == 0.0 && t[4] == 0.0 && t[1] > 0.0 && t[5] < 0.0) || t.iter().any(|v| !v.is_finite()) {
            return Err(self.err(format!("chip transform {t:?} is not north-up")));
        }
        let n = match values {
            ChipValues::Classes(v) => v.len(),
            ChipValues::Probabilities(v) => v.len(),
        };
        if n != height * width {
            return Err(self.err(format!("chip has {n} values, expected {height} x {width}")));
        }
        match (&self.acc, values) {
            (Accumulator::Classes { .. }, ChipValues::Classes(_))
            | (Accumulator::Probabilities { .. }, ChipValues::Probabilities(_)) => {}
            _ => return Err(self.err("a chip's mask type differs from the mosaic's (classes vs probabilities)".into())),
        }
        let grid = *self.grid.get_or_insert(Grid { epsg, x0: t[0], y0: t[3], res_x: t[1], res_y: -t[5] });
        if epsg != grid.epsg {
            return Err(self.err(format!("chip in EPSG:{epsg}, mosaic in EPSG:{}", grid.epsg)));
        }
        let rel = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
        if !rel(t[1], grid.res_x) || !rel(-t[5], grid.res_y) {
            return Err(self.err(format!(
                "chip pixel size ({}, {}) differs from the mosaic's ({}, {})",
                t[1], -t[5], grid.res_x, grid.res_y
            )));
        }
        let fc = (t[0] - grid.x0) / grid.res_x;
        let fr = (grid.y0 - t[3]) / grid.res_y;
        if (fc - fc.round()).abs() > GRID_TOLERANCE_PX || (fr - fr.round()).abs() > GRID_TOLERANCE_PX {
            return Err(self.err(format!("chip origin ({}, {}) is off the mosaic's pixel grid by ({fc}, {fr}) px", t[0], t[3])));
        }
        let chip = Bounds { col0: fc.round() as i64, row0: fr.round() as i64, width, height };
        self.grow(chip);
        let b = self.bounds;
        let (dc, dr) = ((chip.col0 - b.col0) as usize, (chip.row0 - b.row0) as usize);
        match (&mut self.acc, values) {
            (Accumulator::Classes { nodata, value, count, disputed }, ChipValues::Classes(v)) => {
                for r in 0..height {
                    for c in 0..width {
                        let class = v[r * width + c];
                        if class == *nodata {
                            continue;
                        }
                        let i = (dr + r) * b.width + dc + c;
                        let key = (chip.row0 + r as i64, chip.col0 + c as i64);
                        if count[i] == 0 {
                            value[i] = class;
                            count[i] = 1;
                        } else if let Some(votes) = disputed.get_mut(&key) {
                            match votes.iter_mut().find(|(k, _)| *k == class) {
                                Some((_, n)) => *n += 1,
                                None => votes.push((class, 1)),
                            }
                        } else if value[i] == class {
                            count[i] = count[i].saturating_add(1);
                        } else {
                            disputed.insert(key, vec![(value[i], u32::from(count[i])), (class, 1)]);
                        }
                    }
                }
            }
            (Accumulator::Probabilities { sum, count, .. }, ChipValues::Probabilities(v)) => {
                for r in 0..height {
                    let row = &v[r * width..(r + 1) * width];
                    let start = (dr + r) * b.width + dc;
                    for (k, &p) in row.iter().enumerate() {
                        if p.is_finite() {
                            sum[start + k] += p;
                            count[start + k] = count[start + k].saturating_add(1);
                        }
                    }
                }
            }
            _ => unreachable!("checked above"),
        }
        self.chips += 1;
        Ok(())
    }

    /// Grows the canvas to include `chip`, keeping what is there.
    fn grow(&mut self, chip: Bounds) {
        let old = self.bounds;
        let new = old.union(chip);
        if new == old {
            return;
        }
        let len = new.width * new.height;
        // Growing downwards only (chips arrive row by row): the row-major data stays put.
        let append = old.width == new.width && old.col0 == new.col0 && old.row0 == new.row0;
        fn relayout<T: Copy>(v: &mut Vec<T>, fill: T, old: Bounds, new: Bounds, append: bool) {
            if append {
                v.resize(new.width * new.height, fill);
                return;
            }
            let mut out = vec![fill; new.width * new.height];
            let (dc, dr) = ((old.col0 - new.col0) as usize, (old.row0 - new.row0) as usize);
            for r in 0..old.height {
                let src = &v[r * old.width..(r + 1) * old.width];
                let start = (dr + r) * new.width + dc;
                out[start..start + old.width].copy_from_slice(src);
            }
            *v = out;
        }
        match &mut self.acc {
            Accumulator::Classes { value, count, .. } => {
                relayout(value, 0, old, new, append);
                relayout(count, 0, old, new, append);
            }
            Accumulator::Probabilities { sum, count, .. } => {
                relayout(sum, 0.0, old, new, append);
                relayout(count, 0, old, new, append);
            }
        }
        debug_assert!(match &self.acc {
            Accumulator::Classes { value, .. } => value.len() == len,
            Accumulator::Probabilities { sum, .. } => sum.len() == len,
        });
        self.bounds = new;
    }

    /// The finished raster, or `None` when no chip was added.
    pub fn finish(self) -> Option<MosaicRaster> {
        let grid = self.grid?;
        let b = self.bounds;
        let transform = [
            grid.x0 + b.col0 as f64 * grid.res_x,
            grid.res_x,
            0.0,
            grid.y0 - b.row0 as f64 * grid.res_y,
            0.0,
            -grid.res_y,
        ];
        let (data, nodata_pixels) = match self.acc {
            Accumulator::Classes { nodata, mut value, count, disputed } => {
                let mut empty = 0u64;
                for (i, v) in value.iter_mut().enumerate() {
                    if count[i] == 0 {
                        *v = nodata;
                        empty += 1;
                    }
                }
                for ((row, col), votes) in disputed {
                    // Most votes wins; among equals the lowest class.
                    let best = votes.iter().max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)));
                    if let Some(&(class, _)) = best {
                        value[(row - b.row0) as usize * b.width + (col - b.col0) as usize] = class;
                    }
                }
                (RasterData::Classes { values: value, nodata }, empty)
            }
            Accumulator::Probabilities { nodata, sum, count } => {
                let mut empty = 0u64;
                let values = sum
                    .iter()
                    .zip(&count)
                    .map(|(&s, &n)| {
                        if n == 0 {
                            empty += 1;
                            nodata
                        } else {
                            s / f32::from(n)
                        }
                    })
                    .collect();
                (RasterData::Probabilities { values, nodata }, empty)
            }
        };
        Some(MosaicRaster { epsg: grid.epsg, transform, width: b.width, height: b.height, data, chips: self.chips, nodata_pixels })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(x0: f64, y0: f64) -> [f64; 6] {
        [x0, 10.0, 0.0, y0, 0.0, -10.0]
    }

    #[test]
    fn overlapping_class_chips_vote_and_gaps_are_nodata() {
        let mut m = Mosaic::classes("s", 255);
        // Three 2x2 chips: A at (0,0) all 1, B at (0,1) all 2, C at (1,1) all 2 with one
        // nodata pixel; and a chip far right leaves a gap column.
        m.add_chip(32629, t(0.0, 100.0), 2, 2, ChipValues::Classes(&[1, 1, 1, 1])).expect("a");
        m.add_chip(32629, t(10.0, 100.0), 2, 2, ChipValues::Classes(&[2, 2, 2, 2])).expect("b");
        m.add_chip(32629, t(10.0, 90.0), 2, 2, ChipValues::Classes(&[255, 2, 2, 2])).expect("c");
        m.add_chip(32629, t(40.0, 100.0), 1, 1, ChipValues::Classes(&[7])).expect("d");
        let r = m.finish().expect("raster");
        assert_eq!((r.width, r.height), (5, 3));
        assert_eq!(r.transform, [0.0, 10.0, 0.0, 100.0, 0.0, -10.0]);
        let RasterData::Classes { values, nodata } = r.data else { panic!("classes") };
        assert_eq!(nodata, 255);
        #[rustfmt::skip]
        assert_eq!(values, vec![
            1, 1, 2, 255, 7,
            // (1,1): A=1, B=2, C=nodata -> tie 1:1 -> lowest class 1. (1,2): B=2, C=2.
            1, 1, 2, 255, 255,
            255, 2, 2, 255, 255,
        ]);
        assert_eq!(r.nodata_pixels, 6);
        assert_eq!(r.chips, 4);
    }

    #[test]
    fn majority_beats_first_seen() {
        let mut m = Mosaic::classes("s", 0);
        m.add_chip(4326, t(0.0, 0.0), 1, 1, ChipValues::Classes(&[5])).expect("1");
        m.add_chip(4326, t(0.0, 0.0), 1, 1, ChipValues::Classes(&[3])).expect("2");
        m.add_chip(4326, t(0.0, 0.0), 1, 1, ChipValues::Classes(&[3])).expect("3");
        let RasterData::Classes { values, .. } = m.finish().expect("r").data else { panic!() };
        assert_eq!(values, vec![3]);
    }

    #[test]
    fn probabilities_are_averaged_and_grow_leftwards() {
        let mut m = Mosaic::probabilities("s", -1.0);
        m.add_chip(32629, t(10.0, 100.0), 1, 2, ChipValues::Probabilities(&[0.5, 1.0])).expect("a");
        m.add_chip(32629, t(0.0, 100.0), 1, 2, ChipValues::Probabilities(&[0.25, 0.0])).expect("b");
        m.add_chip(32629, t(0.0, 90.0), 1, 1, ChipValues::Probabilities(&[f32::NAN])).expect("c");
        let r = m.finish().expect("r");
        assert_eq!((r.width, r.height), (3, 2));
        assert_eq!(r.transform[0], 0.0);
        let RasterData::Probabilities { values, .. } = r.data else { panic!() };
        assert_eq!(values, vec![0.25, 0.25, 1.0, -1.0, -1.0, -1.0]);
    }

    #[test]
    fn misaligned_or_mixed_chips_are_refused_with_the_key() {
        let mut m = Mosaic::classes("S2A_X", 0);
        m.add_chip(32629, t(0.0, 0.0), 1, 1, ChipValues::Classes(&[1])).expect("first");
        let e = m.add_chip(32629, t(5.0, 0.0), 1, 1, ChipValues::Classes(&[1])).expect_err("half a pixel off");
        assert!(e.to_string().contains("S2A_X") && e.to_string().contains("grid"), "{e}");
        assert!(m.add_chip(32630, t(0.0, 0.0), 1, 1, ChipValues::Classes(&[1])).is_err());
        assert!(m.add_chip(32629, [0.0, 20.0, 0.0, 0.0, 0.0, -20.0], 1, 1, ChipValues::Classes(&[1])).is_err());
        assert!(m.add_chip(32629, t(0.0, 0.0), 2, 2, ChipValues::Classes(&[1])).is_err());
        assert!(m.add_chip(32629, t(0.0, 0.0), 1, 1, ChipValues::Probabilities(&[1.0])).is_err());
        assert!(Mosaic::classes("e", 0).finish().is_none());
    }
}

//! Chip grids: where square chips are cut from a scene.

use serde::Deserialize;

use crate::{Error, Result};

/// What happens where the scene does not divide into whole chips.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgePolicy {
    /// The last chip of a row or column is moved inwards to end at the scene edge, overlapping
    /// its neighbour: every pixel is covered and no chip holds padding.
    #[default]
    Snap,
    /// Partial chips are left out: the uncovered margin is at most `chip - 1` pixels.
    Drop,
    /// Partial chips are kept and padded with no-data, which lowers their valid fraction.
    Pad,
}

/// A grid of `chip` x `chip` pixel windows, `stride` pixels apart, over a `width` x `height`
/// scene.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChipGrid {
    /// Scene width in pixels.
    pub width: usize,
    /// Scene height in pixels.
    pub height: usize,
    /// Chip side in pixels.
    pub chip: usize,
    /// Distance between chip origins in pixels (`chip` = no overlap).
    pub stride: usize,
    /// Edge handling.
    pub edge: EdgePolicy,
}

impl ChipGrid {
    /// A grid, validated: `chip` > 0, `stride` > 0. A stride above the chip size leaves gaps
    /// between chips: a sparse sample of the scene (quick looks, training sets).
    pub fn new(width: usize, height: usize, chip: usize, stride: usize, edge: EdgePolicy) -> Result<Self> {
        if chip == 0 {
            return Err(Error::Option { key: "grid.chip_size".into(), reason: "must be > 0".into() });
        }
        if stride == 0 {
            return Err(Error::Option { key: "grid.stride".into(), reason: "must be > 0".into() });
        }
        Ok(Self { width, height, chip, stride, edge })
    }

    /// Pixel offsets of chip rows, top to bottom.
    pub fn row_offsets(&self) -> Vec<usize> {
        offsets(self.height, self.chip, self.stride, self.edge)
    }

    /// Pixel offsets of chip columns, left to right.
    pub fn col_offsets(&self) -> Vec<usize> {
        offsets(self.width, self.chip, self.stride, self.edge)
    }

    /// Number of chips in the grid.
    pub fn len(&self) -> usize {
        self.row_offsets().len() * self.col_offsets().len()
    }

    /// True when the scene yields no chip.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn offsets(size: usize, chip: usize, stride: usize, edge: EdgePolicy) -> Vec<usize> {
    let mut out: Vec<usize> = (0..).map(|i| i * stride).take_while(|&o| o + chip <= size).collect();
    let covered = out.last().map_or(0, |&o| o + chip);
    if covered < size {
        match edge {
            EdgePolicy::Drop => {}
            EdgePolicy::Snap if size >= chip => out.push(size - chip),
            // A scene smaller than one chip can only be padded.
            EdgePolicy::Snap | EdgePolicy::Pad => {
                let next = out.last().map_or(0, |&o| o + stride);
                // With gaps (stride > chip) the next chip may start past the scene.
                if next < size {
                    out.push(next);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_grids_leave_gaps() {
        assert_eq!(offsets(1098, 224, 448, EdgePolicy::Snap), vec![0, 448, 874]);
        assert_eq!(offsets(1098, 224, 448, EdgePolicy::Drop), vec![0, 448]);
        assert_eq!(offsets(1000, 224, 448, EdgePolicy::Pad), vec![0, 448, 896]);
        assert_eq!(offsets(700, 224, 448, EdgePolicy::Pad), vec![0, 448]);
        assert!(ChipGrid::new(10, 10, 4, 0, EdgePolicy::Snap).is_err());
    }

    #[test]
    fn snap_covers_the_edge_without_padding() {
        let g = ChipGrid::new(1098, 1098, 224, 224, EdgePolicy::Snap).expect("grid");
        assert_eq!(g.col_offsets(), vec![0, 224, 448, 672, 874]);
        assert_eq!(g.len(), 25);
    }

    #[test]
    fn drop_and_pad() {
        let d = ChipGrid::new(1098, 500, 224, 224, EdgePolicy::Drop).expect("grid");
        assert_eq!(d.col_offsets(), vec![0, 224, 448, 672]);
        assert_eq!(d.row_offsets(), vec![0, 224]);
        let p = ChipGrid::new(1098, 500, 224, 224, EdgePolicy::Pad).expect("grid");
        assert_eq!(p.col_offsets(), vec![0, 224, 448, 672, 896]);
        let small = ChipGrid::new(100, 100, 224, 224, EdgePolicy::Snap).expect("grid");
        assert_eq!(small.col_offsets(), vec![0]);
    }

    #[test]
    fn overlap_and_exact_fit() {
        let g = ChipGrid::new(448, 448, 224, 112, EdgePolicy::Snap).expect("grid");
        assert_eq!(g.col_offsets(), vec![0, 112, 224]);
        assert!(ChipGrid::new(10, 10, 224, 0, EdgePolicy::Snap).is_err());
    }
}

//! The fixed 2-D sin-cos positional table (`pos_emb` buffers) and its bicubic resizing.

use tch::{Kind, Tensor, nn};

use crate::{Config, Result};

/// The 2-D sin-cos table `[1, g·g, D]` for a `g x g` grid (MoCo-v3, as terratorch builds it):
/// `pos[r·g + c] = [sin(r ω), cos(r ω), sin(c ω), cos(c ω)]`, `ω_k = 10000^(-k/(D/4))`.
pub(crate) fn sincos_table(grid: i64, dim: i64) -> Tensor {
    let quarter = dim / 4;
    let omega: Vec<f32> = (0..quarter)
        .map(|k| 1.0 / 10000f32.powf(k as f32 / quarter as f32))
        .collect();
    let mut values = Vec::with_capacity((grid * grid * dim) as usize);
    for r in 0..grid {
        for c in 0..grid {
            for pos in [r as f32, c as f32] {
                values.extend(omega.iter().map(|w| (pos * w).sin()));
                values.extend(omega.iter().map(|w| (pos * w).cos()));
            }
        }
    }
    Tensor::from_slice(&values).reshape([1, grid * grid, dim])
}

/// A `pos_emb` buffer `[1, g·g, D]` for the checkpoint's `g x g` grid (14 x 14), resized
/// bicubically (align_corners = false, a = -0.75) for other grids.
#[derive(Debug)]
pub(crate) struct PosEmb {
    table: Tensor,
    grid: i64,
    dim: i64,
}

impl PosEmb {
    pub(crate) fn new(p: &nn::Path, cfg: &Config) -> Result<Self> {
        let grid = cfg.grid();
        Ok(PosEmb {
            table: p.f_zeros_no_train("pos_emb", &[1, grid * grid, cfg.dim])?,
            grid,
            dim: cfg.dim,
        })
    }

    /// The table for a `gh x gw` grid, `[1, gh·gw, D]`, rows in row-major grid order.
    pub(crate) fn get(&self, gh: i64, gw: i64) -> Result<Tensor> {
        if (gh, gw) == (self.grid, self.grid) {
            return Ok(self.table.shallow_clone());
        }
        let kind = self.table.kind();
        let image = self
            .table
            .f_reshape([1, self.grid, self.grid, self.dim])?
            .f_permute([0, 3, 1, 2])?
            .f_to_kind(Kind::Float)?;
        let resized = image.f_upsample_bicubic2d([gh, gw], false, None, None)?;
        Ok(resized
            .f_permute([0, 2, 3, 1])?
            .f_reshape([1, gh * gw, self.dim])?
            .f_to_kind(kind)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_layout() {
        let t = sincos_table(14, 192);
        assert_eq!(t.size(), [1, 196, 192]);
        // Position (r=0, c=1): the row block is [sin 0, cos 0] = [0, 1], the column block
        // starts with sin(1).
        let row = t.get(0).get(1);
        assert!((row.double_value(&[0]) - 0.0).abs() < 1e-7);
        assert!((row.double_value(&[48]) - 1.0).abs() < 1e-7);
        assert!((row.double_value(&[96]) - 1f64.sin()).abs() < 1e-6);
    }
}

//! `encoder_embeddings.untok_<m>@224`: patch projection `proj.weight` `[D, 16·16·C]` (no bias),
//! `mod_emb` `[1, 1, D]` and `pos_emb` `[1, 196, D]`.

use tch::{Tensor, nn};

use super::PosEmb;
use crate::{Config, Result};

/// Image patches to tokens: `x = proj(patches)`, each 16x16 patch flattened in `(ph pw c)` order.
#[derive(Debug)]
pub(crate) struct ImageEmbedding {
    proj: Tensor,
    mod_emb: Tensor,
    pos_emb: PosEmb,
    channels: i64,
    patch: i64,
}

impl ImageEmbedding {
    pub(crate) fn new(p: &nn::Path, cfg: &Config, channels: i64) -> Result<Self> {
        let patch = cfg.patch_size;
        Ok(ImageEmbedding {
            proj: (p / "proj").f_zeros_no_train("weight", &[cfg.dim, patch * patch * channels])?,
            mod_emb: p.f_zeros_no_train("mod_emb", &[1, 1, cfg.dim])?,
            pos_emb: PosEmb::new(p, cfg)?,
            channels,
            patch,
        })
    }

    /// Number of input channels the projection takes.
    pub(crate) fn channels(&self) -> i64 {
        self.channels
    }

    /// `[B, C, H, W] -> [B, (H/16)(W/16), D]`:
    /// einops `b c (nh ph) (nw pw) -> b (nh nw) (ph pw c)`, then `proj`.
    pub(crate) fn project(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.size4()?;
        let (p, gh, gw) = (self.patch, h / self.patch, w / self.patch);
        let patches = x
            .f_reshape([b, c, gh, p, gw, p])?
            .f_permute([0, 2, 4, 3, 5, 1])?
            .f_reshape([b, gh * gw, p * p * c])?;
        Ok(patches.f_linear(&self.proj, None::<&Tensor>)?)
    }

    /// `pos_emb + mod_emb` on a `gh x gw` grid.
    pub(crate) fn emb(&self, gh: i64, gw: i64) -> Result<Tensor> {
        Ok(self.pos_emb.get(gh, gw)?.f_add(&self.mod_emb)?)
    }

    /// Keeps only the projection columns of the pre-trained bands `index` (in that order), as
    /// terratorch's `select_modality_patch_embed_weights` does.
    pub(crate) fn select_bands(&mut self, index: &[i64]) -> Result<()> {
        let (d, _) = self.proj.size2()?;
        let pixels = self.patch * self.patch;
        let idx = Tensor::from_slice(index).f_to_device(self.proj.device())?;
        self.proj = self
            .proj
            .f_reshape([d, pixels, self.channels])?
            .f_index_select(2, &idx)?
            .f_reshape([d, pixels * index.len() as i64])?;
        self.channels = index.len() as i64;
        Ok(())
    }
}

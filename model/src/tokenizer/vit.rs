//! The tokenizers' ViT encoder (`encoder.*`) and ViT decoder (`decoder.*`), as in ViT-VQGAN
//! (Yu et al., <https://arxiv.org/abs/2110.04627>): pre-norm blocks without a final norm, then a
//! residual "post-MLP" with a tanh activation.

use tch::{Tensor, nn};

use crate::layers::{Block, Conv2d, LayerNorm, Linear};
use crate::{Config, Result};

/// `pos_emb` `[1, D, g, g]`: a `g x g` grid of positions (16 x 16 for image size 256), resized
/// bicubically (align_corners = false) to the token grid of the input.
#[derive(Debug)]
struct GridPos {
    table: Tensor,
}

impl GridPos {
    fn new(p: &nn::Path, cfg: &Config) -> Result<Self> {
        let g = cfg.grid();
        Ok(GridPos {
            table: p.f_zeros_no_train("pos_emb", &[1, cfg.dim, g, g])?,
        })
    }

    /// `[1, gh·gw, D]`, rows in row-major grid order.
    fn get(&self, gh: i64, gw: i64) -> Result<Tensor> {
        // The reference resizes even when the size is unchanged; so do we, to stay bit-equal.
        tokens(&self.table.f_upsample_bicubic2d([gh, gw], false, None, None)?)
    }
}

/// `[B, D, gh, gw] -> [B, gh·gw, D]`, contiguous: a transposed view would keep the residual
/// stream feature-major through every block, costing a copy in each LayerNorm and Linear.
fn tokens(x: &Tensor) -> Result<Tensor> {
    let (b, d, gh, gw) = x.size4()?;
    Ok(x.f_permute([0, 2, 3, 1])?.f_reshape([b, gh * gw, d])?)
}

/// `<p>.norm_mlp` and `<p>.post_mlp.{fc1, fc2}`: `x + fc2(tanh(fc1(LN(x))))`.
#[derive(Debug)]
struct PostMlp {
    norm_mlp: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

impl PostMlp {
    fn new(p: &nn::Path, cfg: &Config) -> Result<Self> {
        let (d, h) = (cfg.dim, cfg.mlp_hidden);
        Ok(PostMlp {
            norm_mlp: LayerNorm::new(&(p / "norm_mlp"), cfg)?,
            fc1: Linear::new(&(p / "post_mlp" / "fc1"), d, h, true)?,
            fc2: Linear::new(&(p / "post_mlp" / "fc2"), h, d, true)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.fc1.forward(&self.norm_mlp.forward(x)?)?.f_tanh()?;
        Ok(x.f_add(&self.fc2.forward(&h)?)?)
    }
}

/// The transformer trunk shared by encoder and decoder: positions, blocks, optional post-MLP.
#[derive(Debug)]
struct Trunk {
    pos: GridPos,
    blocks: Vec<Block>,
    post_mlp: Option<PostMlp>,
}

impl Trunk {
    fn new(p: &nn::Path, cfg: &Config, depth: usize, post_mlp: bool) -> Result<Self> {
        Ok(Trunk {
            pos: GridPos::new(p, cfg)?,
            blocks: (0..depth)
                .map(|i| Block::new(&(p / "blocks" / i), cfg))
                .collect::<Result<_>>()?,
            post_mlp: post_mlp.then(|| PostMlp::new(p, cfg)).transpose()?,
        })
    }

    /// `[B, D, gh, gw]` feature map to `[B, gh·gw, D]` tokens after the blocks and post-MLP.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, gh, gw) = x.size4()?;
        let mut h = tokens(x)?.f_add(&self.pos.get(gh, gw)?)?;
        for block in &self.blocks {
            h = block.forward(&h)?;
        }
        match &self.post_mlp {
            Some(m) => m.forward(&h),
            None => Ok(h),
        }
    }
}

/// `encoder.*`: image `[B, C, H, W]` to features `[B, D, H/16, W/16]`.
#[derive(Debug)]
pub(crate) struct VitEncoder {
    proj: Conv2d,
    trunk: Trunk,
}

impl VitEncoder {
    pub(crate) fn new(p: &nn::Path, cfg: &Config, channels: i64, depth: usize, post_mlp: bool) -> Result<Self> {
        Ok(VitEncoder {
            proj: Conv2d::new(&(p / "proj"), channels, cfg.dim, cfg.patch_size)?,
            trunk: Trunk::new(p, cfg, depth, post_mlp)?,
        })
    }

    /// Patch projection + positions, blocks, post-MLP; back to a feature map.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let patches = self.proj.forward(x)?;
        let (b, d, gh, gw) = patches.size4()?;
        let h = self.trunk.forward(&patches)?;
        Ok(h.f_transpose(1, 2)?.f_reshape([b, d, gh, gw])?)
    }
}

/// `decoder.*`: features `[B, D, h, w]` to per-pixel outputs `[B, C, 16h, 16w]`.
#[derive(Debug)]
pub(crate) struct VitDecoder {
    trunk: Trunk,
    out_proj: Linear,
    channels: i64,
    patch: i64,
}

impl VitDecoder {
    pub(crate) fn new(p: &nn::Path, cfg: &Config, channels: i64, depth: usize, post_mlp: bool) -> Result<Self> {
        let patch = cfg.patch_size;
        Ok(VitDecoder {
            trunk: Trunk::new(p, cfg, depth, post_mlp)?,
            out_proj: Linear::new(&(p / "out_proj"), cfg.dim, channels * patch * patch, true)?,
            channels,
            patch,
        })
    }

    /// Blocks and post-MLP, then each token to a `(c, ph, pw)` patch of outputs.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, _, gh, gw) = x.size4()?;
        let (c, p) = (self.channels, self.patch);
        let out = self.out_proj.forward(&self.trunk.forward(x)?)?;
        Ok(out
            .f_reshape([b, gh, gw, c, p, p])?
            .f_permute([0, 3, 1, 4, 2, 5])?
            .f_reshape([b, c, gh * p, gw * p])?)
    }
}

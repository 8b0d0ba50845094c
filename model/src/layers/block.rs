//! Encoder block `encoder.<i>`: `{norm1, attn.qkv, attn.proj, norm2, mlp.*}`.

use tch::{Tensor, nn};

use super::{Attention, LayerNorm, Mlp};
use crate::{Config, Result};

/// Pre-norm transformer block.
#[derive(Debug)]
pub(crate) struct Block {
    norm1: LayerNorm,
    attn: Attention,
    norm2: LayerNorm,
    mlp: Mlp,
}

impl Block {
    pub(crate) fn new(p: &nn::Path, cfg: &Config) -> Result<Self> {
        Ok(Block {
            norm1: LayerNorm::new(&(p / "norm1"), cfg)?,
            attn: Attention::new(&(p / "attn"), cfg)?,
            norm2: LayerNorm::new(&(p / "norm2"), cfg)?,
            mlp: Mlp::new(&(p / "mlp"), cfg)?,
        })
    }

    /// `x = x + attn(norm1 x)`, then `x + mlp(norm2 x)`.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.f_add(&self.attn.forward(&self.norm1.forward(x)?)?)?;
        Ok(x.f_add(&self.mlp.forward(&self.norm2.forward(&x)?)?)?)
    }
}
